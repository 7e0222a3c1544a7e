"""`python -m medtune_utils.score`: generations made anywhere, scored as notebook 03 scores them; NER read three ways."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medtune_utils.metrics import micro_f1, score_ner
from medtune_utils.score import main, score_files, score_folder
from medtune_utils.tasks import get_task
from medtune_utils.tasks.ner import aligned_tags, authors_sequences, tags_by_position

NCBI = get_task("NCBI-disease")
VALID = set(NCBI.label_names)


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _ner_row(input_text: str, tags: tuple[str, ...], generation: str, row_id: str) -> dict[str, str]:
    gold = NCBI.render(tags, input_text)
    return {"id": row_id, "source": "NCBI-disease", "input": input_text, "gold": gold, "generation": generation}


def test_ncbi_devel_gold_scores_100_in_all_three_modes(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every NCBI-disease devel sentence answered with its gold (as the authors' template's completion) scores 100."""
    rows = []
    for record in NCBI.load(shared_data / "NCBI-disease", "devel"):
        input_text, output = NCBI.to_example(record)
        rows.append(
            {"id": record.id, "source": "NCBI-disease", "input": input_text, "gold": output, "generation": f" {output} \n"}
        )
    path = _write(tmp_path / "gold.jsonl", rows)
    out = tmp_path / "scores.json"
    assert main([str(path), "--out", str(out), "--model", "gold", "--bootstrap-samples", "5"]) == 0
    entry = json.loads(out.read_text())["models"]["gold"]["NCBI-disease"]
    assert entry["n"] == len(rows) > 900
    assert entry["malformed_rate"] == 0.0
    for name in ("f1_strict", "f1_lenient", "f1_strict_aligned", "f1_lenient_aligned", "f1_authors"):
        assert entry["metrics"][name] == 1.0, name
        assert entry["intervals"][name] == [1.0, 1.0], name
    assert "NCBI-disease" in capsys.readouterr().out


# Three hand-made answers (gold tags below each input) where the three readings differ:
#   skipped token: the `causes` line is missing.
#     position: O B I O vs gold O O B I -> tp 0, fp 1, fn 1; aligned (by token text): O O B I -> tp 1;
#     authors (dict by token, `causes` missing -> O): O O B I -> tp 1
#   repeated token: both `cancer`s are entities and the answer is exact.
#     position and aligned: tp 2; authors: `cancer` keys one dict entry -> one gold entity, tp 1
#   merged line: `Tay - Sachs` written as one line.
#     position: B I O O vs B I I I -> strict and lenient tp 0, fp 1, fn 1
#     aligned: only `disease` aligns (tail) -> O O O I; strict IOB2 ignores the lone I (fn 1), lenient reads an entity
#     (fp 1, fn 1); authors: `Tay - Sachs` is no gold token -> O O O I, lenient (seqeval default): fp 1, fn 1
# Totals: position tp 2, fp 2, fn 2 -> 1/2 (strict = lenient); aligned strict tp 3, fp 0, fn 1 -> 6/7,
#   aligned lenient tp 3, fp 1, fn 1 -> 3/4; authors tp 2, fp 1, fn 1 -> 2/3.
HAND_MADE = [
    ("BRCA1 causes breast cancer", ("O", "O", "B", "I"), "BRCA1 : O\nbreast : B\ncancer : I"),
    ("cancer patients with cancer", ("B", "O", "O", "B"), "cancer : B\npatients : O\nwith : O\ncancer : B"),
    ("Tay - Sachs disease", ("B", "I", "I", "I"), "Tay - Sachs : B\ndisease : I"),
]


def test_hand_made_generations_give_the_hand_computed_value_in_each_mode(tmp_path: Path) -> None:
    rows = [_ner_row(x, tags, g, f"r{i}") for i, (x, tags, g) in enumerate(HAND_MADE)]
    scores = score_files([_write(tmp_path / "hand.jsonl", rows)], samples=10, seed=0)
    entry = scores["models"]["hand"]["NCBI-disease"]
    metrics = entry["metrics"]
    assert metrics["f1_strict"] == pytest.approx(1 / 2)
    assert metrics["f1_lenient"] == pytest.approx(1 / 2)
    assert metrics["f1_strict_aligned"] == pytest.approx(6 / 7)
    assert metrics["f1_lenient_aligned"] == pytest.approx(3 / 4)
    assert metrics["f1_authors"] == pytest.approx(2 / 3)
    assert metrics["headline"] == "f1_strict" and entry["value"] == pytest.approx(1 / 2)
    assert entry["malformed_rate"] == pytest.approx(2 / 3)  # the skipped and the merged line
    assert set(entry["intervals"]) == {"f1_strict", "f1_lenient", "f1_strict_aligned", "f1_lenient_aligned", "f1_authors"}


def test_authors_reading_cuts_at_the_next_header_and_splits_at_the_first_colon() -> None:
    """The generation ends at its first `###`; a token holding `:` is keyed by its text before that colon."""
    gold = "a : O\nratio : O\n1:2 : B"
    gold_tags, pred_tags = authors_sequences(gold, " a : O\nratio : O\n1:2 : B \n### Instruction: more\nx : B", VALID)
    # `1:2 : B` splits into key `1`, tag `2`: not a valid tag, so O on both sides (as the authors' scorer does)
    assert gold_tags == pred_tags == ["O", "O", "O"]
    assert authors_sequences("a : B\nb : I", "a:B\nb : X", VALID) == (["B", "I"], ["B", "O"])


