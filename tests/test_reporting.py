"""Reporting on the hand-made run folder tests/fixtures/run_small: every table and figure, the paper's numbers, absences."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medtune_utils.assemble import assemble
from medtune_utils.config import DataConfig
from medtune_utils.evaluate import score_predictions
from medtune_utils.io import read_jsonl
from medtune_utils.metrics import paired_bootstrap, row_statistic
from medtune_utils.paths import resolve
from medtune_utils.reporting import (
    PAPER_RESULTS,
    Report,
    build_report,
    collect_comparisons,
    collect_scores,
    load_paper_results,
    main,
    main_results_table,
    plot_composition,
    plot_gains,
    plot_generation_lengths,
    plot_sample_outputs,
    plot_training_curves,
    side_by_side,
)
from medtune_utils.tasks import TASKS, get_task

FIXTURE = Path(__file__).parent / "fixtures" / "run_small"
RUN = "run_small"
FIGURES = ("results", "composition", "gains", "training_curves", "generation_lengths", "sample_outputs")
TABLES = ("main_results", "composition", "per_label_hoc", "per_label_i2b2_2010", "malformed")
# The keys `evaluate.evaluate` writes at the top of scores.json.
SCORES_KEYS = {"run", "profile", "eval_split", "source_splits", "models", "comparisons"}


def _expected_files(out: Path, figures: tuple[str, ...], tables: tuple[str, ...]) -> set[Path]:
    return {out / f"{n}.{s}" for n in figures for s in ("png", "pdf")} | {
        out / f"{n}.{s}" for n in tables for s in ("md", "tex", "csv")
    }


def _copy_run(tmp_path: Path, name: str) -> Path:
    return Path(shutil.copytree(FIXTURE, tmp_path / name))


def _edit_scores(run: Path, drop_models: frozenset[str] = frozenset(), drop_sources: frozenset[str] = frozenset()) -> None:
    """Drop models or sources from a copied run, as if `evaluate` had never scored them."""
    path = run / "scores.json"
    scores = json.loads(path.read_text())
    scores["models"] = {
        model: {s: entry for s, entry in sources.items() if s not in drop_sources}
        for model, sources in scores["models"].items()
        if model not in drop_models
    }
    scores["comparisons"] = [
        c for c in scores["comparisons"] if c["source"] not in drop_sources and c["model_b"] not in drop_models
    ]
    path.write_text(json.dumps(scores, indent=2, sort_keys=True))


def _row(table: pd.DataFrame, **where: str) -> pd.Series:
    hit = table
    for column, value in where.items():
        hit = hit[hit[column] == value]
    assert len(hit) == 1, where
    return hit.iloc[0]


def _absent_notes(fig: plt.Figure) -> list[str]:
    notes = [t.get_text() for ax in fig.axes for t in ax.texts if t.get_text().startswith("absent:")]
    plt.close(fig)
    return notes


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Report, Path]:
    out = tmp_path_factory.mktemp("report")
    return build_report([FIXTURE], out), out


# ---------------------------------------------------------------- the fixture itself


def test_fixture_scores_have_the_schema_evaluate_writes() -> None:
    """Each scores.json entry has the keys `score_predictions` gives for the same tasks, with consistent values."""
    scores = json.loads((FIXTURE / "scores.json").read_text())
    assert set(scores) == SCORES_KEYS and scores["run"] == RUN
    predictions = {f.stem: list(read_jsonl(f)) for f in sorted((FIXTURE / "predictions" / "base").glob("*.jsonl"))}
    real, _ = score_predictions(predictions, {s: get_task(s, "lines") for s in predictions}, samples=10, seed=0)
    for model, sources in scores["models"].items():
        assert set(sources) == set(real), model
        for source, entry in sources.items():
            assert set(entry) == set(real[source]) and entry["task"] == real[source]["task"], (model, source)
            assert set(entry["metrics"]) == set(real[source]["metrics"]), (model, source)
            assert set(entry["intervals"]) == set(real[source]["intervals"]), (model, source)
            assert entry["value"] == entry["metrics"][entry["headline"]]
            assert entry["intervals"][entry["headline"]] == [entry["ci_low"], entry["ci_high"]]
            assert entry["ci_low"] <= entry["value"] <= entry["ci_high"]
    test_keys = set(paired_bootstrap(row_statistic(np.ones(2)), row_statistic(np.ones(2)), 2, samples=2))
    for comparison in scores["comparisons"]:
        assert set(comparison) == {"source", "model_a", "model_b"} | test_keys
        base, tuned = (scores["models"][m][comparison["source"]]["value"] for m in ("base", "tuned"))
        assert comparison["delta"] == pytest.approx(tuned - base)


def test_fixture_predictions_are_what_the_parsers_give() -> None:
    """Prediction records carry the six fields evaluate writes; prediction and well_formed re-parse from the generation."""
    for folder in sorted((FIXTURE / "predictions").iterdir()):
        for file in sorted(folder.glob("*.jsonl")):
            task = get_task(file.stem, "lines")
            for record in read_jsonl(file):
                assert set(record) == {"id", "prompt", "generation", "prediction", "gold", "well_formed"}, file
                input_text = record["prompt"].split("### Input:\n", 1)[1].split("\n\n### Response:", 1)[0]
                parsed = task.parse(record["generation"], input_text)
                value = list(parsed.value) if isinstance(parsed.value, tuple) else parsed.value
                assert (value, parsed.well_formed) == (record["prediction"], record["well_formed"]), record["id"]


def test_fixture_stats_have_the_columns_assemble_writes(sample_dir: Path) -> None:
    """stats.csv: assemble's columns plus the two token columns a tokenizer adds; source_splits come from it."""
    stats = pd.read_csv(FIXTURE / "data" / "stats.csv")
    real = assemble(DataConfig(dir=str(sample_dir), sources=["GAD"]), seed=0).stats
    assert list(stats.columns) == [*real.columns, "prompt_tokens", "completion_tokens"]
    validation = stats[stats.split == "validation"]
    scores = json.loads((FIXTURE / "scores.json").read_text())
    assert scores["source_splits"] == dict(zip(validation.source, validation.source_split))


