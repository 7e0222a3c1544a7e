"""Models x validation rows -> generations, parsed predictions and per-source scores with intervals."""

from __future__ import annotations

import logging
import random
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset

from . import modeling
from .config import Profile
from .generation import Generation, generate, generate_vllm, token_budgets, vllm_available
from .metrics import bootstrap_interval, paired_bootstrap, row_statistic
from .paths import looks_like_hub_id, resolve
from .prompts import TEMPLATE, build_prompt
from .run import Run
from .tasks import TASKS, Task, get_task
from .tasks.ner import NerTask

log = logging.getLogger(__name__)

BUDGET_REFERENCE_ROWS = 1000


@dataclass
class ModelSpec:
    """A model to evaluate: its display name and where its weights are."""

    name: str
    location: str


def model_specs(profile: Profile, run: Run, models: list[str] | None = None) -> list[ModelSpec]:
    """Resolve `base`, `tuned` or a path/hub id into named locations."""
    names = models if models is not None else profile.eval.models
    return [ModelSpec(_safe_name(item), run.model_location(item, profile.model.base)) for item in names]


def check_locations(specs: list[ModelSpec]) -> None:
    """Fail before any generation when a model given as a path (not a hub id) does not exist."""
    for spec in specs:
        location = spec.location
        if resolve(location).exists() or looks_like_hub_id(location):
            continue
        hint = " (run notebooks/02_finetune.ipynb first)" if spec.name in {"base", "tuned"} else ""
        raise FileNotFoundError(f"model {spec.name!r}: no such folder {resolve(location)}{hint}")


def select_rows(validation: Dataset, profile: Profile) -> list[dict[str, Any]]:
    """The rows evaluated: registered sources only, at most `eval.rows_per_source` each, in their original order.

    The sample is seeded by the source name alone, so runs with different seeds (or other sources) score the same rows.
    """
    by_source: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in validation:
        by_source[row["source"]].append(row)
    wanted = set(profile.eval.sources) if profile.eval.sources is not None else None
    for source in sorted((wanted or set()) - set(by_source)):
        log.warning("not evaluated: %s has no validation rows (absent when the data were assembled)", source)
    chosen = []
    for source, rows in sorted(by_source.items()):
        if source not in TASKS:
            log.warning("not evaluated: %s has no task entry (no parser or metric)", source)
            continue
        if wanted is not None and source not in wanted:
            continue
        limit = profile.eval.rows_per_source
        if limit is not None and len(rows) > limit:
            keep = sorted(random.Random(f"eval|{source}").sample(range(len(rows)), limit))
            rows = [rows[i] for i in keep]
        chosen.extend(rows)
    return chosen


def budget_reference(train: Dataset, sources: set[str], per_source: int = BUDGET_REFERENCE_ROWS) -> list[dict[str, Any]]:
    """Training rows whose gold answers set the generation budgets: at most `per_source` of each source (seeded)."""
    by_source: dict[str, list[int]] = defaultdict(list)
    for index, source in enumerate(train["source"]):
        if source in sources:
            by_source[source].append(index)
    keep = []
    for source, indices in sorted(by_source.items()):
        if len(indices) > per_source:
            indices = random.Random(f"budget|{source}").sample(indices, per_source)
        keep.extend(indices)
    return train.select(sorted(keep)).to_list() if keep else []


def evaluate(profile: Profile, run_dir: str | Path, models: list[str] | None = None, progress: bool = True) -> dict[str, Any]:
    """Generate with each model on the same rows, parse, score; replace each model's predictions and the scores."""
    run = Run(run_dir)
    run.check_upstream("evaluate", profile)
    with run.lock("evaluate"):
        return _evaluate(profile, run, models, progress)


def _evaluate(profile: Profile, run: Run, models: list[str] | None, progress: bool) -> dict[str, Any]:
    """`evaluate` under the run's lock."""
    data = run.dataset()
    rows = select_rows(data["validation"], profile)
    if not rows:
        raise ValueError(f"nothing to evaluate in {run.data_dir}: no validation rows of a registered source")
    specs = model_specs(profile, run, models)
    check_locations(specs)
    tasks = {source: get_task(source, profile.data.ner_format) for source in {r["source"] for r in rows}}
    prompts = [build_prompt(r["instruction"], r["input"]) for r in rows]
    reference = budget_reference(data["train"], {s for s, t in tasks.items() if not isinstance(t, NerTask)})
    results: dict[str, dict[str, Any]] = {}
    row_stats: dict[str, dict[str, np.ndarray]] = {}
    for spec in specs:
        budgets, generations = _generate_with(spec, profile, rows, reference, prompts, tasks, progress)
        records = prediction_records(spec.name, rows, prompts, budgets, generations, tasks)
        run.write_predictions(spec.name, records)
        results[spec.name], row_stats[spec.name] = score_predictions(records, tasks, profile.eval.bootstrap_samples, profile.seed)
    scores = {
        "run": run.name,
        "profile": profile.name,
        "eval_split": profile.data.eval_split,
        "source_splits": {row["source"]: row["split"] for row in rows},
        "models": results,
        "comparisons": _compare(row_stats, profile.eval.bootstrap_samples, profile.seed),
    }
    run.write_scores(scores)
    run.record_step("evaluate", profile, {"models": [s.name for s in specs]})
    return scores


