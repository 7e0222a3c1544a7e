"""The run folder object: every artifact round-trips through `Run`, and no other module spells the layout."""

from __future__ import annotations

import ast
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from datasets import Dataset, DatasetDict

import medtune_utils
from medtune_utils import run as run_module
from medtune_utils.config import ConfigError, load_profile
from medtune_utils.locking import RunLockedError
from medtune_utils.run import PREDICTION_COLUMNS, Run

LAYOUT_NAMES = {
    getattr(run_module, name)
    for name in (
        "CONFIG",
        "ENV",
        "STATS",
        "MANIFEST",
        "DATASET_MARKER",
        "BASE_MODEL",
        "CHECKPOINTS",
        "RECIPE",
        "STAGING",
        "TRAIN_LOG",
        "PREDICTIONS",
        "SCORES",
        "LOCK",
    )
}


def _record(model: str, source: str, index: int, **changes: Any) -> dict[str, Any]:
    record = {
        "id": f"{source}/devel/{index}",
        "source": source,
        "task": "re",
        "group": f"{source}/devel/{index}",
        "input": f"sentence {index}",
        "prompt": f"prompt {index}",
        "generation": "Association",
        "prediction": "Association",
        "gold": "No association",
        "well_formed": True,
        "budget": 12,
        "hit_budget": False,
        "template": "medtune",
        "model": model,
    }
    return {**record, **changes}


def test_profile_and_environment_round_trip(tmp_path: Path) -> None:
    run = Run(tmp_path / "r")
    with pytest.raises(FileNotFoundError, match="01_assemble_instructions"):
        run.profile()
    profile = load_profile("tiny", {"train.max_steps": 7, "data.train_rows": {"GAD": 3}})
    run.record_step("assemble", profile, {"notices": ["n"]})
    assert run.profile() == profile
    assert run.profile({"eval.batch_size": 3}).eval.batch_size == 3
    assert run.config()["train"]["max_steps"] == 7
    step = run.step("assemble")
    assert step["notices"] == ["n"] and set(step["inputs"]) == {"seed", "data"}
    assert run.env()["seed"] == profile.seed and "transformers" in run.env()["packages"]
    assert run.step("finetune") is None


def test_check_upstream_refuses_outputs_of_other_settings(tmp_path: Path) -> None:
    run = Run(tmp_path)
    profile = load_profile("tiny")
    run.record_step("assemble", profile)
    run.check_upstream("finetune", profile)
    run.check_upstream("finetune", load_profile("tiny", {"train.max_steps": 3}))  # training settings are not upstream
    with pytest.raises(ConfigError, match="its assemble step ran with different data settings"):
        run.check_upstream("finetune", load_profile("tiny", {"data.eval_split": "test"}))


def test_data_round_trip(tmp_path: Path) -> None:
    run = Run(tmp_path)
    assert not run.has_data() and run.stats().empty and run.manifest() == {}
    with pytest.raises(FileNotFoundError, match="run notebooks/01_assemble_instructions.ipynb first"):
        run.dataset()
    rows = [{"instruction": "i", "input": f"x{k}", "output": "y", "source": "GAD", "task": "re", "id": str(k)} for k in range(3)]
    dataset = DatasetDict({"train": Dataset.from_list(rows[:2]), "validation": Dataset.from_list(rows[2:])})
    stats = pd.DataFrame({"source": ["GAD"], "split": ["train"], "rows": [2]})
    run.save_data(dataset, stats, {"notices": ["skipped MedNLI"]})
    assert run.has_data()
    assert run.dataset()["train"].to_list() == rows[:2] and run.dataset()["validation"].to_list() == rows[2:]
    pd.testing.assert_frame_equal(run.stats(), stats)
    assert run.manifest() == {"notices": ["skipped MedNLI"]}
    assert run.export_path("train").read_text().count("\n") == 2


