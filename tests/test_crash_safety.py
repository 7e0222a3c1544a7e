"""Crash safety: a kill at any stage ends in a rerun with the results of an uninterrupted run; nothing dropped in silence.

Kills are real: a subprocess runs the step, says when it has reached the chosen moment (inside an atomic write, or
while a checkpoint is being saved) and is killed with SIGKILL there, leaving exactly the debris a kill leaves.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from medtune_utils import figures, modeling, report
from medtune_utils import train as T
from medtune_utils.assemble import run_assembly
from medtune_utils.config import load_profile
from medtune_utils.evaluate import evaluate
from medtune_utils.run import Run

FIXTURE = Path(__file__).parent / "fixtures" / "run_small"
STEPS = 10
OVERRIDES: dict[str, Any] = {
    "data.sources": ["NCBI-disease", "GAD", "HoC"],
    "data.train_rows": {"default": 60},
    "data.validation_rows": {"default": 3},
    "train.max_steps": STEPS,
    "train.save_steps": 5,
    "train.logging_steps": 1,
    "train.max_length": 256,
    "eval.models": ["base", "tuned"],
    "eval.rows_per_source": 3,
    "eval.max_new_tokens_cap": 24,
    "eval.bootstrap_samples": 50,
}
KILLED = "reached the moment of the kill"

# Each script runs one step in a subprocess and sleeps (to be killed) at the chosen moment; argv: run_dir, overrides.
ASSEMBLE_KILLED_WHILE_SAVING = f"""
import json, sys, time
from medtune_utils import run
from medtune_utils.assemble import run_assembly
from medtune_utils.config import load_profile
write = run.write_jsonl_atomic
def write_then_stall(path, rows):
    write(path, rows)
    print({KILLED!r}, flush=True)
    time.sleep(600)
run.write_jsonl_atomic = write_then_stall
run_assembly(load_profile("tiny", json.loads(sys.argv[2])), sys.argv[1])
"""
TRAIN_KILLED_WHILE_CHECKPOINTING = f"""
import json, sys, time
from transformers import Trainer
from medtune_utils import train
from medtune_utils.config import load_profile
save = Trainer._save_optimizer_and_scheduler
def save_then_stall(self, output_dir):
    save(self, output_dir)
    if self.state.global_step == {STEPS}:
        print({KILLED!r}, flush=True)
        time.sleep(600)
Trainer._save_optimizer_and_scheduler = save_then_stall
train.train(load_profile("tiny", json.loads(sys.argv[2])), sys.argv[1])
"""
EVALUATE_KILLED_WHILE_WRITING_TUNED = f"""
import json, sys, time
from medtune_utils import run
from medtune_utils.config import load_profile
from medtune_utils.evaluate import evaluate
write = run.write_jsonl_atomic
def write_then_stall(path, rows):
    write(path, rows)
    if ".tuned." in str(path):
        print({KILLED!r}, flush=True)
        time.sleep(600)
run.write_jsonl_atomic = write_then_stall
evaluate(load_profile("tiny", json.loads(sys.argv[2])), sys.argv[1], progress=False)
"""


def _overrides(data_dir: Path) -> dict[str, Any]:
    return {"data.dir": str(data_dir), **OVERRIDES}


def _kill_at(script: str, run_dir: Path, overrides: dict[str, Any]) -> None:
    """Run `script` in a subprocess and SIGKILL it once it reports the chosen moment."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(run_dir), json.dumps(overrides)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if line.strip() == KILLED:
                break
        else:
            pytest.fail(f"the step ended (exit {proc.wait()}) before the moment of the kill")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "model" / "model.safetensors")


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


# --- reference runs: uninterrupted ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def profile(train_data_dir: Path) -> Any:
    return load_profile("tiny", _overrides(train_data_dir))


