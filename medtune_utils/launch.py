"""`accelerate launch` command lines for one machine or a Slurm allocation of several.

`accelerate launch --num_processes` is the total over all machines, and each machine's launcher needs its own
`--machine_rank`. Under Slurm the rank comes from the task (`SLURM_PROCID`, with one task per node started by `srun`),
never from the batch script's environment, where `SLURM_NODEID` is 0 on every node. `configs/slurm/train.sbatch` calls:

    python -m medtune_utils.launch slurm --config-file configs/accelerate/fsdp.yaml -- -m medtune_utils.train ...

which prints the command with `--print` and otherwise replaces itself with it.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

DEFAULT_PORT = 29500


class LaunchError(RuntimeError):
    """The environment does not describe a launch that can work."""


@dataclass(frozen=True)
class Machines:
    """Where the processes of one training run go."""

    num_machines: int
    machine_rank: int
    processes_per_machine: int
    main_address: str | None = None
    main_port: int = DEFAULT_PORT

    @property
    def num_processes(self) -> int:
        """All processes over all machines: what `accelerate launch --num_processes` means."""
        return self.num_machines * self.processes_per_machine


def accelerate_command(config_file: str, machines: Machines, target: Sequence[str]) -> list[str]:
    """`python -m accelerate.commands.launch ...` for this machine, followed by `target` (e.g. `-m medtune_utils.train ...`)."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config_file]
    command += ["--num_processes", str(machines.num_processes), "--num_machines", str(machines.num_machines)]
    if machines.num_machines > 1:
        command += ["--machine_rank", str(machines.machine_rank), "--main_process_ip", str(machines.main_address)]
    command += ["--main_process_port", str(machines.main_port)]  # 0: a free port (one machine only)
    return [*command, *target]


def first_host(nodelist: str) -> str:
    """The first host of a Slurm node list: `gpu[07-09,12],cpu1` -> `gpu07` (what `scontrol show hostnames` lists first)."""
    match = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if not match or not match[1]:
        raise LaunchError(f"cannot read a host from the Slurm node list {nodelist!r}")
    prefix, ranges = match[1], match[2]
    return prefix if ranges is None else prefix + ranges.split(",")[0].split("-")[0]


def slurm_machines(env: Mapping[str, str], port: int = DEFAULT_PORT) -> Machines:
    """The machines of a Slurm job step with one task per node, as seen from inside one task (`srun`)."""
    missing = [key for key in ("SLURM_JOB_NUM_NODES", "SLURM_PROCID", "SLURM_JOB_NODELIST") if key not in env]
    if missing:
        raise LaunchError(f"not inside a Slurm task (missing {', '.join(missing)}): start this with srun, one task per node")
    nodes = int(env["SLURM_JOB_NUM_NODES"])
    tasks = int(env.get("SLURM_NTASKS", nodes))
    if tasks != nodes:
        raise LaunchError(
            f"{tasks} Slurm tasks on {nodes} node(s): start one launcher per node (srun --ntasks-per-node=1); "
            "it starts one process per GPU itself"
        )
    gpus = _gpus_on_node(env)
    return Machines(nodes, int(env["SLURM_PROCID"]), gpus, first_host(env["SLURM_JOB_NODELIST"]), port)


def _gpus_on_node(env: Mapping[str, str]) -> int:
    """GPUs Slurm gave this node (`SLURM_GPUS_ON_NODE`, else `SLURM_GPUS_PER_NODE` such as `h100:8`), else those visible."""
    for key in ("SLURM_GPUS_ON_NODE", "SLURM_GPUS_PER_NODE"):
        if env.get(key):
            return int(env[key].rsplit(":", 1)[-1])
    import torch

    count = torch.cuda.device_count()
    if count == 0:
        raise LaunchError(f"no GPU on node {env.get('SLURMD_NODENAME', '?')}: request them with #SBATCH --gpus-per-node")
    return count


def main(argv: list[str] | None = None) -> int:
    """Command line: `python -m medtune_utils.launch slurm --config-file FILE [--print] -- TARGET...`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("where", choices=["slurm"], help="where the machines come from")
    parser.add_argument("--config-file", required=True, help="accelerate config, e.g. configs/accelerate/fsdp.yaml")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="rendezvous port on the first node")
    parser.add_argument("--print", action="store_true", help="print the command instead of running it")
    parser.epilog = "After --: what accelerate launches, e.g. -- -m medtune_utils.train --profile llama2-13b --run-dir DIR"
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    args, target = parser.parse_args(argv[:split]), argv[split + 1 :]
    if not target:
        parser.error("nothing to launch: give it after --")
    try:
        command = accelerate_command(args.config_file, slurm_machines(os.environ, args.port), target)
    except LaunchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.print:
        print(shlex.join(command))
        return 0
    sys.stdout.flush()
    os.execv(command[0], command)
    return 0  # not reached: execv replaces this process


if __name__ == "__main__":
    sys.exit(main())
