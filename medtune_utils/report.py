"""The whole report: every table and figure of some run folders beside the paper's numbers, and its command line.

`python -m medtune_utils.report --out DIR [RUN_DIR ...] [--only NAME ...] [--paper CSV]`. Runs are read only
through `Run`; an absent run, model or task shows as absent (an empty cell, a note in the figure), never as a crash.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from . import figures, tables
from .paths import repo_root, resolve
from .run import Run

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

PAPER_RESULTS = "data/reference/paper_results.csv"
REPO_FIGURES = "figures"  # committed to git: never render a credentialed source's text here
MAIN_CAPTION = (
    "Main results: the paper's numbers beside ours (percent; 95% bootstrap intervals in brackets; splits named). "
    "NER: the paper's Llama2-MedTuned numbers come from the authors' scorer (tokens keyed by their text, so repeated "
    "tokens collapse; seqeval's default mode) and sit in the F1 (authors' scorer) row beside our f1_authors; our "
    "headline F1 (strict) reads tags by position; BioBERT's numbers compare with F1 (lenient)."
)
REPORT_ITEMS = (
    "main_results",
    "results",
    "composition",
    "per_label_hoc",
    "per_label_i2b2_2010",
    "malformed",
    "gains",
    "training_curves",
    "generation_lengths",
    "sample_outputs",
)
SCORE_COLUMNS = [
    "run",
    "model",
    "source",
    "task",
    "metric",
    "headline",
    "value",
    "ci_low",
    "ci_high",
    "n",
    "malformed_rate",
    "split",
    "majority",
]
COMPARISON_COLUMNS = ["run", "source", "task", "metric", "split", "model_a", "model_b", "delta", "low", "high", "p_value"]
RunLike = str | Path | Run


@dataclass
class Report:
    """What `build_report` wrote, and the tables for display."""

    files: list[Path] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


# ---------------------------------------------------------------- reading runs


def as_runs(runs: Iterable[RunLike]) -> list[Run]:
    """Each run folder as a `Run` (a `Run` is kept as it is)."""
    return [run if isinstance(run, Run) else Run(run) for run in runs]


def scored_runs(runs: Iterable[RunLike]) -> list[Run]:
    """The runs that have scores; the others are logged and shown as absent."""
    kept = []
    for run in as_runs(runs):
        if run.has_scores():
            kept.append(run)
        else:
            log.warning("no scores in %s: run shown as absent", run.dir)
    return kept


def load_paper_results(path: str | Path | None = None) -> pd.DataFrame:
    """The paper's reported numbers (`data/reference/paper_results.csv`); empty values stay NaN.

    `value_text` keeps each number exactly as written (`37.20`), so tables reprint it without reformatting.
    """
    paper = pd.read_csv(resolve(path or PAPER_RESULTS), dtype={"value": str})
    paper["value_text"] = paper.value.fillna("").astype(str).str.strip()
    paper["value"] = pd.to_numeric(paper.value_text.where(paper.value_text != "")).astype(float)
    return paper


def _split(scores: dict[str, Any], source: str) -> str:
    return scores.get("source_splits", {}).get(source, scores.get("eval_split", ""))


def collect_scores(runs: Iterable[RunLike]) -> pd.DataFrame:
    """One row per run, model, source and numeric metric (percent), with interval, n, malformed rate and split."""
    rows = []
    for run in scored_runs(runs):
        scores = run.scores()
        for model, sources in scores.get("models", {}).items():
            for source, entry in sources.items():
                for metric, value in entry["metrics"].items():
                    if not isinstance(value, (int, float)) or metric in {"headline", "abstracts"}:
                        continue
                    low, high = entry.get("intervals", {}).get(metric, [np.nan, np.nan])
                    rows.append(
                        {
                            "run": run.name,
                            "model": model,
                            "source": source,
                            "task": entry["task"],
                            "metric": metric,
                            "headline": metric == entry["headline"],
                            "value": 100 * value,
                            "ci_low": 100 * low,
                            "ci_high": 100 * high,
                            "n": entry["n"],
                            "malformed_rate": 100 * entry["malformed_rate"],
                            "split": _split(scores, source),
                            "majority": _majority(entry, metric),
                        }
                    )
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def _majority(entry: dict[str, Any], metric: str) -> float:
    """The majority-class reference (percent) of a classification source's headline metric; NaN for other metrics."""
    majority = entry.get("majority")
    return 100 * majority["value"] if majority and majority.get("metric") == metric else np.nan


