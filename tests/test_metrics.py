"""Metrics against hand-worked arithmetic and direct seqeval / scikit-learn calls; bootstrap intervals and paired tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from seqeval.metrics import f1_score as seqeval_f1
from seqeval.scheme import IOB2
from sklearn.metrics import f1_score

from medtune_utils.metrics import (
    bootstrap_interval,
    micro_f1,
    ner_counts,
    paired_bootstrap,
    row_statistic,
    score_multi_label,
    score_ner,
    score_single_label,
    score_text,
    typed_tags,
)
from medtune_utils.tasks import TASKS
from medtune_utils.tasks.classification import LabelTask, MultiLabelTask
from medtune_utils.tasks.freetext import FreeTextTask
from medtune_utils.tasks.ner import NerTask

I2B2_2010 = TASKS["i2b2-2010"]
HOC_LABELS = ("A", "B", "C")


def _agrees_with_rows(metrics: dict[str, Any], rows: dict[str, np.ndarray]) -> None:
    """Every per-row statistic, taken over all rows, gives back the metric it stands for (what the bootstrap resamples)."""
    for name, stats in rows.items():
        assert row_statistic(stats)(np.arange(len(stats))) == pytest.approx(metrics[name]), name


# ---------------------------------------------------------------- NER


def test_untyped_tags_get_a_type_and_typed_tags_pass_through() -> None:
    """seqeval needs `B-X`; the BioBERT sets write bare `B`/`I`, i2b2-2012 writes typed tags."""
    assert typed_tags(["B", "I", "O", "B-TEST", "I-TEST"]) == ["B-ENT", "I-ENT", "O", "B-TEST", "I-TEST"]


def test_ner_strict_and_lenient_agree_on_valid_iob2() -> None:
    """With well-formed IOB2 both modes count the same entities."""
    gold = [["B", "I", "O", "B"], ["O", "B", "O"]]
    pred = [["B", "I", "O", "O"], ["O", "B", "I"]]
    # gold entities: (0-1), (3), (s2: 1); predicted: (0-1), (s2: 1-2). Only (0-1) matches.
    # P = 1/2, R = 1/3, F1 = 2*1 / (2*1 + 1 + 2) = 0.4
    scores = score_ner(gold, pred)
    for mode in ("strict", "lenient"):
        assert scores[f"precision_{mode}"] == pytest.approx(1 / 2)
        assert scores[f"recall_{mode}"] == pytest.approx(1 / 3)
        assert scores[f"f1_{mode}"] == pytest.approx(0.4)
    assert scores["headline"] == "f1_strict"


def test_ner_entity_opened_by_i_tag_counts_only_in_lenient_mode() -> None:
    """Strict IOB2 drops an entity that starts with I- (no B-); conlleval-style lenient mode accepts it."""
    gold = [["O", "B", "I", "O", "B"]]
    pred = [["O", "I", "I", "O", "B"]]
    # strict: predicted entities {(4)} -> tp 1, fp 0, fn 1 -> P = 1, R = 1/2, F1 = 2/3
    # lenient: predicted entities {(1-2), (4)} -> tp 2, fp 0, fn 0 -> P = R = F1 = 1
    scores = score_ner(gold, pred)
    assert (scores["precision_strict"], scores["recall_strict"]) == (pytest.approx(1.0), pytest.approx(0.5))
    assert scores["f1_strict"] == pytest.approx(2 / 3)
    assert scores["f1_lenient"] == pytest.approx(1.0)
    assert ner_counts(gold, pred, strict=True).tolist() == [[1, 0, 1]]
    assert ner_counts(gold, pred, strict=False).tolist() == [[2, 0, 0]]


def test_ner_typed_tags_i2b2_2012_style() -> None:
    """A type switch inside a mention (B-PROBLEM I-TEST) is one truncated entity strictly, two entities leniently."""
    gold = [["B-PROBLEM", "I-PROBLEM", "O", "B-TEST"], ["B-TREATMENT", "O"]]
    pred = [["B-PROBLEM", "I-TEST", "O", "B-TEST"], ["B-TEST", "O"]]
    # gold: PROBLEM(0-1), TEST(3), TREATMENT(s2: 0)
    # strict pred: PROBLEM(0), TEST(3), TEST(s2: 0)          -> tp 1, fp 2, fn 2 -> P = R = F1 = 1/3
    # lenient pred: PROBLEM(0), TEST(1), TEST(3), TEST(s2: 0) -> tp 1, fp 3, fn 2 -> P = 1/4, R = 1/3, F1 = 2/7
    scores = score_ner(gold, pred)
    assert scores["precision_strict"] == scores["recall_strict"] == scores["f1_strict"] == pytest.approx(1 / 3)
    assert scores["precision_lenient"] == pytest.approx(1 / 4)
    assert scores["recall_lenient"] == pytest.approx(1 / 3)
    assert scores["f1_lenient"] == pytest.approx(2 / 7)
    assert ner_counts(gold, pred, strict=True).tolist() == [[1, 1, 1], [0, 1, 1]]
    assert ner_counts(gold, pred, strict=False).tolist() == [[1, 2, 1], [0, 1, 1]]


def test_ner_empty_predictions_score_zero_without_error() -> None:
    """A model that tags nothing gets P = R = F1 = 0 (zero division gives 0, not a warning-laden NaN)."""
    scores = score_ner([["B", "I", "O"], ["O", "B"]], [["O", "O", "O"], ["O", "O"]])
    assert all(scores[f"{m}_{mode}"] == 0.0 for m in ("precision", "recall", "f1") for mode in ("strict", "lenient"))
    assert ner_counts([["B", "I", "O"], ["O", "B"]], [["O", "O", "O"], ["O", "O"]]).tolist() == [[0, 0, 1], [0, 0, 1]]


def test_ner_row_counts_reproduce_seqeval_on_random_tags() -> None:
    """Summed per-sentence counts give seqeval's corpus F1 in both modes, so bootstrap rows resample the same metric."""
    rng = np.random.default_rng(7)
    tags = np.array(["O", "B", "I", "B-TEST", "I-TEST", "I-PROBLEM"])
    lengths = rng.integers(1, 12, 60)
    gold = [[str(t) for t in rng.choice(tags, n, p=[0.5, 0.15, 0.1, 0.1, 0.1, 0.05])] for n in lengths]
    pred = [[t if rng.random() < 0.7 else str(rng.choice(tags)) for t in sentence] for sentence in gold]
    gold_t, pred_t = [typed_tags(s) for s in gold], [typed_tags(s) for s in pred]
    strict = seqeval_f1(gold_t, pred_t, average="micro", mode="strict", scheme=IOB2, zero_division=0)
    lenient = seqeval_f1(gold_t, pred_t, average="micro", zero_division=0)
    assert strict != pytest.approx(lenient)
    assert micro_f1(ner_counts(gold, pred, strict=True)) == pytest.approx(strict)
    assert micro_f1(ner_counts(gold, pred, strict=False)) == pytest.approx(lenient)


