"""Error analysis of one run's predictions: confusion matrices, NER errors in context, malformed shapes, budget hits.

Also the majority-class reference of each classification source (the training split's commonest answer), which
`scores.json` and the tables carry so that a reader sees whether a model learned more than the label frequencies.
`analyse(run)` computes everything for the run's current models and writes it into the run folder (`Run.write_analysis`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from seqeval.scheme import IOB2, Entities
from sklearn.metrics import confusion_matrix, multilabel_confusion_matrix

from .metrics import NO_ANSWER, typed_tags
from .names import source_order
from .run import BUDGET_HITS, CONFUSION, MALFORMED_SHAPES, NER_ERRORS, Run
from .tasks import TASKS, Task, get_task
from .tasks.classification import LabelTask, MultiLabelTask
from .tasks.ner import NerTask

CONTEXT_TOKENS = 6
SHAPE_LINES = 3
_UPPER = re.compile(r"[A-Z]+")
_WORD = re.compile(r"[A-Za-z]*[a-z][A-Za-z]*")
_DIGITS = re.compile(r"[0-9]+")


def is_classification(task: Task) -> bool:
    """Whether a task answers with labels (one, or a set): relation extraction, NLI, closed QA, HoC."""
    return isinstance(task, (LabelTask, MultiLabelTask))


# ---------------------------------------------------------------- majority-class reference


def majority_values(train_rows: Iterable[dict[str, Any]], tasks: dict[str, Task]) -> dict[str, Any]:
    """Per classification source in `tasks`: its commonest gold value among `train_rows` (a label, or a label set).

    Ties go to the value seen first. A source without training rows has no reference.
    """
    counts: dict[str, Counter] = {}
    for row in train_rows:
        task = tasks.get(row["source"])
        if task is None or not is_classification(task):
            continue
        counts.setdefault(row["source"], Counter())[task.gold(row["output"], row["input"])] += 1
    return {source: counter.most_common(1)[0][0] for source, counter in counts.items()}


def majority_reference(task: Task, gold: Sequence[Any], groups: Sequence[str], value: Any) -> dict[str, Any]:
    """The headline metric of answering `value` on every row, beside the value itself (as the task writes it)."""
    metrics, _ = task.score(list(gold), [value] * len(gold), list(groups))
    return {"answer": task.render(value, ""), "value": float(metrics[metrics["headline"]]), "metric": metrics["headline"]}


# ---------------------------------------------------------------- confusion matrices


def confusion(predictions: pd.DataFrame, task: Task) -> pd.DataFrame:
    """Gold (rows) against predicted (columns) counts for a one-label task, with a `<no answer>` column.

    For a multi-label task (HoC): one row per label with its true/false positives and negatives over the rows.
    """
    gold = [_value(g) for g in predictions.gold]
    pred = [_value(p) for p in predictions.prediction]
    labels = list(task.label_names)
    if isinstance(task, MultiLabelTask):
        from sklearn.preprocessing import MultiLabelBinarizer

        binarizer = MultiLabelBinarizer(classes=labels)
        matrices = multilabel_confusion_matrix(binarizer.fit_transform(gold), binarizer.transform([p or () for p in pred]))
        counts = [{"label": lab, "tp": m[1, 1], "fp": m[0, 1], "fn": m[1, 0], "tn": m[0, 0]} for lab, m in zip(labels, matrices)]
        frame = pd.DataFrame(counts).astype({key: int for key in ("tp", "fp", "fn", "tn")})
        frame["unreadable"] = sum(p is None for p in pred)
        return frame
    columns = [*labels, NO_ANSWER]
    matrix = confusion_matrix([g if g is not None else NO_ANSWER for g in gold], [p or NO_ANSWER for p in pred], labels=columns)
    frame = pd.DataFrame(matrix[: len(labels)], index=pd.Index(labels, name="gold"), columns=columns)
    return frame.reset_index()


# ---------------------------------------------------------------- NER errors


def ner_errors(predictions: pd.DataFrame, context: int = CONTEXT_TOKENS) -> pd.DataFrame:
    """Every false-positive and false-negative entity (strict IOB2 spans) with `context` tokens either side.

    An unreadable answer tags every token O, as in scoring, so its gold entities are all false negatives.
    """
    records = []
    for row in predictions.itertuples():
        tokens = row.input.split(" ")
        gold = typed_tags(_value(row.gold))
        pred = typed_tags(_value(row.prediction) or ("O",) * len(gold))
        gold_spans, pred_spans = ({(e.start, e.end, e.tag) for e in Entities([tags], IOB2).entities[0]} for tags in (gold, pred))
        for kind, spans in (("FP", pred_spans - gold_spans), ("FN", gold_spans - pred_spans)):
            for start, end, tag in sorted(spans):
                records.append(
                    {
                        "id": row.id,
                        "error": kind,
                        "type": tag,
                        "span": " ".join(tokens[start:end]),
                        "context": _in_context(tokens, start, end, context),
                        "partial_overlap": _overlaps(start, end, gold_spans if kind == "FP" else pred_spans),
                    }
                )
    return pd.DataFrame(records, columns=["id", "error", "type", "span", "context", "partial_overlap"])


def _in_context(tokens: list[str], start: int, end: int, width: int) -> str:
    left = ("... " if start > width else "") + " ".join(tokens[max(0, start - width) : start])
    right = " ".join(tokens[end : end + width]) + (" ..." if end + width < len(tokens) else "")
    return f"{left} [{' '.join(tokens[start:end])}] {right}".strip()


def _overlaps(start: int, end: int, others: set[tuple[int, int, str]]) -> bool:
    """Whether the span shares a token with one of `others` (a boundary error rather than a missed entity)."""
    return any(s < end and start < e for s, e, _ in others)


# ---------------------------------------------------------------- malformed answers and budgets


def answer_shape(text: str, lines: int = SHAPE_LINES) -> str:
    """The skeleton of an answer: words `a`, all-capital words `A`, digits `9`; repeated lines folded (`x 12`).

    `token : O` lines become `a : A x 24`, so answers that break the format the same way share one shape.
    """
    if not text.strip():
        return "(whitespace only)" if text else "(empty)"
    skeletons = [_DIGITS.sub("9", _UPPER.sub("A", _WORD.sub("a", line.strip()))) for line in text.strip().splitlines()]
    folded: list[list[Any]] = []
    for skeleton in skeletons:
        if folded and folded[-1][0] == skeleton:
            folded[-1][1] += 1
        else:
            folded.append([skeleton, 1])
    parts = [f"{s or '(blank)'}" + (f" x {n}" if n > 1 else "") for s, n in folded[:lines]]
    return " / ".join(parts) + (" / ..." if len(folded) > lines else "")


def malformed_shapes(predictions: pd.DataFrame, top: int = 5) -> pd.DataFrame:
    """Per model and source, the `top` commonest shapes of the answers that broke the format, with an example."""
    bad = predictions[~predictions.well_formed.astype(bool)]
    records = []
    for (model, source), part in bad.groupby(["model", "source"], sort=False):
        shapes = part.generation.map(answer_shape)
        for shape, count in shapes.value_counts().head(top).items():
            example = part.generation[shapes == shape].iloc[0]
            records.append(
                {
                    "model": model,
                    "source": source,
                    "shape": shape,
                    "answers": int(count),
                    "share_of_malformed": count / len(part),
                    "example": example[:200],
                }
            )
    return pd.DataFrame(records, columns=["model", "source", "shape", "answers", "share_of_malformed", "example"])


def budget_hits(predictions: pd.DataFrame) -> pd.DataFrame:
    """Per model and source: rows, the share that stopped at their token budget, and the mean budget."""
    if predictions.empty:
        return pd.DataFrame(columns=["model", "source", "rows", "hit_budget", "mean_budget"])
    grouped = predictions.assign(hit=predictions.hit_budget.astype(bool)).groupby(["model", "source"], sort=False)
    frame = grouped.agg(rows=("id", "size"), hit_budget=("hit", "mean"), mean_budget=("budget", "mean")).reset_index()
    return frame


# ---------------------------------------------------------------- one run


def analyse(run: Run | str, models: Sequence[str] | None = None) -> dict[str, pd.DataFrame]:
    """Every analysis of the run's current (or given) models, written into the run folder and returned by name.

    Names: `confusion/<model>/<source>`, `ner_errors/<model>/<source>`, `malformed_shapes`, `budget_hits`.
    """
    run = run if isinstance(run, Run) else Run(run)
    predictions = run.predictions(models)
    out: dict[str, pd.DataFrame] = {}
    if predictions.empty:
        return out
    ner_format = run.config().get("data", {}).get("ner_format", "lines")
    for model in dict.fromkeys(predictions.model):
        for source in source_order(predictions.source):
            if source not in TASKS:
                continue
            rows = predictions[(predictions.model == model) & (predictions.source == source)]
            if rows.empty:
                continue
            task = get_task(source, ner_format, rows.template.iloc[0])
            if is_classification(task):
                out[f"{CONFUSION}/{model}/{source}"] = confusion(rows, task)
            elif isinstance(task, NerTask):
                out[f"{NER_ERRORS}/{model}/{source}"] = ner_errors(rows)
    out[MALFORMED_SHAPES] = malformed_shapes(predictions)
    out[BUDGET_HITS] = budget_hits(predictions)
    run.write_analysis(out)
    return out


def _value(value: Any) -> Any:
    """JSON lists back to tuples (tags, label sets); NaN from an absent cell to None."""
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, float) and np.isnan(value):
        return None
    return value