def collect_per_label(runs: Iterable[RunLike]) -> pd.DataFrame:
    """Per-label F1 (percent): one row per run, model, source and label."""
    rows = [
        {"run": run.name, "model": model, "source": source, "label": label, "value": 100 * value}
        for run in as_runs(runs)
        if run.has_scores()
        for model, sources in run.scores().get("models", {}).items()
        for source, entry in sources.items()
        for label, value in entry["metrics"].get("per_label_f1", {}).items()
    ]
    return pd.DataFrame(rows, columns=["run", "model", "source", "label", "value"])


def collect_comparisons(runs: Iterable[RunLike]) -> pd.DataFrame:
    """Paired differences between models (percentage points) on the headline metric, from each run's scores."""
    rows = []
    for run in as_runs(runs):
        if not run.has_scores():
            continue
        scores = run.scores()
        for comparison in scores.get("comparisons", []):
            entry = scores["models"][comparison["model_b"]][comparison["source"]]
            rows.append(
                {
                    "run": run.name,
                    **comparison,
                    "task": entry["task"],
                    "metric": entry["headline"],
                    "split": _split(scores, comparison["source"]),
                    **{k: 100 * comparison[k] for k in ("delta", "low", "high")},
                }
            )
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def collect_predictions(runs: Iterable[RunLike]) -> pd.DataFrame:
    """Every prediction record of every run's current models, with its `run` and generation length in `words`."""
    frames = [frame.assign(run=run.name) for run in as_runs(runs) if not (frame := run.predictions()).empty]
    if not frames:
        return pd.DataFrame()
    frame = pd.concat(frames, ignore_index=True)
    return frame.assign(words=frame.generation.str.split().str.len())


def collect_train_logs(runs: Iterable[RunLike]) -> dict[str, pd.DataFrame]:
    """Each run's training log as a frame (runs without one are left out)."""
    return {run.name: pd.DataFrame(records) for run in as_runs(runs) if (records := run.train_log())}


def first_stats(runs: Iterable[RunLike]) -> pd.DataFrame:
    """The data statistics of the first run that has them (empty when none has)."""
    return next((stats for run in as_runs(runs) if not (stats := run.stats()).empty), pd.DataFrame())


def is_public(source: str) -> bool:
    """Whether a source's text may be shown in committed files: a registered source that is not credentialed."""
    from .tasks import TASKS

    return source in TASKS and not TASKS[source].credentialed


def in_repository_figures(out_dir: str | Path) -> bool:
    """Whether `out_dir` is (inside) the repository's committed `figures/` folder."""
    return resolve(out_dir).is_relative_to(repo_root() / REPO_FIGURES)


def sample_examples(run: RunLike, public_only: bool = False) -> pd.DataFrame:
    """One NER and one RE example (the paper's Figures 4 and 5), else whatever sources exist.

    `public_only` leaves out credentialed sources (MedNLI, i2b2) and unregistered ones: their licensed text must never
    reach a committed file.
    """
    examples = tables.side_by_side(run, per_source=1)
    if public_only and not examples.empty:
        examples = examples[examples.source.map(is_public).astype(bool)].reset_index(drop=True)
    if examples.empty:
        return examples
    from .tasks import TASKS

    families = {s: TASKS[s].family for s in examples.source if s in TASKS}
    chosen = [next((s for s, f in families.items() if f == family), None) for family in ("ner", "re")]
    chosen = [s for s in chosen if s] or list(examples.source[:2])
    return examples[examples.source.isin(chosen)].reset_index(drop=True)


# ---------------------------------------------------------------- the report


