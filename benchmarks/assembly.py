"""Time and peak memory to assemble every public source in ../shared/data into the paper's instruction mix.

    python benchmarks/assembly.py [--data-dir ../shared/data]

Uses the data section of the `llama2-7b` profile (the paper's mix; credentialed sources absent are skipped
up front), then saves Arrow + JSONL + stats with token lengths from the tiny BPE tokenizer.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import peak_rss_mib, real_data_dir

from medtune_utils.assemble import assemble, token_stats
from medtune_utils.config import load_profile
from medtune_utils.modeling import build_tiny_tokenizer
from medtune_utils.prompts import training_text
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
    assembly.stats = assembly.stats.merge(token_stats(assembly.dataset, tokenizer), on=["source", "split"])
    counted = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        assembly.save_to(Run(out))
    saved = time.perf_counter()

    for notice in assembly.notices:
        print(f"notice: {notice}")
    rows = {split: len(part) for split, part in assembly.dataset.items()}
    print(f"data: {data_dir}")
    print(f"rows: {rows['train']:,} train, {rows['validation']:,} validation from {assembly.stats.source.nunique()} sources")
    print(f"assemble (read, format, leakage check): {assembled - started:6.1f} s")
    print(f"train the tiny BPE tokenizer:           {trained - assembled:6.1f} s")
    print(f"token lengths of every row:             {counted - trained:6.1f} s")
    print(f"save (Arrow, JSONL, stats):             {saved - counted:6.1f} s")
    print(f"total:                                  {saved - started:6.1f} s  (target < 60 s)")
    print(f"peak resident memory:                   {peak_rss_mib():6.0f} MiB")


def _present(name: str, data_dir: Path) -> bool:
    try:
        TASKS[name].find_folder(data_dir)
    except MissingSourceError:
        return False
    return True


if __name__ == "__main__":
    main()
