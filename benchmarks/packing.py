"""Training throughput with and without packing, tiny Llama on CPU, on the real instruction length mix.

    python benchmarks/packing.py [--data-dir ../shared/data] [--rows-per-source 120]

Both runs train one epoch over the same rows from the same initial weights; throughput counts the real
(non-padding) prompt and completion tokens, so padding does not inflate the unpacked figure.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import real_data_dir

from medtune_utils import modeling
from medtune_utils.assemble import assemble
from medtune_utils.config import load_profile
from medtune_utils.prompts import training_text
from medtune_utils.train import build_trainer

SOURCES = ["NCBI-disease", "BC5CDR-chem", "BC2GM", "GAD", "HoC", "PubMedQA", "ChatDoctor"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder with the raw datasets (default ../shared/data)")
    parser.add_argument("--rows-per-source", type=int, default=120)
    parser.add_argument("--max-length", type=int, default=1024)
    args = parser.parse_args()
    base = {
        "data": {"dir": str(real_data_dir(args.data_dir)), "sources": SOURCES, "train_rows": {"default": args.rows_per_source}},
        "train": {"max_steps": -1, "num_train_epochs": 1, "max_length": args.max_length, "logging_steps": 1000},
    }
    profile = load_profile("tiny", base)
    rows = assemble(profile.data, profile.seed).dataset["train"]
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        tiny = modeling.create_tiny_base(profile.model.tiny, (training_text(r) for r in rows), scratch / "base", profile.seed)
        tokenizer = modeling.load_tokenizer(str(tiny))
        real_tokens = sum(min(args.max_length, len(tokenizer(training_text(r))["input_ids"]) + 1) for r in rows)
        print(f"{len(rows)} rows from {len(SOURCES)} sources, {real_tokens:,} real tokens, max_length {args.max_length}")
        speeds = {}
        for packing in (False, True):
            run = load_profile("tiny", {**base, "train": {**base["train"], "packing": packing}})
            model = modeling.load_model(str(tiny), run.model, None)
            trainer = build_trainer(run, model, tokenizer, rows, scratch / f"out-{packing}")
            started = time.perf_counter()
            trainer.train()
            seconds = time.perf_counter() - started
            speeds[packing] = real_tokens / seconds
            label = "packing   " if packing else "no packing"
            print(f"{label}: {trainer.state.global_step:4d} steps, {seconds:6.1f} s, {speeds[packing]:9,.0f} real tokens/s")
    print(f"packing / no packing throughput: {speeds[True] / speeds[False]:.2f}x")


if __name__ == "__main__":
    main()
