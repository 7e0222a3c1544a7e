"""Composition studies: one profile, several named training mixes, each run through notebooks 01-03 with papermill.

A study is a YAML file in `configs/studies/` (or a path): a profile, optional `data_dir` and `overrides` shared by
every mix, and `mixes`, each a mapping of dotted profile overrides (`data.sources`, `data.train_rows`); the first mix
(or `reference`) is the one the others are compared with. Each mix gets its own run folder, `results/<study>/<mix>/`
(or `<out_dir>/<mix>/`). A finished mix is skipped; a folder made with other settings is refused.
`aggregate` turns the folders into one table and one figure: every source's headline metric per mix as the
difference from the reference mix, with a paired bootstrap interval over the evaluation rows both mixes share.

`python -m medtune_utils.sweep --study tiny-sample [--out-dir DIR] [--print-commands] [--aggregate-only]`.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from .config import ConfigError, Profile, load_profile, load_yaml
from .metrics import paired_bootstrap, row_statistic
from .paths import repo_root, resolve
from .run import CONFIG, FIGURES, Run, section_hashes

STUDIES_DIR = "configs/studies"
NOTEBOOKS = ("01_assemble_instructions", "02_finetune", "03_evaluate")
STEPS = ("assemble", "finetune", "evaluate")
TOP_KEYS = {"name", "description", "profile", "data_dir", "overrides", "reference", "model", "mixes"}
MIX_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
STUDY_NAME = "composition_study"
DELTA_COLUMNS = ["mix", "source", "task", "metric", "value", "reference_value", "delta", "low", "high", "p_value", "n"]


@dataclass
class Study:
    """A profile and its named mixes (each a dict of dotted overrides); `reference` names the mix compared against."""

    name: str
    profile: str
    mixes: dict[str, dict[str, Any]]
    reference: str
    description: str = ""
    data_dir: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    model: str = "tuned"
    path: Path | None = None

    def mix_overrides(self, mix: str) -> dict[str, Any]:
        """The study's overrides, then the mix's, then `data.dir`.

        A mapping (such as `data.train_rows`) is merged key by key into the profile's and the study's, so a mix that
        caps one source keeps the caps the profile sets on the others.
        """
        base = load_profile(self.profile).to_dict()
        merged: dict[str, Any] = {}
        for key, value in [*self.overrides.items(), *self.mixes[mix].items()]:
            current = merged[key] if key in merged else _dotted(base, key)
            both = isinstance(value, dict) and isinstance(current, dict)
            merged[key] = {**current, **value} if both else value
        if self.data_dir is not None:
            merged["data.dir"] = self.data_dir
        return merged

    def mix_profile(self, mix: str) -> Profile:
        """The resolved profile of one mix (checked like any profile)."""
        return load_profile(self.profile, self.mix_overrides(mix))

    def run_dir(self, mix: str, out_dir: str | Path | None = None) -> Path:
        """`<out_dir>/<mix>`, by default `results/<study>/<mix>`."""
        return resolve(out_dir or f"results/{self.name}") / mix


def study_path(name_or_path: str | Path) -> Path:
    """A study by name (`configs/studies/<name>.yaml`) or by path."""
    candidate = Path(name_or_path)
    path = resolve(candidate) if candidate.suffix in {".yaml", ".yml"} else repo_root() / STUDIES_DIR / f"{candidate}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in (repo_root() / STUDIES_DIR).glob("*.yaml"))) or "none"
        raise ConfigError(f"unknown study {str(name_or_path)!r} (no {path}); known studies: {known}")
    return path


def load_study(name_or_path: str | Path) -> Study:
    """Read and check a study file: known keys, a profile, at least two mixes with safe names, each mix's profile."""
    path = study_path(name_or_path)
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with {', '.join(sorted(TOP_KEYS))}")
    unknown = sorted(set(raw) - TOP_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(TOP_KEYS))})")
    mixes = raw.get("mixes")
    if not isinstance(mixes, dict) or len(mixes) < 2:
        raise ConfigError(f"{path}: 'mixes' must map at least two mix names to their overrides")
    for name, overrides in mixes.items():
        if not isinstance(name, str) or not MIX_NAME.match(name):
            raise ConfigError(f"{path}: mix name {name!r} must be letters, digits, '.', '_' or '-' (it names a folder)")
        if not isinstance(overrides, dict):
            raise ConfigError(f"{path}: mix {name!r} must be a mapping of overrides (e.g. data.train_rows), got {overrides!r}")
    if not isinstance(raw.get("profile"), str):
        raise ConfigError(f"{path}: 'profile' must name a profile in configs/profiles/")
    reference = raw.get("reference", next(iter(mixes)))
    if reference not in mixes:
        raise ConfigError(f"{path}: reference {reference!r} is not one of the mixes ({', '.join(mixes)})")
    study = Study(
        name=str(raw.get("name", path.stem)),
        profile=raw["profile"],
        mixes={name: dict(overrides) for name, overrides in mixes.items()},
        reference=reference,
        description=str(raw.get("description", "")),
        data_dir=raw.get("data_dir"),
        overrides=dict(raw.get("overrides") or {}),
        model=str(raw.get("model", "tuned")),
        path=path,
    )
    for mix in study.mixes:
        try:
            study.mix_profile(mix)
        except ConfigError as exc:
            raise ConfigError(f"{path}: mix {mix!r}: {exc}") from None
    return study


