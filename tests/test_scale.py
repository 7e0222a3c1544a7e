"""What a GPU cluster needs, checked on CPU: launch configs, a two-process launch, the computed memory table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DistributedType
from transformers import AutoModelForCausalLM
from transformers.models.llama import modeling_llama

from medtune_utils import memory
from medtune_utils.assemble import run_assembly
from medtune_utils.config import load_profile
from medtune_utils.modeling import meta_model

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
def test_accelerate_launch_trains_and_saves_with_two_processes(tmp_path: Path, sample_dir: Path) -> None:
    """`accelerate launch -m medtune_utils.train` as the README shows, two CPU processes (gloo): one model, one log."""
    run_dir = tmp_path / "run"
    run_assembly(load_profile("tiny", {"data": {"dir": str(sample_dir)}}), run_dir)
    command = [
        *(sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "--num_machines", "1"),
        *("--mixed_precision", "no", "--dynamo_backend", "no"),
        *("-m", "medtune_utils.train", "--profile", "tiny", "--run-dir", str(run_dir), "--set", "train.max_steps=6"),
        *("--set", f"data.dir={sample_dir}", "--set", "train.logging_steps=2"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    model = AutoModelForCausalLM.from_pretrained(run_dir / "model")
    assert sum(p.numel() for p in model.parameters()) > 0
    assert not list(run_dir.glob(".model*")), "staging folder left behind"
    steps = [json.loads(line)["step"] for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 4, 6]  # written by the main process only, each step once
