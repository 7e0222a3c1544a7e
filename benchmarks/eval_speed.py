"""Evaluation throughput on a model that stops and writes well-formed answers: ours against the original recipe.

    python benchmarks/eval_speed.py [--data-dir ../shared/data] [--prompts 200] [--train-steps 1500]
        [--batch-size 32] [--threads N] [--formats lines entities] [--cache-dir /tmp/medtune-bench]

The original code generated one prompt at a time with 4-beam search, `max_new_tokens=512` and Hugging Face's
default (growing) KV cache. Ours decodes greedily in batches grouped by budget, each row with its own budget,
stops a row at eos or the next `###` header (a batch ends when all its rows have stopped), and writes keys and
values into a buffer allocated once per batch (`medtune_utils.kv_cache`). The recipes in between switch one
change on at a time, so the speed-up splits into beams x batching x budgets x stops x cache, each printed with its
F1 and well-formed share on the same rows.

The benchmark model is the tiny profile's Llama trained on `--prompts` NCBI-disease training rows until it has
memorised them, and the prompts are those rows. Trained on thousands of rows, a tiny model does not learn on 2 CPU
cores to copy its input into `token : TAG` lines: after 3,000 steps on 2,000 rows (loss 0.78), and a 4-layer,
256-wide one after 1,500 steps on all 5,424, 0% of its devel answers were well formed; most stopped at about the
gold's length, with other words. Memorised rows give what a speed comparison needs, answers of the gold's length
and format that end in eos, without training on evaluation data. The F1 printed therefore says whether a recipe
reproduces a memorised answer, not how good a model is; the header compares the rows' gold answer length with
that of as many devel rows. Budgets come from other training rows. The model is trained once per format and
settings, kept under `--cache-dir` and reused by any later run with the same model, data and training settings
(not keyed by the code: clear the folder after changing the prompt template or the answer formats).
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from _common import real_data_dir
from transformers import PreTrainedTokenizerBase

from medtune_utils import modeling
from medtune_utils.assemble import run_assembly, to_row
from medtune_utils.config import Profile, load_profile
from medtune_utils.generation import Generation, generate, token_budgets
from medtune_utils.io import settings_hash
from medtune_utils.modeling import token_counts
from medtune_utils.prompts import build_prompt
from medtune_utils.run import Run
from medtune_utils.tasks import Task, get_task
from medtune_utils.train import train

SOURCE = "NCBI-disease"
ORIGINAL_BUDGET = 512
CAP = 1024
STATIC = "ours with HF's static KV cache instead"


@dataclass(frozen=True)
class Recipe:
    """One decoding recipe: beams, batch size, budgets (fixed or per row), whether `###` stops a row, and the KV cache."""

    name: str
    num_beams: int
    batch_size: int
    row_budgets: bool
    stop: bool
    cache: str = "dynamic"


def recipes(batch_size: int) -> list[Recipe]:
    """The original recipe, then one change at a time up to ours, then ours with Hugging Face's static cache."""
    return [
        Recipe("original: 4 beams, batch 1, 512 tokens", 4, 1, False, False),
        Recipe("+ greedy (1 beam)", 1, 1, False, False),
        Recipe(f"+ batches of {batch_size}", 1, batch_size, False, False),
        Recipe("+ per-row budgets", 1, batch_size, True, False),
        Recipe("+ stop at ###", 1, batch_size, True, True),
        Recipe("+ preallocated KV cache (ours)", 1, batch_size, True, True, "preallocated"),
        Recipe(STATIC, 1, batch_size, True, True, "static"),
    ]


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


def other_training_rows(task: Task, data_dir: Path, exclude: set[str], seed: int) -> list[dict[str, Any]]:
    """Up to 1,000 seeded training rows of `task` outside `exclude`: the budgets' reference (never a row's own answer)."""
    records = [r for r in task.load(data_dir / task.name, "train") if r.id not in exclude]
    chosen = random.Random(f"budget|{task.name}").sample(records, min(1000, len(records)))
    return [to_row(task, record, seed, "train") for record in chosen]