# ---------------------------------------------------------------- running


def mix_status(study: Study, mix: str, out_dir: str | Path | None = None) -> str:
    """`new`, `partial` or `done` for one mix's folder; `ConfigError` when it was made with other settings.

    The comparison uses the settings hashes that every finished step recorded in the folder's `env.json`.
    """
    run = Run(study.run_dir(mix, out_dir))
    steps = run.env().get("steps", {})
    if not steps:
        return "new"
    current = section_hashes(study.mix_profile(mix))
    for step in (s for s in STEPS if s in steps):
        changed = sorted(key for key, value in steps[step].get("inputs", {}).items() if current.get(key) != value)
        if changed:
            raise ConfigError(
                f"{run.dir}: its {step} step ran with different {', '.join(changed)} settings than mix {mix!r} of study "
                f"{study.name!r} (see {run.dir / CONFIG}); remove the folder or choose another out_dir"
            )
    done = all(step in steps for step in STEPS) and run.has_scores() and study.model in run.scores().get("models", {})
    return "done" if done else "partial"


def run_study(
    study: Study, out_dir: str | Path | None = None, mixes: Sequence[str] | None = None, progress: bool = False
) -> dict[str, Path]:
    """Run notebooks 01-03 for every mix not yet done (all folders are checked before any work); return the folders."""
    from .pipeline import run_pipeline

    chosen = _chosen(study, mixes)
    status = {mix: mix_status(study, mix, out_dir) for mix in chosen}
    for mix in chosen:
        run_dir = study.run_dir(mix, out_dir)
        if status[mix] == "done":
            print(f"[{study.name}] {mix}: done, skipped ({run_dir})", flush=True)
            continue
        print(f"[{study.name}] {mix}: running notebooks 01-03 into {run_dir}", flush=True)
        started = time.perf_counter()
        run_pipeline(study.profile, str(run_dir), None, study.mix_overrides(mix), NOTEBOOKS, progress=progress)
        print(f"[{study.name}] {mix}: done in {time.perf_counter() - started:.0f} s", flush=True)
    return {mix: study.run_dir(mix, out_dir) for mix in chosen}


def commands(
    study: Study,
    out_dir: str | Path | None = None,
    accelerate_config: str = "configs/accelerate/fsdp.yaml",
    mixes: Sequence[str] | None = None,
) -> list[str]:
    """One shell line per mix, for a cluster job: assemble (01), `accelerate launch` the training, evaluate (03)."""
    lines = []
    for mix in _chosen(study, mixes):
        run_dir = shlex.quote(_shown(study.run_dir(mix, out_dir)))
        sets = " ".join(f"--set {shlex.quote(f'{key}={_flow(value)}')}" for key, value in study.mix_overrides(mix).items())
        pipeline = f"python -m medtune_utils.pipeline --profile {shlex.quote(study.profile)} --run-dir {run_dir} {sets}".rstrip()
        launch = f"accelerate launch --config_file {shlex.quote(accelerate_config)} -m medtune_utils.train --run-dir {run_dir}"
        lines.append(f"{pipeline} --only 01 && {launch} && {pipeline} --only 03")
    return lines


def _dotted(data: dict[str, Any], key: str) -> Any:
    """The value at a dotted key of a nested dict, or None."""
    for part in key.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def _chosen(study: Study, mixes: Sequence[str] | None) -> list[str]:
    unknown = sorted(set(mixes or ()) - set(study.mixes))
    if unknown:
        raise ConfigError(f"study {study.name!r} has no mix {', '.join(unknown)} (mixes: {', '.join(study.mixes)})")
    return [mix for mix in study.mixes if mixes is None or mix in mixes]


