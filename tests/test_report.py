"""The whole report over the hand-made run folder tests/fixtures/run_small: files, absences, the command line."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from frames import only_row
from PIL import Image

from medtune_utils.io import read_jsonl
from medtune_utils.paths import resolve
from medtune_utils.report import PAPER_RESULTS, Report, build_report, collect_comparisons, collect_predictions, main
from medtune_utils.run import PREDICTION_COLUMNS, Run
from medtune_utils.tables import side_by_side
from medtune_utils.tasks import get_task

FIXTURE = Path(__file__).parent / "fixtures" / "run_small"
RUN = "run_small"
FIGURES = ("results", "composition", "gains", "training_curves", "generation_lengths", "sample_outputs")
TABLES = ("main_results", "composition", "per_label_hoc", "per_label_i2b2_2010", "malformed")
# The keys `evaluate` writes at the top of scores.json.
SCORES_KEYS = {"run", "profile", "eval_split", "source_splits", "models", "comparisons"}


def _expected_files(out: Path, figures: tuple[str, ...], tables: tuple[str, ...]) -> set[Path]:
    return {out / f"{n}.{s}" for n in figures for s in ("png", "pdf")} | {
        out / f"{n}.{s}" for n in tables for s in ("md", "tex", "csv")
    }


def _copy_run(root: Path, name: str) -> Path:
    return Path(shutil.copytree(FIXTURE, root / name))


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


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Report, Path]:
    out = tmp_path_factory.mktemp("report")
    return build_report([FIXTURE], out), out


# ---------------------------------------------------------------- the fixture itself


def test_fixture_scores_have_the_schema_evaluate_writes() -> None:
    """Each scores.json entry has the keys `score_predictions` gives for the same records, with consistent values."""
    from medtune_utils.evaluate import score_predictions
    from medtune_utils.metrics import paired_bootstrap, row_statistic

    run = Run(FIXTURE)
    scores = run.scores()
    assert set(scores) == SCORES_KEYS and scores["run"] == RUN
    records = run.predictions(["base"]).to_dict("records")
    sources = sorted({r["source"] for r in records})
    real, _ = score_predictions(records, {s: get_task(s, "lines") for s in sources}, samples=10, seed=0)
    for model, by_source in scores["models"].items():
        assert set(by_source) == set(real), model
        for source, entry in by_source.items():
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
    """Records carry every prediction column, consistent with their prompt; prediction and well_formed re-parse."""
    for folder in sorted((FIXTURE / "predictions").iterdir()):
        for file in sorted(folder.glob("*.jsonl")):
            task = get_task(file.stem, "lines")
            for record in read_jsonl(file):
                assert list(record) == list(PREDICTION_COLUMNS), file
                assert (record["source"], record["model"], record["task"]) == (file.stem, folder.name, task.family)
                assert f"### Input:\n{record['input']}\n\n### Response:" in record["prompt"] and record["template"] == "medtune"
                pmid = record["id"].rsplit("/", 1)[-1].split("_")[0]
                assert record["group"] == (pmid if file.stem == "HoC" else record["id"])
                assert isinstance(record["budget"], int) and record["hit_budget"] is False
                parsed = task.parse(record["generation"], record["input"])
                value = list(parsed.value) if isinstance(parsed.value, tuple) else parsed.value
                assert (value, parsed.well_formed) == (record["prediction"], record["well_formed"]), record["id"]


def test_fixture_stats_have_the_columns_assemble_writes(sample_dir: Path) -> None:
    """stats.csv: assemble's columns plus the two token columns a tokenizer adds; source_splits come from it."""
    from medtune_utils.assemble import assemble
    from medtune_utils.config import DataConfig

    run = Run(FIXTURE)
    stats = run.stats()
    real = assemble(DataConfig(dir=str(sample_dir), sources=["GAD"]), seed=0).stats
    assert list(stats.columns) == [*real.columns, "prompt_tokens", "completion_tokens"]
    validation = stats[stats.split == "validation"]
    assert run.scores()["source_splits"] == dict(zip(validation.source, validation.source_split))


# ---------------------------------------------------------------- the full report


@pytest.mark.slow
def test_report_writes_every_figure_and_table(full_report: tuple[Report, Path]) -> None:
    """PNG (300 dpi) and PDF for each figure, Markdown/LaTeX/CSV for each table, nothing else left behind."""
    report, out = full_report
    expected = _expected_files(out, FIGURES, TABLES)
    assert set(report.files) == expected
    assert set(out.iterdir()) == expected  # no temporary files left over
    for name in FIGURES:
        with Image.open(out / f"{name}.png") as image:
            assert image.info["dpi"] == pytest.approx((300, 300), abs=0.01), name
        assert (out / f"{name}.pdf").read_bytes().startswith(b"%PDF"), name
    assert set(report.tables) == set(TABLES)


@pytest.mark.slow
def test_report_figures_are_the_same_bytes_when_made_again(full_report: tuple[Report, Path], tmp_path: Path) -> None:
    """Regenerating the report leaves its figures byte for byte unchanged (nothing for git to see)."""
    _, out = full_report
    again = build_report([FIXTURE], tmp_path, only=["results", "gains", "sample_outputs"])
    assert len(again.files) == 6
    for path in again.files:
        assert path.read_bytes() == (out / path.name).read_bytes(), path.name


