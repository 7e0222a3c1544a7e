"""Tables from the hand-made run folder tests/fixtures/run_small and the paper's numbers; answers side by side."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pandas as pd
import pytest
from frames import only_row

from medtune_utils import tables
from medtune_utils.io import read_jsonl, write_jsonl_atomic
from medtune_utils.paths import resolve
from medtune_utils.report import PAPER_RESULTS, collect_per_label, collect_scores, first_stats, load_paper_results
from medtune_utils.run import Run
from medtune_utils.tasks import TASKS, get_task

FIXTURE = Path(__file__).parent / "fixtures" / "run_small"
RUN = "run_small"


@pytest.fixture(scope="module")
def main_table() -> pd.DataFrame:
    return tables.main_results_table(collect_scores([FIXTURE]), load_paper_results())


def test_main_results_table_prints_paper_numbers_as_written(main_table: pd.DataFrame) -> None:
    """Every number in paper_results.csv appears verbatim (trailing zeros kept) in its cell."""
    with resolve(PAPER_RESULTS).open(newline="", encoding="utf-8") as fh:
        paper = list(csv.DictReader(fh))
    assert {"87.18", "85.69", "88.62", "89.46", "37.20", "82.30"} <= {row["value"] for row in paper}
    metric = {"f1_lenient": "F1 (lenient)", "f1_authors": "F1 (authors' scorer)", "accuracy": "Accuracy"}
    for row in paper:
        cell = only_row(main_table, Dataset=row["source"], Metric=metric[row["metric"]])[f"{row['model']} (paper)"]
        assert cell == row["value"], row


def test_main_results_table_names_splits_and_shows_our_intervals(main_table: pd.DataFrame) -> None:
    """Each row says which split our numbers and the paper's came from; our cells carry the bootstrap interval."""
    assert {"Split (ours)", "Split (paper)", f"{RUN}/base", f"{RUN}/tuned"} <= set(main_table.columns)
    assert only_row(main_table, Dataset="GAD", Metric="F1")["Split (ours)"] == "test"
    lenient = only_row(main_table, Dataset="NCBI-disease", Metric="F1 (lenient)")
    assert lenient["Split (ours)"] == "devel"
    authors = only_row(main_table, Dataset="NCBI-disease", Metric="F1 (authors' scorer)")
    assert authors["Split (ours)"] == "devel" and "devel" in authors["Split (paper)"]
    assert authors["Llama2-MedTuned-7B (paper)"] == "87.18" and authors[f"{RUN}/tuned"] != ""
    # f1_lenient 0.8544 with interval [0.8217, 0.8843] in scores.json
    assert lenient[f"{RUN}/tuned"] == "85.44 [82.2, 88.4]"
    assert only_row(main_table, Dataset="MedNLI", Metric="Accuracy")["Split (paper)"] == "unstated"
    # a paper row without any run of ours stays, with empty cells for the run
    assert only_row(main_table, Dataset="BC2GM", Metric="F1 (lenient)")[f"{RUN}/tuned"] == ""


def _write_paper_csv(path: Path) -> Path:
    header = "source,task,model,role,metric,metric_reported,value,split,reference,note"
    rows = ["GAD,re,X,tuned LLM,f1,F1,88.6,test,ref,", "GAD,re,Y,encoder baseline,f1,F1,91.255,test,ref,"]
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_paper_numbers_keep_any_written_precision(tmp_path: Path) -> None:
    """A paper number written with one or three decimals is reprinted as written, not re-rounded to two."""
    table = tables.main_results_table(collect_scores([]), load_paper_results(_write_paper_csv(tmp_path / "paper.csv")))
    gad = only_row(table, Dataset="GAD", Metric="F1")
    assert (gad["X (paper)"], gad["Y (paper)"]) == ("88.6", "91.255")
    assert "Split (ours)" not in table.columns