@pytest.fixture(scope="module")
def assembled(profile: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("assembled") / "run"
    run_assembly(profile, run_dir)
    return run_dir


@pytest.fixture(scope="module")
def trained(assembled: Path, profile: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = _copy(assembled, tmp_path_factory.mktemp("trained") / "run")
    T.train(profile, run_dir)
    return run_dir


@pytest.fixture(scope="module")
def evaluated(trained: Path, profile: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = _copy(trained, tmp_path_factory.mktemp("evaluated") / "run")
    evaluate(profile, run_dir, progress=False)
    return run_dir


# --- a kill in each stage, then a rerun ----------------------------------------------------------------------------


@pytest.mark.slow
def test_assembly_killed_while_saving_reruns_to_the_same_data(
    assembled: Path, train_data_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run_dir = tmp_path / "run"
    _kill_at(ASSEMBLE_KILLED_WHILE_SAVING, run_dir, _overrides(train_data_dir))
    assert not (run_dir / "data").exists() and len(list(run_dir.glob(".data.*.tmp"))) == 1  # the debris of the kill

    with caplog.at_level(logging.WARNING):
        run_assembly(load_profile("tiny", _overrides(train_data_dir)), run_dir)
    assert "taking over the lock" in caplog.text and "removed 1 temporary file(s)" in caplog.text
    assert not list(run_dir.glob(".*.tmp"))
    run, reference = Run(run_dir), Run(assembled)
    for split in ("train", "validation"):
        assert run.dataset()[split].to_list() == reference.dataset()[split].to_list()
    pd.testing.assert_frame_equal(run.stats(), reference.stats())


@pytest.mark.slow
def test_training_killed_while_checkpointing_resumes_from_the_last_complete_checkpoint(
    assembled: Path, trained: Path, train_data_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run_dir = _copy(assembled, tmp_path / "run")
    _kill_at(TRAIN_KILLED_WHILE_CHECKPOINTING, run_dir, _overrides(train_data_dir))
    last = run_dir / "checkpoints" / f"checkpoint-{STEPS}"
    assert last.is_dir() and not (last / "trainer_state.json").exists()  # killed while this checkpoint was written
    assert not (run_dir / "model").exists()

    with caplog.at_level(logging.WARNING):
        assert T.train(load_profile("tiny", _overrides(train_data_dir)), run_dir) == run_dir / "model"
    assert f"skipped incomplete checkpoint {last}" in caplog.text and "taking over the lock" in caplog.text
    summary, reference = Run(run_dir).step("finetune")["summary"], Run(trained).step("finetune")["summary"]
    assert summary["resumed_from"] == "checkpoint-5" and summary["global_step"] == STEPS
    assert summary["train_loss"] == pytest.approx(reference["train_loss"], rel=1e-4)  # independent of the interruption
    log, reference_log = Run(run_dir).train_log(), Run(trained).train_log()
    assert [r["step"] for r in log] == list(range(1, STEPS + 1))
    assert [r["loss"] for r in log] == pytest.approx([r["loss"] for r in reference_log], rel=1e-4)
    assert summary["train_loss"] == pytest.approx(sum(r["loss"] for r in log) / len(log))
    resumed, uninterrupted = _weights(run_dir), _weights(trained)
    assert resumed.keys() == uninterrupted.keys()
    for name, tensor in uninterrupted.items():
        assert torch.allclose(resumed[name], tensor, atol=1e-6), name
    assert f"mean logged training loss {summary['train_loss']:.4f}" in (run_dir / "model" / "README.md").read_text()


@pytest.mark.slow
def test_evaluation_killed_while_writing_predictions_reruns_to_the_same_scores(
    trained: Path, evaluated: Path, train_data_dir: Path, tmp_path: Path
) -> None:
    run_dir = _copy(trained, tmp_path / "run")
    _kill_at(EVALUATE_KILLED_WHILE_WRITING_TUNED, run_dir, _overrides(train_data_dir))
    assert list((run_dir / "predictions").glob(".tuned.*.tmp")) and not Run(run_dir).has_scores()

    evaluate(load_profile("tiny", _overrides(train_data_dir)), run_dir, progress=False)
    assert not list((run_dir / "predictions").glob(".*.tmp"))
    assert Run(run_dir).scores() == Run(evaluated).scores()
    pd.testing.assert_frame_equal(Run(run_dir).predictions(), Run(evaluated).predictions())


@pytest.mark.slow
def test_an_evaluation_of_fewer_sources_leaves_no_stale_source_in_the_report(
    trained: Path, train_data_dir: Path, tmp_path: Path
) -> None:
    run_dir = _copy(trained, tmp_path / "run")
    evaluate(load_profile("tiny", _overrides(train_data_dir)), run_dir, progress=False)
    assert set(report.collect_predictions([run_dir]).source) == {"NCBI-disease", "GAD", "HoC"}
    evaluate(load_profile("tiny", {**_overrides(train_data_dir), "eval.sources": ["GAD"]}), run_dir, progress=False)
    assert set(report.collect_predictions([run_dir]).source) == {"GAD"}
    assert set(report.collect_scores([run_dir]).source) == {"GAD"}
    assert {p.name for p in (run_dir / "predictions").rglob("*.jsonl")} == {"GAD.jsonl"}


@pytest.mark.slow
def test_training_refuses_a_run_folder_another_process_holds(assembled: Path, train_data_dir: Path, tmp_path: Path) -> None:
    from medtune_utils.locking import RunLockedError

    run_dir = _copy(assembled, tmp_path / "run")
    hold = "import sys, time\nfrom medtune_utils.run import Run\nwith Run(sys.argv[1]).lock('evaluate'):\n"
    hold += "    print('held', flush=True)\n    time.sleep(60)\n"
    holder = subprocess.Popen([sys.executable, "-c", hold, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match=f"step evaluate of process {holder.pid}"):
            T.train(load_profile("tiny", _overrides(train_data_dir)), run_dir)
        assert not (run_dir / "checkpoints").exists() and not (run_dir / "train_log.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()


# --- checkpoint completeness ---------------------------------------------------------------------------------------


def _checkpoint(folder: Path, step: int, state: str | None) -> Path:
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    if state is not None:
        (path / "trainer_state.json").write_text(state, encoding="utf-8")
    return path


def test_the_last_complete_checkpoint_skips_empty_and_half_written_ones(tmp_path: Path) -> None:
    complete = _checkpoint(tmp_path, 10, json.dumps({"global_step": 10}))
    half_written = _checkpoint(tmp_path, 30, '{"global_step": 3')  # killed while trainer_state.json was written
    empty = _checkpoint(tmp_path, 20, None)
    _checkpoint(tmp_path, 5, json.dumps({"global_step": 5}))
    assert T.last_complete_checkpoint(tmp_path) == (str(complete), [half_written, empty])
    assert T.last_complete_checkpoint(tmp_path / "none") == (None, [])
    assert not T.checkpoint_is_complete(_checkpoint(tmp_path, 40, json.dumps({"global_step": 39})))


def test_the_reported_training_loss_is_the_mean_of_every_logged_loss() -> None:
    history = [{"loss": 3.0, "step": 1}, {"loss": 1.0, "step": 2}, {"train_loss": 9.0, "step": 2}]
    assert T.mean_logged_loss(history) == 2.0


# --- rows too long for max_length: counted, reported, or a failure -------------------------------------------------


@pytest.fixture(scope="module")
def sample_run(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("sample") / "run"
    run_assembly(_sample_profile(sample_dir), run_dir)
    return run_dir


def _sample_profile(sample_dir: Path, **overrides: Any) -> Any:
    """The tiny profile on data/sample with `train.max_length` 96: some prompts fill it."""
    return load_profile("tiny", {"data.dir": str(sample_dir), "train.max_length": 96, **overrides})


def test_too_long_rows_are_counted_per_source_as_trl_drops_and_cuts_them(
    sample_run: Path, sample_dir: Path, tmp_path: Path
) -> None:
    rows = Run(sample_run).dataset()["train"]
    profile = _sample_profile(sample_dir)
    tiny = modeling.create_tiny_base(profile.model.tiny, [r["instruction"] + r["input"] + r["output"] for r in rows], tmp_path, 0)
    tokenizer = modeling.load_tokenizer(str(tiny))
    counts = T.too_long_counts(rows, tokenizer, 96)
    assert set(counts.source) == set(rows["source"]) and (counts.split == "train").all()
    trainer = T.build_trainer(profile, modeling.load_model(str(tiny), profile.model), tokenizer, rows, tmp_path / "out")
    dropped = len(rows) - len(trainer.train_dataset)
    assert 0 < dropped == counts.too_long_dropped.sum()
    cut = sum(len(e["input_ids"]) == 96 and e["input_ids"][-1] != tokenizer.eos_token_id for e in trainer.train_dataset)
    assert cut == counts.too_long_truncated.sum()
    assert T.too_long_counts(rows, tokenizer, 96, keep_end=True).too_long_dropped.sum() == 0


def test_on_too_long_fail_stops_before_training(sample_run: Path, sample_dir: Path, tmp_path: Path) -> None:
    run_dir = _copy(sample_run, tmp_path / "run")
    profile = _sample_profile(sample_dir, **{"train.on_too_long": "fail"})
    with pytest.raises(ValueError, match=r"longer than train.max_length=96 tokens, per source: .*\d+ dropped"):
        T.train(profile, run_dir)
    assert not (run_dir / "model").exists() and not Run(run_dir).train_log()
    assert Run(run_dir).lock_holder() is None


@pytest.mark.slow
def test_too_long_rows_are_written_to_stats_summary_and_output(
    sample_run: Path, sample_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = _copy(sample_run, tmp_path / "run")
    T.train(_sample_profile(sample_dir, **{"train.max_steps": 2, "train.save_steps": 2}), run_dir)
    stats = Run(run_dir).stats()
    train_rows = stats[stats.split == "train"]
    assert train_rows.too_long_dropped.sum() > 0 and (stats[stats.split == "validation"].too_long_dropped == 0).all()
    too_long = Run(run_dir).step("finetune")["summary"]["too_long"]
    assert sum(c["dropped"] for c in too_long.values()) == train_rows.too_long_dropped.sum()
    assert "longer than train.max_length=96 tokens, per source" in capsys.readouterr().out


# --- data hygiene: no credentialed text in the committed figures ---------------------------------------------------


def test_sample_outputs_in_the_repository_figures_never_show_credentialed_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = _copy(FIXTURE, tmp_path / "run_small")
    for path in (run_dir / "predictions").rglob("*.jsonl"):
        if path.stem not in {"MedNLI", "HoC"}:
            path.unlink()
    shown: list[pd.DataFrame] = []
    plot = figures.plot_sample_outputs  # drawn empty, to be quick: what it is given is what the test checks
    monkeypatch.setattr(figures, "plot_sample_outputs", lambda examples: shown.append(examples) or plot(examples.iloc[:0]))
    monkeypatch.setattr(report, "repo_root", lambda: tmp_path / "repo")

    assert "MedNLI" in set(report.sample_examples(run_dir).source)  # what a run's own figures folder shows
    report.build_report([run_dir], tmp_path / "repo" / "figures", only=["sample_outputs"])
    assert set(shown[-1].source) == {"HoC"}
    mednli_inputs = set(Run(run_dir).predictions(sources=["MedNLI"]).input)
    assert not any(text[:80] in cell for text in mednli_inputs for cell in shown[-1].to_numpy().ravel().astype(str))
    assert report.in_repository_figures(tmp_path / "repo" / "figures" / "sub")
    assert not report.in_repository_figures(tmp_path / "repo" / "results" / "run" / "figures")
