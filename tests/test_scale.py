"""What a GPU cluster needs, checked on CPU: launch configs, a two-process launch, the computed memory table."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DistributedType
from transformers import AutoModelForCausalLM
from transformers.models.llama import modeling_llama

from medtune_utils import memory
from medtune_utils.assemble import run_assembly
from medtune_utils.config import ConfigError, accumulation_steps, load_profile, with_accumulation
from medtune_utils.modeling import meta_model
from medtune_utils.pipeline import train_command
from medtune_utils.run import Run
from medtune_utils.train import sft_config, train

REPO = Path(__file__).resolve().parents[1]
ACCELERATE = REPO / "configs" / "accelerate"
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def test_fsdp_config_fully_shards_with_one_unit_per_decoder_layer() -> None:
    """FSDP2, full shard, auto-wrap on the class transformers really uses for Llama layers, bf16."""
    config = load_config_from_file(str(ACCELERATE / "fsdp.yaml"))
    assert config.distributed_type == DistributedType.FSDP
    assert config.mixed_precision == "bf16"
    fsdp = config.fsdp_config
    assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_reshard_after_forward"] is True
    assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert hasattr(modeling_llama, fsdp["fsdp_transformer_layer_cls_to_wrap"])
    assert fsdp["fsdp_activation_checkpointing"] is False  # the profile's gradient checkpointing does it


def test_deepspeed_config_is_zero3_saving_whole_weights() -> None:
    config = load_config_from_file(str(ACCELERATE / "deepspeed_zero3.yaml"))
    assert config.distributed_type == DistributedType.DEEPSPEED
    assert config.deepspeed_config["zero_stage"] == 3
    assert config.deepspeed_config["zero3_save_16bit_model"] is True


def test_multi_gpu_config_is_plain_data_parallel() -> None:
    config = load_config_from_file(str(ACCELERATE / "multi_gpu.yaml"))
    assert config.distributed_type == DistributedType.MULTI_GPU
    assert config.num_processes == 8


@pytest.fixture(scope="module")
def llama2_7b() -> object:
    return meta_model("meta-llama/Llama-2-7b-hf")


def test_lora_parameter_count_matches_the_closed_form(llama2_7b: object) -> None:
    """r=16 on all seven projections of 32 layers: r * (in + out) summed by hand."""
    attention = 4 * 16 * (4096 + 4096)
    mlp = 2 * 16 * (4096 + 11008) + 16 * (11008 + 4096)
    assert memory.lora_parameters(llama2_7b, ALL_LINEAR, 16) == 32 * (attention + mlp) == 39_976_960


def test_full_fine_tune_memory_is_sixteen_bytes_per_parameter_plus_activations(llama2_7b: object) -> None:
    """fp32 master weights (4) + fp32 gradients (4) + two fp32 AdamW moments (8), over the exact 7B count."""
    estimate = memory.estimate(llama2_7b, "full")
    assert estimate.weights + estimate.gradients + estimate.optimizer == pytest.approx(16 * 6_738_415_616 / memory.GIB)
    sharded = memory.estimate(llama2_7b, "full", shards=8)
    assert sharded.optimizer == pytest.approx(estimate.optimizer / 8)
    assert sharded.activations == estimate.activations


def test_fsdp_sharded_memory_has_the_closed_form_of_the_recipe(llama2_7b: object) -> None:
    """Per GPU on 8: 16 bytes/8 per parameter, plus the all-gathered bf16 root unit and two layers, and one unit's
    unsharded bf16 gradient; accumulating without sync adds the whole model's bf16 gradients (+12.55 GiB at 7B)."""
    n, layer = 6_738_415_616, 202_383_360  # 4 * 4096^2 + 3 * 4096 * 11008 + 2 * 4096 per decoder layer
    root = n - 32 * layer  # embeddings, head and final norm: 2 * 32000 * 4096 + 4096
    assert memory.decoder_layer_parameters(llama2_7b) == layer and root == 262_148_096
    synced = memory.estimate(llama2_7b, "full", shards=8, batch_size=4)
    assert synced.weights == pytest.approx((4 * n / 8 + 2 * (root + 2 * layer)) / memory.GIB)
    assert synced.gradients == pytest.approx((4 * n / 8 + 2 * root) / memory.GIB)
    unsynced = memory.estimate(llama2_7b, "full", shards=8, batch_size=4, accumulate_unsharded=True)
    assert unsynced.total - synced.total == pytest.approx((2 * n - 2 * root) / memory.GIB)
    assert 2 * n / memory.GIB == pytest.approx(12.55, abs=0.01)  # the issue's +12.6 GiB per GPU


