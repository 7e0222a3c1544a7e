"""Tables (Markdown, LaTeX, CSV) and figures (PNG at 300 dpi and PDF) from run folders and the paper's numbers.

Every function takes run folders or data frames and tolerates what is missing: an absent run, model or
task shows as absent (an empty cell, a note in the figure), never as a crash.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import textwrap
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .evaluate import PREDICTIONS, SCORES
from .io import read_jsonl, write_text_atomic
from .paths import repo_root, resolve
from .runinfo import load_run_config
from .train import LOG_FILE

log = logging.getLogger(__name__)

PAPER_RESULTS = "data/reference/paper_results.csv"
FAMILY_ORDER = ("ner", "re", "nli", "cls", "qa")
FAMILY_NAMES = {"ner": "NER", "re": "Relation extraction", "nli": "NLI", "cls": "Classification", "qa": "QA / instructions"}
METRIC_NAMES = {
    "f1_strict": "F1 (strict)",
    "f1_lenient": "F1 (lenient)",
    "f1": "F1",
    "accuracy": "Accuracy",
    "micro_f1": "Micro-F1",
    "micro_f1_positive": "Micro-F1 (positive classes)",
    "macro_f1": "Macro-F1",
    "abstract_micro_f1": "Micro-F1 (per abstract)",
    "rouge_l": "ROUGE-L",
}
DPI = 300


def set_style() -> None:
    """One seaborn style for every figure: white grid, colour-blind-safe palette, readable fonts."""
    sns.set_theme(style="whitegrid", palette="colorblind", context="paper", font_scale=1.15)
    plt.rcParams.update({"figure.dpi": 100, "savefig.bbox": "tight", "axes.titleweight": "bold", "pdf.fonttype": 42})


def save_figure(fig: plt.Figure, out_dir: str | Path, name: str, close: bool = True) -> list[Path]:
    """Save `fig` as `<name>.png` (300 dpi) and `<name>.pdf`, each written atomically; close it unless asked not to."""
    out_dir = resolve(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix in ("png", "pdf"):
        path = out_dir / f"{name}.{suffix}"
        fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{name}.", suffix=f".{suffix}")
        os.close(fd)
        try:
            fig.savefig(tmp, dpi=DPI, format=suffix)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
        paths.append(path)
    if close:
        plt.close(fig)
    return paths


def save_table(table: pd.DataFrame, out_dir: str | Path, name: str, caption: str = "") -> list[Path]:
    """Save `table` as Markdown (with its caption), LaTeX (booktabs) and CSV."""
    out_dir = resolve(out_dir)
    shown = table.astype(object).where(table.notna(), "")
    markdown = (f"{caption}\n\n" if caption else "") + shown.to_markdown(index=False, disable_numparse=True) + "\n"
    latex = shown.to_latex(index=False, caption=caption or None, label=f"tab:{name}", escape=True)
    return [
        write_text_atomic(out_dir / f"{name}.md", markdown),
        write_text_atomic(out_dir / f"{name}.tex", latex),
        write_text_atomic(out_dir / f"{name}.csv", table.to_csv(index=False)),
    ]


# ---------------------------------------------------------------- data


def load_paper_results(path: str | Path | None = None) -> pd.DataFrame:
    """The paper's reported numbers (`data/reference/paper_results.csv`); empty values stay NaN.

    `value_text` keeps each number exactly as written (`37.20`), so tables reprint it without reformatting.
    """
    paper = pd.read_csv(resolve(path or PAPER_RESULTS), dtype={"value": str})
    paper["value_text"] = paper.value.fillna("").astype(str).str.strip()
    paper["value"] = pd.to_numeric(paper.value_text.where(paper.value_text != "")).astype(float)
    return paper


def run_label(run_dir: str | Path) -> str:
    """A short name for a run folder (its folder name)."""
    return resolve(run_dir).name


def collect_scores(run_dirs: Iterable[str | Path]) -> pd.DataFrame:
    """One row per run, model, source and metric from each run's `scores.json`; missing runs are skipped."""
    rows = []
    for run_dir in run_dirs:
        path = resolve(run_dir) / SCORES
        if not path.is_file():
            log.warning("no %s in %s: run shown as absent", SCORES, resolve(run_dir))
            continue
        scores = json.loads(path.read_text(encoding="utf-8"))
        splits = scores.get("source_splits", {})
        for model, sources in scores.get("models", {}).items():
            for source, entry in sources.items():
                for metric, value in entry["metrics"].items():
                    if not isinstance(value, (int, float)) or metric in {"headline", "abstracts"}:
                        continue
                    low, high = entry.get("intervals", {}).get(metric, [np.nan, np.nan])
                    rows.append(
                        {
                            "run": run_label(run_dir),
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
                            "split": splits.get(source, scores.get("eval_split", "")),
                        }
                    )
    return pd.DataFrame(rows, columns=_SCORE_COLUMNS)