# ---------------------------------------------------------------- single-label classification


def test_single_label_accuracy_micro_and_macro_f1() -> None:
    """MedNLI-style three classes; an unparseable answer (None) is wrong and matches no class."""
    labels = ("Entailment", "Contradiction", "Neutral")
    gold = ["Entailment", "Entailment", "Contradiction", "Neutral", "Neutral", "Contradiction"]
    pred = ["Entailment", "Contradiction", "Contradiction", "Neutral", None, "Entailment"]
    # correct rows 0, 2, 3 -> accuracy 3/6
    # Entailment: tp 1, fp 1 (row 5), fn 1 (row 1) -> F1 1/2; Contradiction: tp 1, fp 1, fn 1 -> 1/2
    # Neutral: tp 1, fp 0, fn 1 (row 4, None) -> F1 2/3; macro = (1/2 + 1/2 + 2/3) / 3 = 5/9
    # micro over the three classes: tp 3, fp 3, fn 3 -> 6 / 12 = accuracy (None is a miss and a false positive
    # of its own class, so an unparseable answer never scores better than a wrong one)
    scores = score_single_label(gold, pred, labels)
    assert scores["accuracy"] == pytest.approx(0.5)
    assert scores["macro_f1"] == pytest.approx(5 / 9)
    assert scores["micro_f1"] == pytest.approx(0.5)
    assert scores["per_label_f1"] == pytest.approx({"Entailment": 0.5, "Contradiction": 0.5, "Neutral": 2 / 3})
    assert scores["headline"] == "accuracy"


