"""Models x validation rows -> generations, parsed predictions and per-source scores with intervals."""

from __future__ import annotations

import dataclasses
import logging
import random
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset

from . import modeling, vllm_backend
from .analysis import majority_reference, majority_values
from .config import Profile
from .generation import Generation, generate, token_budgets
from .metrics import bootstrap_interval, paired_bootstrap, row_statistic
from .paths import looks_like_hub_id, resolve
from .prompts import ModelEntry, get_template, model_entry
from .run import Run
from .tasks import TASKS, Task, get_task

log = logging.getLogger(__name__)

BUDGET_REFERENCE_ROWS = 1000


@dataclass
class ModelSpec:
    """A model to evaluate: its display name, where its weights are, its prompt template and number of demonstrations."""

    name: str
    location: str
    template: str = "medtune"
    shots: int = 0


def model_specs(profile: Profile, run: Run, models: list[str | dict[str, Any]] | None = None) -> list[ModelSpec]:
    """Resolve `eval.models` entries (`base`, `tuned`, a path/hub id, or a mapping {name, template, shots}) into specs.

    An entry without `template` uses the profile's `data.template`. The display name is the model's name, followed by
    the template where it differs from `data.template` and by `-<k>shot`, so that each way of prompting is kept apart.
    """
    specs = []
    for item in models if models is not None else profile.eval.models:
        try:
            entry = model_entry(item)
        except ValueError as exc:
            raise ValueError(f"eval.models: {exc}") from None
        specs.append(_spec(entry, profile, run))
    names = [spec.name for spec in specs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"eval.models: {', '.join(repeated)} listed twice with the same template and shots")
    return specs


def _spec(entry: ModelEntry, profile: Profile, run: Run) -> ModelSpec:
    template = entry.template or profile.data.template
    name = _safe_name(entry.name)
    if template != profile.data.template:
        name += f"-{template}"
    if entry.shots:
        name += f"-{entry.shots}shot"
    return ModelSpec(name, run.model_location(entry.name, profile.model.base), template, entry.shots)


def check_requirements(profile: Profile, specs: list[ModelSpec]) -> None:
    """Stop before any work when `eval.require_gpu` holds and there is no GPU, or a hub model cannot be reached."""
    if not profile.eval.require_gpu:
        return
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError(
            f"profile {profile.name!r} needs a CUDA GPU (eval.require_gpu: true) and none is visible; "
            "run it on a GPU machine (see README, 'Compare with the released Llama2-MedTuned models')"
        )
    for spec in specs:
        if looks_like_hub_id(spec.location) and not resolve(spec.location).exists():
            _check_hub_access(spec.location)


def _check_hub_access(repo_id: str) -> None:
    """Fail with a clear message when the hub cannot be reached or `repo_id` is not readable with the current login."""
    from httpx2 import HTTPError
    from huggingface_hub import HfApi
    from huggingface_hub.errors import OfflineModeIsEnabled

    try:
        HfApi().model_info(repo_id, timeout=20)
    except OfflineModeIsEnabled:
        raise RuntimeError(f"{repo_id}: the Hugging Face hub is needed but HF_HUB_OFFLINE is set") from None
    except (HTTPError, OSError) as exc:  # unreachable, unknown, gated without access, or not logged in
        reason = " ".join(str(exc).split())[:300]
        raise RuntimeError(
            f"{repo_id}: cannot reach it on the Hugging Face hub ({reason}); check the network and `huggingface-cli login`"
        ) from None


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
    by_source: dict[str, list[int]] = defaultdict(list)
    for index, source in enumerate(validation["source"] if len(validation) else []):
        by_source[source].append(index)
    wanted = set(profile.eval.sources) if profile.eval.sources is not None else None
    for source in sorted((wanted or set()) - set(by_source)):
        log.warning("not evaluated: %s has no validation rows (absent when the data were assembled)", source)
    chosen: list[int] = []
    for source, indices in sorted(by_source.items()):
        if source not in TASKS:
            log.warning("not evaluated: %s has no task entry (no parser or metric)", source)
            continue
        if wanted is not None and source not in wanted:
            continue
        limit = profile.eval.rows_per_source
        if limit is not None and len(indices) > limit:
            keep = sorted(random.Random(f"eval|{source}").sample(range(len(indices)), limit))
            indices = [indices[i] for i in keep]
        chosen.extend(indices)
    return validation.select(chosen).to_list() if chosen else []


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


def evaluate(
    profile: Profile, run_dir: str | Path, models: list[str | dict[str, Any]] | None = None, progress: bool = True
) -> dict[str, Any]:
    """Generate with each model on the same rows, parse, score; replace each model's predictions and the scores."""
    run = Run(run_dir)
    run.check_upstream("evaluate", profile)
    with run.lock("evaluate"):
        return _evaluate(profile, run, models, progress)


