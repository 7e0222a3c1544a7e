"""Evaluation throughput: our batched greedy decoding against the original recipe, same model, same prompts.

    python benchmarks/eval_speed.py [--data-dir ../shared/data] [--prompts 200] [--train-steps 60]

The original code generated one prompt at a time with 4-beam search and `max_new_tokens=512`. Ours
decodes greedily in batches (left padding, KV cache) with per-row budgets from the gold answers' token
lengths and stops at eos or the next `###` header. Both run on the same tiny Llama (briefly trained on
NCBI-disease so that it writes answers of a realistic shape) over the same NCBI-disease devel prompts.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time

import torch
from _common import real_data_dir

from medtune_utils import modeling
from medtune_utils.assemble import run_assembly
from medtune_utils.config import load_profile
from medtune_utils.evaluate import budget_reference
from medtune_utils.generation import generate, token_budgets
from medtune_utils.prompts import build_prompt
from medtune_utils.tasks import get_task
from medtune_utils.train import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder with the raw datasets (default ../shared/data)")
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--train-steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    torch.manual_seed(0)
    overrides = {
        "data": {"dir": str(real_data_dir(args.data_dir)), "sources": ["NCBI-disease"], "train_rows": {"default": 2000}},
        "train": {"max_steps": args.train_steps, "save_steps": 10_000},
    }
    profile = load_profile("tiny", overrides)
    with tempfile.TemporaryDirectory() as run_dir:
        data = run_assembly(profile, run_dir).dataset
        model_dir = train(profile, run_dir)
        tokenizer = modeling.load_tokenizer(str(model_dir), padding_side="left")
        model = modeling.load_model(str(model_dir), profile.model, None).eval()
        validation = data["validation"]
        rows = [validation[i] for i in sorted(random.Random(0).sample(range(len(validation)), args.prompts))]
        prompts = [build_prompt(r["instruction"], r["input"]) for r in rows]
        reference = budget_reference(data["train"], {"NCBI-disease"})
        budgets = token_budgets(rows, reference, tokenizer, {"NCBI-disease": get_task("NCBI-disease")}, 1024)

        started = time.perf_counter()
        ours = generate(model, tokenizer, prompts, budgets, batch_size=args.batch_size, desc="ours")
        ours_seconds = time.perf_counter() - started
        started = time.perf_counter()
        original = generate(model, tokenizer, prompts, 512, batch_size=1, num_beams=4, stop_strings=None, desc="original")
        original_seconds = time.perf_counter() - started

    ours_rate, original_rate = len(prompts) / ours_seconds, len(prompts) / original_seconds
    words = [sum(len(g.text.split()) for g in generations) / len(generations) for generations in (ours, original)]
    threads = torch.get_num_threads()
    print(f"{len(prompts)} NCBI-disease devel prompts, tiny Llama trained {args.train_steps} steps, {threads} threads")
    print(f"ours (greedy, batch {args.batch_size}, row budgets, stop at ###): {ours_seconds:7.1f} s, {ours_rate:7.2f} ex/s")
    print(f"original (4 beams, batch 1, max_new_tokens 512):   {original_seconds:7.1f} s, {original_rate:7.2f} ex/s")
    print(f"mean answer length in words: ours {words[0]:.1f}, original {words[1]:.1f}")
    print(f"speed-up: {ours_rate / original_rate:.1f}x (target >= 30x)")


if __name__ == "__main__":
    main()