def mean_tokens(tokenizer: PreTrainedTokenizerBase, rows: Sequence[dict[str, Any]]) -> float:
    """Mean token length of the rows' gold answers."""
    return sum(token_counts(tokenizer, [r["output"] for r in rows])) / len(rows)


def f1_and_well_formed(task: Task, rows: Sequence[dict[str, Any]], generations: Sequence[Generation]) -> tuple[float, float]:
    """The task's headline metric and the share of well-formed answers."""
    parsed = [task.parse(g.text, r["input"]) for g, r in zip(generations, rows)]
    gold = [task.gold(r["output"], r["input"]) for r in rows]
    metrics, _ = task.score(gold, [p.value for p in parsed], [r["group"] for r in rows])
    return float(metrics[metrics["headline"]]), sum(p.well_formed for p in parsed) / len(parsed)


def run_format(args: argparse.Namespace, ner_format: str) -> None:
    """Train (or reuse) the model for one answer format, then time every recipe on the same prompts."""
    overrides = {
        "data": {
            "dir": str(args.data_dir),
            "sources": [SOURCE],
            "train_rows": {"default": args.prompts},
            "ner_format": ner_format,
        },
        "train": {"max_steps": args.train_steps, "save_steps": 500, "logging_steps": 50},
    }
    profile = load_profile("tiny", overrides)
    started = time.perf_counter()
    run, model_dir = benchmark_model(profile, Path(args.cache_dir))
    prepared = time.perf_counter() - started
    torch.set_num_threads(args.threads)
    data = run.dataset()
    tokenizer = modeling.load_tokenizer(model_dir, padding_side="left")
    model = modeling.load_model(model_dir, profile.model, None).eval()
    rows = data["train"].to_list()
    prompts = [build_prompt(r["instruction"], r["input"]) for r in rows]
    task = get_task(SOURCE, ner_format)
    reference = other_training_rows(task, args.data_dir, {r["id"] for r in rows}, profile.seed)
    budgets = token_budgets(rows, reference, tokenizer, {SOURCE: task}, CAP)
    validation = data["validation"].select(sorted(random.Random(0).sample(range(len(data["validation"])), len(rows))))
    print(
        f"\n== format {ner_format}: the {len(rows)} {SOURCE} training rows the tiny Llama memorised in "
        f"{args.train_steps} steps ({run.dir}, ready in {prepared:.0f} s), {torch.get_num_threads()} threads; gold "
        f"answers {mean_tokens(tokenizer, rows):.0f} tokens on average ({len(rows)} devel rows: "
        f"{mean_tokens(tokenizer, validation.to_list()):.0f}); budgets {min(budgets)}-{max(budgets)} "
        f"(mean {sum(budgets) / len(budgets):.0f}), set by {len(reference)} other training rows"
    )
    seconds: dict[str, float] = {}
    for recipe in recipes(args.batch_size):
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
    static = seconds.pop(STATIC)
    times = list(seconds.values())
    names = list(seconds)
    steps = [f"{name.split(':')[0].lstrip('+ ')} {times[k] / times[k + 1]:.2f}x" for k, name in enumerate(names[1:])]
    print(f"format {ner_format}: speed-up vs original {times[0] / times[-1]:.1f}x = " + " x ".join(steps))
    print(f"format {ner_format}: ours with HF's static cache / ours: {static / times[-1]:.2f}x the time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder with the raw datasets (default ../shared/data)")
    parser.add_argument("--prompts", type=int, default=200, help="training rows memorised, then decoded")
    parser.add_argument("--train-steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--formats", nargs="+", default=["lines", "entities"], choices=["lines", "entities"])
    parser.add_argument(
        "--threads", type=int, default=torch.get_num_threads(), help="torch threads for decoding (default: all cores)"
    )
    parser.add_argument("--cache-dir", default="/tmp/medtune-bench", help="where the trained benchmark models are kept")
    args = parser.parse_args()
    args.data_dir = real_data_dir(args.data_dir)
    torch.manual_seed(0)
    for ner_format in args.formats:
        run_format(args, ner_format)


if __name__ == "__main__":
    main()