def test_train_log_and_checkpoint_recipe(tmp_path: Path) -> None:
    run = Run(tmp_path)
    assert run.train_log() == [] and run.recipe() is None
    for step in (1, 2, 3):
        run.append_train_log({"step": step, "loss": 1.0 / step})
    run.trim_train_log(2)
    assert run.train_log() == [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}]
    run.model_dir.mkdir()
    run.reset_checkpoints({"train": "abc"})
    assert run.recipe() == {"train": "abc"} and not run.model_dir.exists() and run.checkpoints_dir.is_dir()


def test_model_locations(tmp_path: Path) -> None:
    run = Run(tmp_path)
    assert run.model_location("base", "tiny") == str(run.base_model_dir)
    assert run.model_location("base", "meta-llama/Llama-2-7b-hf") == "meta-llama/Llama-2-7b-hf"
    assert run.model_location("tuned", "tiny") == str(run.model_dir)
    assert run.model_location("nlpie/Llama2-MedTuned-7b", "tiny") == "nlpie/Llama2-MedTuned-7b"


def test_predictions_round_trip_and_replace_a_models_whole_set(tmp_path: Path) -> None:
    run = Run(tmp_path)
    first = [_record("tuned", "GAD", 0), _record("tuned", "HoC", 1, prediction=["A"], gold=[])]
    run.write_predictions("tuned", first)
    frame = run.predictions()
    assert tuple(frame.columns) == PREDICTION_COLUMNS
    assert sorted(frame.to_dict("records"), key=lambda r: r["id"]) == first
    second = [_record("tuned", "GAD", 5)]
    run.write_predictions("tuned", second)  # a later evaluation of GAD only: HoC's old predictions must not linger
    assert run.predictions().to_dict("records") == second
    run.write_predictions("base", [_record("base", "GAD", 5)])
    assert set(run.predictions().model) == {"tuned", "base"}
    assert run.predictions(models=["base"], sources=["HoC"]).empty
    run.write_scores({"models": {"base": {}}})
    assert run.prediction_models() == ["base"]  # only the models of the current scores
    assert set(run.predictions().model) == {"base"}


def test_scores_round_trip(tmp_path: Path) -> None:
    run = Run(tmp_path)
    with pytest.raises(FileNotFoundError, match="03_evaluate"):
        run.scores()
    scores = {"run": "r", "models": {"tuned": {"GAD": {"value": 0.5}}}, "comparisons": []}
    run.write_scores(scores)
    assert run.has_scores() and run.scores() == scores and run.scores_path.parent == run.dir


def _layout_literals(path: Path) -> list[tuple[int, str]]:
    """String constants (docstrings excluded) that name a file or folder of the run layout."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            parts = set(node.value.replace("\\", "/").split("/"))
            found.extend((node.lineno, name) for name in LAYOUT_NAMES & parts)
    return found


def test_no_module_but_run_spells_the_run_layout() -> None:
    package = Path(medtune_utils.__file__).parent
    offenders = [
        f"{path.relative_to(package)}:{line}: {name!r}"
        for path in sorted(package.rglob("*.py"))
        if path.name != "run.py"
        for line, name in _layout_literals(path)
    ]
    assert not offenders, "run-folder layout spelled outside run.py:\n" + "\n".join(offenders)


def test_the_layout_check_finds_a_spelled_name(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text('"""Writes scores.json."""\nPATH = "results/x/scores.json"\n', encoding="utf-8")
    assert _layout_literals(module) == [(2, "scores.json")]


# --- the run folder's lock and the debris of killed writes ----------------------------------------------------------

HOLD = """
import sys, time
from medtune_utils.run import Run
with Run(sys.argv[1]).lock(sys.argv[2]):
    print("held", flush=True)
    time.sleep(float(sys.argv[3]))
