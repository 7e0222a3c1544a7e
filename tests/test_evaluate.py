"""Evaluation: the same seeded rows for every model and run, predictions and scores on disk, clear errors."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset

from medtune_utils import modeling
from medtune_utils.assemble import run_assembly
from medtune_utils.config import Profile, load_profile
from medtune_utils.evaluate import ModelSpec, check_locations, evaluate, select_rows
from medtune_utils.prompts import TEMPLATE, build_prompt, training_text
from medtune_utils.run import PREDICTION_COLUMNS, Run
from medtune_utils.tasks import get_task

PUBLIC = ("NCBI-disease", "GAD", "HoC")
CREDENTIALED = ("MedNLI", "i2b2-2010")
RECORD_FIELDS = set(PREDICTION_COLUMNS)


@dataclass
class EvaluatedRun:
    """A run folder evaluated once with two tiny models, and what it logged."""

    run_dir: Path
    profile: Profile
    notices: list[str]
    scores: dict[str, Any]
    warnings: list[str]


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Iterator[EvaluatedRun]:
    """Assemble three public sample sources (credentialed ones absent), build two tiny models, evaluate both."""
    root = tmp_path_factory.mktemp("eval")
    data_dir = root / "data"
    data_dir.mkdir()
    for source in PUBLIC:
        (data_dir / source).symlink_to(sample_dir / source, target_is_directory=True)
    profile = load_profile(
        "tiny",
        {
            "data.dir": str(data_dir),
            "data.sources": [*PUBLIC, *CREDENTIALED],
            "eval.sources": [*PUBLIC, "MedNLI"],
            "eval.rows_per_source": 3,
            "eval.max_new_tokens_cap": 24,
            "eval.bootstrap_samples": 50,
            "eval.batch_size": 4,
        },
    )
    run_dir = root / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    handler = _Collect()
    logger = logging.getLogger("medtune_utils.evaluate")
    logger.addHandler(handler)
    try:
        assembly = run_assembly(profile, run_dir)
        texts = [training_text(row) for row in assembly.dataset["train"]]
        modeling.create_tiny_base(profile.model.tiny, texts, run_dir / "base-model", seed=1)
        modeling.create_tiny_base(profile.model.tiny, texts, run_dir / "model", seed=2)
        scores = evaluate(profile, run_dir, models=["base", "tuned"], progress=False)
        yield EvaluatedRun(run_dir, profile, assembly.notices, scores, handler.messages)
    finally:
        logger.removeHandler(handler)
        torch.set_num_threads(threads)


def _rows(counts: dict[str, int]) -> Dataset:
    return Dataset.from_list(
        [
            {"id": f"{source}/devel/{i}", "source": source, "instruction": "i", "input": f"{source} {i}", "output": "o"}
            for source, n in counts.items()
            for i in range(n)
        ]
    )


def _ids(rows: list[dict[str, Any]], source: str) -> list[str]:
    return [r["id"] for r in rows if r["source"] == source]


def test_select_rows_is_seeded_per_source_and_independent_of_run_seed_and_other_sources() -> None:
    validation = _rows({"NCBI-disease": 30, "GAD": 30, "HoC": 30})
    first = select_rows(validation, load_profile("tiny", {"seed": 1, "eval.rows_per_source": 5}))
    other_seed = select_rows(validation, load_profile("tiny", {"seed": 2, "eval.rows_per_source": 5}))
    alone = select_rows(_rows({"NCBI-disease": 30}), load_profile("tiny", {"seed": 3, "eval.rows_per_source": 5}))
    assert [r["id"] for r in first] == [r["id"] for r in other_seed]
    assert _ids(alone, "NCBI-disease") == _ids(first, "NCBI-disease")
    positions = {s: [int(i.rsplit("/", 1)[1]) for i in _ids(first, s)] for s in ("NCBI-disease", "GAD", "HoC")}
    assert all(len(p) == 5 and p == sorted(p) for p in positions.values())
    assert len({tuple(p) for p in positions.values()}) == 3, "each source draws its own sample"


def test_select_rows_keeps_registered_wanted_sources_and_warns_about_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    validation = _rows({"NCBI-disease": 4, "GAD": 4, "NotASource": 4})
    with caplog.at_level(logging.WARNING, logger="medtune_utils.evaluate"):
        rows = select_rows(validation, load_profile("tiny", {"eval.sources": ["GAD", "MedNLI"]}))
    assert {r["source"] for r in rows} == {"GAD"} and len(rows) == 4
    assert any("NotASource" in m and "no task entry" in m for m in caplog.messages)
    assert any("MedNLI" in m and "not evaluated" in m for m in caplog.messages)


def _records(run_dir: Path, model: str, source: str) -> list[dict[str, Any]]:
    return Run(run_dir).predictions([model], [source]).to_dict("records")


def test_absent_credentialed_sources_are_skipped_with_a_notice(evaluated: EvaluatedRun) -> None:
    for source in CREDENTIALED:
        assert any(source in n and "Credentialed" in n for n in evaluated.notices), evaluated.notices
    assert any("MedNLI" in m for m in evaluated.warnings), evaluated.warnings
    for per_source in evaluated.scores["models"].values():
        assert set(per_source) == set(PUBLIC)


def test_predictions_are_written_per_model_and_source(evaluated: EvaluatedRun) -> None:
    validation = Run(evaluated.run_dir).dataset()["validation"]
    for model in ("base", "tuned"):
        for source in PUBLIC:
            path = evaluated.run_dir / "predictions" / model / f"{source}.jsonl"
            records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
            assert records and len(records) == min(3, sum(s == source for s in validation["source"]))
            assert all(set(r) == RECORD_FIELDS for r in records), records[0].keys()
            assert all(isinstance(r["well_formed"], bool) and r["prompt"].endswith("### Response:\n") for r in records)
            assert all("###" not in r["generation"] for r in records)
            rows = {r["id"]: r for r in validation}
            for r in records:
                row = rows[r["id"]]
                assert (r["source"], r["model"], r["template"]) == (source, model, TEMPLATE)
                assert (r["input"], r["group"], r["task"]) == (row["input"], row["group"], row["task"])
                assert isinstance(r["budget"], int) and r["budget"] > 0 and isinstance(r["hit_budget"], bool)
            assert records == _records(evaluated.run_dir, model, source)


def test_gold_in_predictions_is_the_task_gold_of_the_row(evaluated: EvaluatedRun) -> None:
    rows = {r["id"]: r for r in Run(evaluated.run_dir).dataset()["validation"]}
    for source in PUBLIC:
        task = get_task(source, evaluated.profile.data.ner_format)
        for record in _records(evaluated.run_dir, "base", source):
            row = rows[record["id"]]
            gold = task.gold(row["output"], row["input"])
            assert record["gold"] == (list(gold) if isinstance(gold, tuple) else gold)


def test_both_models_are_scored_on_identical_rows(evaluated: EvaluatedRun) -> None:
    expected = select_rows(Run(evaluated.run_dir).dataset()["validation"], evaluated.profile)
    for source in PUBLIC:
        base = _records(evaluated.run_dir, "base", source)
        tuned = _records(evaluated.run_dir, "tuned", source)
        assert [r["id"] for r in base] == [r["id"] for r in tuned] == _ids(expected, source)
        assert [r["prompt"] for r in base] == [r["prompt"] for r in tuned]


def test_scores_hold_metrics_intervals_and_paired_comparisons(evaluated: EvaluatedRun) -> None:
    scores = Run(evaluated.run_dir).scores()
    assert json.loads(json.dumps(evaluated.scores)) == scores
    assert scores["profile"] == "tiny" and scores["eval_split"] == "devel"
    assert set(scores["models"]) == {"base", "tuned"}
    for model, per_source in scores["models"].items():
        for source, entry in per_source.items():
            n = len(_records(evaluated.run_dir, model, source))
            assert entry["n"] == n
            assert entry["headline"] in entry["metrics"] and entry["value"] == entry["metrics"][entry["headline"]]
            assert 0.0 <= entry["malformed_rate"] <= 1.0
            records = _records(evaluated.run_dir, model, source)
            assert entry["malformed_rate"] == pytest.approx(sum(not r["well_formed"] for r in records) / n)
            assert entry["ci_low"] <= entry["ci_high"]
            assert entry["intervals"][entry["headline"]] == [entry["ci_low"], entry["ci_high"]]
    comparisons = {c["source"]: c for c in scores["comparisons"]}
    assert set(comparisons) == set(PUBLIC)
    for source, c in comparisons.items():
        assert (c["model_a"], c["model_b"]) == ("base", "tuned")
        value_a, value_b = (scores["models"][m][source]["value"] for m in ("base", "tuned"))
        assert c["delta"] == pytest.approx(value_b - value_a)
        assert c["low"] <= c["high"] and 0.0 <= c["p_value"] <= 1.0


def test_a_model_path_that_does_not_exist_fails_before_any_generation(evaluated: EvaluatedRun) -> None:
    base_predictions = evaluated.run_dir / "predictions" / "base" / "GAD.jsonl"
    written = base_predictions.stat().st_mtime_ns
    with pytest.raises(FileNotFoundError, match=r"no such folder .*results/no/such/model"):
        evaluate(evaluated.profile, evaluated.run_dir, models=["base", "results/no/such/model"], progress=False)
    assert base_predictions.stat().st_mtime_ns == written
    assert not (evaluated.run_dir / "predictions" / "results_no_such_model").exists()


def test_check_locations_names_the_missing_step_and_leaves_hub_ids_alone(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="02_finetune"):
        check_locations([ModelSpec("tuned", str(tmp_path / "model"))])
    with pytest.raises(FileNotFoundError, match="no such folder"):
        check_locations([ModelSpec("mine", "./models/mine")])
    check_locations([ModelSpec("hub", "nlpie/Llama2-MedTuned-7b"), ModelSpec("here", str(tmp_path))])


def test_models_may_carry_their_own_template_and_a_fixed_demonstration(evaluated: EvaluatedRun, tmp_path: Path) -> None:
    """`{name, template, shots}`: the authors' prompt after one training row of the same source, the same for every row."""
    run_dir = tmp_path / "run"
    shutil.copytree(evaluated.run_dir, run_dir)
    entry = {"name": "tuned", "template": "authors", "shots": 1}
    scores = evaluate(evaluated.profile, run_dir, models=["base", entry], progress=False)
    assert list(scores["models"]) == ["base", "tuned-authors-1shot"]
    assert scores["prompting"]["tuned-authors-1shot"] == {"template": "authors", "shots": 1}
    train = Run(run_dir).dataset()["train"].to_list()
    for source in PUBLIC:
        records = _records(run_dir, "tuned-authors-1shot", source)
        base = _records(run_dir, "base", source)
        assert [r["id"] for r in records] == [r["id"] for r in base]
        assert {r["template"] for r in records} == {"authors"} and {r["template"] for r in base} == {TEMPLATE}
        demos = {r["prompt"].split("### Instruction: ")[1] for r in records}
        assert len(demos) == 1  # one fixed demonstration per source
        demo = next(
            row for row in train if row["source"] == source and records[0]["prompt"].startswith(training_text(row, "authors"))
        )
        for record in records:
            row = next(r for r in Run(run_dir).dataset()["validation"] if r["id"] == record["id"])
            assert record["prompt"] == training_text(demo, "authors") + build_prompt(row["instruction"], row["input"], "authors")
    ner = scores["models"]["tuned-authors-1shot"]["NCBI-disease"]["metrics"]
    assert {"f1_strict", "f1_strict_aligned", "f1_lenient_aligned", "f1_authors"} <= set(ner)


def test_the_same_model_twice_with_the_same_prompting_is_refused(evaluated: EvaluatedRun) -> None:
    with pytest.raises(ValueError, match="tuned listed twice"):
        evaluate(evaluated.profile, evaluated.run_dir, models=["tuned", {"name": "tuned"}], progress=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the stop on a machine without a GPU")
def test_the_released_profile_stops_at_once_without_a_gpu(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        evaluate(load_profile("released"), tmp_path / "released", progress=False)


def test_the_released_profile_stops_at_once_without_the_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(RuntimeError, match="nlpie/Llama2-MedTuned-7b: the Hugging Face hub is needed"):
        evaluate(load_profile("released"), tmp_path / "released", progress=False)