def test_composition_table_rows() -> None:
    """One row per source in registry order plus a total; lengths are row-weighted means over both splits."""
    table = tables.composition_table(first_stats([FIXTURE]))
    order = ["NCBI-disease", "BC5CDR-chem", "GAD", "MedNLI", "HoC", "PubMedQA", "ChatDoctor", "Total"]
    assert list(table.Dataset) == order
    ncbi = only_row(table, Dataset="NCBI-disease")
    assert (ncbi["Train rows"], ncbi["Validation rows"], ncbi["Validation split"]) == (5424, 200, "devel")
    # (509.8 * 5424 + 503.2 * 200) / 5624 = 509.57 -> 510 (the unweighted mean of the two would be 506.5)
    # (158.7 * 5424 + 152.6 * 200) / 5624 = 158.48 -> 158
    assert (ncbi["Prompt chars"], ncbi["Answer chars"]) == (510, 158)
    assert only_row(table, Dataset="GAD")["Validation split"] == "test"
    assert only_row(table, Dataset="ChatDoctor")["Validation split"] == "heldout"
    total = only_row(table, Dataset="Total")
    # 4560 + 5000 + 4261 + 12119 + 11232 + 5424 + 450 and 5 * 200 + 2 * 50
    assert (total["Train rows"], total["Validation rows"]) == (43046, 1100)
    assert list(tables.composition_table(pd.DataFrame()).columns) == tables.COMPOSITION_COLUMNS


def test_per_label_tables() -> None:
    """HoC: one row per hallmark in the registry's order, percent per run/model; i2b2-2010 (not run): an absent note."""
    per_label = collect_per_label([FIXTURE])
    hoc = tables.per_label_table(per_label, "HoC")
    assert list(hoc.Label) == list(TASKS["HoC"].labels)
    assert list(hoc.columns) == ["Label", f"{RUN}/base", f"{RUN}/tuned"]
    angiogenesis = only_row(hoc, Label="Inducing angiogenesis (A)")
    assert (angiogenesis[f"{RUN}/base"], angiogenesis[f"{RUN}/tuned"]) == ("19.05", "76.92")
    assert list(tables.per_label_table(per_label, "i2b2-2010").Label) == ["i2b2-2010: absent (not evaluated in these runs)"]


def test_malformed_table() -> None:
    """Malformed-answer rate (percent) per evaluated source and run/model."""
    table = tables.malformed_table(collect_scores([FIXTURE]))
    assert list(table.Dataset) == ["NCBI-disease", "GAD", "MedNLI", "HoC"]
    assert list(table[f"{RUN}/base"]) == [62.0, 44.0, 53.5, 71.0]
    assert list(table[f"{RUN}/tuned"]) == [1.5, 0.0, 0.5, 2.0]


def test_scores_table() -> None:
    """One row per model and source: split read, headline metric with interval, n, malformed rate, majority class."""
    table = tables.scores_table(Run(FIXTURE).scores())
    assert list(table.columns) == ["model", "source", "split", "metric", "score (%)", "n", "malformed (%)", "majority class (%)"]
    assert list(table.source[:4]) == ["NCBI-disease", "GAD", "MedNLI", "HoC"]
    gad = only_row(table, model="tuned", source="GAD")
    assert list(gad[2:]) == ["test", "F1", "79.12 [73.1, 84.5]", 200, 0.0, ""]


def _with_majority(tmp_path: Path) -> Path:
    """A copy of the fixture run whose GAD scores carry a majority-class reference (F1 0.6458 of always `Association`)."""
    run_dir = tmp_path / RUN
    shutil.copytree(FIXTURE, run_dir)
    run = Run(run_dir)
    scores = run.scores()
    for entry in scores["models"].values():
        entry["GAD"]["majority"] = {"answer": "Association", "value": 0.6458, "metric": "f1"}
    run.write_scores(scores)
    return run_dir


