"""Per-task metrics (seqeval, scikit-learn, rouge-score) with bootstrap confidence intervals.

Every scorer takes gold and predicted values in the task's own form (tag tuples, labels, label sets,
texts) and returns a flat dict of metric values plus `headline`, the metric reported in tables. Each task
(`medtune_utils.tasks`) picks its scorers in `Task.compute_metrics`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from seqeval.metrics import f1_score as seq_f1
from seqeval.metrics import precision_score as seq_precision
from seqeval.metrics import recall_score as seq_recall
from seqeval.metrics.sequence_labeling import get_entities
from seqeval.scheme import IOB2, Entities
from sklearn.metrics import accuracy_score, f1_score
from sklearn.preprocessing import MultiLabelBinarizer

NO_ANSWER = "<no answer>"
UNTYPED = "ENT"


@dataclass(frozen=True)
class Interval:
    """A bootstrap percentile interval."""

    low: float
    high: float
    level: float = 0.95


def typed_tags(tags: Sequence[str]) -> list[str]:
    """Give untyped `B`/`I` tags a type (`B-ENT`), as seqeval expects; typed tags pass through."""
    return [f"{t}-{UNTYPED}" if t in {"B", "I"} else t for t in tags]


def ner_counts(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], strict: bool = True) -> np.ndarray:
    """Per-sentence `(tp, fp, fn)` entity counts, from seqeval's entity sets (strict IOB2 or lenient)."""
    gold_t = [typed_tags(g) for g in gold]
    pred_t = [typed_tags(p) for p in pred]
    if strict:
        gold_sets = [{(e.start, e.end, e.tag) for e in s} for s in Entities(gold_t, IOB2).entities]
        pred_sets = [{(e.start, e.end, e.tag) for e in s} for s in Entities(pred_t, IOB2).entities]
    else:
        gold_sets = [set(get_entities(g)) for g in gold_t]
        pred_sets = [set(get_entities(p)) for p in pred_t]
    return np.array([(len(g & p), len(p - g), len(g - p)) for g, p in zip(gold_sets, pred_sets)], dtype=np.int64).reshape(-1, 3)