# ---------------------------------------------------------------- the full report


def test_report_writes_every_figure_and_table(full_report: tuple[Report, Path]) -> None:
    """PNG (300 dpi) and PDF for each figure, Markdown/LaTeX/CSV for each table, nothing else left behind."""
    report, out = full_report
    expected = _expected_files(out, FIGURES, TABLES)
    assert set(report.files) == expected
    assert set(out.iterdir()) == expected  # no temporary files left over
    for path in expected:
        assert path.stat().st_size > 0, path
    for name in FIGURES:
        with Image.open(out / f"{name}.png") as image:
            assert image.info["dpi"] == pytest.approx((300, 300), abs=0.01), name
        assert (out / f"{name}.pdf").read_bytes().startswith(b"%PDF"), name
    assert set(report.tables) == set(TABLES)


def test_main_results_table_prints_paper_numbers_as_written(full_report: tuple[Report, Path]) -> None:
    """Every number in paper_results.csv appears verbatim (trailing zeros kept) in its cell and in every format."""
    report, out = full_report
    table = report.tables["main_results"]
    with resolve(PAPER_RESULTS).open(newline="", encoding="utf-8") as fh:
        paper = list(csv.DictReader(fh))
    assert {"87.18", "85.69", "88.62", "89.46", "37.20", "82.30"} <= {row["value"] for row in paper}
    texts = {suffix: (out / f"main_results.{suffix}").read_text() for suffix in ("md", "tex", "csv")}
    metric = {"f1_lenient": "F1 (lenient)", "accuracy": "Accuracy"}
    for row in paper:
        cell = _row(table, Dataset=row["source"], Metric=metric[row["metric"]])[f"{row['model']} (paper)"]
        assert cell == row["value"], row
        if row["value"]:
            assert all(row["value"] in text for text in texts.values()), row


def test_main_results_table_names_splits_and_shows_our_intervals(full_report: tuple[Report, Path]) -> None:
    """Each row says which split our numbers and the paper's came from; our cells carry the bootstrap interval."""
    report, out = full_report
    table = report.tables["main_results"]
    assert {"Split (ours)", "Split (paper)", f"{RUN}/base", f"{RUN}/tuned"} <= set(table.columns)
    assert _row(table, Dataset="GAD", Metric="F1")["Split (ours)"] == "test"
    lenient = _row(table, Dataset="NCBI-disease", Metric="F1 (lenient)")
    assert lenient["Split (ours)"] == "devel" and "devel" in lenient["Split (paper)"]
    # f1_lenient 0.8544 with interval [0.8217, 0.8843] in scores.json
    assert lenient[f"{RUN}/tuned"] == "85.44 [82.2, 88.4]"
    assert _row(table, Dataset="MedNLI", Metric="Accuracy")["Split (paper)"] == "unstated"
    # a paper row without any run of ours stays, with empty cells for the run
    assert _row(table, Dataset="BC2GM", Metric="F1 (lenient)")[f"{RUN}/tuned"] == ""
    assert "split" in (out / "main_results.md").read_text().splitlines()[0].lower()