@pytest.mark.slow
def test_main_results_files_print_paper_numbers_as_written(full_report: tuple[Report, Path]) -> None:
    """Every number of paper_results.csv appears verbatim in the Markdown, LaTeX and CSV main table; splits named."""
    _, out = full_report
    with resolve(PAPER_RESULTS).open(newline="", encoding="utf-8") as fh:
        values = [row["value"] for row in csv.DictReader(fh) if row["value"]]
    for suffix in ("md", "tex", "csv"):
        text = (out / f"main_results.{suffix}").read_text()
        assert all(value in text for value in values), suffix
    assert "split" in (out / "main_results.md").read_text().splitlines()[0].lower()
    caption = (out / "main_results.md").read_text().splitlines()[0]
    assert "authors' scorer" in caption and "F1 (strict) reads tags by position" in caption
    authors_row = next(
        line
        for line in (out / "main_results.md").read_text().splitlines()
        if "NCBI-disease" in line and "authors' scorer" in line
    )
    assert "87.18" in authors_row, "the paper's Llama2-MedTuned NER numbers sit in the f1_authors row"


def test_collected_predictions_carry_run_and_length() -> None:
    """Every current model's records, with the run's name and the generation's length in words."""
    predictions = collect_predictions([FIXTURE])
    assert set(predictions.model) == {"base", "tuned"} and set(predictions.run) == {RUN}
    assert len(predictions) == 2 * (3 + 3 + 3 + 4)
    ncbi = only_row(predictions, model="tuned", id="NCBI-disease/devel/4")
    assert ncbi.words == 3 * 17


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


@pytest.mark.slow
def test_damaged_runs_still_give_every_file(degraded_report: tuple[Report, Path, list[Path]]) -> None:
    """A missing folder first in the list, and runs lacking parts, never stop the report."""
    report, out, _ = degraded_report
    assert set(report.files) == _expected_files(out, FIGURES, TABLES)
    columns = {column for table in report.tables.values() for column in table.columns}
    assert not any("never_ran" in column for column in columns)


@pytest.mark.slow
def test_run_without_predictions_logs_or_stats(degraded_report: tuple[Report, Path, list[Path]]) -> None:
    """Scores alone still fill the main table; composition comes from the first run that has data statistics."""
    report, _, runs = degraded_report
    assert (
        only_row(report.tables["main_results"], Dataset="MedNLI", Metric="Accuracy")["scores_only/tuned"] == "78.00 [72.0, 83.5]"
    )
    assert only_row(report.tables["composition"], Dataset="Total")["Train rows"] == 43046
    assert side_by_side(runs[1]).empty


@pytest.mark.slow
def test_model_absent_from_a_run(degraded_report: tuple[Report, Path, list[Path]]) -> None:
    """A run that evaluated only the base model: no tuned column and no gains, base still reported."""
    report, _, runs = degraded_report
    main_table = report.tables["main_results"]
    assert "base_only/tuned" not in main_table.columns
    assert only_row(main_table, Dataset="GAD", Metric="F1")["base_only/base"] == "55.63 [47.1, 63.4]"
    assert "base_only/base" in report.tables["malformed"].columns
    assert "base_only/tuned" not in report.tables["malformed"].columns
    assert collect_comparisons([runs[2]]).empty


@pytest.mark.slow
def test_source_absent_from_one_run(degraded_report: tuple[Report, Path, list[Path]]) -> None:
    """A run that skipped HoC: empty HoC cells and no per-label column for it; a missing prediction file shows absent."""
    report, _, runs = degraded_report
    hoc = only_row(report.tables["main_results"], Dataset="HoC", Metric="Micro-F1")
    assert hoc["scores_only/tuned"] == "68.74 [64.0, 73.2]" and hoc["no_hoc/tuned"] == ""
    assert not any(column.startswith("no_hoc/") for column in report.tables["per_label_hoc"].columns)
    malformed = report.tables["malformed"].set_index("Dataset")
    assert pd.isna(malformed.loc["HoC", "no_hoc/tuned"]) and malformed.loc["HoC", "scores_only/tuned"] == 2.0
    gad = side_by_side(runs[3], sources=["GAD"]).iloc[0]
    assert gad["tuned"] == "(absent)" and gad["base"].startswith("Yes, @GENE$")


def test_no_runs_writes_only_paper_figures_and_tables(tmp_path: Path) -> None:
    """Without runs only the paper-based main table and results figure exist (no placeholders)."""
    out = tmp_path / "out"
    report = build_report([], out)
    assert set(report.files) == set(out.iterdir()) == _expected_files(out, ("results",), ("main_results",))
    table = report.tables["main_results"]
    assert "37.20" in set(table["Llama-2-13B (untuned) (paper)"])
    assert not any("/" in column for column in table.columns)


# ---------------------------------------------------------------- the command line


def _write_paper_csv(path: Path) -> Path:
    header = "source,task,model,role,metric,metric_reported,value,split,reference,note"
    rows = ["GAD,re,X,tuned LLM,f1,F1,88.6,test,ref,", "GAD,re,Y,encoder baseline,f1,F1,91.255,test,ref,"]
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_cli_writes_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m medtune_utils.report --out DIR [--paper CSV] RUNS...` prints every file it wrote.

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


def test_only_writes_the_named_items(tmp_path: Path) -> None:
    """`--only composition` writes the composition table and figure of a run and nothing else."""
    out = tmp_path / "figures"
    main(["--out", str(out), str(FIXTURE), "--only", "composition"])
    assert set(out.iterdir()) == _expected_files(out, ("composition",), ("composition",))
    assert "NCBI-disease" in (out / "composition.md").read_text()
    with pytest.raises(ValueError, match="unknown report item"):
        build_report([FIXTURE], out, only=["composition", "nope"])
