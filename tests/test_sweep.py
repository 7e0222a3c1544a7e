"""Composition studies: study files, one folder per mix, resuming and refusing, cluster commands, paired aggregation."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection

from medtune_utils import figures, sweep, tables
from medtune_utils.config import ConfigError, parse_set_args
from medtune_utils.evaluate import score_predictions
from medtune_utils.paths import repo_root
from medtune_utils.run import PREDICTION_COLUMNS, Run
from medtune_utils.tasks import get_task

LABELS = ("yes", "no", "maybe")


def _write_study(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- study files


def test_the_shipped_studies_load_with_the_paper_questions() -> None:
    paper = sweep.load_study("paper")
    assert paper.profile == "llama2-7b" and paper.reference == "full"
    expected = {"full", "no-general", "no-ner", "no-re", "no-nli", "no-cls", "no-qa", "ner-only", "ner-25", "ner-50"}
    assert set(paper.mixes) == expected
    tiny = sweep.load_study("tiny-sample")
    assert tiny.profile == "tiny" and list(tiny.mixes) == ["full", "no-ner"]


def test_a_mix_caps_merge_into_the_profiles_caps_and_keep_every_source_evaluated() -> None:
    """Leaving out the chat data sets their caps to 0 and keeps the others; the source list (and so evaluation) is whole."""
    paper = sweep.load_study("paper")
    full, no_ner = paper.mix_profile("full"), paper.mix_profile("no-ner")
    assert full.data.train_rows == {"ChatDoctor": 50000, "PMC-LLaMA": 50000}
    assert no_ner.data.train_rows["ChatDoctor"] == 50000 and no_ner.data.train_rows["NCBI-disease"] == 0
    assert no_ner.data.sources == full.data.sources and "GAD" in full.data.sources
    assert paper.mix_profile("no-general").data.train_rows == {"ChatDoctor": 0, "PMC-LLaMA": 0}
    assert paper.run_dir("ner-25") == repo_root() / "results" / "paper" / "ner-25"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("profile: tiny\nmixes: {full: {}}\n", "at least two mix names"),
        ("profile: tiny\nmixs: {a: {}, b: {}}\n", "unknown key(s) mixs"),
        ("profile: tiny\nmixes: {a: {}, b/c: {}}\n", "mix name 'b/c'"),
        ("profile: tiny\nreference: c\nmixes: {a: {}, b: {}}\n", "reference 'c' is not one of the mixes"),
        ("profile: tiny\nmixes: {a: {}, b: [1]}\n", "mix 'b' must be a mapping"),
        ("profile: tiny\nmixes: {a: {}, b: {data.train_row: {GAD: 0}}}\n", "mix 'b'"),
        ("mixes: {a: {}, b: {}}\n", "'profile' must name a profile"),
    ],
)
def test_a_bad_study_file_is_an_error_naming_the_file_and_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = _write_study(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        sweep.load_study(path)
    assert str(path) in str(caught.value) and message in str(caught.value)


def test_an_unknown_study_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="known studies: .*paper.*tiny-sample"):
        sweep.load_study("nope")


def test_print_commands_gives_one_accelerate_launch_per_mix_with_the_mix_settings() -> None:
    study = sweep.load_study("paper")
    lines = sweep.commands(study, accelerate_config="configs/accelerate/multi_gpu.yaml")
    assert len(lines) == len(study.mixes)
    for mix, line in zip(study.mixes, lines):
        words = shlex.split(line)
        assert words.count("accelerate") == 1 and "configs/accelerate/multi_gpu.yaml" in words
        assert f"results/paper/{mix}" in words and words.count("--only") == 2
        first = words[: words.index("&&")]
        sets = [first[i + 1] for i, word in enumerate(first) if word == "--set"]
        assert parse_set_args(sets) == study.mix_overrides(mix)


# ---------------------------------------------------------------- aggregation on hand-made run folders


def _scored_run(folder: Path, correct: list[bool], first_id: int = 0) -> None:
    """A run folder whose `tuned` model answered PubMedQA rows right or wrong, scored by the real scorer."""
    task = get_task("PubMedQA")
    records: list[dict[str, Any]] = []
    for i, ok in enumerate(correct, start=first_id):
        gold = LABELS[i % 3]
        answer = gold if ok else LABELS[(i + 1) % 3]
        record = {key: None for key in PREDICTION_COLUMNS}
        values = {"source": "PubMedQA", "task": "qa", "group": f"q{i}", "input": f"Question {i}?", "generation": answer}
        record.update(values, id=f"PubMedQA/devel/{i}", prediction=answer, gold=gold, well_formed=True, model="tuned")
        record.update(budget=8, hit_budget=False, template="medtune", prompt="...")
        records.append(record)
    run = Run(folder)
    run.write_predictions("tuned", records)
    scores, _ = score_predictions(records, {"PubMedQA": task}, samples=50, seed=0)
    run.write_scores({"run": folder.name, "models": {"tuned": scores}, "comparisons": []})


def test_the_study_table_and_figure_show_each_mix_minus_the_reference_on_shared_rows(tmp_path: Path) -> None:
    """Reference right on 20 rows; `half` right on 15 of them (and has 4 rows the reference lacks): -25 points on 20 rows."""
    study = sweep.Study(name="t", profile="tiny", mixes={"full": {}, "half": {}, "none": {}}, reference="full")
    _scored_run(tmp_path / "full", [True] * 20)
    _scored_run(tmp_path / "half", [True] * 15 + [False] * 5 + [False] * 4)
    deltas = sweep.compare_mixes(study, tmp_path, samples=200)
    assert list(deltas.mix) == ["full", "half"]  # `none` has no folder: left out
    half = deltas.set_index("mix").loc["half"]
    assert (half.n, half.value, half.reference_value, half.delta) == (20, 75.0, 100.0, -25.0)
    assert half.low < -25.0 < half.high <= 0.0 and half.p_value < 0.05
    assert deltas.set_index("mix").loc["full", "delta"] == 0.0

    table = tables.composition_study_table(deltas, "full", list(study.mixes))
    assert list(table.columns) == ["Dataset", "Metric", "full (%)", "half (Δ)", "n"]
    assert table.iloc[0]["full (%)"] == "100.00" and table.iloc[0]["half (Δ)"].startswith("-25.00 [")

    fig = figures.plot_composition_study(deltas, "full", list(study.mixes))
    (ax,) = [a for a in fig.axes if a.axison]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["half", "none"]
    (points,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert [list(p) for p in points.get_offsets()] == [[-25.0, 0.0]]
    (segments,) = [c.get_segments() for c in ax.containers[0].lines[2]]
    assert [float(s[0][0]) for s in segments] == [half.low] and [float(s[1][0]) for s in segments] == [half.high]
    assert "PubMedQA" in ax.get_title() and "full: 100.0" in ax.get_title()


def test_aggregation_without_the_reference_mix_says_what_is_missing(tmp_path: Path) -> None:
    study = sweep.Study(name="t", profile="tiny", mixes={"full": {}, "b": {}}, reference="full")
    _scored_run(tmp_path / "b", [True] * 3)
    with pytest.raises(FileNotFoundError, match="reference mix 'full' has no scores"):
        sweep.compare_mixes(study, tmp_path)


# ---------------------------------------------------------------- the acceptance command (slow)


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`papermill notebooks/05_composition_study.ipynb out.ipynb -p study tiny-sample -p out_dir DIR`."""
    import papermill as pm

    out = tmp_path_factory.mktemp("study")
    pm.execute_notebook(
        str(repo_root() / "notebooks" / "05_composition_study.ipynb"),
        str(out / "05.ipynb"),
        parameters={"study": "tiny-sample", "out_dir": str(out / "runs"), "bootstrap_samples": 200},
        kernel_name="python3",
        progress_bar=False,
        cwd=str(repo_root()),
    )
    return out / "runs"