def test_macro_f1_averages_over_labels_present_in_gold_or_predictions() -> None:
    """A declared label that never occurs neither caps nor skews macro F1 (scikit-learn's default label set)."""
    labels = ("Entailment", "Contradiction", "Neutral")
    gold = ["Entailment", "Contradiction", "Contradiction"]
    perfect = score_single_label(gold, gold, labels)
    assert perfect["macro_f1"] == 1.0  # Neutral never occurs: averaging over all declared labels gave 2/3
    pred = ["Entailment", "Neutral", None]
    # Entailment 1; Contradiction: tp 0, fn 2 -> 0; Neutral (predicted only): fp 1 -> 0; macro = 1/3
    assert score_single_label(gold, pred, labels)["macro_f1"] == pytest.approx(1 / 3)
    hoc = score_multi_label([("A",), ()], [("A",), ()], HOC_LABELS, ["1", "2"])
    assert hoc["macro_f1"] == 1.0  # B and C occur nowhere


def test_i2b2_2010_micro_f1_all_nine_classes_vs_blurb_positive_classes() -> None:
    """All nine classes (incl. No Relations) vs BLURB's micro-F1 over the eight relation types only."""
    gold = ["TrIP", "TrAP", "No Relations", "No Relations", "PIP", "TeRP"]
    pred = ["TrIP", "TrWP", "No Relations", "TrAP", "PIP", None]
    # nine classes: tp 3 (rows 0, 2, 4), fp 3 (rows 1, 3 and the unparsed row 5), fn 3 (rows 1, 3, 5) -> 6 / 12
    # positive classes: tp 2 (rows 0, 4), fp 2 (TrWP row 1, TrAP row 3), fn 2 (TrAP row 1, TeRP row 5) -> 4 / 8
    # (the unparsed row 5 is read as a wrong answer: a miss of its positive gold, TeRP)
    metrics, rows = I2B2_2010.score(gold, pred, [str(i) for i in range(6)])
    assert metrics["micro_f1"] == pytest.approx(0.5)
    assert metrics["micro_f1_positive"] == pytest.approx(0.5)
    positive = [label for label in I2B2_2010.labels if label != "No Relations"]
    assert len(positive) == 8 and len(I2B2_2010.labels) == 9
    y_pred = [p or "<unparsed>" for p in pred]
    assert metrics["micro_f1_positive"] == pytest.approx(f1_score(gold, y_pred, labels=positive, average="micro"))
    assert metrics["headline"] == "micro_f1"
    assert metrics["accuracy"] == pytest.approx(3 / 6)
    _agrees_with_rows(metrics, rows)


def test_gad_binary_f1_for_association() -> None:
    """GAD's headline is the F1 of the positive label `Association`, not accuracy."""
    gold = ["Association", "Association", "Association", "No association", "No association", "No association"]
    pred = ["Association", "No association", None, "Association", "No association", "No association"]
    # positive class: tp 1 (row 0), fp 1 (row 3), fn 2 (rows 1, 2) -> P 1/2, R 1/3, F1 2 / (2 + 1 + 2) = 0.4
    # accuracy: rows 0, 4, 5 -> 1/2
    metrics, rows = TASKS["GAD"].score(gold, pred, [str(i) for i in range(6)])
    assert (metrics["precision"], metrics["recall"]) == (pytest.approx(1 / 2), pytest.approx(1 / 3))
    assert metrics["f1"] == pytest.approx(0.4)
    assert metrics["accuracy"] == pytest.approx(0.5)
    assert metrics["headline"] == "f1"
    _agrees_with_rows(metrics, rows)


def test_pubmedqa_accuracy_and_macro_f1() -> None:
    """PubMedQA reports accuracy (headline) and macro-F1 over yes/no/maybe."""
    gold = ["yes", "yes", "no", "maybe", "no"]
    pred = ["yes", "no", "no", None, "maybe"]
    # accuracy 2/5; yes: tp 1, fn 1 -> 2/3; no: tp 1, fp 1, fn 1 -> 1/2; maybe: tp 0 -> 0; macro = 7/18
    metrics, rows = TASKS["PubMedQA"].score(gold, pred, [str(i) for i in range(5)])
    assert metrics["accuracy"] == pytest.approx(0.4)
    assert metrics["macro_f1"] == pytest.approx(7 / 18)
    assert metrics["headline"] == "accuracy"
    _agrees_with_rows(metrics, rows)