def prediction_records(
    model: str,
    rows: list[dict[str, Any]],
    prompts: list[str],
    budgets: list[int],
    generations: list[Generation],
    tasks: dict[str, Task],
) -> list[dict[str, Any]]:
    """One record per row: what was asked, what the model wrote, what it means, and the gold answer."""
    records = []
    for row, prompt, budget, generation in zip(rows, prompts, budgets, generations):
        task = tasks[row["source"]]
        parsed = task.parse(generation.text, row["input"])
        records.append(
            {
                "id": row["id"],
                "source": row["source"],
                "task": row["task"],
                "group": row["group"],
                "input": row["input"],
                "prompt": prompt,
                "generation": generation.text,
                "prediction": parsed.value,
                "gold": task.gold(row["output"], row["input"]),
                "well_formed": parsed.well_formed,
                "budget": budget,
                "hit_budget": generation.hit_budget,
                "template": TEMPLATE,
                "model": model,
            }
        )
    return records


def score_predictions(
    records: list[dict[str, Any]], tasks: dict[str, Task], samples: int, seed: int
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Per source: metric values, n, malformed rate and bootstrap intervals; also the headline's per-row statistics."""
    by_source: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_source[record["source"]].append(record)
    scores: dict[str, Any] = {}
    headline_rows: dict[str, np.ndarray] = {}
    for source, preds in sorted(by_source.items()):
        task = tasks[source]
        gold = [_as_value(p["gold"]) for p in preds]
        pred = [_as_value(p["prediction"]) for p in preds]
        metrics, per_row = task.score(gold, pred, [p["group"] for p in preds])
        intervals = {name: bootstrap_interval(row_statistic(stats), len(preds), samples, seed) for name, stats in per_row.items()}
        headline = metrics["headline"]
        scores[source] = {
            "task": task.family,
            "n": len(preds),
            "malformed_rate": float(np.mean([not p["well_formed"] for p in preds])),
            "metrics": metrics,
            "headline": headline,
            "value": metrics[headline],
            "ci_low": intervals[headline].low,
            "ci_high": intervals[headline].high,
            "intervals": {name: [iv.low, iv.high] for name, iv in intervals.items()},
        }
        headline_rows[source] = per_row[headline]
    return scores, headline_rows


def _generate_with(
    spec: ModelSpec,
    profile: Profile,
    rows: list[dict[str, Any]],
    reference: list[dict[str, Any]],
    prompts: list[str],
    tasks: dict[str, Task],
    progress: bool,
) -> tuple[list[int], list[Generation]]:
    tokenizer = modeling.load_tokenizer(spec.location, padding_side="left")
    budgets = token_budgets(rows, reference, tokenizer, tasks, profile.eval.max_new_tokens_cap)
    if profile.eval.backend == "vllm":
        if not vllm_available():
            raise RuntimeError("eval.backend is vllm but vllm is not installed: pip install -e '.[gpu]' or use backend hf")
        return budgets, generate_vllm(spec.location, prompts, budgets)
    model = _load_for_eval(spec.location, profile)
    return budgets, generate(model, tokenizer, prompts, budgets, profile.eval.batch_size, progress=progress, desc=spec.name)


def _load_for_eval(location: str, profile: Profile) -> Any:
    """Full weights, or a base model with LoRA adapters when the folder holds `adapter_config.json`."""
    import torch

    if modeling.is_adapter(location):
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(
            str(resolve(location)), dtype=modeling.resolve_dtype(profile.model.dtype)
        )
    else:
        model = modeling.load_model(location, profile.model)
    return model.to("cuda") if torch.cuda.is_available() and model.device.type == "cpu" else model


def _compare(row_stats: dict[str, dict[str, np.ndarray]], samples: int, seed: int) -> list[dict[str, Any]]:
    """Paired bootstrap of every later model against the first, per source (same rows, same resamples)."""
    names = list(row_stats)
    comparisons = []
    for other in names[1:]:
        for source, stats_a in row_stats[names[0]].items():
            stats_b = row_stats[other].get(source)
            if stats_b is None:
                continue
            test = paired_bootstrap(row_statistic(stats_a), row_statistic(stats_b), len(stats_a), samples, seed)
            comparisons.append({"source": source, "model_a": names[0], "model_b": other, **test})
    return comparisons


def _as_value(value: Any) -> Any:
    """JSON turns tuples into lists; metrics want hashable tuples back."""
    return tuple(value) if isinstance(value, list) else value


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name.strip("/")).strip("_") or "model"