"""


def _holder(run_dir: Path, step: str = "finetune", seconds: float = 60) -> subprocess.Popen:
    """Another process that takes the run folder's lock and holds it for `seconds`."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir), step, str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_stops_at_once_naming_the_holder(tmp_path: Path) -> None:
    run = Run(tmp_path / "r")
    holder = _holder(run.dir)
    try:
        where = rf"step finetune of process {holder.pid} on host {socket.gethostname()}"
        with pytest.raises(RunLockedError, match=where), run.lock("evaluate"):
            pass
        other = subprocess.run([sys.executable, "-c", HOLD, str(run.dir), "assemble", "0"], capture_output=True, text=True)
        assert other.returncode != 0 and f"process {holder.pid}" in other.stderr
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_released_or_left_by_a_killed_process_is_taken(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run = Run(tmp_path / "r")
    _holder(run.dir, seconds=0).wait()  # released normally: taken without a notice
    with caplog.at_level(logging.WARNING, logger="medtune_utils.locking"), run.lock("assemble"):
        assert run.lock_holder()["pid"] == os.getpid()
        with run.lock("finetune"):  # re-entrant within one process
            pass
        assert run.lock_holder()["step"] == "assemble"
    assert run.lock_holder() is None and "taking over" not in caplog.text

    holder = _holder(run.dir)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with caplog.at_level(logging.WARNING, logger="medtune_utils.locking"), run.lock("finetune"):
        assert run.lock_holder()["pid"] == os.getpid()
    assert f"taking over the lock left by step finetune of process {holder.pid}" in caplog.text


def test_inactive_lock_is_a_no_op(tmp_path: Path) -> None:
    run = Run(tmp_path / "r")
    holder = _holder(run.dir)
    try:
        with run.lock("finetune", active=False):  # a non-main rank of the holder's launch
            pass
    finally:
        holder.kill()
        holder.wait()


def test_taking_the_lock_removes_our_stale_temporaries_only(tmp_path: Path) -> None:
    run = Run(tmp_path / "r")
    debris = [
        run.dir / ".data.k2j_8x0a.tmp" / "train.jsonl",  # a killed `atomic_dir` (assembly)
        run.dir / ".env.json.abcd1234.tmp",  # a killed `atomic_path`, half written
        run.data_dir / ".stats.csv.x1y2z3w4.tmp",
        run.dir / "predictions" / ".tuned.q1w2e3r4.tmp" / "GAD.jsonl",
        run.dir / "predictions" / "tuned" / ".GAD.jsonl.a1b2c3d4.tmp",
        run.dir / ".model.old" / "config.json",  # `model` exists: the old copy is debris
    ]
    kept = [
        run.dir / "model" / "config.json",
        run.dir / "notes.tmp",
        run.dir / ".hidden.tmp",
        run.dir / "figures" / ".results.png.a1b2c3d4.tmp",  # written by the report, which takes no lock
        run.dir / "notebooks" / ".01.ipynb.a1b2c3d4.tmp",
    ]
    for path in [*debris, *kept, run.dir / "predictions" / ".base.old" / "GAD.jsonl"]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{", encoding="utf-8")
    with run.lock("evaluate"):
        pass
    assert not any(p.exists() for p in debris)
    assert not (run.dir / ".data.k2j_8x0a.tmp").exists() and not (run.dir / ".model.old").exists()
    assert all(p.exists() for p in kept)
    # `.base.old` with no `base`: killed between `atomic_dir`'s two renames; the old set is restored, not lost
    assert (run.dir / "predictions" / "base" / "GAD.jsonl").read_text() == "{"


def test_update_stats_sets_columns_per_source_and_split(tmp_path: Path) -> None:
    run = Run(tmp_path)
    rows = [{"instruction": "i", "input": "x", "output": "y", "source": "GAD"}]
    stats = pd.DataFrame({"source": ["GAD", "HoC", "GAD"], "split": ["train", "train", "validation"], "rows": [2, 3, 1]})
    run.save_data(DatasetDict({"train": Dataset.from_list(rows), "validation": Dataset.from_list(rows)}), stats, {})
    for dropped in (5, 4):  # a second update replaces the counts
        counts = pd.DataFrame({"source": ["GAD"], "split": ["train"], "too_long_dropped": [dropped]})
        run.update_stats(counts)
    assert run.stats().too_long_dropped.tolist() == [4, 0, 0] and run.stats().rows.tolist() == [2, 3, 1]
