"""Training speed and memory at Llama-2 scale: a randomly initialised model of Llama-2-7B's exact shape,
50 optimizer steps with the full and the LoRA recipes, on real instruction data.

    python benchmarks/gpu_train.py --data-dir ../shared/data            # one GPU, 7B, full then LoRA
    python benchmarks/gpu_train.py --shape tiny --steps 3               # smoke test of the script on CPU

Reports tokens/s per GPU (real tokens, warm-up steps excluded), model FLOPs utilisation (6N per token for
full fine-tuning, 4N for LoRA, whose frozen weights get no gradient; attention FLOPs included, the
recomputation of gradient checkpointing not) and peak GPU memory. On one GPU the full run keeps weights and
AdamW state in bf16 (the recipe's fp32 master weights need sharding over several GPUs). The tokenizer is a byte-level BPE of
Llama-2's vocabulary size trained on the data, so no gated download is needed.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _common import real_data_dir
from transformers import AutoModelForCausalLM, TrainerCallback

from medtune_utils import modeling
from medtune_utils.assemble import assemble
from medtune_utils.config import load_profile
from medtune_utils.prompts import training_text
from medtune_utils.train import build_trainer

SOURCES = ["NCBI-disease", "BC5CDR-disease", "BC5CDR-chem", "BC2GM", "JNLPBA", "HoC", "PubMedQA", "ChatDoctor"]
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0}
# The training recipe of each method; the model's shape comes from --shape, not from the profile.
PROFILES = {"full": "llama2-7b", "lora": "llama2-7b-lora"}


class StepTimer(TrainerCallback):
    """Wall time and real tokens of each optimizer step after the warm-up."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.started: float | None = None
        self.tokens_at_start = 0.0
        self.tokens = 0.0
        self.seconds = 0.0

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.warmup:
            _sync()
            self.started = time.perf_counter()
            self.tokens_at_start = state.num_input_tokens_seen

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.started is not None:
            _sync()
            self.seconds = time.perf_counter() - self.started
            self.tokens = state.num_input_tokens_seen - self.tokens_at_start


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def peak_tflops(override: float | None) -> float | None:
    """Dense bf16 peak of the GPU in use (from its name), unless given."""
    if override or not torch.cuda.is_available():
        return override
    name = torch.cuda.get_device_name()
    return next((value for key, value in PEAK_BF16_TFLOPS.items() if key in name), None)


def flops_per_token(model: torch.nn.Module, seq_len: int, lora: bool) -> float:
    """Training FLOPs per token: 6N (4N with frozen weights) plus attention's 12 * layers * hidden * seq."""
    config = model.config
    weights = sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n and "lora_" not in n)
    return (4 if lora else 6) * weights + 12 * config.num_hidden_layers * config.hidden_size * seq_len


def run(method: str, args: argparse.Namespace, rows: Any, tokenizer: Any, scratch: Path) -> dict[str, Any]:
    """Train `args.steps` steps of one recipe from random weights; return its measurements."""
    gpu = torch.cuda.is_available()
    overrides: dict[str, Any] = {
        "train": {
            "max_steps": args.steps,
            "per_device_train_batch_size": args.batch_size,
            "gradient_accumulation_steps": 1,
            "max_length": args.max_length,
            "logging_steps": 10,
            "save_steps": 1_000_000,
            "report_to": [],
            "warmup_ratio": 0.0,
            "packing": args.packing,
            **({} if gpu else {"bf16": False, "gradient_checkpointing": False}),
        }
    }
    profile = load_profile(PROFILES[method], overrides)
    base = "tiny" if args.shape == "tiny" else f"meta-llama/Llama-2-{args.shape}-hf"
    config = modeling.architecture_config(base, profile.model.tiny)
    config.vocab_size = len(tokenizer)
    config.bos_token_id, config.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    dtype = torch.bfloat16 if gpu else torch.float32
    attention = modeling.resolve_attention(profile.model.attn_implementation)
    with torch.device("cuda" if gpu else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attention)
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    timer = StepTimer(args.warmup)
    trainer = build_trainer(profile, model, tokenizer, rows, scratch / method, [timer])
    trainer.args.include_num_input_tokens_seen = "non_padding"
    trainer.train()
    tokens_per_s = timer.tokens / timer.seconds if timer.seconds else float("nan")
    peak = peak_tflops(args.peak_tflops)
    mfu = tokens_per_s * flops_per_token(trainer.model, args.max_length, method == "lora") / (peak * 1e12) if peak else None
    result = {
        "method": method,
        "profile": profile.name,
        "shape": args.shape,
        "device": torch.cuda.get_device_name() if gpu else "cpu",
        "attention": attention,
        "packing": args.packing,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "steps_timed": args.steps - args.warmup,
        "tokens_per_s_per_gpu": tokens_per_s,
        "mfu": mfu,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 1024**3 if gpu else None,
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
    }
    del trainer, model
    if gpu:
        torch.cuda.empty_cache()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder with the raw datasets (default ../shared/data)")
    parser.add_argument("--shape", choices=["7b", "13b", "tiny"], default="7b")
    parser.add_argument("--methods", nargs="+", choices=["full", "lora"], default=["full", "lora"])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of the timing")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--packing", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--peak-tflops", type=float, help="dense bf16 peak of the GPU, if not recognised by name")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    args.warmup = min(args.warmup, args.steps - 1)
    profile = load_profile("tiny", {"data": {"dir": str(real_data_dir(args.data_dir)), "sources": SOURCES}})
    profile.data.train_rows = {"default": max(200, args.steps * args.batch_size * 4)}
    rows = assemble(profile.data, profile.seed).dataset["train"]
    vocab = 32000 if args.shape != "tiny" else profile.model.tiny.vocab_size
    tokenizer = modeling.build_tiny_tokenizer((training_text(r) for r in rows), vocab)
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for method in args.methods:
            results.append(run(method, args, rows, tokenizer, Path(scratch)))
            print(json.dumps(results[-1]))
    print("\n| shape | method | device | tokens/s per GPU | MFU | peak memory |\n|---|---|---|---|---|---|")
    for r in results:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        memory = f"{r['peak_memory_gib']:.1f} GiB" if r["peak_memory_gib"] is not None else "n/a"
        print(f"| {r['shape']} | {r['method']} | {r['device']} | {r['tokens_per_s_per_gpu']:,.0f} | {mfu} | {memory} |")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