def test_composition_table_rows(full_report: tuple[Report, Path]) -> None:
    """One row per source in registry order plus a total; lengths are row-weighted means over both splits."""
    table = full_report[0].tables["composition"]
    order = ["NCBI-disease", "BC5CDR-chem", "GAD", "MedNLI", "HoC", "PubMedQA", "ChatDoctor", "Total"]
    assert list(table.Dataset) == order
    ncbi = _row(table, Dataset="NCBI-disease")
    assert (ncbi["Train rows"], ncbi["Validation rows"], ncbi["Validation split"]) == (5424, 200, "devel")
    # (509.8 * 5424 + 503.2 * 200) / 5624 = 509.57 -> 510 (the unweighted mean of the two would be 506.5)
    # (158.7 * 5424 + 152.6 * 200) / 5624 = 158.48 -> 158
    assert (ncbi["Prompt chars"], ncbi["Answer chars"]) == (510, 158)
    assert _row(table, Dataset="GAD")["Validation split"] == "test"
    assert _row(table, Dataset="ChatDoctor")["Validation split"] == "heldout"
    total = _row(table, Dataset="Total")
    # 4560 + 5000 + 4261 + 12119 + 11232 + 5424 + 450 and 5 * 200 + 2 * 50
    assert (total["Train rows"], total["Validation rows"]) == (43046, 1100)


def test_per_label_tables(full_report: tuple[Report, Path]) -> None:
    """HoC: one row per hallmark in the registry's order, percent per run/model; i2b2-2010 (not run): an absent note."""
    tables = full_report[0].tables
    hoc = tables["per_label_hoc"]
    assert list(hoc.Label) == list(TASKS["HoC"].labels)
    assert list(hoc.columns) == ["Label", f"{RUN}/base", f"{RUN}/tuned"]
    angiogenesis = _row(hoc, Label="Inducing angiogenesis (A)")
    assert (angiogenesis[f"{RUN}/base"], angiogenesis[f"{RUN}/tuned"]) == ("19.05", "76.92")
    assert list(tables["per_label_i2b2_2010"].Label) == ["i2b2-2010: absent (not evaluated in these runs)"]


def test_malformed_table(full_report: tuple[Report, Path]) -> None:
    """Malformed-answer rate (percent) per evaluated source and run/model."""
    table = full_report[0].tables["malformed"]
    assert list(table.Dataset) == ["NCBI-disease", "GAD", "MedNLI", "HoC"]
    assert list(table[f"{RUN}/base"]) == [62.0, 44.0, 53.5, 71.0]
    assert list(table[f"{RUN}/tuned"]) == [1.5, 0.0, 0.5, 2.0]


# ---------------------------------------------------------------- absences


@pytest.fixture(scope="module")
def degraded_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Report, Path, list[Path]]:
    """One report over four damaged runs: missing folder, scores only, base model only, HoC skipped."""
    root = tmp_path_factory.mktemp("degraded")
    scores_only = _copy_run(root, "scores_only")
    for part in ("predictions", "data"):
        shutil.rmtree(scores_only / part)
    (scores_only / "train_log.jsonl").unlink()
    base_only = _copy_run(root, "base_only")
    _edit_scores(base_only, drop_models=frozenset({"tuned"}))
    shutil.rmtree(base_only / "predictions" / "tuned")
    no_hoc = _copy_run(root, "no_hoc")
    _edit_scores(no_hoc, drop_sources=frozenset({"HoC"}))
    for model in ("base", "tuned"):
        (no_hoc / "predictions" / model / "HoC.jsonl").unlink()
    (no_hoc / "predictions" / "tuned" / "GAD.jsonl").unlink()
    runs = [root / "never_ran", scores_only, base_only, no_hoc]
    return build_report(runs, root / "out"), root / "out", runs


def test_damaged_runs_still_give_every_file(degraded_report: tuple[Report, Path, list[Path]]) -> None:
    """A missing folder first in the list, and runs lacking parts, never stop the report."""
    report, out, _ = degraded_report
    assert set(report.files) == _expected_files(out, FIGURES, TABLES)
    columns = {column for table in report.tables.values() for column in table.columns}
    assert not any("never_ran" in column for column in columns)


def test_run_without_predictions_logs_or_stats(degraded_report: tuple[Report, Path, list[Path]]) -> None:
    """Scores alone still fill the main table; composition comes from the first run that has stats.csv."""
    report, _, runs = degraded_report
    assert _row(report.tables["main_results"], Dataset="MedNLI", Metric="Accuracy")["scores_only/tuned"] == "78.00 [72.0, 83.5]"
    assert _row(report.tables["composition"], Dataset="Total")["Train rows"] == 43046
    assert side_by_side(runs[1]).empty