def score_ner(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Entity-level P/R/F1: strict IOB2 (headline) and the lenient conlleval-style mode the paper used."""
    gold_t = [typed_tags(g) for g in gold]
    pred_t = [typed_tags(p) for p in pred]
    out: dict[str, Any] = {}
    for name, kwargs in (("strict", {"mode": "strict", "scheme": IOB2}), ("lenient", {})):
        out[f"precision_{name}"] = float(seq_precision(gold_t, pred_t, zero_division=0, **kwargs))
        out[f"recall_{name}"] = float(seq_recall(gold_t, pred_t, zero_division=0, **kwargs))
        out[f"f1_{name}"] = float(seq_f1(gold_t, pred_t, zero_division=0, **kwargs))
    out["headline"] = "f1_strict"
    return out


def _labels(values: Sequence[str | None]) -> list[str]:
    return [NO_ANSWER if v is None else v for v in values]


def score_single_label(
    gold: Sequence[str],
    pred: Sequence[str | None],
    labels: Sequence[str],
    positive: str | None = None,
    negatives: Sequence[str] = (),
) -> dict[str, Any]:
    """Accuracy, micro and macro F1 over `labels`; binary F1 for `positive`; micro F1 without `negatives` (BLURB).

    In the all-class micro F1 an unparseable answer is a false positive too (of a class of its own), so it
    equals accuracy as for any single-label task and a malformed answer never scores better than a wrong one; it is
    read as a wrong answer in the binary F1 of `positive` and in the micro F1 without `negatives` (`positive_counts`),
    so it never scores as well as a right negative answer.
    Macro F1 averages over the labels that occur in gold or predictions (scikit-learn's default), so a declared
    label that never occurs neither caps nor skews it; an unparseable answer still costs its gold label recall.
    """
    y_true, y_pred = _labels(gold), _labels(pred)
    present = [label for label in labels if label in set(y_true) | set(y_pred)] or list(labels)
    out: dict[str, Any] = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "micro_f1": float(f1_score(y_true, y_pred, labels=[*labels, NO_ANSWER], average="micro", zero_division=0)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "headline": "accuracy",
    }
    if positive is not None:
        tp, fp, fn = (int(x) for x in positive_counts(gold, pred, [positive]).sum(axis=0))
        precision, recall = (tp / (tp + fp) if tp + fp else 0.0), (tp / (tp + fn) if tp + fn else 0.0)
        out.update({"precision": precision, "recall": recall, "f1": 2 * tp / (2 * tp + fp + fn) if tp else 0.0, "headline": "f1"})
    if negatives:
        out["micro_f1_positive"] = micro_f1(positive_counts(gold, pred, without(labels, negatives)))
        out["headline"] = "micro_f1"
    out["per_label_f1"] = dict(
        zip(labels, map(float, f1_score(y_true, y_pred, labels=list(labels), average=None, zero_division=0)))
    )
    return out


def score_multi_label(
    gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str] | None], labels: Sequence[str], groups: Sequence[str]
) -> dict[str, Any]:
    """Sentence-level micro/macro F1 and per-label F1; abstract-level micro F1 from the union over each group.

    An unparseable answer (None) is never an exact match and is one false positive in both micro F1s (of a class of
    its own, as for single-label tasks), so it never scores as well as a right `None`; in macro and per-label F1 it
    predicts no label. Macro F1 averages over the labels that occur in gold or predicted sets, as for single-label tasks.
    """
    binarizer = MultiLabelBinarizer(classes=list(labels))
    sets = [() if p is None else p for p in pred]
    y_true, y_pred = binarizer.fit_transform(gold), binarizer.transform(sets)
    per_doc_true: dict[str, set[str]] = defaultdict(set)
    per_doc_pred: dict[str, set[str]] = defaultdict(set)
    for g, p, doc in zip(gold, pred, groups):
        per_doc_true[doc].update(g)
        per_doc_pred[doc].update((NO_ANSWER,) if p is None else p)
    docs = sorted(per_doc_true)
    return {
        "micro_f1": micro_f1(set_counts(gold, pred)),
        "macro_f1": _present_macro_f1(y_true, y_pred),
        "exact_match": float(np.mean([p is not None and set(g) == set(p) for g, p in zip(gold, pred)])) if gold else 0.0,
        "abstract_micro_f1": micro_f1(set_counts([per_doc_true[d] for d in docs], [per_doc_pred[d] for d in docs])),
        "abstracts": len(docs),
        "per_label_f1": dict(zip(labels, map(float, f1_score(y_true, y_pred, average=None, zero_division=0)))),
        "headline": "micro_f1",
    }


def _present_macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro F1 of label-indicator matrices over the columns set in either (0 when none is)."""
    present = np.flatnonzero(y_true.any(axis=0) | y_pred.any(axis=0))
    if not present.size:
        return 0.0
    return float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0))


_ROUGE = None


def rouge_l(gold: Sequence[str], pred: Sequence[str]) -> np.ndarray:
    """ROUGE-L F-measure of each prediction against its reference (rouge-score, with stemming)."""
    global _ROUGE
    if _ROUGE is None:
        from rouge_score import rouge_scorer

        _ROUGE = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return np.array([_ROUGE.score(g, p or "")["rougeL"].fmeasure for g, p in zip(gold, pred)])


def score_text(gold: Sequence[str], pred: Sequence[str | None]) -> dict[str, Any]:
    """Mean ROUGE-L F-measure (open-ended answers; the paper did not score these)."""
    return {"rouge_l": float(rouge_l(gold, pred).mean()) if gold else 0.0, "headline": "rouge_l"}


def without(labels: Sequence[str], negatives: Sequence[str]) -> list[str]:
    """`labels` less `negatives`, in order."""
    return [label for label in labels if label not in negatives]


