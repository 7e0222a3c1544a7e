"""Tables (Markdown, LaTeX, CSV): main results beside the paper's, data composition, per-label F1, malformed answers.

Each table is built from data frames that `report` collects from run folders; what is missing shows as an empty
cell or a note row, never as a crash. `side_by_side` reads one run's predictions for a quick look in a notebook.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .io import write_text_atomic
from .names import family_name, metric_name, metric_rank, source_order, visible_whitespace
from .paths import resolve
from .run import Run

MAJORITY = "majority class"
COMPOSITION_COLUMNS = ["Dataset", "Task", "Train rows", "Validation rows", "Validation split", "Prompt chars", "Answer chars"]


def save_table(table: pd.DataFrame, out_dir: str | Path, name: str, caption: str = "") -> list[Path]:
    """Save `table` as Markdown (with its caption), LaTeX (booktabs) and CSV, each written atomically."""
    out_dir = resolve(out_dir)
    shown = table.astype(object).where(table.notna(), "")
    markdown = (f"{caption}\n\n" if caption else "") + shown.to_markdown(index=False, disable_numparse=True) + "\n"
    latex = shown.to_latex(index=False, caption=caption or None, label=f"tab:{name}", escape=True)
    return [
        write_text_atomic(out_dir / f"{name}.md", markdown),
        write_text_atomic(out_dir / f"{name}.tex", latex),
        write_text_atomic(out_dir / f"{name}.csv", table.to_csv(index=False)),
    ]


def fmt(value: float, low: float = np.nan, high: float = np.nan) -> str:
    """`85.44 [82.2, 88.4]`: a percentage with its interval when known; empty when the value is missing."""
    if pd.isna(value):
        return ""
    text = f"{value:.2f}"
    return text + (f" [{low:.1f}, {high:.1f}]" if not (pd.isna(low) or pd.isna(high)) else "")


# ---------------------------------------------------------------- main results


def main_results_table(ours: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """The paper's numbers beside every run/model, per source and metric, with intervals and splits.

    Rows are each source's headline metric plus every metric the paper reports for it; a column per
    paper model and per run/model, and per run the majority-class reference of its classification sources (the score
    of always giving the training split's commonest answer). Cells with no number are empty.
    """
    wanted = set(zip(paper.source, paper.metric))
    if not ours.empty:
        wanted |= set(zip(ours.loc[ours.headline, "source"], ours.loc[ours.headline, "metric"]))
    run_models = list(dict.fromkeys(zip(ours.run, ours.model))) if not ours.empty else []
    majority_runs = list(dict.fromkeys(ours.run[ours.majority.notna()])) if "majority" in ours else []
    records = []
    for source in source_order(s for s, _ in wanted):
        for metric in sorted({m for s, m in wanted if s == source}, key=metric_rank):
            ours_here = ours[(ours.source == source) & (ours.metric == metric)] if not ours.empty else ours
            paper_here = paper[(paper.source == source) & (paper.metric == metric)]
            record: dict[str, Any] = {
                "Task": family_name(_task_of(source, ours, paper)),
                "Dataset": source,
                "Metric": metric_name(metric),
                "Split (ours)": "/".join(sorted(set(ours_here.split))) if not ours_here.empty else "",
                "Split (paper)": _paper_splits(paper_here),
            }
            for model in paper.model.unique():
                hit = paper_here[paper_here.model == model]
                record[f"{model} (paper)"] = _paper_text(hit.iloc[0]) if len(hit) else ""
            for run, model in run_models:
                hit = ours_here[(ours_here.run == run) & (ours_here.model == model)]
                record[f"{run}/{model}"] = fmt(*hit[["value", "ci_low", "ci_high"]].iloc[0]) if len(hit) else ""
            for run in majority_runs:
                hit = ours_here[(ours_here.run == run) & ours_here.majority.notna()]
                record[f"{run}/{MAJORITY}"] = fmt(hit.majority.iloc[0]) if len(hit) else ""
            records.append(record)
    table = pd.DataFrame(records)
    return table.drop(columns="Split (ours)") if ours.empty and not table.empty else table


def _task_of(source: str, ours: pd.DataFrame, paper: pd.DataFrame) -> str:
    for frame in (ours, paper):
        if not frame.empty and source in set(frame.source):
            return str(frame.loc[frame.source == source, "task"].iloc[0])
    return ""


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
    return text if isinstance(text, str) and text else fmt(row.value)


# ---------------------------------------------------------------- data, labels, formats


def composition_table(stats: pd.DataFrame) -> pd.DataFrame:
    """Rows per source and split, the split read for validation, and row-weighted mean lengths over both splits."""
    if stats.empty:
        return pd.DataFrame(columns=COMPOSITION_COLUMNS)
    records = []
    for source in source_order(stats.source):
        part = stats[stats.source == source].set_index("split")
        train = part.loc["train"] if "train" in part.index else None
        valid = part.loc["validation"] if "validation" in part.index else None
        records.append(
            {
                "Dataset": source,
                "Task": family_name(part.task.iloc[0]),
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


def per_label_table(per_label: pd.DataFrame, source: str) -> pd.DataFrame:
    """Per-label F1 (percent) of `source` for every run/model; a note row when no run evaluated it.

    `per_label` has one row per run, model, source and label with its `value` in percent.
    """
    rows = per_label[per_label.source == source] if not per_label.empty else per_label
    if rows.empty:
        return pd.DataFrame([{"Label": f"{source}: absent (not evaluated in these runs)"}])
    from .tasks import TASKS

    seen = list(dict.fromkeys(rows.label))
    known = list(TASKS[source].label_names) if source in TASKS else []
    labels = [label for label in known if label in seen] + [label for label in seen if label not in known]
    columns = {
        f"{run}/{model}": dict(zip(part.label, part.value)) for (run, model), part in rows.groupby(["run", "model"], sort=False)
    }
    return pd.DataFrame(
        [{"Label": label, **{name: fmt(col.get(label, np.nan)) for name, col in columns.items()}} for label in labels]
    )


def malformed_table(ours: pd.DataFrame) -> pd.DataFrame:
    """Share of generations (percent) that did not follow the answer format, per source and run/model."""
    if ours.empty:
        return pd.DataFrame(columns=["Dataset"])
    heads = ours[ours.headline]
    table = heads.pivot_table(index="source", columns=["run", "model"], values="malformed_rate", aggfunc="first")
    table.columns = [f"{run}/{model}" for run, model in table.columns]
    return table.reindex(source_order(table.index)).round(1).reset_index().rename(columns={"source": "Dataset"})


def scores_table(scores: dict[str, Any]) -> pd.DataFrame:
    """A compact per-task table of one run's scores: headline value with interval, n, malformed rate."""
    records = []
    for model, sources in scores.get("models", {}).items():
        for source in source_order(sources):
            entry = sources[source]
            records.append(
                {
                    "model": model,
                    "source": source,
                    "split": scores.get("source_splits", {}).get(source, scores.get("eval_split", "")),
                    "metric": metric_name(entry["headline"]),
                    "score (%)": fmt(100 * entry["value"], 100 * entry["ci_low"], 100 * entry["ci_high"]),
                    "n": entry["n"],
                    "malformed (%)": round(100 * entry["malformed_rate"], 1),
                    "majority class (%)": fmt(100 * entry["majority"]["value"]) if "majority" in entry else "",
                }
            )
    return pd.DataFrame(records)


# ---------------------------------------------------------------- answers side by side


def side_by_side(
    run: str | Path | Run, sources: Sequence[str] | None = None, per_source: int = 1, width: int = 400
) -> pd.DataFrame:
    """For a few rows per source: the input, the gold answer and each model's generation, side by side.

    Generations show their whitespace (`⏎`, `(blank: 2 newlines)`); a model without a prediction for the row
    shows `(absent)`.
    """
    run = run if isinstance(run, Run) else Run(run)
    models = run.prediction_models()
    predictions = run.predictions(models, sources)
    if predictions.empty:
        return pd.DataFrame()
    ner_format = run.config().get("data", {}).get("ner_format", "lines")
    records = []
    for source in source_order(predictions.source):
        rows = predictions[predictions.source == source]
        for row_id in list(dict.fromkeys(rows.id))[:per_source]:
            first = rows[rows.id == row_id].iloc[0]
            record = {
                "source": source,
                "input": first.input[:width],
                "gold": _gold_text(source, first.gold, first.input, ner_format)[:width],
            }
            for model in models:
                hit = rows[(rows.id == row_id) & (rows.model == model)]
                record[model] = visible_whitespace(hit.generation.iloc[0])[:width] if len(hit) else "(absent)"
            records.append(record)
    return pd.DataFrame(records)


def _gold_text(source: str, gold: Any, input_text: str, ner_format: str) -> str:
    """The gold value in the task's own answer format."""
    from .tasks import TASKS, get_task

    if source not in TASKS:
        return str(gold)
    return get_task(source, ner_format).render(tuple(gold) if isinstance(gold, list) else gold, input_text)


# ---------------------------------------------------------------- composition study


def composition_study_table(deltas: pd.DataFrame, reference: str, mixes: Sequence[str]) -> pd.DataFrame:
    """One row per source: the reference mix's headline value (percent), then each other mix's difference (points).

    `deltas` is `sweep.compare_mixes`'s frame; a cell is `-3.10 [-6.2, 0.1]`, empty where a mix has no score.
    """
    if deltas.empty:
        return pd.DataFrame(columns=["Dataset", "Metric", reference])
    others = [mix for mix in mixes if mix != reference and mix in set(deltas.mix)]
    records = []
    for source in source_order(deltas.source):
        rows = deltas[deltas.source == source].set_index("mix")
        first = rows.iloc[0]
        record = {"Dataset": source, "Metric": metric_name(first.metric)}
        record[f"{reference} (%)"] = fmt(rows.loc[reference, "value"]) if reference in rows.index else ""
        for mix in others:
            hit = rows.loc[mix] if mix in rows.index else None
            record[f"{mix} (Δ)"] = _signed(hit.delta, hit.low, hit.high) if hit is not None else ""
        record["n"] = int(rows.n.max())
        records.append(record)
    return pd.DataFrame(records)


def _signed(value: float, low: float, high: float) -> str:
    """`+1.25 [-0.5, 3.0]`: a difference in points with its interval."""
    if pd.isna(value):
        return ""
    return f"{value:+.2f}" + (f" [{low:.1f}, {high:.1f}]" if not (pd.isna(low) or pd.isna(high)) else "")
