"""Time to parse bad NER answers (junk lines against a long input) as the sizes grow: parsing should be linear.

    python benchmarks/parsing.py [--data-dir ../shared/data] [--baseline HEAD]

Inputs are the first n NCBI-disease devel tokens (cycled past the set's end). Each answer has the format's shape
but does not fit the input: `lines, junk` is n + 1 `token : TAG` lines of random tokens (so they must be aligned),
`lines, one token` is n + 1 `the : O` lines against n times `the`, `entities, junk` is n + 1 mentions, half present
in the input and half absent (so each is looked for, then spelled out). The last row of each is a 100 KB answer
against a 16,700-token input. `--baseline REV` times the parser of that commit too, from
`git archive`, in a subprocess, and prints both side by side.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

from _common import REPO, real_data_dir

SIZES = (1000, 2000, 4000, 8000)
REPEATS = 3
BIG_TOKENS, BIG_ANSWER_BYTES = 16_700, 100_000
FALLBACK_CORPUS = [
    "Germline",
    "mutations",
    "in",
    "the",
    "BRCA1",
    "gene",
    "cause",
    "breast",
    "and",
    "ovarian",
    "cancer",
    "in",
    "some",
    "of",
    "the",
    "families",
    ".",
]
SCENARIOS = ("lines, junk", "lines, one token", "entities, junk")


def corpus(data_dir: Path | None) -> list[str]:
    """The NCBI-disease devel tokens in order (real repeats), or a short fixed sentence without data."""
    from medtune_utils.tasks import get_task

    if data_dir is None:
        return FALLBACK_CORPUS
    return [token for record in get_task("NCBI-disease").load(data_dir / "NCBI-disease", "devel") for token in record.tokens]


def case(scenario: str, words: list[str], n_tokens: int, n_lines: int) -> tuple[str, str, str]:
    """`(format, input, answer)`: an answer of the format's shape that does not fit the input."""
    rng = random.Random(n_tokens)
    if scenario == "lines, one token":
        return "lines", " ".join(["the"] * n_tokens), "\n".join(["the : O"] * (n_tokens + 1))
    tokens = [words[k % len(words)] for k in range(n_tokens)]
    if scenario == "lines, junk":
        return "lines", " ".join(tokens), "\n".join(f"{rng.choice(words)} : {rng.choice('BIO')}" for _ in range(n_lines))
    return "entities", " ".join(tokens), "\n".join(rng.choice(words) + ("" if k % 2 else "-absent") for k in range(n_lines))


def time_parse(scenario: str, words: list[str], n_tokens: int, n_lines: int, max_bytes: int | None = None) -> float:
    """Seconds for one `parse` (the best of `REPEATS` when under a second)."""
    from medtune_utils.tasks import get_task

    fmt, input_text, answer = case(scenario, words, n_tokens, n_lines)
    task = get_task("NCBI-disease", fmt)
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        task.parse(answer[:max_bytes] if max_bytes else answer, input_text)
        best = min(best, time.perf_counter() - started)
        if best > 1.0:
            break
    return best


def measure(data_dir: Path | None) -> dict[str, float]:
    """Every timing, keyed `scenario/size` (and `scenario/big`)."""
    words = corpus(data_dir)
    times = {}
    for scenario in SCENARIOS:
        for n in SIZES:
            times[f"{scenario}/{n}"] = time_parse(scenario, words, n, n + 1)
        times[f"{scenario}/big"] = time_parse(scenario, words, BIG_TOKENS, BIG_ANSWER_BYTES, BIG_ANSWER_BYTES)
    return times


def baseline(rev: str, data_dir: Path | None) -> dict[str, float]:
    """The same timings with the `medtune_utils` of commit `rev`, in a subprocess."""
    archive = subprocess.run(["git", "archive", rev, "medtune_utils"], cwd=REPO, check=True, capture_output=True).stdout
    with tempfile.TemporaryDirectory() as folder:
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(folder, filter="data")
        command = [sys.executable, __file__, "--json"] + (["--data-dir", str(data_dir)] if data_dir else ["--no-data"])
        env_path = f"{folder}:{REPO / 'benchmarks'}"
        out = subprocess.run(command, check=True, capture_output=True, text=True, env={"PYTHONPATH": env_path, "PATH": ""})
    return json.loads(out.stdout)


def report(columns: dict[str, dict[str, float]]) -> None:
    """A table of seconds per size, then the growth from the smallest to the largest size (linear: 8x)."""
    names = list(columns)
    print(f"{'answer':<54}" + "".join(f"{name:>15}" for name in names))
    for scenario in SCENARIOS:
        for n in SIZES:
            row(f"{scenario}: {n:,} tokens, {n + 1:,} lines", [columns[c][f"{scenario}/{n}"] for c in names], "s")
        row(f"{scenario}: {BIG_TOKENS:,} tokens, 100 KB", [columns[c][f"{scenario}/big"] for c in names], "s")
        ratios = [columns[c][f"{scenario}/{SIZES[-1]}"] / max(columns[c][f"{scenario}/{SIZES[0]}"], 1e-9) for c in names]
        row(f"{scenario}: growth {SIZES[0]:,} -> {SIZES[-1]:,} (linear {SIZES[-1] // SIZES[0]}x)", ratios, "x")


def row(label: str, values: list[float], unit: str) -> None:
    """One aligned line of the table."""
    print(f"{label:<54}" + "".join(f"{v:>14.3f}{unit}" if unit == "s" else f"{v:>14.1f}{unit}" for v in values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder with the raw datasets (default ../shared/data)")
    parser.add_argument("--no-data", action="store_true", help="use a small fixed vocabulary instead of NCBI-disease")
    parser.add_argument("--baseline", metavar="REV", help="also time the parser of this git commit, side by side")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    data_dir = None if args.no_data else real_data_dir(args.data_dir)
    if args.json:
        print(json.dumps(measure(data_dir)))
        return
    columns = {args.baseline: baseline(args.baseline, data_dir)} if args.baseline else {}
    columns["this tree"] = measure(data_dir)
    print(f"data: {data_dir or 'fixed vocabulary'}")
    report(columns)


if __name__ == "__main__":
    main()