def test_the_majority_class_reference_shows_beside_each_model_and_run(tmp_path: Path) -> None:
    run_dir = _with_majority(tmp_path)
    table = tables.scores_table(Run(run_dir).scores())
    assert only_row(table, model="tuned", source="GAD")["majority class (%)"] == "64.58"
    assert only_row(table, model="tuned", source="NCBI-disease")["majority class (%)"] == ""
    main = tables.main_results_table(collect_scores([run_dir]), load_paper_results())
    assert only_row(main, Dataset="GAD", Metric="F1")[f"{RUN}/majority class"] == "64.58"
    assert only_row(main, Dataset="NCBI-disease", Metric="F1 (strict)")[f"{RUN}/majority class"] == ""
    assert f"{RUN}/majority class" not in tables.main_results_table(collect_scores([FIXTURE]), load_paper_results())


def test_side_by_side_reads_input_and_renders_gold() -> None:
    """Input from the record's `input` column; gold in the task's own answer format; one column per model."""
    table = tables.side_by_side(FIXTURE, per_source=1)
    assert list(table.columns) == ["source", "input", "gold", "base", "tuned"]
    assert list(table.source) == ["NCBI-disease", "GAD", "MedNLI", "HoC"]
    first = {r["id"]: r for r in read_jsonl(FIXTURE / "predictions" / "base" / "NCBI-disease.jsonl")}["NCBI-disease/devel/4"]
    ncbi = only_row(table, source="NCBI-disease")
    assert ncbi["input"] == first["input"]
    assert ncbi["gold"] == get_task("NCBI-disease", "lines").render(tuple(first["gold"]), first["input"])
    assert ncbi["gold"].splitlines()[12] == "Tay : B"
    assert only_row(table, source="HoC")["gold"] == "Deregulating cellular energetics (CE)"


def test_side_by_side_never_parses_the_prompt(tmp_path: Path) -> None:
    """A prompt in another template changes nothing: the input comes from the record; blank answers are shown."""
    run = Path(shutil.copytree(FIXTURE, tmp_path / "other_template"))
    for model in ("base", "tuned"):
        path = run / "predictions" / model / "GAD.jsonl"
        records = [{**r, "prompt": "<s>[INST] something else [/INST]", "template": "llama2-chat"} for r in read_jsonl(path)]
        if model == "base":
            records[0]["generation"] = "\n\n"
        write_jsonl_atomic(path, records)
    gad = only_row(tables.side_by_side(run, sources=["GAD"]), source="GAD")
    assert gad["input"].startswith("Individuals with two copies of the minor @GENE$")
    assert gad["base"] == "(blank: 2 newlines)" and gad["tuned"] == "Association"


def test_side_by_side_of_a_missing_model_or_run(tmp_path: Path) -> None:
    """A model without predictions for a source shows `(absent)`; a run without predictions gives an empty table."""
    run = Path(shutil.copytree(FIXTURE, tmp_path / "no_tuned_gad"))
    (run / "predictions" / "tuned" / "GAD.jsonl").unlink()
    gad = only_row(tables.side_by_side(run, sources=["GAD"]), source="GAD")
    assert gad["tuned"] == "(absent)" and gad["base"].startswith("Yes, @GENE$")
    assert tables.side_by_side(tmp_path / "never_ran").empty


def test_save_table_writes_markdown_latex_and_csv(tmp_path: Path) -> None:
    """Caption above the Markdown table, a labelled LaTeX table, CSV with empty cells; nothing else left behind."""
    table = pd.DataFrame({"Dataset": ["GAD", "HoC"], "value": ["37.20", None]})
    paths = tables.save_table(table, tmp_path, "t", caption="A caption.")
    assert [p.name for p in paths] == ["t.md", "t.tex", "t.csv"] and sorted(tmp_path.iterdir()) == sorted(paths)
    assert (tmp_path / "t.md").read_text().startswith("A caption.\n\n| Dataset")
    assert "\\label{tab:t}" in (tmp_path / "t.tex").read_text() and "37.20" in (tmp_path / "t.tex").read_text()
    assert (tmp_path / "t.csv").read_text() == "Dataset,value\nGAD,37.20\nHoC,\n"
    assert (tables.fmt(float("nan")), tables.fmt(85.444, 82.17, 88.43)) == ("", "85.44 [82.2, 88.4]")
