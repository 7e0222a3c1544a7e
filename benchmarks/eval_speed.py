"""Evaluation throughput on a model that stops: our decoding against the original recipe, step by step.

    python benchmarks/eval_speed.py [--data-dir ../shared/data] [--prompts 200] [--train-steps 1000]
        [--formats lines entities] [--cache-dir /tmp/medtune-bench]

The original code generated one prompt at a time with 4-beam search and `max_new_tokens=512`. Ours decodes
greedily in batches grouped by budget, each row with its own budget, and stops a row at eos or the next `###`
header (a batch ends when all its rows have stopped). The recipes in between switch one change on at a time,
so the speed-up splits into beams x batching x budgets x stops, each with its F1 on the same rows.

The benchmark model is the tiny profile trained on NCBI-disease (2,000 rows) long enough to write well-formed
answers and emit eos; the script prints its well-formed share. It is trained once per format and settings and
kept under `--cache-dir` and reused by any later run with the same model, data and training settings (not keyed
by the code: clear the folder after changing the prompt template or the answer formats), so reruns only decode.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from _common import real_data_dir

from medtune_utils import modeling
from medtune_utils.assemble import run_assembly
from medtune_utils.config import Profile, load_profile
from medtune_utils.evaluate import budget_reference
from medtune_utils.generation import Generation, generate, token_budgets
from medtune_utils.io import settings_hash
from medtune_utils.prompts import build_prompt
from medtune_utils.run import Run
from medtune_utils.tasks import Task, get_task
from medtune_utils.train import train

SOURCE = "NCBI-disease"
ORIGINAL_BUDGET = 512
CAP = 1024


@dataclass(frozen=True)
class Recipe:
    """One decoding recipe: beams, batch size, budgets (fixed or per row) and whether `###` stops a row."""

    name: str
    num_beams: int
    batch_size: int
    row_budgets: bool
    stop: bool
    cache: str | None = None


def recipes(batch_size: int) -> list[Recipe]:
    """The original recipe, then one change at a time up to ours."""
    return [
        Recipe("original: 4 beams, batch 1, 512 tokens", 4, 1, False, False),
        Recipe("+ greedy (1 beam)", 1, 1, False, False),
        Recipe(f"+ batches of {batch_size}", 1, batch_size, False, False),
        Recipe("+ per-row budgets", 1, batch_size, True, False),
        Recipe("+ stop at ### (ours)", 1, batch_size, True, True),
    ]


STATIC = Recipe("ours with a static KV cache", 1, 0, True, True, "static")


def benchmark_model(profile: Profile, cache_dir: Path) -> tuple[Run, str]:
    """The trained benchmark run for `profile`: one under `cache_dir` trained with the same key settings, else a new one."""
    key = _key_settings(profile.to_dict())
    for folder in sorted(cache_dir.glob("*")) if cache_dir.is_dir() else []:
        if Run(folder).has_model() and _key_settings(Run(folder).config()) == key:
            return Run(folder), str(Run(folder).model_dir)
    run = Run(cache_dir / settings_hash(key))
    run_assembly(profile, run.dir)
    train(profile, run.dir)
    return run, str(run.model_dir)


def _key_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The settings that make the benchmark model what it is (not, say, logging or evaluation-loss options)."""
    data, train_section = config.get("data", {}), config.get("train", {})
    return {
        "seed": config.get("seed"),
        "model": {k: v for k, v in (config.get("model", {}).get("tiny") or {}).items() if v is not None},
        "data": {k: data.get(k) for k in ("dir", "sources", "train_rows", "ner_format")},
        "train": {
            k: train_section.get(k)
            for k in ("max_steps", "learning_rate", "per_device_train_batch_size", "max_length", "lr_scheduler_type")
        },
    }


def f1_and_well_formed(task: Task, rows: Sequence[dict[str, Any]], generations: Sequence[Generation]) -> tuple[float, float]:
    """The task's headline metric and the share of well-formed answers."""
    parsed = [task.parse(g.text, r["input"]) for g, r in zip(generations, rows)]
    gold = [task.gold(r["output"], r["input"]) for r in rows]
    metrics, _ = task.score(gold, [p.value for p in parsed], [r["group"] for r in rows])
    return float(metrics[metrics["headline"]]), sum(p.well_formed for p in parsed) / len(parsed)