def _rows(run: Run) -> dict[tuple[str, str], int]:
    """Rows per (source, split) in a run's `stats.csv` (a source without rows in a split has no line)."""
    stats = run.stats()
    return {(source, split): int(n) for source, split, n in zip(stats.source, stats.split, stats.rows)}


@pytest.mark.slow
def test_notebook_05_writes_scores_per_mix_and_the_study_figure(study_dir: Path) -> None:
    study = sweep.load_study("tiny-sample")
    for mix in study.mixes:
        scores = json.loads((study_dir / mix / "scores.json").read_text(encoding="utf-8"))
        assert set(scores["models"]["tuned"]) == {"NCBI-disease", "GAD", "HoC", "PubMedQA"}
        assert sweep.mix_status(study, mix, study_dir) == "done"
    rows = {mix: _rows(Run(study_dir / mix)) for mix in study.mixes}
    assert rows["no-ner"].get(("NCBI-disease", "train"), 0) == 0 < rows["full"][("NCBI-disease", "train")]
    assert rows["no-ner"][("NCBI-disease", "validation")] == rows["full"][("NCBI-disease", "validation")] > 0
    assert rows["no-ner"][("GAD", "train")] == rows["full"][("GAD", "train")]
    logged = Run(study_dir / "full").train_log()
    evaluated = [r for r in logged if "eval_loss" in r]
    assert [r["step"] for r in evaluated] == [5, 8] and all(r["eval_loss"] > 0 for r in evaluated)
    gad = json.loads((study_dir / "full" / "scores.json").read_text(encoding="utf-8"))["models"]["tuned"]["GAD"]
    assert set(gad["majority"]) == {"answer", "value", "metric"} and gad["majority"]["metric"] == gad["headline"]

    deltas = sweep.compare_mixes(study, study_dir, samples=200)
    fig = figures.plot_composition_study(deltas, "full", list(study.mixes))
    shown = [a for a in fig.axes if a.axison]
    assert len(shown) == 4
    evaluated = Run(study_dir / "full").scores()["models"]["tuned"]
    for ax in shown:
        source = ax.get_title().split(":")[0]
        row = deltas[(deltas.source == source) & (deltas.mix == "no-ner")].iloc[0]
        assert row.n == evaluated[source]["n"] > 0 and [t.get_text() for t in ax.get_yticklabels()] == ["no-ner"]
        (points,) = [c for c in ax.collections if isinstance(c, PathCollection)]
        assert np.allclose(points.get_offsets()[0][0], row.delta)
    for suffix in ("png", "pdf", "md", "csv", "tex"):
        assert (study_dir / "figures" / f"composition_study.{suffix}").is_file()