def label_counts(
    gold: Sequence[str], pred: Sequence[str | None], labels: Sequence[str], unparsed_counts: bool = False
) -> np.ndarray:
    """Per-row `(tp, fp, fn)` for micro F1 restricted to `labels` (single-label rows).

    With `unparsed_counts`, an unparseable answer (None) is also a false positive.
    """
    keep = set(labels) | ({None} if unparsed_counts else set())
    return np.array(
        [((g == p and g in keep), (p in keep and p != g), (g in keep and p != g)) for g, p in zip(gold, pred)], dtype=np.int64
    ).reshape(-1, 3)


def positive_counts(gold: Sequence[str], pred: Sequence[str | None], positives: Sequence[str]) -> np.ndarray:
    """Per-row `(tp, fp, fn)` for micro F1 over `positives`, an unparseable answer (None) read as a wrong answer.

    A None is a false negative where the gold is one of `positives`, and a false positive where it is not, so it
    scores as a wrong answer, never as a right negative one.
    """
    keep = set(positives)
    return np.array(
        [
            (g == p and g in keep, (p in keep and p != g) or (p is None and g not in keep), g in keep and p != g)
            for g, p in zip(gold, pred)
        ],
        dtype=np.int64,
    ).reshape(-1, 3)


def set_counts(gold: Sequence[Iterable[str]], pred: Sequence[Iterable[str] | None]) -> np.ndarray:
    """Per-row `(tp, fp, fn)` of predicted against gold label sets; an unparseable answer (None) is one false positive."""
    sets = [{NO_ANSWER} if p is None else set(p) for p in pred]
    counts = [(len(set(g) & p), len(p - set(g)), len(set(g) - p)) for g, p in zip(gold, sets)]
    return np.array(counts, dtype=np.int64).reshape(-1, 3)


def micro_f1(counts: np.ndarray) -> float:
    """Micro F1 from per-row `(tp, fp, fn)` counts."""
    tp, fp, fn = counts.sum(axis=0)
    return float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else 0.0


def row_statistic(row_stats: np.ndarray) -> Callable[[np.ndarray], float]:
    """A metric on a subset of rows: micro F1 of `(tp, fp, fn)` rows, or the mean of a vector."""
    if row_stats.ndim == 2:
        return lambda idx: micro_f1(row_stats[idx])
    return lambda idx: float(row_stats[idx].mean()) if len(idx) else 0.0


def bootstrap_interval(
    statistic: Callable[[np.ndarray], float], n: int, samples: int, seed: int = 0, level: float = 0.95
) -> Interval:
    """Percentile interval of `statistic(indices)` over `samples` resamples of `range(n)` with replacement."""
    if n == 0 or samples <= 0:
        return Interval(float("nan"), float("nan"), level)
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.integers(0, n, n)) for _ in range(samples)])
    alpha = (1 - level) / 2
    return Interval(float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha)), level)


def paired_bootstrap(
    statistic_a: Callable[[np.ndarray], float],
    statistic_b: Callable[[np.ndarray], float],
    n: int,
    samples: int,
    seed: int = 0,
) -> dict[str, float]:
    """Difference b - a on the same resampled rows: its interval and a two-sided p-value."""
    if n == 0 or samples <= 0:
        return {"delta": float("nan"), "low": float("nan"), "high": float("nan"), "p_value": float("nan")}
    rng = np.random.default_rng(seed)
    full = np.arange(n)
    observed = statistic_b(full) - statistic_a(full)
    deltas = []
    for _ in range(samples):
        idx = rng.integers(0, n, n)
        deltas.append(statistic_b(idx) - statistic_a(idx))
    deltas = np.array(deltas)
    p_one = min(np.mean(deltas <= 0), np.mean(deltas >= 0))
    return {
        "delta": float(observed),
        "low": float(np.quantile(deltas, 0.025)),
        "high": float(np.quantile(deltas, 0.975)),
        "p_value": float(min(1.0, 2 * p_one)),
    }