def test_unparseable_predictions_are_never_correct() -> None:
    """None never matches a gold label, whatever the task; a NER None means no entities."""
    metrics, _ = TASKS["MedNLI"].score(["Neutral", "Entailment"], [None, None], ["a", "b"])
    assert metrics["accuracy"] == 0.0 and metrics["micro_f1"] == 0.0
    metrics, _ = TASKS["GAD"].score(["Association"], [None], ["a"])
    assert metrics["f1"] == 0.0 and metrics["recall"] == 0.0
    metrics, rows = TASKS["NCBI-disease"].score([("B", "I", "O")], [None], ["a"])
    assert metrics["f1_strict"] == metrics["f1_lenient"] == 0.0
    assert rows["f1_strict"].tolist() == [[0, 1, 1]]  # no entity found, and one false positive for the unread answer
    metrics, _ = TASKS["ChatDoctor"].score(["Take two tablets daily."], [None], ["a"])
    assert metrics["rouge_l"] == 0.0


# ---------------------------------------------------------------- multi-label (HoC)


def test_hoc_sentence_and_abstract_level_f1() -> None:
    """Sentence-level micro/macro/per-label F1, and abstract-level F1 from the union of each abstract's sentences."""
    gold = [("A",), ("A", "B"), (), ("C",), ()]
    pred = [("A",), ("B",), ("C",), (), ("A",)]
    groups = ["p1", "p2", "p1", "p2", "p3"]
    # sentences: tp 2 (A row 0, B row 1), fp 2 (C row 2, A row 4), fn 2 (A row 1, C row 3) -> micro 4 / 8
    # A: tp 1, fp 1, fn 1 -> 1/2; B: tp 1 -> 1; C: tp 0, fp 1, fn 1 -> 0; macro = 1/2
    # exact match: row 0 only -> 1/5
    # abstracts group rows by key, not by adjacency: p1 = rows 0, 2: gold {A}, pred {A, C} -> tp A, fp C;
    #   p2 = rows 1, 3: gold {A, B, C}, pred {B} -> tp B, fn A, fn C; p3 = row 4: gold {}, pred {A} -> fp A
    #   -> tp 2, fp 2, fn 2 -> 4 / 8
    scores = score_multi_label(gold, pred, HOC_LABELS, groups)
    assert scores["micro_f1"] == pytest.approx(0.5)
    assert scores["macro_f1"] == pytest.approx(0.5)
    assert scores["per_label_f1"] == pytest.approx({"A": 0.5, "B": 1.0, "C": 0.0})
    assert scores["exact_match"] == pytest.approx(0.2)
    assert scores["abstracts"] == 3
    assert scores["headline"] == "micro_f1"
    assert scores["abstract_micro_f1"] == pytest.approx(0.5)


def test_hoc_abstract_level_forgives_the_sentence_a_label_sits_on() -> None:
    """Labels predicted on the wrong sentence of the right abstract count at abstract level only."""
    gold = [("A",), ("B",), ("C",)]
    pred = [("B",), ("A",), ("C",)]
    # sentences: tp 1 (C), fp 2, fn 2 -> 2 / 6 = 1/3; abstracts: x gold {A, B} pred {A, B}, y {C} {C} -> 1.0
    scores = score_multi_label(gold, pred, HOC_LABELS, ["x", "x", "y"])
    assert scores["micro_f1"] == pytest.approx(1 / 3)
    assert scores["abstract_micro_f1"] == pytest.approx(1.0)
    assert scores["abstracts"] == 2