def _flow(value: Any) -> str:
    """A value as one-line YAML that `config.parse_set_args` reads back to the same value."""
    return yaml.safe_dump(value, default_flow_style=True, width=1 << 20).strip().removesuffix("...").strip()


def _shown(path: Path) -> str:
    """`path` relative to the repository root when inside it (commands are run from there)."""
    return str(path.relative_to(repo_root())) if path.is_relative_to(repo_root()) else str(path)


# ---------------------------------------------------------------- compute estimate


def compute_estimate(study: Study, stats: pd.DataFrame, parameters: float) -> pd.DataFrame:
    """Training rows, tokens and FLOPs of each mix, from a `stats.csv` of the whole data (every source uncapped).

    Per source a mix trains on `min(cap, rows_read)` rows of `prompt_tokens + completion_tokens + 1` (eos) tokens on
    average, for `train.num_train_epochs` epochs; FLOPs are 6 x `parameters` x tokens (forward and backward, no
    recomputation). Sources the stats lack (absent data) are left out and named in `missing`.
    """
    train = stats[stats.split == "train"].set_index("source")
    records = []
    for mix in study.mixes:
        profile = study.mix_profile(mix)
        sources = profile.data.sources if profile.data.sources is not None else list(train.index)
        caps = profile.data.train_rows
        rows = tokens = 0.0
        for source in (s for s in sources if s in train.index):
            cap = caps.get(source, caps.get("default"))
            n = train.loc[source, "rows_read"] if cap is None else min(cap, train.loc[source, "rows_read"])
            rows += n
            tokens += n * (train.loc[source, "prompt_tokens"] + train.loc[source, "completion_tokens"] + 1)
        epochs = profile.train.num_train_epochs
        missing = ", ".join(s for s in sources if s not in train.index)
        records.append(
            {
                "mix": mix,
                "train_rows": int(rows),
                "tokens": tokens * epochs,
                "flops": 6 * parameters * tokens * epochs,
                "missing": missing,
            }
        )
    frame = pd.DataFrame(records)
    reference = frame.set_index("mix").loc[study.reference, "tokens"]
    return frame.assign(share_of_reference=frame.tokens / reference if reference else np.nan)


def estimate_table(study: Study, stats: pd.DataFrame, tflops: float = 989.0, utilisation: float = 0.4) -> pd.DataFrame:
    """`compute_estimate` for the study's base model (parameters counted on the meta device) as a readable table, with
    GPU-hours at `utilisation` of `tflops` dense bf16 TFLOP/s (989: an H100 SXM)."""
    from .modeling import meta_model

    profile = load_profile(study.profile)
    parameters = float(sum(p.numel() for p in meta_model(profile.model.base, profile.model.tiny).parameters()))
    frame = compute_estimate(study, stats, parameters)
    return pd.DataFrame(
        {
            "mix": frame.mix,
            "train rows": frame.train_rows,
            "tokens (M, all epochs)": (frame.tokens / 1e6).round(1),
            "PFLOP": (frame.flops / 1e15).round(0).astype(int),
            f"GPU-hours ({tflops:g} TFLOP/s at {utilisation:.0%})": (frame.flops / (tflops * 1e12 * utilisation) / 3600).round(2),
            f"share of {study.reference}": frame.share_of_reference.round(2),
            "sources without data": frame.missing,
        }
    )


# ---------------------------------------------------------------- aggregation


def headline_rows(run: Run, model: str) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """Per source of one run's `model`: (task family, headline metric, {row id: its per-row headline statistic})."""
    from .evaluate import score_predictions
    from .tasks import TASKS, get_task

    predictions = run.predictions([model])
    if predictions.empty:
        return {}
    ner_format = run.config().get("data", {}).get("ner_format", "lines")
    records = predictions.to_dict("records")
    sources = {r["source"] for r in records if r["source"] in TASKS}
    templates = {r["source"]: r["template"] for r in records}
    tasks = {source: get_task(source, ner_format, templates[source]) for source in sources}
    records = [r for r in records if r["source"] in tasks]
    scores, rows = score_predictions(records, tasks, samples=0, seed=0)
    out = {}
    for source, entry in scores.items():
        ids = [r["id"] for r in records if r["source"] == source]
        out[source] = (entry["task"], entry["headline"], dict(zip(ids, rows[source])))
    return out