def test_qlora_adapters_are_bf16_and_lora_adapters_fp32(llama2_7b: object) -> None:
    """TRL casts a quantised model's adapters to bf16 (2 bytes, 8-bit AdamW 2 bytes); PEFT keeps LoRA's in fp32."""
    adapters = 39_976_960
    qlora, lora = memory.estimate(llama2_7b, "qlora"), memory.estimate(llama2_7b, "lora")
    assert qlora.gradients == pytest.approx(2 * adapters / memory.GIB)
    assert qlora.optimizer == pytest.approx(2 * adapters / memory.GIB)
    assert lora.gradients == pytest.approx(4 * adapters / memory.GIB)
    assert lora.weights == pytest.approx((2 * 6_738_415_616 + 4 * adapters) / memory.GIB)


def test_memory_table_script_prints_the_readme_numbers(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's memory tables are what `benchmarks/memory_table.py` prints, row for row."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    monkeypatch.setattr(sys, "argv", ["memory_table.py"])
    import memory_table

    memory_table.main()
    printed = capsys.readouterr().out
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert printed.count("| Llama-2") == 8
    for line in printed.splitlines():
        if line.startswith("| Llama-2"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            assert f"| {' | '.join(cells)} |" in readme, line


def test_methods_order_and_the_table(llama2_7b: object) -> None:
    """QLoRA < LoRA < full; longer sequences cost more; a 7B full fine-tune fits on no single GPU."""
    totals = [memory.estimate(llama2_7b, method).total for method in ("qlora", "lora", "full")]
    assert totals == sorted(totals)
    assert memory.estimate(llama2_7b, "lora", seq_len=4096).total > memory.estimate(llama2_7b, "lora").total
    rows = {row["method"]: row for row in memory.fits_table({"7B": llama2_7b})}
    assert [rows["full"][f"{gb} GB"] for gb in (24, 40, 80)] == ["no", "no", "no"]
    assert [rows["lora"][f"{gb} GB"] for gb in (24, 40, 80)] == ["fits", "fits", "fits"]
    assert [rows["qlora"][f"{gb} GB"] for gb in (24, 40, 80)] == ["fits", "fits", "fits"]
    with pytest.raises(ValueError, match="unknown method 'dora'"):
        memory.estimate(llama2_7b, "dora")


@pytest.mark.slow
def test_two_process_launch_with_the_fsdp_config_trains_saves_and_recovers(
    tmp_path: Path, sample_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pipeline's `accelerate launch` of step 02 with fsdp.yaml, two real processes on CPU (torchrun, gloo).

    accelerate 1.15 does not shard on CPU: `AcceleratorState` turns FSDP on only for accelerator devices, so on CPU
    the two processes run as DDP. What this proves on CPU: two ranks train one model with the global batch split
    between them, one log, a model folder `from_pretrained` loads, and the recovery of a finished run whose model
    folder was lost, with every rank taking part.
    """
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # CPU processes on GPU machines too
    run_dir = tmp_path / "run"
    run_assembly(load_profile("tiny", {"data": {"dir": str(sample_dir)}}), run_dir)
    overrides = {"train.max_steps": 4, "train.save_steps": 4, "train.logging_steps": 2, "train.max_length": 128}
    overrides |= {"train.per_device_train_batch_size": 2, "train.global_batch_size": 8, "data.dir": str(sample_dir)}
    command = train_command(load_profile("tiny", overrides), str(run_dir), overrides, 2, "configs/accelerate/fsdp.yaml")
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    first = AutoModelForCausalLM.from_pretrained(run_dir / "model").state_dict()
    run = Run(run_dir)
    summary = run.env()["steps"]["finetune"]["summary"]
    assert (summary["world_size"], summary["global_step"]) == (2, 4)
    assert run.profile().train.gradient_accumulation_steps == 2  # 8 sequences = 2 per process x 2 processes x 2
    steps = [record["step"] for record in run.train_log() if "loss" in record]
    assert steps == [1, 2, 4]  # written by the main process only, once each
    assert not list(run_dir.glob(".model*")), "staging folder left behind"

    shutil.rmtree(run_dir / "model")  # a crash while saving: both ranks recover the finished checkpoint's weights
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    recovered = AutoModelForCausalLM.from_pretrained(run_dir / "model").state_dict()
    assert all(torch.equal(first[name], tensor) for name, tensor in recovered.items())
    assert run.env()["steps"]["finetune"]["summary"]["resumed_from"] == "checkpoint-4"


GPU_PROFILES = ("llama2-7b", "llama2-13b", "llama2-7b-lora", "llama2-13b-qlora")


@pytest.mark.parametrize("name", GPU_PROFILES)
@pytest.mark.parametrize("world_size", [1, 8])
def test_profiles_keep_their_global_batch_on_any_number_of_gpus(name: str, world_size: int) -> None:
    """Accumulation = global batch / (per-device batch x processes): 128 sequences per step on one GPU and on eight."""
    profile = load_profile(name)
    assert profile.train.global_batch_size == 128
    resolved = with_accumulation(profile, world_size)
    train = resolved.train
    assert train.gradient_accumulation_steps * train.per_device_train_batch_size * world_size == 128
    expected = {"llama2-7b": (128, 16), "llama2-13b": (128, 16), "llama2-7b-lora": (128, 16), "llama2-13b-qlora": (128, 16)}
    assert train.gradient_accumulation_steps == expected[name][world_size > 1]


def test_a_global_batch_the_processes_do_not_divide_is_an_error() -> None:
    profile = load_profile("llama2-13b", {"train.global_batch_size": 100, "train.per_device_train_batch_size": 2})
    assert accumulation_steps(profile.train, 2) == 25
    with pytest.raises(ConfigError, match=r"global_batch_size=100 is not a multiple of .*2 x 8 process\(es\) = 16"):
        accumulation_steps(profile.train, 8)
    with pytest.raises(ConfigError, match="must be positive"):
        load_profile("llama2-7b", {"train.global_batch_size": 0})


def test_an_explicit_accumulation_replaces_an_inherited_global_batch(tmp_path: Path) -> None:
    profile = load_profile("llama2-7b", {"train.gradient_accumulation_steps": 2})
    assert profile.train.global_batch_size is None and accumulation_steps(profile.train, 8) == 2
    child = tmp_path / "child.yaml"
    child.write_text("extends: llama2-7b-lora\nname: child\ntrain:\n  gradient_accumulation_steps: 3\n")
    assert accumulation_steps(load_profile(child).train, 4) == 3


@pytest.mark.slow
def test_the_run_config_records_the_resolved_accumulation(sample_dir: Path, tmp_path: Path) -> None:
    """`config.yaml` after training holds the accumulation the run used, derived from the global batch."""
    overrides = {"data.dir": str(sample_dir), "train.max_steps": 1, "train.save_steps": 1, "train.max_length": 128}
    profile = load_profile("tiny", {**overrides, "train.per_device_train_batch_size": 2, "train.global_batch_size": 6})
    run_assembly(profile, tmp_path)
    train(profile, tmp_path)
    recorded = Run(tmp_path).profile().train
    assert (recorded.global_batch_size, recorded.gradient_accumulation_steps) == (6, 3)
    state = json.loads(next((tmp_path / "checkpoints").glob("checkpoint-*/trainer_state.json")).read_text())
    assert state["train_batch_size"] == 2


def test_fsdp_launch_syncs_gradients_every_micro_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under FSDP (as `accelerate launch` with fsdp.yaml sets it) the Trainer must not enter FSDP2's `no_sync`."""
    assert sft_config(load_profile("llama2-13b"), tmp_path).accelerator_config.gradient_accumulation_kwargs is None
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    args = sft_config(load_profile("llama2-13b"), tmp_path)
    assert args.accelerator_config.gradient_accumulation_kwargs == {"sync_each_batch": True}
    kept = {"train.accelerator_config": {"gradient_accumulation_kwargs": {"sync_each_batch": False}}}
    args = sft_config(load_profile("llama2-13b", kept), tmp_path)  # a profile that wants no_sync keeps it
    assert args.accelerator_config.gradient_accumulation_kwargs == {"sync_each_batch": False}


def _gpu_check() -> object:
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import gpu_check
    finally:
        sys.path.pop(0)
    return gpu_check


def test_gpu_check_wheels_are_what_a_bare_gpu_machine_lacks(tmp_path: Path) -> None:
    """TRL, datasets and the rest, pinned to the versions tested here; never torch, transformers, accelerate or PEFT."""
    gpu_check = _gpu_check()
    wheels = gpu_check.wheels()
    assert {"trl", "datasets", "pandas", "seqeval", "scikit-learn"} <= set(wheels)
    assert not set(wheels) & {"torch", "transformers", "accelerate", "peft", "numpy", "huggingface-hub"}
    binary, built = gpu_check.download_commands(tmp_path, "3.11")
    assert "--no-deps" in binary and "--only-binary=:all:" in binary and f"trl=={wheels['trl']}" in binary
    assert built[-1] == f"seqeval=={wheels['seqeval']}" and "--no-deps" in built  # published as source only
    with pytest.raises(SystemExit, match="--download-wheels"):
        gpu_check.install_command(tmp_path)
    (tmp_path / "trl-1.0-py3-none-any.whl").touch()
    wheel = str(tmp_path / "trl-1.0-py3-none-any.whl")
    assert gpu_check.install_command(tmp_path)[-4:] == ["install", "--no-index", "--no-deps", wheel]


@pytest.mark.slow
def test_gpu_check_dry_run_writes_every_measurement(tmp_path: Path, sample_dir: Path) -> None:
    """`benchmarks/gpu_check.py --dry-run`: the GPU plan on CPU with the tiny shape, one JSON file."""
    out = tmp_path / "gpu_check.json"
    command = [sys.executable, "benchmarks/gpu_check.py", "--dry-run", "--data-dir", str(sample_dir), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    runs = [(r["run"], r["method"], r["packing"]) for r in report["train"]]
    assert runs == [
        ("full and LoRA, packed", "full", True),
        ("full and LoRA, packed", "lora", True),
        ("LoRA, padded", "lora", False),
    ]
    for result in report["train"]:
        assert result["tokens_per_s_per_gpu"] > 0 and 0 < result["attention_context"] <= result["max_length"]
        assert result["flops_per_token"] > (4 if result["method"] == "lora" else 6) * 0.9 * result["parameters"] * 0.5
    speed = report["eval"]
    assert speed["ours: greedy, batch 32"]["examples_per_s"] > 0 and speed["original: 4 beams, batch 1"]["examples"] == 2
    assert speed["speed_up"] == pytest.approx(
        speed["ours: greedy, batch 32"]["examples_per_s"] / speed["original: 4 beams, batch 1"]["examples_per_s"]
    )