def build_report(
    run_dirs: Sequence[RunLike],
    out_dir: str | Path,
    paper_path: str | Path | None = None,
    only: Sequence[str] | None = None,
) -> Report:
    """Every table and figure for `run_dirs` (each may be absent) beside the paper's numbers, into `out_dir`.

    With no run folders at all, only what the paper's numbers alone make is written (the main table and the
    results figure), so that `figures/` never holds placeholders. `only` restricts the output to the named
    tables and figures (e.g. `composition` for a run that has assembled data but no model yet). Into the repository's
    `figures/`, the sample outputs show public sources only (a run's own figures folder shows every source).
    """
    unknown = sorted(set(only or ()) - set(REPORT_ITEMS))
    if unknown:
        raise ValueError(f"unknown report item(s) {', '.join(unknown)}; expected some of {', '.join(REPORT_ITEMS)}")
    wanted = set(only or REPORT_ITEMS)
    runs = as_runs(run_dirs)
    paper = load_paper_results(paper_path)
    ours = collect_scores(runs)
    report = Report()
    for name, (make, caption) in _tables(runs, ours, paper).items():
        if name in wanted:
            report.tables[name] = make()
            report.files += tables.save_table(report.tables[name], out_dir, name, caption)
    for name, plot in _figures(runs, ours, paper, in_repository_figures(out_dir)).items():
        if name in wanted:
            report.files += figures.save_figure(plot(), out_dir, name)
    return report


def _tables(runs: list[Run], ours: pd.DataFrame, paper: pd.DataFrame) -> dict[str, tuple[Callable[[], pd.DataFrame], str]]:
    """Each table's maker and caption; with no runs, only the main table."""
    made = {"main_results": (lambda: tables.main_results_table(ours, paper), MAIN_CAPTION)}
    if not runs:
        return made
    return made | {
        "composition": (
            lambda: tables.composition_table(first_stats(runs)),
            "Instruction dataset composition (rows per source).",
        ),
        "per_label_hoc": (
            lambda: tables.per_label_table(collect_per_label(runs), "HoC"),
            "HoC: per-hallmark F1 (percent), sentence level.",
        ),
        "per_label_i2b2_2010": (
            lambda: tables.per_label_table(collect_per_label(runs), "i2b2-2010"),
            "i2b2-2010: per-relation F1 (percent).",
        ),
        "malformed": (
            lambda: tables.malformed_table(ours),
            "Malformed generations (percent of rows whose answer broke the format).",
        ),
    }


def _figures(
    runs: list[Run], ours: pd.DataFrame, paper: pd.DataFrame, public_only: bool = False
) -> dict[str, Callable[[], Figure]]:
    """Each figure's maker; with no runs, only the results figure; sample outputs of public sources only if asked."""
    made = {"results": lambda: figures.plot_results(ours, paper)}
    if not runs:
        return made
    return made | {
        "composition": lambda: figures.plot_composition(first_stats(runs)),
        "gains": lambda: figures.plot_gains(collect_comparisons(runs)),
        "training_curves": lambda: figures.plot_training_curves(collect_train_logs(runs)),
        "generation_lengths": lambda: figures.plot_generation_lengths(collect_predictions(runs)),
        "sample_outputs": lambda: figures.plot_sample_outputs(sample_examples(runs[0], public_only)),
    }


def main(argv: list[str] | None = None) -> None:
    """`python -m medtune_utils.report --out DIR [RUN_DIR ...]`: with no runs, only the paper's numbers."""
    import argparse

    parser = argparse.ArgumentParser(description="Regenerate tables and figures from run folders and the paper's numbers.")
    parser.add_argument("runs", nargs="*", help="run folders (results/<run>)")
    parser.add_argument("--out", required=True, help="output folder, e.g. figures")
    parser.add_argument("--paper", default=None, help=f"paper numbers CSV (default: {PAPER_RESULTS})")
    parser.add_argument("--only", nargs="+", choices=REPORT_ITEMS, metavar="NAME", help="write only these tables/figures")
    args = parser.parse_args(argv)
    for path in build_report(args.runs, args.out, args.paper, args.only).files:
        print(path)


if __name__ == "__main__":
    main()