_SCORE_COLUMNS = [
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
]


def collect_comparisons(run_dirs: Iterable[str | Path]) -> pd.DataFrame:
    """Paired base-vs-tuned differences (percentage points) from each run's `scores.json`."""
    rows = []
    for run_dir in run_dirs:
        path = resolve(run_dir) / SCORES
        if not path.is_file():
            continue
        scores = json.loads(path.read_text(encoding="utf-8"))
        splits = scores.get("source_splits", {})
        for comparison in scores.get("comparisons", []):
            entry = scores["models"][comparison["model_b"]][comparison["source"]]
            rows.append(
                {
                    "run": run_label(run_dir),
                    **comparison,
                    "task": entry["task"],
                    "metric": entry["headline"],
                    "split": splits.get(comparison["source"], scores.get("eval_split", "")),
                    **{k: 100 * comparison[k] for k in ("delta", "low", "high")},
                }
            )
    return pd.DataFrame(
        rows, columns=["run", "source", "task", "metric", "split", "model_a", "model_b", "delta", "low", "high", "p_value"]
    )


def collect_predictions(run_dirs: Iterable[str | Path]) -> pd.DataFrame:
    """Every prediction record of every run and model, with the generation length in words."""
    rows = []
    for run_dir in run_dirs:
        folder = resolve(run_dir) / PREDICTIONS
        if not folder.is_dir():
            continue
        for model_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
            for file in sorted(model_dir.glob("*.jsonl")):
                for record in read_jsonl(file):
                    rows.append(
                        {
                            "run": run_label(run_dir),
                            "model": model_dir.name,
                            "source": file.stem,
                            **record,
                            "words": len(record["generation"].split()),
                        }
                    )
    return pd.DataFrame(rows)


def collect_train_logs(run_dirs: Iterable[str | Path]) -> dict[str, pd.DataFrame]:
    """Each run's `train_log.jsonl` as a frame (runs without one are left out)."""
    logs = {}
    for run_dir in run_dirs:
        path = resolve(run_dir) / LOG_FILE
        if path.is_file():
            logs[run_label(run_dir)] = pd.DataFrame(list(read_jsonl(path)))
    return logs