def compare_mixes(study: Study, out_dir: str | Path | None = None, samples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Every source's headline metric per mix minus the reference mix's, in points, with a paired bootstrap interval.

    Pairs are the evaluation rows (by id) that both mixes scored; `n` counts them. A mix without scores is left out.
    """
    runs = {mix: Run(study.run_dir(mix, out_dir)) for mix in study.mixes}
    scored = {mix: headline_rows(run, study.model) for mix, run in runs.items() if run.has_scores()}
    if study.reference not in scored:
        raise FileNotFoundError(f"{runs[study.reference].dir}: the reference mix {study.reference!r} has no scores yet")
    records = []
    for mix, by_source in scored.items():
        for source, (task, metric, rows) in by_source.items():
            ref = scored[study.reference].get(source)
            if ref is None:
                continue
            shared = sorted(set(rows) & set(ref[2]))
            a = np.array([ref[2][i] for i in shared])
            b = np.array([rows[i] for i in shared])
            full = np.arange(len(shared))
            test = paired_bootstrap(row_statistic(a), row_statistic(b), len(shared), samples, seed)
            value = row_statistic(b)(full) if shared else float("nan")
            reference_value = row_statistic(a)(full) if shared else float("nan")
            records.append(
                {
                    "mix": mix,
                    "source": source,
                    "task": task,
                    "metric": metric,
                    "value": 100 * value,
                    "reference_value": 100 * reference_value,
                    **{key: 100 * test[key] for key in ("delta", "low", "high")},
                    "p_value": test["p_value"],
                    "n": len(shared),
                }
            )
    return pd.DataFrame(records, columns=DELTA_COLUMNS)


def aggregate(
    study: Study, out_dir: str | Path | None = None, samples: int = 1000, seed: int = 0
) -> tuple[pd.DataFrame, list[Path]]:
    """Write the study's table (Markdown, LaTeX, CSV) and figure (PNG, PDF) into `<out_dir>/figures/`."""
    from . import figures, tables

    deltas = compare_mixes(study, out_dir, samples, seed)
    folder = resolve(out_dir or f"results/{study.name}") / FIGURES
    table = tables.composition_study_table(deltas, study.reference, list(study.mixes))
    caption = (
        f"Composition study {study.name!r} ({study.profile}, model {study.model}): headline metric of mix {study.reference!r} "
        "(percent) and each other mix's difference from it (points) with its paired bootstrap 95% interval."
    )
    files = tables.save_table(table, folder, STUDY_NAME, caption)
    files += figures.save_figure(figures.plot_composition_study(deltas, study.reference, list(study.mixes)), folder, STUDY_NAME)
    return deltas, files


# ---------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    """`python -m medtune_utils.sweep --study NAME`: run every unfinished mix, then aggregate."""
    parser = argparse.ArgumentParser(description="Run a composition study: notebooks 01-03 per mix, then one table and figure.")
    parser.add_argument("--study", required=True, help="study name in configs/studies/ or a YAML path")
    parser.add_argument("--out-dir", help="folder holding one run folder per mix (default: results/<study>)")
    parser.add_argument("--mix", nargs="+", metavar="NAME", help="only these mixes")
    parser.add_argument("--print-commands", action="store_true", help="print one cluster command per mix instead of running")
    parser.add_argument("--accelerate-config", default="configs/accelerate/fsdp.yaml", help="for --print-commands")
    parser.add_argument("--aggregate-only", action="store_true", help="only write the table and figure of finished mixes")
    parser.add_argument("--bootstrap-samples", type=int, default=1000, help="paired bootstrap resamples (default 1000)")
    parser.add_argument(
        "--estimate",
        metavar="STATS_CSV",
        help="print each mix's training rows, tokens and FLOPs from a stats.csv of uncapped data",
    )
    args = parser.parse_args(argv)
    from .pipeline import NotebookFailed

    try:
        study = load_study(args.study)
        if args.estimate:
            print(estimate_table(study, pd.read_csv(resolve(args.estimate))).to_markdown(index=False))
            return 0
        if args.print_commands:
            print("\n".join(commands(study, args.out_dir, args.accelerate_config, args.mix)))
            return 0
        if not args.aggregate_only:
            run_study(study, args.out_dir, args.mix, progress=False)
        _, files = aggregate(study, args.out_dir, args.bootstrap_samples)
    except (ConfigError, FileNotFoundError, NotebookFailed, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(str(p) for p in files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