def test_position_reading_skips_blank_lines_and_ignores_extra_ones() -> None:
    assert tags_by_position("a : B\n\n  \nb : I\nc : O\nd : B", 3, VALID) == ("B", "I", "O")
    assert tags_by_position("a : B\nno colon here\nc : i", 4, VALID) == ("B", "O", "I", "O")


_TOKENS = st.lists(st.text(alphabet="abcdefgh.-(", min_size=1, max_size=6), min_size=1, max_size=12, unique=True)


@settings(max_examples=40, deadline=None)
@given(tokens=_TOKENS, data=st.data())
def test_all_three_readings_agree_on_well_formed_answers_without_repeated_tokens(tokens: list[str], data: Any) -> None:
    """Same tags, same entity counts and the same F1 in every mode, for any exact answer with distinct tokens."""
    gold = tuple(data.draw(st.lists(st.sampled_from(["B", "I", "O"]), min_size=len(tokens), max_size=len(tokens))))
    pred = tuple(data.draw(st.lists(st.sampled_from(["B", "I", "O"]), min_size=len(tokens), max_size=len(tokens))))
    input_text = " ".join(tokens)
    answer = NCBI.render(pred, input_text)
    assert tags_by_position(answer, len(tokens), VALID) == pred
    assert aligned_tags(answer, tokens, VALID) == pred
    assert authors_sequences(NCBI.render(gold, input_text), answer, VALID) == (list(gold), list(pred))
    metrics, rows = NCBI.score([gold], [NCBI.parse(answer, input_text).value], ["g"], [answer], [input_text])
    assert metrics["f1_lenient_aligned"] == pytest.approx(metrics["f1_lenient"])
    assert metrics["f1_authors"] == pytest.approx(metrics["f1_lenient"])
    assert metrics["f1_strict_aligned"] == pytest.approx(metrics["f1_strict"])
    reference = score_ner([gold], [pred])  # seqeval itself, strict IOB2 and default mode
    assert (metrics["f1_strict"], metrics["f1_lenient"]) == (
        pytest.approx(reference["f1_strict"]),
        pytest.approx(reference["f1_lenient"]),
    )
    assert np.array_equal(rows["f1_lenient"], rows["f1_authors"])
    assert metrics["f1_authors"] == pytest.approx(micro_f1(rows["f1_authors"]))


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"source": "NCBI-disease", "input": "a b"', "invalid JSON"),
        ('["NCBI-disease"]', "expected a JSON object"),
        ('{"source": "NCBI-disease", "input": "a b", "gold": "a : O\\nb : O"}', "missing field 'generation'"),
        ('{"source": "Nowhere", "input": "a", "gold": "x", "generation": ""}', "unknown source 'Nowhere'"),
        ('{"source": "NCBI-disease", "input": "a b", "gold": "a : O", "generation": ""}', "gold is not a well-formed"),
        ('{"source": "GAD", "input": "s", "gold": 1, "generation": "x"}', "field 'gold' must be a string"),
    ],
)
def test_a_bad_line_is_an_error_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, expected: str
) -> None:
    good = json.dumps({"source": "GAD", "input": "s", "gold": "Association", "generation": "Association"})
    path = tmp_path / "preds.jsonl"
    path.write_text(f"{good}\n{line}\n", encoding="utf-8")
    assert main([str(path), "--out", str(tmp_path / "s.json")]) == 2
    err = capsys.readouterr().err
    assert f"{path}:2:" in err and expected in err
    assert not (tmp_path / "s.json").exists()


def test_repeated_ids_are_refused(tmp_path: Path) -> None:
    row = {"id": 7, "source": "GAD", "input": "s", "gold": "Association", "generation": "Association"}
    path = _write(tmp_path / "p.jsonl", [row, row])
    with pytest.raises(ValueError, match=r"p.jsonl:2: id '7' already used on line 1"):
        score_files([path], samples=0)


def test_a_folder_scores_each_file_as_a_model_and_compares_them_on_the_same_rows(tmp_path: Path) -> None:
    """Labels through the same parsers and metrics: a blank HoC answer is never an exact match, even for `None`."""
    rows = [
        {"id": "1", "source": "HoC", "input": "Cells divide.", "gold": "None", "generation": "None"},
        {
            "id": "2",
            "source": "HoC",
            "input": "Tumours grow vessels.",
            "gold": "Inducing angiogenesis (A)",
            "generation": "Inducing angiogenesis (A)",
        },
        {"id": "3", "source": "GAD", "input": "s", "gold": "Association", "generation": "Association"},
    ]
    _write(tmp_path / "a.jsonl", rows)
    _write(tmp_path / "b.jsonl", [{**rows[0], "generation": ""}, *rows[1:]])
    scores = score_folder(tmp_path, samples=20, seed=0)
    assert list(scores["models"]) == ["a", "b"]
    assert scores["models"]["a"]["HoC"]["metrics"]["exact_match"] == 1.0
    assert scores["models"]["b"]["HoC"]["metrics"]["exact_match"] == 0.5
    assert scores["models"]["b"]["HoC"]["metrics"]["micro_f1"] == pytest.approx(2 / 3)  # the blank answer is a false positive
    assert scores["models"]["b"]["HoC"]["malformed_rate"] == 0.5
    assert {c["source"] for c in scores["comparisons"]} == {"HoC", "GAD"}