def collect_stats(run_dirs: Iterable[str | Path]) -> pd.DataFrame:
    """The data `stats.csv` of each run, with a `run` column."""
    frames = []
    for run_dir in run_dirs:
        path = resolve(run_dir) / "data" / "stats.csv"
        if path.is_file():
            frames.append(pd.read_csv(path).assign(run=run_label(run_dir)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def first_run_stats(stats: pd.DataFrame) -> pd.DataFrame:
    """The rows of the first run in a `collect_stats` frame (all rows when there is no `run` column)."""
    if stats.empty or "run" not in stats:
        return stats
    return stats[stats.run == stats.run.iloc[0]]


# ---------------------------------------------------------------- tables


def _fmt(value: float, low: float = np.nan, high: float = np.nan) -> str:
    if pd.isna(value):
        return ""
    text = f"{value:.2f}"
    return text + (f" [{low:.1f}, {high:.1f}]" if not (pd.isna(low) or pd.isna(high)) else "")


def _paper_splits(rows: pd.DataFrame) -> str:
    """Each split the paper's numbers come from, with the roles of the models scored on it."""
    rows = rows[rows.value.notna()]
    if rows.split.nunique() <= 1:
        return "".join(rows.split.unique()[:1])
    parts = {split: ", ".join(dict.fromkeys(rows[rows.split == split].role)) for split in dict.fromkeys(rows.split)}
    return "; ".join(f"{split} ({roles})" for split, roles in parts.items())


def _paper_text(row: pd.Series) -> str:
    """A paper number as written in its CSV (trailing zeros kept); formatted only when the text is not known."""
    if pd.isna(row.value):
        return ""
    text = row.get("value_text")
    return text if isinstance(text, str) and text else _fmt(row.value)


def _source_order(sources: Iterable[str]) -> list[str]:
    from .tasks import task_names

    known = task_names()
    unique = set(sources)
    return [s for s in known if s in unique] + sorted(unique - set(known))


def main_results_table(ours: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """The paper's numbers beside every run/model, per source and metric, with intervals and splits.

    Rows are each source's headline metric plus every metric the paper reports for it; a column per
    paper model and per run/model. Cells with no number are empty.
    """
    wanted = set(zip(paper.source, paper.metric))
    if not ours.empty:
        wanted |= set(zip(ours.loc[ours.headline, "source"], ours.loc[ours.headline, "metric"]))
    records = []
    run_models = list(dict.fromkeys(zip(ours.run, ours.model))) if not ours.empty else []
    for source in _source_order(s for s, _ in wanted):
        for metric in sorted(
            {m for s, m in wanted if s == source}, key=lambda m: list(METRIC_NAMES).index(m) if m in METRIC_NAMES else 99
        ):
            task = _task_of(source, ours, paper)
            record: dict[str, Any] = {
                "Task": FAMILY_NAMES.get(task, task),
                "Dataset": source,
                "Metric": METRIC_NAMES.get(metric, metric),
            }
            ours_here = ours[(ours.source == source) & (ours.metric == metric)] if not ours.empty else ours
            record["Split (ours)"] = "/".join(sorted(set(ours_here.split))) if not ours_here.empty else ""
            paper_here = paper[(paper.source == source) & (paper.metric == metric)]
            record["Split (paper)"] = _paper_splits(paper_here)
            for model in paper.model.unique():
                hit = paper_here[paper_here.model == model]
                record[f"{model} (paper)"] = _paper_text(hit.iloc[0]) if len(hit) else ""
            for run, model in run_models:
                hit = ours_here[(ours_here.run == run) & (ours_here.model == model)]
                record[f"{run}/{model}"] = _fmt(*hit[["value", "ci_low", "ci_high"]].iloc[0]) if len(hit) else ""
            records.append(record)
    table = pd.DataFrame(records)
    return table.drop(columns="Split (ours)") if ours.empty and not table.empty else table


def _task_of(source: str, ours: pd.DataFrame, paper: pd.DataFrame) -> str:
    for frame in (ours, paper):
        if not frame.empty and source in set(frame.source):
            return str(frame.loc[frame.source == source, "task"].iloc[0])
    return ""


def composition_table(stats: pd.DataFrame) -> pd.DataFrame:
    """Rows per source and split, the split read for validation, and mean lengths over both splits' rows, from `stats.csv`."""
    if stats.empty:
        return pd.DataFrame(
            columns=["Dataset", "Task", "Train rows", "Validation rows", "Validation split", "Prompt chars", "Answer chars"]
        )
    stats = first_run_stats(stats)
    records = []
    for source in _source_order(stats.source):
        part = stats[stats.source == source].set_index("split")
        train = part.loc["train"] if "train" in part.index else None
        valid = part.loc["validation"] if "validation" in part.index else None
        records.append(
            {
                "Dataset": source,
                "Task": FAMILY_NAMES.get(part.task.iloc[0], part.task.iloc[0]),
                "Train rows": int(train.rows) if train is not None else 0,
                "Validation rows": int(valid.rows) if valid is not None else 0,
                "Validation split": valid.source_split if valid is not None else "",
                "Prompt chars": round(float(np.average(part.prompt_chars, weights=part.rows))),
                "Answer chars": round(float(np.average(part.completion_chars, weights=part.rows))),
            }
        )
    table = pd.DataFrame(records)
    total = {
        "Dataset": "Total",
        "Task": "",
        "Train rows": int(table["Train rows"].sum()),
        "Validation rows": int(table["Validation rows"].sum()),
    }
    table = pd.concat([table, pd.DataFrame([total])], ignore_index=True)
    return table.astype({"Prompt chars": "Int64", "Answer chars": "Int64"})


def per_label_table(run_dirs: Iterable[str | Path], source: str) -> pd.DataFrame:
    """Per-label F1 (percent) of `source` for every run/model; a note row when no run evaluated it."""
    columns: dict[str, dict[str, float]] = {}
    for run_dir in run_dirs:
        path = resolve(run_dir) / SCORES
        if not path.is_file():
            continue
        scores = json.loads(path.read_text(encoding="utf-8"))
        for model, sources in scores.get("models", {}).items():
            if source in sources:
                per_label = sources[source]["metrics"].get("per_label_f1", {})
                columns[f"{run_label(run_dir)}/{model}"] = {k: 100 * v for k, v in per_label.items()}
    if not columns:
        return pd.DataFrame([{"Label": f"{source}: absent (not evaluated in these runs)"}])
    from .tasks import TASKS

    seen = list(dict.fromkeys(label for col in columns.values() for label in col))
    known = list(TASKS[source].label_names) if source in TASKS else []
    labels = [label for label in known if label in seen] + [label for label in seen if label not in known]
    return pd.DataFrame(
        [{"Label": label, **{name: _fmt(col.get(label, np.nan)) for name, col in columns.items()}} for label in labels]
    )


def malformed_table(ours: pd.DataFrame) -> pd.DataFrame:
    """Share of generations (percent) that did not follow the answer format, per source and run/model."""
    if ours.empty:
        return pd.DataFrame(columns=["Dataset"])
    heads = ours[ours.headline]
    table = heads.pivot_table(index="source", columns=["run", "model"], values="malformed_rate", aggfunc="first")
    table.columns = [f"{run}/{model}" for run, model in table.columns]
    table = table.reindex(_source_order(table.index)).round(1).reset_index().rename(columns={"source": "Dataset"})
    return table


def scores_table(scores: dict[str, Any]) -> pd.DataFrame:
    """A compact per-task table of one `scores.json`: headline value with interval, n, malformed rate."""
    records = []
    for model, sources in scores.get("models", {}).items():
        for source in _source_order(sources):
            entry = sources[source]
            records.append(
                {
                    "model": model,
                    "source": source,
                    "split": scores.get("source_splits", {}).get(source, scores.get("eval_split", "")),
                    "metric": METRIC_NAMES.get(entry["headline"], entry["headline"]),
                    "score (%)": _fmt(100 * entry["value"], 100 * entry["ci_low"], 100 * entry["ci_high"]),
                    "n": entry["n"],
                    "malformed (%)": round(100 * entry["malformed_rate"], 1),
                }
            )
    return pd.DataFrame(records)


def side_by_side(
    run_dir: str | Path, sources: Sequence[str] | None = None, per_source: int = 1, width: int = 400
) -> pd.DataFrame:
    """For a few rows per source: the input, the gold answer and each model's generation, side by side."""
    predictions = collect_predictions([run_dir])
    if predictions.empty:
        return pd.DataFrame()
    models = list(dict.fromkeys(predictions.model))
    ner_format = load_run_config(run_dir).get("data", {}).get("ner_format", "lines")
    records = []
    for source in _source_order(sources or predictions.source.unique()):
        rows = predictions[predictions.source == source]
        for row_id in list(dict.fromkeys(rows.id))[:per_source]:
            same = rows[rows.id == row_id]
            input_text = _input_of(same.prompt.iloc[0])
            record = {
                "source": source,
                "input": input_text[:width],
                "gold": _gold_text(source, same.gold.iloc[0], input_text, ner_format)[:width],
            }
            for model in models:
                hit = same[same.model == model]
                record[model] = _shown(hit.generation.iloc[0])[:width] if len(hit) else "(absent)"
            records.append(record)
    return pd.DataFrame(records)


def _input_of(prompt: str) -> str:
    if "### Input:\n" in prompt:
        return prompt.split("### Input:\n", 1)[1].split("\n\n### Response:", 1)[0]
    return prompt.split("### Instruction:\n", 1)[-1].split("\n\n### Response:", 1)[0]


def _gold_text(source: str, gold: Any, input_text: str, ner_format: str) -> str:
    """The gold value in the task's own answer format."""
    from .tasks import TASKS, get_task

    if source not in TASKS:
        return str(gold)
    return get_task(source, ner_format).render(tuple(gold) if isinstance(gold, list) else gold, input_text)


def _shown(generation: str) -> str:
    return generation.strip() or "(blank: only whitespace was generated)"


# ---------------------------------------------------------------- figures


def plot_composition(stats: pd.DataFrame) -> plt.Figure:
    """Rows per source in train and validation, coloured by task family (log scale)."""
    set_style()
    n = stats.source.nunique() if not stats.empty else 4
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.45 * max(4, n) + 1.2), sharey=True)
    if stats.empty:
        for ax in axes:
            _absent(ax, "no data statistics")
        return fig
    order = _source_order(stats.source)
    palette = dict(zip(FAMILY_ORDER, sns.color_palette("colorblind", len(FAMILY_ORDER))))
    largest = max(float(stats.rows.max()), 1.0)
    log_scale = largest / max(float(stats.rows[stats.rows > 0].min()), 1.0) > 20
    for ax, split in zip(axes, ("train", "validation")):
        part = stats[stats.split == split].set_index("source").reindex(order)
        colours = [palette.get(t, "grey") for t in part.task.fillna("")]
        ax.barh(order, part.rows.fillna(0), color=colours)
        if log_scale:
            ax.set_xscale("log")
            ax.set_xlim(0.8, largest * 4)
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        else:
            ax.set_xlim(0, largest * 1.2)
        ax.set_xlabel("rows" + (" (log scale)" if log_scale else ""))
        ax.set_title("training rows" if split == "train" else "validation rows (source split in brackets)")
        read = part.source_split if "source_split" in part and split != "train" else pd.Series("", index=part.index)
        for y, (value, source_split) in enumerate(zip(part.rows.fillna(0), read.fillna(""))):
            if value:
                ax.text(value, y, f" {int(value):,}" + (f" ({source_split})" if source_split else ""), va="center", fontsize=8)
    axes[0].invert_yaxis()
    handles = [plt.Rectangle((0, 0), 1, 1, color=palette[f]) for f in FAMILY_ORDER if f in set(stats.task)]
    fig.legend(
        handles,
        [FAMILY_NAMES[f] for f in FAMILY_ORDER if f in set(stats.task)],
        loc="lower center",
        ncol=5,
        frameon=False,
        bbox_to_anchor=(0.5, -0.06),
    )
    fig.suptitle("Instruction dataset composition")
    fig.tight_layout()
    return fig


def plot_training_curves(logs: dict[str, pd.DataFrame]) -> plt.Figure:
    """Training loss and learning rate against optimizer step, one line per run."""
    set_style()
    fig, (loss_ax, lr_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    if not logs:
        _absent(loss_ax, "no training log")
        _absent(lr_ax, "no training log")
        return fig
    for run, frame in logs.items():
        loss_ax.plot(frame.step, frame.loss, marker="o", markersize=3, label=run)
        if "learning_rate" in frame:
            lr_ax.plot(frame.step, frame.learning_rate, label=run)
    loss_ax.set(xlabel="optimizer step", ylabel="training loss (nats/token, completion only)", title="Training loss")
    lr_ax.set(xlabel="optimizer step", ylabel="learning rate", title="Learning-rate schedule")
    lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    loss_ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_results(ours: pd.DataFrame, paper: pd.DataFrame) -> plt.Figure:
    """Per-task scores: our runs (with 95% bootstrap intervals) against the paper's LLMs and encoder baselines."""
    set_style()
    table = _comparable(ours, paper)
    labels = list(dict.fromkeys(table.label))
    fig, ax = plt.subplots(figsize=(9, 0.55 * max(4, len(labels)) + 1.5))
    if table.empty:
        _absent(ax, "no scores and no paper numbers")
        return fig
    series = list(dict.fromkeys(table.series))
    markers = {"paper: tuned LLM": "D", "paper: base LLM": "v", "paper: encoder baseline": "s"}
    offsets = np.linspace(-0.3, 0.3, len(series)) if len(series) > 1 else [0.0]
    palette = sns.color_palette("colorblind", len(series))
    for colour, offset, name in zip(palette, offsets, series):
        part = table[table.series == name]
        y = [labels.index(lab) + offset for lab in part.label]
        if part.ci_low.notna().any():
            err = np.array([part.value - part.ci_low, part.ci_high - part.value])
            ax.errorbar(part.value, y, xerr=np.nan_to_num(err), fmt="o", color=colour, capsize=3, label=name)
        else:
            ax.scatter(part.value, y, marker=markers.get(part.kind.iloc[0], "o"), color=colour, s=40, label=name, zorder=3)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("score (%): entity-level F1 for NER, accuracy / F1 / micro-F1 as labelled")
    mine = table[table.kind == "ours"]
    ours_note = f"ours on {_splits_text(mine.source, mine.split)}; " if not mine.empty else ""
    ax.set_title(f"Per-task results\n{ours_note}paper: LLM NER on BioBERT devel, other splits unstated")
    ax.legend(
        fontsize=8,
        loc="lower left",
        bbox_to_anchor=(1.0, 0.0),
        frameon=False,
        title="error bars (ours): 95% bootstrap CI" if not mine.empty else None,
        title_fontsize=8,
    )
    fig.tight_layout()
    return fig


def _comparable(ours: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Long frame of (label, series, value, interval) for the paper's metrics and our headline metrics."""
    frames = []
    known = paper.dropna(subset=["value"])
    if not known.empty:
        frames.append(
            pd.DataFrame(
                {
                    "label": [_row_label(s, m) for s, m in zip(known.source, known.metric)],
                    "series": [f"{model} (paper)" for model in known.model],
                    "kind": [f"paper: {role}" for role in known.role],
                    "value": known.value,
                    "ci_low": np.nan,
                    "ci_high": np.nan,
                    "split": known.split,
                    "source": known.source,
                }
            )
        )
    if not ours.empty:
        wanted = set(zip(paper.source, paper.metric)) | set(
            zip(ours.loc[ours.headline, "source"], ours.loc[ours.headline, "metric"])
        )
        mine = ours[[pair in wanted for pair in zip(ours.source, ours.metric)]]
        frames.append(
            pd.DataFrame(
                {
                    "label": [_row_label(s, m) for s, m in zip(mine.source, mine.metric)],
                    "series": [f"{r}/{m} (ours)" for r, m in zip(mine.run, mine.model)],
                    "kind": "ours",
                    "value": mine.value,
                    "ci_low": mine.ci_low,
                    "ci_high": mine.ci_high,
                    "split": mine.split,
                    "source": mine.source,
                }
            )
        )
    if not frames:
        return pd.DataFrame(columns=["label", "series", "kind", "value", "ci_low", "ci_high", "split", "source"])
    table = pd.concat(frames, ignore_index=True)
    order = {s: i for i, s in enumerate(_source_order(table.source))}
    return table.sort_values(by="source", key=lambda col: col.map(order), kind="stable")


def _row_label(source: str, metric: str) -> str:
    return f"{source}: {METRIC_NAMES.get(metric, metric)}"


def _splits_text(sources: Iterable[str], splits: Iterable[str]) -> str:
    """The split most sources were read from, then each source read from another: `devel, GAD on test`."""
    pairs = {(source, split) for source, split in zip(sources, splits) if split}
    if not pairs:
        return "unnamed splits"
    common = Counter(split for _, split in pairs).most_common(1)[0][0]
    order = _source_order(source for source, _ in pairs)
    others = sorted((pair for pair in pairs if pair[1] != common), key=lambda pair: (order.index(pair[0]), pair[1]))
    return ", ".join([common, *(f"{source} on {split}" for source, split in others)])


def plot_gains(comparisons: pd.DataFrame) -> plt.Figure:
    """Tuned minus base, per task, in percentage points of the headline metric, with paired 95% intervals."""
    set_style()
    labels = [_row_label(s, m) for s, m in zip(comparisons.source, comparisons.metric)] if not comparisons.empty else []
    fig, ax = plt.subplots(figsize=(8, 0.45 * max(4, len(labels)) + 1.2))
    if comparisons.empty:
        _absent(ax, "no base-vs-tuned comparison (evaluate at least two models)")
        return fig
    rank = {source: i for i, source in enumerate(_source_order(comparisons.source))}
    comparisons = comparisons.sort_values(by="source", key=lambda col: col.map(rank), kind="stable")
    runs = list(dict.fromkeys(comparisons.run))
    palette = sns.color_palette("colorblind", len(runs))
    order = list(dict.fromkeys(_row_label(s, m) for s, m in zip(comparisons.source, comparisons.metric)))
    offsets = np.linspace(-0.25, 0.25, len(runs)) if len(runs) > 1 else [0.0]
    for colour, offset, run in zip(palette, offsets, runs):
        part = comparisons[comparisons.run == run]
        y = [order.index(_row_label(s, m)) + offset for s, m in zip(part.source, part.metric)]
        ax.barh(
            y, part.delta, height=0.5 / len(runs), color=colour, label=f"{run}: {part.model_b.iloc[0]} - {part.model_a.iloc[0]}"
        )
        ax.errorbar(part.delta, y, xerr=[part.delta - part.low, part.high - part.delta], fmt="none", ecolor="black", capsize=2)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(order)), order)
    ax.invert_yaxis()
    ax.set_xlabel("gain from instruction tuning (percentage points, paired bootstrap 95% CI)")
    ax.set_title(f"Base vs tuned on the same evaluation rows ({_splits_text(comparisons.source, comparisons.split)})")
    ax.legend(fontsize=8, frameon=False, loc="lower left", bbox_to_anchor=(1.0, 0.0))
    fig.tight_layout()
    return fig


def plot_generation_lengths(predictions: pd.DataFrame) -> plt.Figure:
    """Distribution of generated answer lengths (words) per source and model."""
    set_style()
    n = predictions.source.nunique() if not predictions.empty else 4
    fig, ax = plt.subplots(figsize=(9, 0.5 * max(4, n) + 1.2))
    if predictions.empty:
        _absent(ax, "no predictions")
        return fig
    frame = predictions.assign(series=predictions.run + "/" + predictions.model)
    sns.boxplot(
        data=frame, x="words", y="source", hue="series", order=_source_order(frame.source), ax=ax, fliersize=2, linewidth=0.8
    )
    ax.set_xscale("symlog", linthresh=1, linscale=0.5)
    longest = max(float(frame.words.max()), 1.0)
    ticks = [0] + [m * 10**e for e in range(6) for m in (1, 2, 5) if m * 10**e <= 1.5 * longest]
    ax.set_xticks(ticks, [f"{t:,}" for t in ticks])
    ax.set_xlim(-0.3, 1.5 * longest)
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel("generated answer length (words; 0 = blank answer, log scale above 1)")
    ax.set_ylabel("")
    ax.set_title("Length of generated answers")
    ax.legend(fontsize=8, title=None, frameon=False, loc="lower left", bbox_to_anchor=(1.0, 0.0))
    fig.tight_layout()
    return fig


def plot_sample_outputs(examples: pd.DataFrame, width: int = 48, max_lines: int = 30, fontsize: float = 7.5) -> plt.Figure:
    """Base vs tuned answers on the same inputs (like the paper's Figures 4 and 5), drawn as text panels.

    Each panel is sized to its text, so a whole `token : TAG` answer fits and the figure stays narrow enough to
    be read at page width; text is shown verbatim (no math rendering of the `$` in masked relation inputs).
    """
    set_style()
    models = [c for c in examples.columns if c not in {"source", "input", "gold"}]
    columns = ["input", "gold", *models]
    texts = [[_wrap(str(example[column]), width, max_lines) for column in columns] for _, example in examples.iterrows()]
    inch_per_char, inch_per_line = 0.6 * fontsize / 72, 1.25 * fontsize / 72
    widths = [
        max(1.4, 0.45 + inch_per_char * max((len(line) for row in texts for line in row[c].splitlines()), default=0))
        for c in range(len(columns))
    ]
    heights = [0.55 + inch_per_line * max(text.count("\n") + 1 for text in row) for row in texts] or [2.0]
    fig, axes = plt.subplots(
        len(heights),
        len(columns),
        figsize=(sum(widths), sum(heights) + 0.5),
        squeeze=False,
        gridspec_kw={"height_ratios": heights, "width_ratios": widths},
    )
    if examples.empty:
        _absent(axes[0][0], "no predictions")
        return fig
    for r, (_, example) in enumerate(examples.iterrows()):
        for c, column in enumerate(columns):
            ax = axes[r][c]
            ax.set_axis_off()
            ax.text(
                0.0,
                1.0,
                texts[r][c],
                va="top",
                ha="left",
                family="monospace",
                fontsize=fontsize,
                parse_math=False,
                transform=ax.transAxes,
                bbox={"boxstyle": "round", "facecolor": "#f4f4f4", "edgecolor": "#bbbbbb"},
            )
            title = {"input": f"{example['source']}: input", "gold": "gold answer"}.get(column, f"{column} model")
            ax.set_title(title, fontsize=9, loc="left")
    fig.suptitle("Sample outputs: base vs tuned on the same prompts")
    fig.tight_layout()
    return fig


def _wrap(text: str, width: int, max_lines: int) -> str:
    lines = [piece for line in text.splitlines() or [""] for piece in (textwrap.wrap(line, width) or [""])]
    return "\n".join(lines[:max_lines] + (["..."] if len(lines) > max_lines else []))


def _absent(ax: plt.Axes, message: str) -> None:
    ax.set_axis_off()
    ax.text(0.5, 0.5, f"absent: {message}", ha="center", va="center", fontsize=11, color="grey", transform=ax.transAxes)


# ---------------------------------------------------------------- the whole report


@dataclass
class Report:
    """What `build_report` wrote, and the main tables for display."""

    files: list[Path] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


def build_report(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    paper_path: str | Path | None = None,
    only: Sequence[str] | None = None,
) -> Report:
    """Every table and figure for `run_dirs` (each may be absent) beside the paper's numbers, into `out_dir`.

    With no run folders at all, only what the paper's numbers alone make is written (the main table and the
    results figure), so that `figures/` never holds placeholders. `only` restricts the output to the named
    tables and figures (e.g. `composition` for a run that has assembled data but no model yet).
    """
    unknown = sorted(set(only or ()) - set(REPORT_ITEMS))
    if unknown:
        raise ValueError(f"unknown report item(s) {', '.join(unknown)}; expected some of {', '.join(REPORT_ITEMS)}")
    out_dir = resolve(out_dir)
    paper = load_paper_results(paper_path)
    ours = collect_scores(run_dirs)
    report = Report()
    tables = {"main_results": (main_results_table(ours, paper), MAIN_CAPTION)}
    figures = {"results": lambda: plot_results(ours, paper)}
    if run_dirs:
        tables |= {
            "composition": (composition_table(collect_stats(run_dirs)), "Instruction dataset composition (rows per source)."),
            "per_label_hoc": (per_label_table(run_dirs, "HoC"), "HoC: per-hallmark F1 (percent), sentence level."),
            "per_label_i2b2_2010": (per_label_table(run_dirs, "i2b2-2010"), "i2b2-2010: per-relation F1 (percent)."),
            "malformed": (malformed_table(ours), "Malformed generations (percent of rows whose answer broke the format)."),
        }
        figures |= {
            "composition": lambda: plot_composition(first_run_stats(collect_stats(run_dirs))),
            "gains": lambda: plot_gains(collect_comparisons(run_dirs)),
            "training_curves": lambda: plot_training_curves(collect_train_logs(run_dirs)),
            "generation_lengths": lambda: plot_generation_lengths(collect_predictions(run_dirs)),
            "sample_outputs": lambda: plot_sample_outputs(_sample_examples(run_dirs[0])),
        }
    for name, (table, caption) in tables.items():
        if only is None or name in only:
            report.tables[name] = table
            report.files += save_table(table, out_dir, name, caption)
    for name, make in figures.items():
        if only is None or name in only:
            report.files += save_figure(make(), out_dir, name)
    return report


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


MAIN_CAPTION = "Main results: the paper's numbers beside ours (percent; 95% bootstrap intervals in brackets; splits named)."


def _sample_examples(run_dir: str | Path) -> pd.DataFrame:
    """One NER and one RE example (the paper's Figures 4 and 5), else whatever sources exist."""
    examples = side_by_side(run_dir, per_source=1)
    if examples.empty:
        return examples
    from .tasks import TASKS

    preferred = [s for s in examples.source if s in TASKS and TASKS[s].family in {"ner", "re"}]
    chosen = [next((s for s in preferred if TASKS[s].family == f), None) for f in ("ner", "re")]
    chosen = [s for s in chosen if s] or list(examples.source[:2])
    return examples[examples.source.isin(chosen)].reset_index(drop=True)


def repository_figures_dir() -> Path:
    """`figures/` at the repository root: only figures from real runs or the paper's numbers go there."""
    return repo_root() / "figures"


def main(argv: list[str] | None = None) -> None:
    """`python -m medtune_utils.reporting --out DIR [RUN_DIR ...]`: with no runs, only the paper's numbers."""
    import argparse

    parser = argparse.ArgumentParser(description="Regenerate tables and figures from run folders and the paper's numbers.")
    parser.add_argument("runs", nargs="*", help="run folders (results/<run>)")
    parser.add_argument("--out", required=True, help="output folder, e.g. figures")
    parser.add_argument("--paper", default=None, help=f"paper numbers CSV (default: {PAPER_RESULTS})")
    parser.add_argument("--only", nargs="+", choices=REPORT_ITEMS, metavar="NAME", help="write only these tables/figures")
    args = parser.parse_args(argv)
    report = build_report(args.runs, args.out, args.paper, args.only)
    for path in report.files:
        print(path)


if __name__ == "__main__":
    main()
