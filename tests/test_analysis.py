"""Error analysis: confusion matrices, NER errors in context, malformed shapes, budget hits, majority-class reference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from medtune_utils import analysis
from medtune_utils.run import PREDICTION_COLUMNS, Run
from medtune_utils.tasks import get_task

A, N = "Association", "No association"


def _records(source: str, rows: list[tuple[Any, Any, str]], model: str = "tuned", **extra: Any) -> list[dict[str, Any]]:
    """Prediction records of (gold, prediction, generation) triples; well formed when the prediction is readable."""
    records = []
    for i, (gold, pred, generation) in enumerate(rows):
        record = {key: None for key in PREDICTION_COLUMNS}
        record.update(id=f"{source}/devel/{i}", source=source, task="x", group=f"g{i}", input=extra.get("input", "a b c d e"))
        record.update(gold=gold, prediction=pred, generation=generation, well_formed=pred is not None, model=model)
        record.update(budget=extra.get("budget", 10), hit_budget=extra.get("hit", [False] * len(rows))[i], template="medtune")
        records.append(record)
    return records


def test_confusion_of_a_one_label_task_counts_gold_against_predicted_with_unreadable_answers() -> None:
    rows = [(A, A, A), (A, N, N), (N, N, N), (N, None, "maybe"), (A, A, A)]
    table = analysis.confusion(pd.DataFrame(_records("GAD", rows)), get_task("GAD"))
    assert list(table.columns) == ["gold", A, N, "<no answer>"]
    assert table.set_index("gold").loc[A].tolist() == [2, 1, 0]
    assert table.set_index("gold").loc[N].tolist() == [0, 1, 1]


def test_confusion_of_hoc_counts_each_label_and_the_unreadable_answers() -> None:
    task = get_task("HoC")
    ps, ga = task.label_names[0], task.label_names[4]
    rows = [((ps,), (ps,), ""), ((ps, ga), (ps,), ""), ((), (ga,), ""), ((ga,), None, "?")]
    table = analysis.confusion(pd.DataFrame(_records("HoC", rows)), task).set_index("label")
    assert table.loc[ps, ["tp", "fp", "fn", "tn"]].tolist() == [2, 0, 0, 2]
    assert table.loc[ga, ["tp", "fp", "fn", "tn"]].tolist() == [0, 1, 2, 1]
    assert set(table.unreadable) == {1} and len(table) == len(task.label_names)


def test_ner_errors_list_false_positive_and_negative_spans_in_context() -> None:
    """Gold `a b` and `d`; predicted `a` and `d e`: two boundary errors each way; an unreadable answer misses every entity."""
    rows = [(("B", "I", "O", "B", "O"), ("B", "O", "O", "B", "I"), ""), (("O", "B", "O", "O", "O"), None, "junk")]
    table = analysis.ner_errors(pd.DataFrame(_records("NCBI-disease", rows)), context=1)
    first = table[table.id == "NCBI-disease/devel/0"]
    assert first[["error", "span", "context", "partial_overlap"]].values.tolist() == [
        ["FP", "a", "[a] b ...", True],
        ["FP", "d e", "... c [d e]", True],
        ["FN", "a b", "[a b] c ...", True],
        ["FN", "d", "... c [d] e", True],
    ]
    second = table[table.id == "NCBI-disease/devel/1"]
    assert second[["error", "span", "partial_overlap"]].values.tolist() == [["FN", "b", False]]


@pytest.mark.parametrize(
    ("text", "shape"),
    [
        ("", "(empty)"),
        ("\n\n ", "(whitespace only)"),
        ("aspirin : O\nreduces : O\nfever : B-DIS", "a : A x 2 / a : A-A"),
        ("Yes, 12 genes.", "a, 9 a."),
        ("x\n\nx\nx\n1\nz", "a / (blank) / a x 2 / ..."),
    ],
)
def test_answer_shapes_fold_words_digits_and_repeated_lines(text: str, shape: str) -> None:
    assert analysis.answer_shape(text) == shape


def test_malformed_shapes_and_budget_hits_per_model_and_source() -> None:
    rows = [(A, None, "maybe yes"), (A, None, "perhaps no"), (N, None, "12"), (A, A, A)]
    frame = pd.DataFrame(_records("GAD", rows, hit=[True, False, False, False], budget=8))
    shapes = analysis.malformed_shapes(frame)
    assert shapes[["shape", "answers", "share_of_malformed", "example"]].values.tolist() == [
        ["a a", 2, pytest.approx(2 / 3), "maybe yes"],
        ["9", 1, pytest.approx(1 / 3), "12"],
    ]
    hits = analysis.budget_hits(frame)
    assert hits.values.tolist() == [["tuned", "GAD", 4, 0.25, 8.0]]


def test_majority_class_comes_from_training_rows_and_scores_the_evaluated_rows() -> None:
    tasks = {"GAD": get_task("GAD"), "NCBI-disease": get_task("NCBI-disease")}
    train = [{"source": "GAD", "input": "s", "output": out} for out in (A, N, N)] + [
        {"source": "NCBI-disease", "input": "a", "output": "a : O"}
    ]
    assert analysis.majority_values(train, tasks) == {"GAD": N}
    gold = [A, A, N, N]
    reference = analysis.majority_reference(tasks["GAD"], gold, ["g"] * 4, A)
    assert reference == {"answer": A, "value": pytest.approx(2 / 3), "metric": "f1"}  # F1 of always `Association`
    assert analysis.majority_reference(tasks["GAD"], gold, ["g"] * 4, N)["value"] == 0.0


def test_analyse_writes_every_table_into_the_run_folder(tmp_path: Path) -> None:
    run = Run(tmp_path / "run")
    records = _records("GAD", [(A, A, A), (N, None, "x")]) + _records(
        "NCBI-disease", [(("B", "O", "O", "O", "O"), ("O", "O", "O", "O", "O"), "")]
    )
    run.write_predictions("tuned", records)
    found = analysis.analyse(run)
    assert sorted(found) == ["budget_hits", "confusion/tuned/GAD", "malformed_shapes", "ner_errors/tuned/NCBI-disease"]
    for name, table in found.items():
        written = run.analysis(name)
        assert list(written.columns) == list(table.columns) and len(written) == len(table), name
    assert run.analysis("ner_errors/tuned/NCBI-disease").span.tolist() == ["a"]
    assert run.analysis("nothing").empty