def test_hoc_task_score_with_real_labels_matches_sklearn() -> None:
    """Through the registry entry, micro-F1 equals scikit-learn's on the binarised label sets plus a column for "no answer"."""
    labels = TASKS["HoC"].labels
    gold = [(labels[0],), (labels[0], labels[4]), (), (labels[9],)]
    pred = [(labels[0],), (labels[4],), None, (labels[9], labels[2])]
    metrics, rows = TASKS["HoC"].score(gold, pred, ["1", "1", "2", "2"])
    # tp 3, fp 2 (labels[2], the unparseable row 2), fn 1 (labels[0] on row 1) -> micro 6 / 9
    binary = np.array([[label in (g or ()) for label in labels] + [0] for g in gold], dtype=int)
    predicted = np.array([[label in (p or ()) for label in labels] + [p is None] for p in pred], dtype=int)
    assert metrics["micro_f1"] == pytest.approx(2 / 3)
    assert metrics["micro_f1"] == pytest.approx(f1_score(binary, predicted, average="micro"))
    assert metrics["per_label_f1"][labels[4]] == pytest.approx(1.0)
    _agrees_with_rows(metrics, rows)


# ---------------------------------------------------------------- free text


def test_rouge_l_of_free_text() -> None:
    """ROUGE-L F-measure: LCS-based, averaged over rows; None scores 0."""
    gold = ["the cat sat on the mat", "the cat sat on the mat", "take two tablets daily"]
    pred = ["the cat on the mat", "the cat sat on the mat", None]
    # row 0: LCS 5, P = 5/5, R = 5/6, F = 2 * 1 * 5/6 / (1 + 5/6) = 10/11; row 1: 1; row 2: 0 -> mean 7/11
    assert score_text(gold, pred) == {"rouge_l": pytest.approx(7 / 11), "headline": "rouge_l"}
    metrics, rows = TASKS["ChatDoctor"].score(gold, pred, ["a", "b", "c"])
    assert rows["rouge_l"].tolist() == pytest.approx([10 / 11, 1.0, 0.0])
    _agrees_with_rows(metrics, rows)


# ---------------------------------------------------------------- bootstrap


def _accuracy_rows(n: int, rate: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(n) < rate).astype(float)


def test_bootstrap_interval_is_deterministic_and_contains_the_estimate() -> None:
    """Same seed, same interval; the percentile interval brackets the full-sample value."""
    rows = _accuracy_rows(300, 0.7, seed=1)
    statistic = row_statistic(rows)
    first = bootstrap_interval(statistic, len(rows), samples=400, seed=3)
    assert first == bootstrap_interval(statistic, len(rows), samples=400, seed=3)
    assert first != bootstrap_interval(statistic, len(rows), samples=400, seed=4)
    assert first.low < rows.mean() < first.high
    assert first.level == 0.95


def test_bootstrap_interval_narrows_with_more_rows() -> None:
    """Width shrinks roughly like 1/sqrt(n): 40 rows vs 4000 rows."""
    small, large = _accuracy_rows(40, 0.6, seed=2), _accuracy_rows(4000, 0.6, seed=2)
    narrow = bootstrap_interval(row_statistic(large), len(large), samples=300, seed=0)
    wide = bootstrap_interval(row_statistic(small), len(small), samples=300, seed=0)
    assert narrow.high - narrow.low < (wide.high - wide.low) / 4


def test_bootstrap_interval_of_micro_f1_counts() -> None:
    """On `(tp, fp, fn)` rows the resampled statistic is micro-F1; its interval brackets the all-rows value."""
    counts = np.array([[1, 0, 0]] * 60 + [[0, 1, 1]] * 20 + [[2, 0, 1]] * 20)
    # tp 100, fp 20, fn 40 -> 200 / 260
    assert micro_f1(counts) == pytest.approx(200 / 260)
    interval = bootstrap_interval(row_statistic(counts), len(counts), samples=300, seed=0)
    assert interval.low < 200 / 260 < interval.high


def test_bootstrap_of_no_rows_is_nan() -> None:
    """No rows (or no resamples) give a NaN interval rather than an error."""
    interval = bootstrap_interval(row_statistic(np.array([])), 0, samples=100)
    assert np.isnan(interval.low) and np.isnan(interval.high)


def test_paired_bootstrap_identical_models() -> None:
    """The same predictions twice: delta 0, a zero-width interval and p = 1."""
    rows = _accuracy_rows(200, 0.5, seed=5)
    test = paired_bootstrap(row_statistic(rows), row_statistic(rows.copy()), len(rows), samples=300, seed=0)
    assert test == {"delta": 0.0, "low": 0.0, "high": 0.0, "p_value": pytest.approx(1.0)}