def _evaluate(profile: Profile, run: Run, models: list[str | dict[str, Any]] | None, progress: bool) -> dict[str, Any]:
    """`evaluate` under the run's lock."""
    specs = model_specs(profile, run, models)
    check_requirements(profile, specs)
    data = run.dataset()
    rows = select_rows(data["validation"], profile)
    if not rows:
        raise ValueError(f"nothing to evaluate in {run.data_dir}: no validation rows of a registered source")
    check_locations(specs)
    sources = {r["source"] for r in rows}
    reference = budget_reference(data["train"], sources)
    results: dict[str, dict[str, Any]] = {}
    row_stats: dict[str, dict[str, np.ndarray]] = {}
    trained_as = {s: get_task(s, profile.data.ner_format, profile.data.template) for s in sources}
    majority = majority_values(data["train"].select_columns(["source", "input", "output"]), trained_as)
    for spec in specs:
        tasks = {source: get_task(source, profile.data.ner_format, spec.template) for source in sources}
        prompts = build_prompts(rows, spec.template, demonstrations(data["train"], sources, spec.shots))
        budgets, generations = _generate_with(spec, profile, rows, reference, prompts, tasks, progress)
        records = prediction_records(spec.name, rows, prompts, budgets, generations, tasks, spec.template)
        run.write_predictions(spec.name, records)
        results[spec.name], row_stats[spec.name] = score_predictions(
            records, tasks, profile.eval.bootstrap_samples, profile.seed, majority
        )
    scores = {
        "run": run.name,
        "profile": profile.name,
        "eval_split": profile.data.eval_split,
        "prompting": {spec.name: {"template": spec.template, "shots": spec.shots} for spec in specs},
        "generation": {"backend": profile.eval.backend, "dtype": eval_dtype(profile)},
        "source_splits": {row["source"]: row["split"] for row in rows},
        "models": {**results, **run.encoder_scores()},
        "comparisons": compare_models(row_stats, profile.eval.bootstrap_samples, profile.seed),
    }
    run.write_scores(scores)
    run.record_step("evaluate", profile, {"models": [s.name for s in specs]})
    return scores


def demonstrations(train: Dataset, sources: set[str], shots: int) -> dict[str, list[dict[str, Any]]]:
    """`shots` training rows per source, the same for every evaluated row of it (seeded by the source name alone)."""
    if not shots:
        return {}
    by_source: dict[str, list[int]] = defaultdict(list)
    for index, source in enumerate(train["source"] if len(train) else []):
        if source in sources:
            by_source[source].append(index)
    chosen = {}
    for source in sorted(sources):
        indices = by_source.get(source, [])
        if len(indices) < shots:
            raise ValueError(f"{source}: {shots} demonstration(s) asked for, but the training split has {len(indices)} row(s)")
        chosen[source] = train.select(sorted(random.Random(f"shots|{source}").sample(indices, shots))).to_list()
    return chosen


def build_prompts(rows: list[dict[str, Any]], template: str, demos: dict[str, list[dict[str, Any]]] | None = None) -> list[str]:
    """Each row's prompt in `template`, after its source's demonstrations when there are any."""
    chosen = get_template(template)
    demos = demos or {}
    return [chosen.few_shot_prompt(demos.get(r["source"], []), r["instruction"], r["input"]) for r in rows]


def prediction_records(
    model: str,
    rows: list[dict[str, Any]],
    prompts: list[str],
    budgets: list[int],
    generations: list[Generation],
    tasks: dict[str, Task],
    template: str = "medtune",
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
                "template": template,
                "model": model,
            }
        )
    return records


def score_predictions(
    records: list[dict[str, Any]], tasks: dict[str, Task], samples: int, seed: int, majority: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Per source: metric values, n, malformed rate and bootstrap intervals; also the headline's per-row statistics.

    `majority` (source -> the training split's commonest answer) adds each such source's majority-class reference.
    """
    by_source: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_source[record["source"]].append(record)
    scores: dict[str, Any] = {}
    headline_rows: dict[str, np.ndarray] = {}
    for source, preds in sorted(by_source.items()):
        task = tasks[source]
        gold = [_as_value(p["gold"]) for p in preds]
        pred = [_as_value(p["prediction"]) for p in preds]
        raw = all(isinstance(p.get("generation"), str) and isinstance(p.get("input"), str) for p in preds)
        generations, inputs = ([p["generation"] for p in preds], [p["input"] for p in preds]) if raw else (None, None)
        metrics, per_row = task.score(gold, pred, [p["group"] for p in preds], generations, inputs)
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
        if majority and source in majority:
            scores[source]["majority"] = majority_reference(task, gold, [p["group"] for p in preds], majority[source])
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
        return budgets, vllm_backend.generate(spec.location, tokenizer, prompts, budgets, eval_dtype(profile), profile.seed)
    model = _load_for_eval(spec.location, profile)
    return budgets, generate(
        model,
        tokenizer,
        prompts,
        budgets,
        profile.eval.batch_size,
        progress=progress,
        desc=spec.name,
        groups=[row["source"] for row in rows],
    )


def eval_dtype(profile: Profile) -> str:
    """The dtype both backends evaluate in: `eval.dtype`, where `auto` is bfloat16 on a GPU whatever `model.dtype`
    (float16 on a GPU without bf16), float32 on CPU."""
    import torch

    if profile.eval.dtype != "auto":
        return profile.eval.dtype
    if not torch.cuda.is_available():
        return "float32"
    return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"


def _load_for_eval(location: str, profile: Profile) -> Any:
    """Full weights, or a base model with LoRA adapters when the folder holds `adapter_config.json`, in `eval_dtype`."""
    import torch

    model_cfg = dataclasses.replace(profile.model, dtype=eval_dtype(profile))
    if modeling.is_adapter(location):
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(
            str(resolve(location)),
            dtype=modeling.resolve_dtype(model_cfg.dtype),
            attn_implementation=modeling.resolve_attention(model_cfg.attn_implementation),
        )
    else:
        model = modeling.load_model(location, model_cfg)
    return model.to("cuda") if torch.cuda.is_available() and model.device.type == "cpu" else model


def compare_models(row_stats: dict[str, dict[str, np.ndarray]], samples: int, seed: int) -> list[dict[str, Any]]:
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
