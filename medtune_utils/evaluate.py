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
from .assemble import load_assembly
from .config import Profile
from .generation import generate, generate_vllm, token_budgets, vllm_available
from .io import read_jsonl, write_json_atomic, write_jsonl_atomic
from .metrics import bootstrap_interval, paired_bootstrap, row_statistic, score_task
from .paths import resolve
from .prompts import build_prompt
from .runinfo import check_upstream, record_step
from .tasks import TASKS, Task, get_task
from .tasks.ner import NerTask

log = logging.getLogger(__name__)

SCORES = "scores.json"
PREDICTIONS = "predictions"
BUDGET_REFERENCE_ROWS = 1000


@dataclass
class ModelSpec:
    """A model to evaluate: its display name and where its weights are."""

    name: str
    location: str


def model_specs(profile: Profile, run_dir: Path, models: list[str] | None = None) -> list[ModelSpec]:
    """Resolve `base`, `tuned` or a path/hub id into named locations."""
    specs = []
    for item in models if models is not None else profile.eval.models:
        if item == "base":
            location = str(run_dir / "base-model") if modeling.is_tiny(profile.model.base) else profile.model.base
        elif item == "tuned":
            location = str(run_dir / "model")
        else:
            location = item
        specs.append(ModelSpec(_safe_name(item), location))
    return specs


def check_locations(specs: list[ModelSpec]) -> None:
    """Fail before any generation when a model given as a path (not a hub id) does not exist."""
    for spec in specs:
        location = spec.location
        if resolve(location).exists() or _looks_like_hub_id(location):
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
    """Generate with each model on the same rows, parse, score, and write predictions and `scores.json`."""
    run_dir = resolve(run_dir)
    check_upstream(run_dir, "evaluate", profile)
    data = load_assembly(run_dir / "data")
    rows = select_rows(data["validation"], profile)
    if not rows:
        raise ValueError(f"nothing to evaluate in {run_dir / 'data'}: no validation rows of a registered source")
    specs = model_specs(profile, run_dir, models)
    check_locations(specs)
    tasks = {source: get_task(source, profile.data.ner_format) for source in {r["source"] for r in rows}}
    prompts = [build_prompt(r["instruction"], r["input"]) for r in rows]
    reference = budget_reference(data["train"], {s for s, t in tasks.items() if not isinstance(t, NerTask)})
    results: dict[str, dict[str, Any]] = {}
    row_stats: dict[str, dict[str, np.ndarray]] = {}
    for spec in specs:
        generations = _generate_with(spec, profile, rows, reference, prompts, tasks, progress)
        predictions = _parse_all(rows, prompts, generations, tasks)
        _write_predictions(run_dir / PREDICTIONS / spec.name, predictions)
        results[spec.name], row_stats[spec.name] = score_predictions(
            predictions, tasks, profile.eval.bootstrap_samples, profile.seed
        )
    scores = {
        "run": run_dir.name,
        "profile": profile.name,
        "eval_split": profile.data.eval_split,
        "source_splits": _source_splits(run_dir),
        "models": results,
        "comparisons": _compare(row_stats, profile.eval.bootstrap_samples, profile.seed),
    }
    write_json_atomic(run_dir / SCORES, scores)
    record_step(run_dir, "evaluate", profile, {"models": [s.name for s in specs]})
    return scores


def score_predictions(
    predictions: dict[str, list[dict[str, Any]]], tasks: dict[str, Task], samples: int, seed: int
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Per source: metric values, n, malformed rate and bootstrap intervals; also the headline's per-row statistics."""
    scores: dict[str, Any] = {}
    headline_rows: dict[str, np.ndarray] = {}
    for source, preds in sorted(predictions.items()):
        task = tasks[source]
        gold = [_as_value(p["gold"]) for p in preds]
        pred = [_as_value(p["prediction"]) for p in preds]
        groups = [p["id"].rsplit("/", 1)[-1].rsplit("_", 1)[0] for p in preds]
        metrics, per_row = score_task(task, gold, pred, groups)
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


def load_scores(run_dir: str | Path) -> dict[str, Any]:
    """A run's `scores.json`."""
    import json

    path = resolve(run_dir) / SCORES
    if not path.is_file():
        raise FileNotFoundError(f"no {SCORES} in {resolve(run_dir)}: run notebooks/03_evaluate.ipynb first")
    return json.loads(path.read_text(encoding="utf-8"))


def load_predictions(run_dir: str | Path, model: str, source: str) -> list[dict[str, Any]]:
    """The prediction records of one model on one source."""
    return list(read_jsonl(resolve(run_dir) / PREDICTIONS / model / f"{source}.jsonl"))


def _generate_with(
    spec: ModelSpec,
    profile: Profile,
    rows: list[dict[str, Any]],
    reference: list[dict[str, Any]],
    prompts: list[str],
    tasks: dict[str, Task],
    progress: bool,
) -> list[str]:
    tokenizer = modeling.load_tokenizer(spec.location, padding_side="left")
    budgets = token_budgets(rows, reference, tokenizer, tasks, profile.eval.max_new_tokens_cap)
    if profile.eval.backend == "vllm":
        if not vllm_available():
            raise RuntimeError("eval.backend is vllm but vllm is not installed: pip install -e '.[gpu]' or use backend hf")
        return generate_vllm(spec.location, prompts, budgets)
    model = _load_for_eval(spec.location, profile)
    return generate(model, tokenizer, prompts, budgets, profile.eval.batch_size, progress=progress, desc=f"{spec.name}")


def _load_for_eval(location: str, profile: Profile) -> Any:
    """Full weights, or a base model with LoRA adapters when the folder holds `adapter_config.json`."""
    import torch

    if (resolve(location) / "adapter_config.json").is_file():
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(
            str(resolve(location)), dtype=modeling.resolve_dtype(profile.model.dtype)
        )
    else:
        model = modeling.load_model(location, profile.model)
    return model.to("cuda") if torch.cuda.is_available() and model.device.type == "cpu" else model


def _parse_all(
    rows: list[dict[str, Any]], prompts: list[str], generations: list[str], tasks: dict[str, Task]
) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row, prompt, generation in zip(rows, prompts, generations):
        task = tasks[row["source"]]
        parsed = task.parse(generation, row["input"])
        out[row["source"]].append(
            {
                "id": row["id"],
                "prompt": prompt,
                "generation": generation,
                "prediction": parsed.value,
                "gold": task.gold(row["output"], row["input"]),
                "well_formed": parsed.well_formed,
            }
        )
    return out


def _write_predictions(folder: Path, predictions: dict[str, list[dict[str, Any]]]) -> None:
    for source, records in predictions.items():
        write_jsonl_atomic(folder / f"{source}.jsonl", records)


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


def _source_splits(run_dir: Path) -> dict[str, str]:
    import pandas as pd

    stats_path = run_dir / "data" / "stats.csv"
    if not stats_path.is_file():
        return {}
    stats = pd.read_csv(stats_path)
    return dict(zip(stats.loc[stats.split == "validation", "source"], stats.loc[stats.split == "validation", "source_split"]))


def _as_value(value: Any) -> Any:
    """JSON turns tuples into lists; metrics want hashable tuples back."""
    return tuple(value) if isinstance(value, list) else value


def _looks_like_hub_id(location: str) -> bool:
    """`name` or `owner/name`; anything absolute, relative (`./`, `../`, `~`) or deeper is a path."""
    return re.fullmatch(r"[\w.-]+(/[\w.-]+)?", location) is not None and not location.startswith(".")


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name.strip("/")).strip("_") or "model"
