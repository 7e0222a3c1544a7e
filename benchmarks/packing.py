"""Training throughput with and without packing on CPU, on the real instruction length mix, with a loss check.

    python benchmarks/packing.py [--data-dir ../shared/data] [--rows-per-source 60] [--shape tiny|wide]
        [--max-length 1024] [--batch-size 8]

Three layouts train one epoch over the same rows from the same initial weights, with the same number of
sequences (rows or packed rows) per optimizer step:

- no packing: `batch-size` padded rows per step (the tiny profile);
- packing, flattened batch: `batch-size` packed rows per device, which TRL's padding-free collator joins into
  one row of up to `batch-size x max-length` tokens; without FlashAttention's variable-length kernel (CPU, SDPA)
  attention then covers the whole joined row under a block-diagonal mask, quadratic in its length;
- packing, one row per device: one packed row per micro-batch and `batch-size` accumulation steps (the
  packing profiles' layout).

Throughput counts real (non-padding) prompt and completion tokens. Before training, the summed loss of every
completion token over all rows is computed at the initial weights in each layout: packing must not change it.
`--shape wide` uses 512-wide layers (MLP FLOPs dominate, as at 7B) instead of the tiny profile's 128.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from _common import real_data_dir

from medtune_utils import modeling
from medtune_utils.assemble import assemble
from medtune_utils.config import load_profile
from medtune_utils.prompts import training_text
from medtune_utils.train import build_trainer

SOURCES = ["NCBI-disease", "BC5CDR-chem", "BC2GM", "GAD", "HoC", "PubMedQA", "ChatDoctor"]
WIDE = {"hidden_size": 512, "intermediate_size": 1376, "num_attention_heads": 8, "num_key_value_heads": 8}


def summed_loss(trainer: object, model: torch.nn.Module) -> tuple[float, int]:
    """Sum of next-token cross-entropy over every completion token of one pass of the trainer's data, and their count."""
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for batch in trainer.get_train_dataloader():
            labels = batch.pop("labels")
            logits = model(**{k: v for k, v in batch.items() if k in {"input_ids", "attention_mask", "position_ids"}}).logits
            targets = labels[:, 1:]
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=-100, reduction="sum"
            )
            total += loss.item()
            count += int((targets != -100).sum())
    model.train()
    return total, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder with the raw datasets (default ../shared/data)")
    parser.add_argument("--rows-per-source", type=int, default=60)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--shape", choices=["tiny", "wide"], default="tiny")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier when the cores are shared)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = {
        "data": {"dir": str(real_data_dir(args.data_dir)), "sources": SOURCES, "train_rows": {"default": args.rows_per_source}},
        "model": {"tiny": WIDE} if args.shape == "wide" else {},
        "train": {"max_steps": -1, "num_train_epochs": 1, "max_length": args.max_length, "logging_steps": 1000}
        | {"eval_rows": None},
    }
    layouts = {
        "no packing": {"packing": False, "per_device_train_batch_size": args.batch_size, "gradient_accumulation_steps": 1},
        "packing, flattened batch": {
            "packing": True,
            "per_device_train_batch_size": args.batch_size,
            "gradient_accumulation_steps": 1,
        },
        "packing, one row per device": {
            "packing": True,
            "per_device_train_batch_size": 1,
            "gradient_accumulation_steps": args.batch_size,
        },
    }
    profile = load_profile("tiny", base)
    rows = assemble(profile.data, profile.seed).dataset["train"]
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        tiny = modeling.create_tiny_base(profile.model.tiny, (training_text(r) for r in rows), scratch / "base", profile.seed)
        tokenizer = modeling.load_tokenizer(str(tiny))
        real_tokens = sum(min(args.max_length, len(tokenizer(training_text(r))["input_ids"]) + 1) for r in rows)
        width = profile.model.tiny.hidden_size
        print(
            f"{len(rows)} rows from {len(SOURCES)} sources, {real_tokens:,} real tokens, max_length {args.max_length}, "
            f"hidden size {width}, {torch.get_num_threads()} threads"
        )
        speeds, losses = {}, {}
        for name, layout in layouts.items():
            run = load_profile("tiny", {**base, "train": {**base["train"], **layout}})
            model = modeling.load_model(str(tiny), run.model, None)
            trainer = build_trainer(run, model, tokenizer, rows, scratch / name.replace(" ", "-").replace(",", ""))
            losses[name] = summed_loss(trainer, model)
            started = time.perf_counter()
            trainer.train()
            seconds = time.perf_counter() - started
            speeds[name] = real_tokens / seconds
            total, count = losses[name]
            print(
                f"{name:28s}: {trainer.state.global_step:4d} steps, {seconds:7.1f} s, {speeds[name]:9,.0f} real tokens/s; "
                f"initial loss {total / count:.6f} over {count:,} completion tokens"
            )
    reference = losses["no packing"]
    for name in list(layouts)[1:]:
        same = losses[name][1] == reference[1] and abs(losses[name][0] - reference[0]) <= 1e-5 * abs(reference[0])
        print(
            f"{name} / no packing: {speeds[name] / speeds['no packing']:.2f}x real tokens/s; "
            f"summed initial loss {'identical' if same else 'DIFFERENT'} ({losses[name][0]:.3f} vs {reference[0]:.3f})"
        )


if __name__ == "__main__":
    main()
