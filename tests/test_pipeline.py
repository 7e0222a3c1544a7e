"""The four notebooks run headless in order and leave every artifact the run-folder contract names."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pandas as pd
import papermill as pm
import pytest

from medtune_utils.config import ConfigError
from medtune_utils.paths import repo_root
from medtune_utils.pipeline import NOTEBOOKS, NotebookFailed, main, run_pipeline, select_notebooks
from medtune_utils.run import PREDICTION_COLUMNS


@pytest.mark.slow
def test_run_folder_holds_every_artifact(tiny_run: Path) -> None:
    for name in ("config.yaml", "env.json", "train_log.jsonl", "scores.json"):
        assert (tiny_run / name).is_file(), name
    data = tiny_run / "data"
    assert (data / "dataset_dict.json").is_file()
    stats = pd.read_csv(data / "stats.csv")
    assert {"source", "task", "split", "rows"} <= set(stats.columns)
    model = tiny_run / "model"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json", "README.md"):
        assert (model / name).is_file(), name
    for notebook in NOTEBOOKS:
        executed = json.loads((tiny_run / "notebooks" / f"{notebook}.ipynb").read_text())
        assert any(cell.get("outputs") for cell in executed["cells"] if cell["cell_type"] == "code")
    env = json.loads((tiny_run / "env.json").read_text())
    assert set(env["steps"]) == {"assemble", "finetune", "evaluate"}


@pytest.mark.slow
def test_scores_cover_every_sample_source_for_base_and_tuned(tiny_run: Path, sample_dir: Path) -> None:
    scores = json.loads((tiny_run / "scores.json").read_text())
    sources = {p.name for p in sample_dir.iterdir() if p.is_dir()}
    assert set(scores["models"]) == {"base", "tuned"}
    for model, per_source in scores["models"].items():
        assert set(per_source) == sources, model
        for source, entry in per_source.items():
            assert entry["n"] >= 1 and entry["headline"] in entry["metrics"], source
            assert entry["ci_low"] <= entry["value"] <= entry["ci_high"], source
            lines = (tiny_run / "predictions" / model / f"{source}.jsonl").read_text().splitlines()
            assert len(lines) == entry["n"]
            assert tuple(json.loads(lines[0])) == PREDICTION_COLUMNS
    assert {c["source"] for c in scores["comparisons"]} == sources


@pytest.mark.slow
def test_figures_and_tables_are_written(tiny_run: Path) -> None:
    figures = tiny_run / "figures"
    for name in ("composition", "training_curves", "results", "gains", "generation_lengths", "sample_outputs"):
        for suffix in ("png", "pdf"):
            assert (figures / f"{name}.{suffix}").stat().st_size > 1000, name
    for name in ("main_results", "composition", "malformed"):
        for suffix in ("md", "tex", "csv"):
            assert (figures / f"{name}.{suffix}").stat().st_size > 100, name


@pytest.mark.slow
def test_training_loss_went_down(tiny_run: Path) -> None:
    log = [json.loads(line) for line in (tiny_run / "train_log.jsonl").read_text().splitlines()]
    losses = [record["loss"] for record in log if "loss" in record]  # evaluation-loss records have no training loss
    assert losses[-1] < losses[0]


@pytest.mark.slow
def test_a_failing_notebook_stops_with_its_error(tmp_path: Path) -> None:
    with pytest.raises(NotebookFailed) as exc:
        run_pipeline("tiny", run_dir=str(tmp_path / "empty"), notebooks=("02_finetune",), progress=False)
    message = str(exc.value)
    assert "02_finetune failed in cell" in message
    assert "FileNotFoundError" in message and "01_assemble_instructions" in message


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--profile", "no-such-profile"], "unknown profile 'no-such-profile'"),
        (["--set", "train.max_stepz=3"], "unknown key 'train.max_stepz'"),
        (["--data-dir", "no/such/dir"], "data directory not found"),
        (["--only", "07"], "unknown notebook number(s) 07"),
    ],
)
def test_command_line_errors_are_one_line(args: list[str], fragment: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*args, "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and fragment in err and "\n" not in err


def test_only_selects_notebooks_by_number_in_pipeline_order() -> None:
    assert select_notebooks(["4", "03"]) == ("03_evaluate", "04_figures_and_tables")
    assert select_notebooks(None) == tuple(NOTEBOOKS)


def test_run_pipeline_checks_settings_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        run_pipeline("tiny", run_dir=str(tmp_path / "x"), overrides={"bogus": 1})
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_papermill_with_relative_run_dir_from_the_notebooks_folder(tiny_run: Path) -> None:
    """As in the README: 02 rerun by hand after 01 into results/x, with papermill started from another folder."""
    relative = f"results/pytest-{uuid.uuid4().hex[:8]}"
    target = repo_root() / relative
    try:
        shutil.copytree(tiny_run / "data", target / "data")
        for name in ("env.json", "config.yaml"):
            shutil.copy(tiny_run / name, target / name)
        pm.execute_notebook(
            str(repo_root() / "notebooks" / "02_finetune.ipynb"),
            str(target / "out.ipynb"),
            parameters={"run_dir": relative, "overrides": {"train.max_steps": 2}},
            cwd=str(repo_root() / "notebooks"),
            progress_bar=False,
            kernel_name="python3",
        )
        assert (target / "model" / "model.safetensors").is_file()
    finally:
        shutil.rmtree(target, ignore_errors=True)


def test_a_gpu_profile_without_gpu_weights_or_data_stops_at_once_naming_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No GPU, no token for the gated meta-llama weights, no data: one error naming all three, before any download."""
    import socket

    import huggingface_hub
    import torch
    from huggingface_hub import constants

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a CPU machine, on GPU machines too
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the check went to the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(huggingface_hub, "auth_check", no_network)
    run_dir = tmp_path / "run"
    argv = ["--profile", "llama2-7b", "--run-dir", str(run_dir), "--set", f"data.dir={tmp_path / 'raw'}", "--no-progress"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: profile llama2-7b cannot run") and "\n" not in err
    assert "GPU: no CUDA device visible" in err
    assert "meta-llama/Llama-2-7b-hf is gated and no Hugging Face token is set" in err and "huggingface-cli login" in err
    assert f"data: {tmp_path / 'raw'} not found" in err
    assert not run_dir.exists()  # nothing was started


def test_training_in_several_processes_goes_through_accelerate_launch(tmp_path: Path) -> None:
    """Step 02's command when the profile needs several processes: accelerate's own launcher validates it."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    from medtune_utils.config import load_profile
    from medtune_utils.pipeline import train_command, training_processes

    assert training_processes(load_profile("tiny"), None) == 1
    lora = load_profile("llama2-7b-lora")
    command = train_command(lora, "results/lora", {"train.max_steps": 5, "eval.models": ["base"]}, 8, None)
    start = command.index("accelerate.commands.launch") + 1
    args, _, _ = _validate_launch_command(launch_command_parser().parse_args(command[start:]))
    assert args.multi_gpu and args.num_processes == 8 and args.config_file == "configs/accelerate/multi_gpu.yaml"
    assert args.training_script == "medtune_utils.train" and args.module
    assert args.training_script_args == ["--run-dir", "results/lora", "--set", "train.max_steps=5", "--set", "eval.models=- base"]
    full = train_command(load_profile("llama2-13b"), "results/13b", {}, 4, None)
    assert full[full.index("--config_file") + 1] == "configs/accelerate/fsdp.yaml"
