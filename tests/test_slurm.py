"""The Slurm launch (`configs/slurm/train.sbatch` and `medtune_utils.launch`), checked on CPU with Slurm's variables.

Each node's command is parsed and validated by accelerate's own `launch` argument handling, then turned into the
torchrun settings accelerate would start: processes per node, node rank, rendezvous address.
"""

from __future__ import annotations

import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils.launch import prepare_multi_gpu_env

from medtune_utils import launch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "configs" / "slurm" / "train.sbatch"
# A stand-in for srun: one task per node, each with its own SLURM_PROCID / SLURM_NODEID, as Slurm sets them.
FAKE_SRUN = """#!/bin/bash
while [[ "$1" == --* ]]; do shift; done
for rank in $(seq 0 $((SLURM_JOB_NUM_NODES - 1))); do
    SLURM_PROCID=$rank SLURM_NODEID=$rank SLURM_NTASKS=$SLURM_JOB_NUM_NODES SLURMD_NODENAME=node$rank "$@" || exit 1
done
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _accelerate_args(command: list[str]) -> object:
    """The command's launcher arguments, validated as `accelerate launch` validates them."""
    start = command.index("accelerate.commands.launch") + 1
    args, _, _ = _validate_launch_command(launch_command_parser().parse_args(command[start:]))
    return args


def _sbatch(tmp_path: Path, nodes: int, port: int) -> list[list[str]]:
    """Run the batch script as Slurm would on `nodes` nodes of 8 GPUs, printing each node's command."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text(FAKE_SRUN)
    (fake / "srun").chmod(0o755)
    env = {
        "PATH": f"{fake}:{Path(sys.executable).parent}:/usr/bin:/bin",
        "SLURM_SUBMIT_DIR": str(REPO),
        "SLURM_JOB_NUM_NODES": str(nodes),
        "SLURM_JOB_NODELIST": "gpu[07-09,12]" if nodes > 1 else "gpu07",
        "SLURM_NODEID": "0",  # what the batch script itself sees on every node
        "SLURM_GPUS_ON_NODE": "8",
        "LAUNCH_PRINT": "1",
        "PORT": str(port),
        "RUN_DIR": "results/13b",
    }
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return [shlex.split(line) for line in done.stdout.splitlines()]


@pytest.mark.parametrize("nodes", [1, 4])
def test_the_batch_script_starts_one_launcher_per_node_with_its_own_rank(tmp_path: Path, nodes: int) -> None:
    port = _free_port()
    commands = _sbatch(tmp_path, nodes, port)
    assert len(commands) == nodes
    for rank, command in enumerate(commands):
        assert command[command.index("-m", 3) :][:2] == ["-m", "medtune_utils.train"]
        assert command[-4:] == ["--profile", "llama2-13b", "--run-dir", "results/13b"]
        args = _accelerate_args(command)
        assert args.use_fsdp and args.num_processes == 8 * nodes and args.num_machines == nodes
        torchrun = prepare_multi_gpu_env(args)
        assert torchrun["ACCELERATE_USE_FSDP"] == "true" and args.nproc_per_node == "8"
        if nodes > 1:
            assert (args.nnodes, args.node_rank) == (str(nodes), rank)
            rendezvous = getattr(args, "rdzv_endpoint", None) or f"{args.master_addr}:{args.master_port}"
            assert rendezvous == f"gpu07:{port}"  # the first host of the node list, on every node


def test_machines_come_from_the_task_not_the_batch_environment() -> None:
    env = {"SLURM_JOB_NUM_NODES": "2", "SLURM_NTASKS": "2", "SLURM_PROCID": "1", "SLURM_NODEID": "1"}
    machines = launch.slurm_machines({**env, "SLURM_JOB_NODELIST": "a100-[3-4]", "SLURM_GPUS_PER_NODE": "a100:4"})
    assert machines == launch.Machines(2, 1, 4, "a100-3", launch.DEFAULT_PORT)
    assert machines.num_processes == 8  # --num_processes is the total over all machines
    command = launch.accelerate_command("configs/accelerate/fsdp.yaml", machines, ["-m", "medtune_utils.train"])
    args = _accelerate_args(command)
    assert (args.num_processes, args.num_machines, args.machine_rank, args.main_process_ip) == (8, 2, 1, "a100-3")


@pytest.mark.parametrize(
    ("nodelist", "first"), [("gpu07", "gpu07"), ("gpu[07-09,12]", "gpu07"), ("n[12,3-4],m1", "n12"), ("x-1,x-2", "x-1")]
)
def test_first_host_of_a_slurm_node_list(nodelist: str, first: str) -> None:
    assert launch.first_host(nodelist) == first


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({}, "not inside a Slurm task"),
        (
            {"SLURM_JOB_NUM_NODES": "2", "SLURM_NTASKS": "16", "SLURM_PROCID": "3", "SLURM_JOB_NODELIST": "g[1-2]"},
            "start one launcher per node",
        ),
    ],
)
def test_a_launch_that_cannot_work_is_refused(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(launch.LaunchError, match=fragment):
        launch.slurm_machines(env)