def test_paired_bootstrap_clearly_better_model() -> None:
    """A model right on 90% of rows vs one right on 30%: delta 0.6, interval above 0, tiny p-value."""
    worse = np.array([1.0] * 60 + [0.0] * 140)
    better = np.array([1.0] * 180 + [0.0] * 20)
    # delta = 180/200 - 60/200 = 0.6
    test = paired_bootstrap(row_statistic(worse), row_statistic(better), 200, samples=300, seed=0)
    assert test["delta"] == pytest.approx(0.6)
    assert 0 < test["low"] < 0.6 < test["high"]
    assert test["p_value"] < 0.01
    reverse = paired_bootstrap(row_statistic(better), row_statistic(worse), 200, samples=300, seed=0)
    assert reverse["delta"] == pytest.approx(-0.6) and reverse["high"] < 0


# ---------------------------------------------------------------- input checks


def test_task_score_rejects_mismatched_lengths() -> None:
    """Predictions and golds of different lengths fail loudly, naming the task and the counts."""
    with pytest.raises(ValueError, match=r"GAD: 3 gold values, 2 predictions and 3 groups"):
        TASKS["GAD"].score(["Association"] * 3, ["Association"] * 2, ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"HoC: 2 gold values, 2 predictions and 1 groups"):
        TASKS["HoC"].score([(), ()], [(), ()], ["a"])


# ---------------------------------------------------------------- malformed answers, every task


def _right_and_empty_rows(task: Any) -> tuple[list[str], list[Any]]:
    """Two rows of `task`: one with something to find, one whose right answer is the empty or negative one."""
    if isinstance(task, NerTask):
        kind = f"-{task.entity_types[0]}" if task.entity_types else ""
        return ["a b c", "d e f"], [(f"B{kind}", f"I{kind}", "O"), ("O", "O", "O")]
    if isinstance(task, MultiLabelTask):
        return ["s1", "s2"], [(task.labels[0],), ()]
    if isinstance(task, LabelTask):
        negative = (task.negative_labels or [label for label in task.labels if label != task.positive_label])[-1]
        first = next(label for label in task.labels if label != negative)
        return ["s1", "s2"], [first, negative]
    return ["q1", "q2"], ["Drink water and rest.", "See a doctor today."]


@pytest.mark.parametrize("source", list(TASKS))
def test_a_malformed_answer_always_counts_as_an_error(source: str) -> None:
    """Blank or unreadable, an answer scores below the right one in every metric with an interval and in the headline,
    also where the right answer is the empty one (`None`, no entity, the negative label), and it is flagged."""
    task = TASKS[source]
    inputs, gold = _right_and_empty_rows(task)
    right = [task.render(g, x) for g, x in zip(gold, inputs)]
    bad_answers = ["", "  </s>"] + ([] if isinstance(task, FreeTextTask) else ["unreadable ???"])
    for bad in bad_answers:
        answers = [right[0], bad]
        parsed = [task.parse(a, x) for a, x in zip(answers, inputs)]
        assert not parsed[1].well_formed, (source, bad)
        good_metrics, good_rows = task.score(
            gold, [task.parse(a, x).value for a, x in zip(right, inputs)], ["1", "2"], right, inputs
        )
        metrics, rows = task.score(gold, [p.value for p in parsed], ["1", "2"], answers, inputs)
        checked = (set(rows) | {metrics["headline"]} | {"exact_match", "accuracy"} & set(metrics)) - {"f1_authors"}
        for name in checked:  # f1_authors reproduces the authors' scorer, which reads a missing tag as O
            assert metrics[name] < good_metrics[name], (source, bad, name)


def test_the_authors_ner_reading_does_not_penalise_an_unreadable_answer_on_a_sentence_without_entities() -> None:
    """As the authors' scorer did: what is not a valid tag becomes O, so a blank answer on an all-O sentence costs nothing."""
    task = TASKS["NCBI-disease"]
    gold = [("B", "I", "O"), ("O", "O", "O")]
    right = [task.render(g, x) for g, x in zip(gold, ["a b c", "d e f"])]
    metrics, _ = task.score(gold, [gold[0], None], ["1", "2"], [right[0], ""], ["a b c", "d e f"])
    assert metrics["f1_authors"] == 1.0 and metrics["f1_strict"] == pytest.approx(2 / 3)
