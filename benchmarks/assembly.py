"""Time and peak memory to assemble every public source in ../shared/data into the paper's instruction mix.

    python benchmarks/assembly.py [--data-dir ../shared/data]

Uses the data section of the `llama2-7b` profile (the paper's mix; credentialed sources absent are skipped
up front), then saves Arrow + JSONL + stats with token lengths from the tiny BPE tokenizer. Token lengths are
timed three ways on the same rows: every row encoded through the tokenizer's Python call (before issue 13),
each unique text once in Rust batches (`TokenCounter`, a first assembly), and read back from the cache that a
first assembly leaves with the dataset (a re-run). All three must give the same statistics.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import peak_rss_mib, real_data_dir

from medtune_utils.assemble import TokenCounter, assemble, token_stats
from medtune_utils.config import load_profile
from medtune_utils.modeling import build_tiny_tokenizer, token_counts
from medtune_utils.prompts import build_prompt, training_text
from medtune_utils.records import MissingSourceError
from medtune_utils.run import Run
from medtune_utils.tasks import TASKS, task_names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder with the raw datasets (default ../shared/data)")
    args = parser.parse_args()
    data_dir = real_data_dir(args.data_dir)
    present = [name for name in task_names() if _present(name, data_dir)]
    profile = load_profile("llama2-7b", {"data": {"dir": str(data_dir), "sources": present}})

    started = time.perf_counter()
    assembly = assemble(profile.data, profile.seed)
    assembled = time.perf_counter()
    tokenizer = build_tiny_tokenizer((training_text(row) for row in assembly.dataset["train"].select(range(2000))), 1024)
    trained = time.perf_counter()
    every_row = _every_row_stats(assembly.dataset, tokenizer)
    counted_every_row = time.perf_counter()
    counter = TokenCounter(tokenizer)
    stats = token_stats(assembly.dataset, counter)
    counted = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        run = Run(out)
        assembly.stats = assembly.stats.merge(stats, on=["source", "split"])
        assembly.save_to(run)
        counter.save(run.token_counts_path)
        saved = time.perf_counter()
        cached = token_stats(assembly.dataset, TokenCounter.load(tokenizer, run.token_counts_path))
        reread = time.perf_counter()
    if not (stats.equals(every_row) and cached.equals(stats)):
        raise SystemExit("token statistics differ between the three ways of counting")

    for notice in assembly.notices:
        print(f"notice: {notice}")
    rows = {split: len(part) for split, part in assembly.dataset.items()}
    print(f"data: {data_dir}")
    print(f"rows: {rows['train']:,} train, {rows['validation']:,} validation from {assembly.stats.source.nunique()} sources")
    print(f"assemble (read, format, leakage check): {assembled - started:6.1f} s")
    print(f"train the tiny BPE tokenizer:           {trained - assembled:6.1f} s")
    texts = 2 * sum(rows.values())
    print(f"token lengths, every row through Python: {counted_every_row - trained:6.1f} s  ({texts:,} texts)")
    print(f"token lengths, unique texts in batches:  {counted - counted_every_row:6.1f} s  ({counter.encoded:,} texts encoded)")
    print(f"token lengths, from the dataset's cache: {reread - saved:6.1f} s  (same statistics)")
    print(f"save (Arrow, JSONL, stats, cache):       {saved - counted:6.1f} s")
    first, again = saved - started - (counted_every_row - trained), saved - started - (counted - trained) + (reread - saved)
    before = saved - started - (counted - counted_every_row)
    print(f"total: before {before:.1f} s, first assembly {first:.1f} s, re-run with the cache {again:.1f} s")
    print(f"peak resident memory:                   {peak_rss_mib():6.0f} MiB")


def _every_row_stats(dataset: object, tokenizer: object) -> object:
    """The statistics as counted before: every prompt and answer encoded through the tokenizer's Python call."""
    import pandas as pd

    frames = []
    for split in ("train", "validation"):
        part = dataset[split]
        prompts = [build_prompt(i, x) for i, x in zip(part["instruction"], part["input"])]
        frame = pd.DataFrame(
            {
                "source": part["source"],
                "prompt_tokens": token_counts(tokenizer, prompts, True),
                "completion_tokens": token_counts(tokenizer, part["output"], False),
            }
        )
        frames.append(frame.groupby("source", sort=False).mean().reset_index().assign(split=split))
    return pd.concat(frames, ignore_index=True)[["source", "split", "prompt_tokens", "completion_tokens"]]


def _present(name: str, data_dir: Path) -> bool:
    try:
        TASKS[name].find_folder(data_dir)
    except MissingSourceError:
        return False
    return True


if __name__ == "__main__":
    main()