@pytest.mark.slow
def test_a_rerun_skips_finished_mixes_and_refuses_a_folder_of_other_settings(
    study_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = sweep.load_study("tiny-sample")
    before = (study_dir / "full" / "scores.json").stat().st_mtime_ns
    sweep.run_study(study, study_dir)
    assert capsys.readouterr().out.count("done, skipped") == 2
    assert (study_dir / "full" / "scores.json").stat().st_mtime_ns == before
    study.overrides = {**study.overrides, "train.max_steps": 9}
    with pytest.raises(ConfigError, match="finetune step ran with different train settings"):
        sweep.run_study(study, study_dir)


def test_the_compute_estimate_counts_each_mix_rows_and_tokens_from_uncapped_stats() -> None:
    """tiny-sample caps every source at 400 rows; no-ner trains no NCBI-disease row; tokens are rows x (prompt + answer + eos)."""
    study = sweep.load_study("tiny-sample")
    stats = pd.DataFrame(
        {
            "source": ["NCBI-disease", "GAD", "HoC", "PubMedQA", "GAD"],
            "split": ["train", "train", "train", "train", "validation"],
            "rows_read": [1000, 100, 50, 10, 7],
            "prompt_tokens": [9.0, 4.0, 5.0, 2.0, 99.0],
            "completion_tokens": [10.0, 1.0, 2.0, 1.0, 99.0],
        }
    )
    frame = sweep.compute_estimate(study, stats, parameters=1e6).set_index("mix")
    assert frame.loc["full", "train_rows"] == 400 + 100 + 50 + 10
    assert frame.loc["no-ner", "train_rows"] == 100 + 50 + 10
    no_ner_tokens = 100 * 6 + 50 * 8 + 10 * 4  # one epoch (tiny's num_train_epochs)
    assert frame.loc["no-ner", "tokens"] == no_ner_tokens and frame.loc["no-ner", "flops"] == 6e6 * no_ner_tokens
    assert frame.loc["full", "tokens"] == 400 * 20 + no_ner_tokens and frame.loc["full", "missing"] == ""
    assert frame.loc["no-ner", "share_of_reference"] == pytest.approx(no_ner_tokens / (8000 + no_ner_tokens))
