"""Training speed and memory at Llama-2 scale: a randomly initialised model of Llama-2-7B's exact shape,
a few optimizer steps with the full and the LoRA recipes, on real instruction data.

    python benchmarks/gpu_train.py --data-dir ../shared/data            # one GPU, 7B, full then LoRA
    python benchmarks/gpu_train.py --shape tiny --steps 3               # smoke test of the script on CPU

Each method runs in its own process (TRL binds `model.forward` in a reference cycle, so a finished trainer's model
is not freed by `del` and `empty_cache` alone), which starts from `gc.collect()` and an empty CUDA cache.
Reports tokens/s per GPU (real tokens, warm-up steps excluded), model FLOPs utilisation and peak GPU memory, both
allocated and reserved by PyTorch's caching allocator. FLOPs per token: 6N for full fine-tuning, 4N for LoRA (whose
frozen weights get no gradient), plus attention counted per document: a token attends only within its own packed
document (or padded row), so the attention term is 12 x layers x hidden x sum(n^2) / sum(n) over the documents' token
counts n, not the row length. Recomputation by gradient checkpointing is not counted. On one GPU the full run keeps
weights and AdamW state in bf16 (the recipe's fp32 master weights need sharding over several GPUs). The tokenizer is
a byte-level BPE of Llama-2's vocabulary size trained on the data, so no gated download is needed.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
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
GIB = 1024**3


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


def attention_context(lengths: list[int]) -> float:
    """The mean number of keys a token attends to, times two (causal): sum(n^2) / sum(n) over the documents."""
    return sum(n * n for n in lengths) / sum(lengths)


def flops_per_token(model: torch.nn.Module, context: float, lora: bool) -> float:
    """Training FLOPs per token: 6N (4N with frozen weights) plus attention's 12 * layers * hidden * context.

    `context` is `attention_context` of the documents trained on: packing puts several documents in one row, but
    each token's attention covers only its own document.
    """
    config = model.config
    weights = sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n and "lora_" not in n)
    return (4 if lora else 6) * weights + 12 * config.num_hidden_layers * config.hidden_size * context


def document_lengths(rows: Any, tokenizer: Any, max_length: int) -> list[int]:
    """Token count of each training document (prompt, answer, eos) as trained: cut at `max_length`."""
    counts = modeling.token_counts(tokenizer, [training_text(row) for row in rows], special=True)
    return [min(n + 1, max_length) for n in counts]


def run(method: str, args: argparse.Namespace, rows: Any, tokenizer: Any, scratch: Path) -> dict[str, Any]:
    """Train `args.steps` steps of one recipe from random weights; return its measurements."""
    gpu = torch.cuda.is_available()
    overrides: dict[str, Any] = {
        "train": {
            "max_steps": args.steps,
            "per_device_train_batch_size": args.batch_size,
            "global_batch_size": None,
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
    attention = args.attention or modeling.resolve_attention(profile.model.attn_implementation, args.packing)
    gc.collect()
    if gpu:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    with torch.device("cuda" if gpu else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attention)
    timer = StepTimer(args.warmup)
    trainer = build_trainer(profile, model, tokenizer, rows, scratch / method, [timer])
    trainer.args.include_num_input_tokens_seen = "non_padding"
    trainer.train()
    tokens_per_s = timer.tokens / timer.seconds if timer.seconds else float("nan")
    peak = peak_tflops(args.peak_tflops)
    context = attention_context(document_lengths(rows, tokenizer, args.max_length))
    flops = flops_per_token(trainer.model, context, method == "lora")
    return {
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
        "attention_context": context,
        "flops_per_token": flops,
        "mfu": tokens_per_s * flops / (peak * 1e12) if peak else None,
        "peak_allocated_gib": torch.cuda.max_memory_allocated() / GIB if gpu else None,
        "peak_reserved_gib": torch.cuda.max_memory_reserved() / GIB if gpu else None,
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
    }


def measure_one(args: argparse.Namespace) -> dict[str, Any]:
    """The child's work: build the data and tokenizer, train one method, return its measurements."""
    torch.manual_seed(0)
    profile = load_profile("tiny", {"data": {"dir": str(real_data_dir(args.data_dir)), "sources": SOURCES}})
    profile.data.train_rows = {"default": max(200, args.steps * args.batch_size * 4)}
    rows = assemble(profile.data, profile.seed).dataset["train"]
    vocab = 32000 if args.shape != "tiny" else profile.model.tiny.vocab_size
    tokenizer = modeling.build_tiny_tokenizer((training_text(r) for r in rows), vocab)
    with tempfile.TemporaryDirectory() as scratch:
        return run(args.methods[0], args, rows, tokenizer, Path(scratch))


def child_command(args: argparse.Namespace, method: str, out: Path) -> list[str]:
    """This script for one method, in a process of its own."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--methods", method, "--out", str(out)]
    command += ["--shape", args.shape, "--steps", str(args.steps), "--warmup", str(args.warmup)]
    command += ["--batch-size", str(args.batch_size), "--max-length", str(args.max_length)]
    command += ["--packing" if args.packing else "--no-packing"]
    for flag, value in (("--data-dir", args.data_dir), ("--peak-tflops", args.peak_tflops), ("--attention", args.attention)):
        if value is not None:
            command += [flag, str(value)]
    return command


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One child process per method, in order; their measurements."""
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for method in args.methods:
            out = Path(scratch) / f"{method}.json"
            subprocess.run(child_command(args, method, out), check=True)
            results.append(json.loads(out.read_text(encoding="utf-8")))
            print(json.dumps(results[-1]), flush=True)
    return results


def parser() -> argparse.ArgumentParser:
    """The command line (shared with the child processes)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder with the raw datasets (default ../shared/data)")
    parser.add_argument("--shape", choices=["7b", "13b", "tiny"], default="7b")
    parser.add_argument("--methods", nargs="+", choices=["full", "lora"], default=["full", "lora"])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of the timing")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--packing", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--attention", help="attn_implementation (default: the profile's, resolved for this machine)")
    parser.add_argument("--peak-tflops", type=float, help="dense bf16 peak of the GPU, if not recognised by name")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parser().parse_args(argv)
    args.warmup = min(args.warmup, args.steps - 1)
    if args.child:
        args.out.write_text(json.dumps(measure_one(args)) + "\n", encoding="utf-8")
        return []
    results = measure(args)
    print("\n| shape | method | attention | packing | tokens/s per GPU | MFU | peak allocated | peak reserved |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        mem = [f"{r[key]:.1f} GiB" if r[key] is not None else "n/a" for key in ("peak_allocated_gib", "peak_reserved_gib")]
        print(
            f"| {r['shape']} | {r['method']} | {r['attention']} | {r['packing']} | {r['tokens_per_s_per_gpu']:,.0f} "
            f"| {mfu} | {mem[0]} | {mem[1]} |"
        )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


if __name__ == "__main__":
    main()