def test_model_absent_from_a_run(degraded_report: tuple[Report, Path, list[Path]]) -> None:
    """A run that evaluated only the base model: no tuned column and no gains, base still reported."""
    report, _, runs = degraded_report
    main_table = report.tables["main_results"]
    assert "base_only/tuned" not in main_table.columns
    assert _row(main_table, Dataset="GAD", Metric="F1")["base_only/base"] == "55.63 [47.1, 63.4]"
    assert "base_only/base" in report.tables["malformed"].columns
    assert "base_only/tuned" not in report.tables["malformed"].columns
    assert collect_comparisons([runs[2]]).empty


def test_source_absent_from_one_run(degraded_report: tuple[Report, Path, list[Path]]) -> None:
    """A run that skipped HoC: empty HoC cells and no per-label column for it; a missing prediction file shows absent."""
    report, _, runs = degraded_report
    hoc = _row(report.tables["main_results"], Dataset="HoC", Metric="Micro-F1")
    assert hoc["scores_only/tuned"] == "68.74 [64.0, 73.2]" and hoc["no_hoc/tuned"] == ""
    assert not any(column.startswith("no_hoc/") for column in report.tables["per_label_hoc"].columns)
    malformed = report.tables["malformed"].set_index("Dataset")
    assert pd.isna(malformed.loc["HoC", "no_hoc/tuned"]) and malformed.loc["HoC", "scores_only/tuned"] == 2.0
    gad = side_by_side(runs[3], sources=["GAD"]).iloc[0]
    assert gad["tuned"] == "(absent)" and gad["base"].startswith("Yes, @GENE$")


def test_figures_of_absent_inputs_say_absent(tmp_path: Path) -> None:
    """With nothing to draw, each figure carries an `absent:` note instead of failing."""
    missing = tmp_path / "never_ran"
    assert _absent_notes(plot_composition(pd.DataFrame())) == ["absent: no data statistics"] * 2
    assert _absent_notes(plot_training_curves({})) == ["absent: no training log"] * 2
    assert _absent_notes(plot_gains(collect_comparisons([missing]))) != []
    assert _absent_notes(plot_generation_lengths(pd.DataFrame())) == ["absent: no predictions"]
    assert _absent_notes(plot_sample_outputs(side_by_side(missing))) == ["absent: no predictions"]


def test_no_runs_writes_only_paper_figures_and_tables(tmp_path: Path) -> None:
    """Without runs only the paper-based main table and results figure exist (no placeholders)."""
    out = tmp_path / "out"
    report = build_report([], out)
    assert set(report.files) == set(out.iterdir()) == _expected_files(out, ("results",), ("main_results",))
    table = report.tables["main_results"]
    assert "37.20" in set(table["Llama-2-13B (untuned) (paper)"])
    assert not any("/" in column for column in table.columns)


def _write_paper_csv(path: Path) -> Path:
    header = "source,task,model,role,metric,metric_reported,value,split,reference,note"
    rows = ["GAD,re,X,tuned LLM,f1,F1,88.6,test,ref,", "GAD,re,Y,encoder baseline,f1,F1,91.255,test,ref,"]
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_paper_numbers_keep_any_written_precision(tmp_path: Path) -> None:
    """A paper number written with one or three decimals is reprinted as written, not re-rounded to two."""
    table = main_results_table(collect_scores([]), load_paper_results(_write_paper_csv(tmp_path / "paper.csv")))
    gad = _row(table, Dataset="GAD", Metric="F1")
    assert (gad["X (paper)"], gad["Y (paper)"]) == ("88.6", "91.255")


def test_cli_writes_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m medtune_utils.reporting --out DIR [--paper CSV] RUNS...` prints every file it wrote.

    The run given does not exist (cheap: every run figure is an absent note); real runs go through the same
    `build_report` as the tests above.
    """
    out = tmp_path / "figures"
    main(["--out", str(out), "--paper", str(_write_paper_csv(tmp_path / "paper.csv")), str(tmp_path / "never_ran")])
    printed = {Path(line) for line in capsys.readouterr().out.splitlines()}
    assert printed == set(out.iterdir()) == _expected_files(out, FIGURES, TABLES)
    assert all(path.stat().st_size > 0 for path in printed)
    main_table = (out / "main_results.md").read_text()
    assert "91.255" in main_table and "87.18" not in main_table


def test_only_writes_the_named_items(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--only composition` writes the composition table and figure of a run and nothing else."""
    out = tmp_path / "figures"
    main(["--out", str(out), str(FIXTURE), "--only", "composition"])
    assert set(out.iterdir()) == _expected_files(out, ("composition",), ("composition",))
    assert "NCBI-disease" in (out / "composition.md").read_text()
    with pytest.raises(ValueError, match="unknown report item"):
        build_report([FIXTURE], out, only=["composition", "nope"])
