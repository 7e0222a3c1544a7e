"""The run folder `results/<run>/`: the one object that knows its layout and reads and writes every artifact in it.

Every step (assembly, training, evaluation, reporting, the pipeline) goes through `Run`; no other module spells a
file name of the layout. Writes are atomic: a crash never leaves a half-written artifact behind.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .config import ConfigError, Profile, load_profile, load_yaml, save_profile
from .io import (
    atomic_dir,
    clean_interrupted_writes,
    read_jsonl,
    settings_hash,
    write_json_atomic,
    write_jsonl_atomic,
    write_text_atomic,
)
from .locking import exclusive_lock, lock_holder
from .paths import resolve
from .records import DataFormatError

if TYPE_CHECKING:
    from datasets import DatasetDict

CONFIG = "config.yaml"
ENV = "env.json"
DATA = "data"
STATS = "stats.csv"
TOKEN_COUNTS = "token_counts.json"  # token lengths per unique text, cached with the dataset (assemble.TokenCounter)
MANIFEST = "manifest.json"
DATASET_MARKER = "dataset_dict.json"
BASE_MODEL = "base-model"
CHECKPOINTS = "checkpoints"
RECIPE = "recipe.json"
MODEL = "model"
STAGING = ".model.staging"
TRAIN_LOG = "train_log.jsonl"
MODEL_CARD = "README.md"
PREDICTIONS = "predictions"
SCORES = "scores.json"
FIGURES = "figures"
NOTEBOOKS = "notebooks"
ENCODERS = "encoders"
ANALYSIS = "analysis"  # error analysis of the current predictions (medtune_utils.analysis), one CSV per table
CONFUSION = "confusion"
NER_ERRORS = "ner_errors"
MALFORMED_SHAPES = "malformed_shapes"
BUDGET_HITS = "budget_hits"
LOCK = ".lock"
SPLITS = ("train", "validation")

# Which profile sections each step's outputs depend on, and the step each one reads from.
STEP_INPUTS: dict[str, tuple[str, ...]] = {
    "assemble": ("seed", "data"),
    "finetune": ("seed", "data", "model", "lora", "train"),
    "evaluate": ("seed", "data", "model", "lora", "train", "eval"),
}
UPSTREAM = {"finetune": "assemble", "evaluate": "finetune"}

PREDICTION_COLUMNS = (
    "id",
    "source",
    "task",
    "group",
    "input",
    "prompt",
    "generation",
    "prediction",
    "gold",
    "well_formed",
    "budget",
    "hit_budget",
    "template",
    "model",
)


class Run:
    """One run folder: its resolved profile, environment record, data, training log, models, predictions, scores."""

    def __init__(self, run_dir: str | Path) -> None:
        self.dir = resolve(run_dir)

    def __repr__(self) -> str:
        return f"Run({str(self.dir)!r})"

    @property
    def name(self) -> str:
        """A short label for tables and figures: the folder's name."""
        return self.dir.name

    # ------------------------------------------------------------ locations

    @property
    def data_dir(self) -> Path:
        return self.dir / DATA

    @property
    def token_counts_path(self) -> Path:
        """The token-length cache of the assembly's texts, beside the dataset it was counted for."""
        return self.data_dir / TOKEN_COUNTS

    @property
    def base_model_dir(self) -> Path:
        """The tiny base model built from the run's own training text (tiny profiles only)."""
        return self.dir / BASE_MODEL

    @property
    def checkpoints_dir(self) -> Path:
        return self.dir / CHECKPOINTS

    @property
    def model_dir(self) -> Path:
        """The fine-tuned model (or LoRA adapters) with tokenizer, generation config and model card."""
        return self.dir / MODEL

    @property
    def staging_dir(self) -> Path:
        """Where every process saves its part of the model before the main process moves it into `model_dir`."""
        return self.dir / STAGING

    @property
    def figures_dir(self) -> Path:
        return self.dir / FIGURES

    @property
    def notebooks_dir(self) -> Path:
        return self.dir / NOTEBOOKS

    def model_location(self, name: str, base: str) -> str:
        """Where model `name` lives: `base` (the profile's base model), `tuned` (this run's model) or a path/hub id."""
        from .modeling import is_tiny

        if name == "base":
            return str(self.base_model_dir) if is_tiny(base) else base
        if name == "tuned":
            return str(self.model_dir)
        return name

    # ------------------------------------------------------------ lock and crash debris

    @property
    def lock_path(self) -> Path:
        return self.dir / LOCK

    def lock_holder(self) -> dict[str, Any] | None:
        """Who holds (or last held without releasing) the lock: pid, host, step, since; None when free."""
        return lock_holder(self.lock_path)

    @contextmanager
    def lock(self, step: str, active: bool = True) -> Iterator[None]:
        """Hold the run folder's exclusive lock while `step` runs, after cleaning the debris of interrupted writes.

        A second process stops at once with `RunLockedError` naming the holder; a lock left by a killed process is
        taken over with a warning (`medtune_utils.locking`). Re-entrant within a process. `active=False` (the other
        ranks of a launch, whose main process holds it) skips it.
        """
        if not active:
            yield
            return
        with exclusive_lock(self.lock_path, step, self.dir) as taken:
            if taken:
                self.clean_stale_temps()
            yield

    def clean_stale_temps(self) -> list[Path]:
        """Remove what interrupted atomic writes left in the folders the locked steps write (call it holding the lock).

        `figures/` and `notebooks/` are left alone: the report and the pipeline write there without the lock.
        """
        predictions = self.dir / PREDICTIONS
        folders = [self.dir, self.data_dir, self.checkpoints_dir, predictions]
        folders += [p for p in predictions.glob("*") if p.is_dir() and not p.name.startswith(".")]
        folders += [p for p in (self.dir / ENCODERS).glob("*") if p.is_dir() and not p.name.startswith(".")]
        return clean_interrupted_writes(folders)

    # ------------------------------------------------------------ profile and environment

    def config(self) -> dict[str, Any]:
        """The resolved profile as written to `config.yaml`, as a plain dict (empty before the first step)."""
        path = self.dir / CONFIG
        return load_yaml(path.read_text(encoding="utf-8")) or {} if path.is_file() else {}

    def profile(self, overrides: dict[str, Any] | str | None = None) -> Profile:
        """The profile this run was made with (its `config.yaml`), with `overrides` applied."""
        path = self.dir / CONFIG
        if not path.is_file():
            raise FileNotFoundError(f"{self.dir}: no {CONFIG}; run notebooks/01_assemble_instructions.ipynb first")
        return load_profile(path, overrides)

    def env(self) -> dict[str, Any]:
        """`env.json`: versions, commit, seed and, per step, when it finished and the hashes of its inputs."""
        path = self.dir / ENV
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    def step(self, name: str) -> dict[str, Any] | None:
        """What `env.json` recorded for a finished step, or None."""
        return self.env().get("steps", {}).get(name)

    def record_step(self, step: str, profile: Profile, extra: dict[str, Any] | None = None) -> None:
        """Write `config.yaml` and add this step (time, environment, inputs' hashes) to `env.json`."""
        from .environment import environment

        self.dir.mkdir(parents=True, exist_ok=True)
        save_profile(profile, self.dir / CONFIG)
        env = self.env()
        hashes = section_hashes(profile)
        env.setdefault("steps", {})[step] = {
            "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "profile": profile.name,
            "inputs": {key: hashes[key] for key in STEP_INPUTS[step]},
            **(extra or {}),
        }
        env["seed"] = profile.seed
        env.update(environment())
        write_json_atomic(self.dir / ENV, env)

    def check_upstream(self, step: str, profile: Profile) -> None:
        """Refuse to run `step` on outputs made from different settings (it would mix results)."""
        upstream = UPSTREAM.get(step)
        recorded = self.step(upstream) if upstream else None
        if recorded is None:
            return
        current = section_hashes(profile)
        changed = [key for key, value in recorded["inputs"].items() if current.get(key) != value]
        if changed:
            raise ConfigError(
                f"{self.dir}: its {upstream} step ran with different {', '.join(changed)} settings than this one "
                f"(see {self.dir / CONFIG}); rerun {upstream} first or use another run_dir"
            )

    # ------------------------------------------------------------ data (notebook 01)

    def save_data(self, dataset: DatasetDict, stats: pd.DataFrame, manifest: dict[str, Any]) -> Path:
        """Write Arrow (`save_to_disk`), JSONL exports, `stats.csv` and `manifest.json` into `data/`, atomically."""
        with atomic_dir(self.data_dir) as tmp:
            dataset.save_to_disk(str(tmp))
            for split in SPLITS:
                write_jsonl_atomic(tmp / f"{split}.jsonl", dataset[split].to_list())
            write_text_atomic(tmp / STATS, stats.to_csv(index=False))
            write_json_atomic(tmp / MANIFEST, manifest)
        return self.data_dir

    def has_data(self) -> bool:
        return (self.data_dir / DATASET_MARKER).is_file()

    def dataset(self) -> DatasetDict:
        """The instruction dataset, with a clear error when notebook 01 has not run or its Arrow files are damaged."""
        from datasets import load_from_disk

        if not self.has_data():
            raise FileNotFoundError(
                f"no instruction dataset in {self.data_dir}: run notebooks/01_assemble_instructions.ipynb first"
            )
        try:
            return load_from_disk(str(self.data_dir))
        except (OSError, ValueError) as exc:
            reason = " ".join(str(exc).split())
            message = f"unreadable Arrow data ({reason}); rebuild it: rerun notebooks/01_assemble_instructions.ipynb"
            raise DataFormatError(_damaged_arrow_file(self.data_dir), None, message) from exc

    def stats(self) -> pd.DataFrame:
        """Rows and lengths per source and split (`stats.csv`); empty before notebook 01."""
        path = self.data_dir / STATS
        return pd.read_csv(path) if path.is_file() else pd.DataFrame()

    def update_stats(self, counts: pd.DataFrame) -> None:
        """Set the columns of `counts` in `stats.csv`, matched on source and split (0 for rows `counts` lacks)."""
        stats = self.stats()
        if stats.empty:
            return
        keys = ["source", "split"]
        added = [c for c in counts.columns if c not in keys]
        merged = stats.drop(columns=added, errors="ignore").merge(counts, on=keys, how="left")
        merged[added] = merged[added].fillna(0).astype(int)
        write_text_atomic(self.data_dir / STATS, merged.to_csv(index=False))

    def manifest(self) -> dict[str, Any]:
        """The notices shown and the raw files (with hashes) read by the assembly."""
        path = self.data_dir / MANIFEST
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    def export_path(self, split: str) -> Path:
        """The JSON Lines export of one split (for tools that do not read Arrow)."""
        return self.data_dir / f"{split}.jsonl"

    # ------------------------------------------------------------ training (notebook 02)

    def train_log(self) -> list[dict[str, Any]]:
        """The training log records (loss, learning rate, grad norm, tokens/s per logging step); empty before 02."""
        path = self.dir / TRAIN_LOG
        return list(read_jsonl(path)) if path.is_file() else []

    def append_train_log(self, record: dict[str, Any]) -> None:
        """Add one record to the training log (main process only)."""
        with (self.dir / TRAIN_LOG).open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def trim_train_log(self, step: int) -> None:
        """Keep only the log records up to `step` (none when training starts from scratch)."""
        path = self.dir / TRAIN_LOG
        if path.is_file():
            write_jsonl_atomic(path, [r for r in read_jsonl(path) if r["step"] <= step])

    def recipe(self) -> dict[str, str] | None:
        """The settings hashes that the checkpoints were written with, or None."""
        path = self.checkpoints_dir / RECIPE
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def reset_checkpoints(self, recipe: dict[str, str]) -> None:
        """Start training afresh: clear checkpoints and the old model, and record the recipe of the new checkpoints."""
        shutil.rmtree(self.checkpoints_dir, ignore_errors=True)
        shutil.rmtree(self.model_dir, ignore_errors=True)
        self.checkpoints_dir.mkdir(parents=True)
        write_json_atomic(self.checkpoints_dir / RECIPE, recipe)

    def has_model(self) -> bool:
        """Whether `model/` is complete (its model card is written last)."""
        return (self.model_dir / MODEL_CARD).is_file()

    # ------------------------------------------------------------ predictions and scores (notebook 03)

    def write_predictions(self, model: str, records: Sequence[dict[str, Any]]) -> Path:
        """Replace model `model`'s whole prediction set (one JSONL per source) atomically: no stale source remains."""
        by_source: dict[str, list[dict[str, Any]]] = {}
        for record in records:
            by_source.setdefault(record["source"], []).append({key: record[key] for key in PREDICTION_COLUMNS})
        folder = self.dir / PREDICTIONS / model
        with atomic_dir(folder) as tmp:
            for source, rows in by_source.items():
                write_jsonl_atomic(tmp / f"{source}.jsonl", rows)
        return folder

    def prediction_models(self) -> list[str]:
        """Models whose predictions belong to the current scores (those in `scores.json`), else every folder present."""
        if self.has_scores():
            return list(self.scores().get("models", {}))
        folder = self.dir / PREDICTIONS
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) if folder.is_dir() else []

    def predictions(self, models: Iterable[str] | None = None, sources: Iterable[str] | None = None) -> pd.DataFrame:
        """Prediction records as a frame with `PREDICTION_COLUMNS`, for the given (default: current) models and sources."""
        wanted = set(sources) if sources is not None else None
        rows: list[dict[str, Any]] = []
        for model in models if models is not None else self.prediction_models():
            folder = self.dir / PREDICTIONS / model
            if not folder.is_dir():
                continue
            for file in sorted(folder.glob("*.jsonl")):
                if wanted is None or file.stem in wanted:
                    rows.extend(read_jsonl(file))
        return pd.DataFrame(rows, columns=list(PREDICTION_COLUMNS))

    @property
    def scores_path(self) -> Path:
        return self.dir / SCORES

    def write_scores(self, scores: dict[str, Any]) -> Path:
        write_json_atomic(self.dir / SCORES, scores)
        return self.dir / SCORES

    def has_scores(self) -> bool:
        return (self.dir / SCORES).is_file()

    def scores(self) -> dict[str, Any]:
        """`scores.json`: per model and source, metric values, n, malformed rate, intervals; paired comparisons."""
        if not self.has_scores():
            raise FileNotFoundError(f"no {SCORES} in {self.dir}: run notebooks/03_evaluate.ipynb first")
        return json.loads((self.dir / SCORES).read_text(encoding="utf-8"))

    def merge_scores(self, models: dict[str, Any], fresh: dict[str, Any]) -> Path:
        """Add or replace the scores of `models` in `scores.json`, keeping every other model's and the comparisons.

        `fresh` holds the top-level fields (run, profile, eval_split, source_splits) used when no scores exist yet;
        its `source_splits` are added to the file's.
        """
        scores = self.scores() if self.has_scores() else {**fresh, "models": {}, "comparisons": []}
        scores.setdefault("models", {}).update(models)
        scores.setdefault("source_splits", {}).update(fresh.get("source_splits", {}))
        return self.write_scores(scores)

    # ------------------------------------------------------------ encoder baselines (notebook 06)

    def encoder_dir(self, model: str) -> Path:
        """What encoder baseline `model` keeps besides its predictions and scores (its training log)."""
        return self.dir / ENCODERS / model

    def write_encoder_log(self, model: str, records: Sequence[dict[str, Any]]) -> Path:
        """Replace encoder baseline `model`'s training log (loss per logging step, one record per source and step)."""
        return write_jsonl_atomic(self.encoder_dir(model) / TRAIN_LOG, records)

    def encoder_scores(self) -> dict[str, Any]:
        """The scores in `scores.json` of encoder baselines (models with an encoder folder), which evaluation keeps."""
        if not self.has_scores():
            return {}
        return {name: value for name, value in self.scores()["models"].items() if self.encoder_dir(name).is_dir()}

    def encoder_log(self, model: str) -> list[dict[str, Any]]:
        """Encoder baseline `model`'s training log; empty before notebook 06 trained it."""
        path = self.encoder_dir(model) / TRAIN_LOG
        return list(read_jsonl(path)) if path.is_file() else []

    # ------------------------------------------------------------ error analysis (notebook 03)

    @property
    def analysis_dir(self) -> Path:
        return self.dir / ANALYSIS

    def write_analysis(self, tables: dict[str, pd.DataFrame]) -> Path:
        """Replace the whole error analysis: `analysis/<name>.csv` per table (names may hold `/`), atomically."""
        with atomic_dir(self.analysis_dir) as tmp:
            for name, table in tables.items():
                write_text_atomic(tmp / f"{name}.csv", table.to_csv(index=False))
        return self.analysis_dir

    def analysis(self, name: str) -> pd.DataFrame:
        """One table of the error analysis by name (e.g. `budget_hits`, `confusion/tuned/GAD`); empty when absent."""
        path = self.analysis_dir / f"{name}.csv"
        return pd.read_csv(path, keep_default_na=False) if path.is_file() else pd.DataFrame()

    # ------------------------------------------------------------ notebooks and figures

    def executed_notebook(self, name: str) -> Path:
        """Where the pipeline keeps the executed copy of notebook `name`."""
        return self.notebooks_dir / f"{name}.ipynb"


def section_hashes(
    profile: Profile, sections: Iterable[str] | None = None, drop: dict[str, Iterable[str]] | None = None
) -> dict[str, str]:
    """A short hash of each top-level profile section (or of `sections`), leaving out the keys named in `drop`."""
    data = profile.to_dict()
    out = {}
    for key in sections if sections is not None else data:
        value = data[key]
        if drop and key in drop and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k not in set(drop[key])}
        out[key] = settings_hash(value)
    return out


def _damaged_arrow_file(folder: Path) -> Path:
    """The first Arrow file under `folder` that pyarrow cannot read through, else the folder itself."""
    import pyarrow as pa

    for path in sorted(folder.rglob("*.arrow")):
        try:
            with pa.memory_map(str(path)) as source:
                pa.ipc.open_stream(source).read_all()
        except (OSError, ValueError):
            return path
    return folder