def run_format(args: argparse.Namespace, ner_format: str) -> None:
    """Train (or reuse) the model for one answer format, then time every recipe on the same prompts."""
    overrides = {
        "data": {"dir": str(args.data_dir), "sources": [SOURCE], "train_rows": {"default": 2000}, "ner_format": ner_format},
        "train": {"max_steps": args.train_steps, "save_steps": 100_000, "logging_steps": 100},
    }
    profile = load_profile("tiny", overrides)
    started = time.perf_counter()
    run, model_dir = benchmark_model(profile, Path(args.cache_dir))
    prepared = time.perf_counter() - started
    data = run.dataset()
    tokenizer = modeling.load_tokenizer(model_dir, padding_side="left")
    model = modeling.load_model(model_dir, profile.model, None).eval()
    validation = data["validation"]
    rows = validation.select(sorted(random.Random(0).sample(range(len(validation)), args.prompts))).to_list()
    prompts = [build_prompt(r["instruction"], r["input"]) for r in rows]
    task = get_task(SOURCE, ner_format)
    budgets = token_budgets(rows, budget_reference(data["train"], {SOURCE}), tokenizer, {SOURCE: task}, CAP)
    answer_tokens = sum(len(tokenizer(r["output"], add_special_tokens=False)["input_ids"]) for r in rows) / len(rows)
    print(
        f"\n== format {ner_format}: {len(prompts)} {SOURCE} devel prompts, tiny Llama trained {args.train_steps} steps "
        f"({run.dir}, ready in {prepared:.0f} s), {torch.get_num_threads()} threads; gold answers {answer_tokens:.0f} "
        f"tokens on average, budgets {min(budgets)}-{max(budgets)} (mean {sum(budgets) / len(budgets):.0f})"
    )
    seconds: dict[str, float] = {}
    for recipe in [*recipes(args.batch_size), replace(STATIC, batch_size=args.batch_size)]:
        started = time.perf_counter()
        generations = generate(
            model,
            tokenizer,
            prompts,
            budgets if recipe.row_budgets else ORIGINAL_BUDGET,
            batch_size=recipe.batch_size,
            num_beams=recipe.num_beams,
            stop_strings=None if not recipe.stop else ("###",),
            progress=False,
            cache_implementation=recipe.cache,
        )
        seconds[recipe.name] = time.perf_counter() - started
        f1, well_formed = f1_and_well_formed(task, rows, generations)
        stopped = sum(not g.hit_budget for g in generations) / len(generations)
        print(
            f"{recipe.name:40s} {seconds[recipe.name]:7.1f} s {len(prompts) / seconds[recipe.name]:7.2f} ex/s  "
            f"F1 {f1:.3f}  well-formed {well_formed:.0%}  stopped before budget {stopped:.0%}"
        )
    static = seconds.pop(STATIC.name)
    times = list(seconds.values())
    names = list(seconds)
    steps = [f"{name.split(':')[0].lstrip('+ ')} {times[k] / times[k + 1]:.2f}x" for k, name in enumerate(names[1:])]
    print(f"format {ner_format}: speed-up vs original {times[0] / times[-1]:.1f}x = " + " x ".join(steps))
    print(f"format {ner_format}: static KV cache / growing cache: {times[-1] / static:.2f}x (ours grows it)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder with the raw datasets (default ../shared/data)")
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--train-steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--formats", nargs="+", default=["lines", "entities"], choices=["lines", "entities"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier when the cores are shared)")
    parser.add_argument("--cache-dir", default="/tmp/medtune-bench", help="where the trained benchmark models are kept")
    args = parser.parse_args()
    args.data_dir = real_data_dir(args.data_dir)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for ner_format in args.formats:
        run_format(args, ner_format)


if __name__ == "__main__":
    main()
