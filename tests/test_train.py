"""Fine-tuning with TRL's SFTTrainer: loss masks, learning, resume, LoRA save/merge, packing, CLI.

The rows come from the public datasets in ../shared/data when present, else from the hand-written data/sample.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset, concatenate_datasets
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, GenerationConfig, TrainerCallback

from medtune_utils import modeling
from medtune_utils import train as T
from medtune_utils.assemble import assemble, run_assembly
from medtune_utils.config import ConfigError, DataConfig, Profile, load_profile
from medtune_utils.prompts import build_prompt, training_text
from medtune_utils.run import Run

SOURCES = ["NCBI-disease", "GAD", "HoC"]
STEPS = 30


def _overrides(data_dir: Path) -> dict[str, Any]:
    """The tiny profile on up to 100 NCBI-disease, GAD and HoC rows each, 30 logged steps, a checkpoint every 10."""
    return {
        "data.dir": str(data_dir),
        "data.sources": SOURCES,
        "data.train_rows": {"default": 100},
        "data.validation_rows": {"default": 2},
        "train.max_steps": STEPS,
        "train.save_steps": 10,
        "train.logging_steps": 1,
        "train.max_length": 256,
    }


@pytest.fixture(scope="module")
def family_rows(train_data_dir: Path, sample_dir: Path) -> Dataset:
    """Rows of every task family: NER, RE, HoC, PubMedQA, ChatDoctor; NLI from the credentialed samples."""
    public = DataConfig(
        dir=str(train_data_dir), sources=["NCBI-disease", "GAD", "HoC", "PubMedQA", "ChatDoctor"], train_rows={"default": 8}
    )
    credentialed = DataConfig(dir=str(sample_dir), sources=["MedNLI", "i2b2-2010", "i2b2-2012"], credentialed_dir=str(sample_dir))
    rows = concatenate_datasets([assemble(public, seed=1).dataset["train"], assemble(credentialed, seed=1).dataset["train"]])
    assert set(rows["task"]) == {"ner", "re", "nli", "cls", "qa"}
    return rows


@pytest.fixture(scope="module")
def tiny(family_rows: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny base model whose tokenizer was trained on those rows."""
    texts = [training_text(row) for row in family_rows]
    return modeling.create_tiny_base(load_profile("tiny").model.tiny, texts, tmp_path_factory.mktemp("base"), seed=0)


def _trainer(tiny: Path, rows: Dataset, tmp_path: Path, overrides: dict[str, Any]) -> T.SFTTrainer:
    profile = load_profile("tiny", overrides)
    model = modeling.load_model(str(tiny), profile.model)
    return T.build_trainer(profile, model, modeling.load_tokenizer(str(tiny)), rows, tmp_path / "out")


def test_prompt_tokens_are_masked_and_completion_plus_eos_is_learned(tiny: Path, family_rows: Dataset, tmp_path: Path) -> None:
    trainer = _trainer(tiny, family_rows, tmp_path, {"train.max_length": 4096})
    tok = trainer.processing_class
    prepared = trainer.train_dataset
    assert len(prepared) == len(family_rows)  # nothing truncated, nothing dropped
    for i, row in enumerate(family_rows):
        ids, labels = prepared[i]["input_ids"], prepared[i]["labels"]
        prompt = tok(build_prompt(row["instruction"], row["input"]))["input_ids"]
        n = len(prompt)
        assert ids[:n] == prompt, row["id"]  # the prompt tokenizes the same alone and with its answer
        assert labels[:n] == [-100] * n, row["id"]
        assert labels[n:] == ids[n:], row["id"]  # every answer token counts ...
        assert ids[-1] == tok.eos_token_id and ids.count(tok.eos_token_id) == 1, row["id"]  # ... and one eos
        assert tok.decode(ids[n:-1]) == row["output"], row["id"]

    # The collator pads on the right with the pad token and never learns padding.
    batch = trainer.data_collator([prepared[i] for i in range(len(prepared))])
    for i in range(len(prepared)):
        length = len(prepared[i]["input_ids"])
        assert batch["attention_mask"][i, :length].all() and not batch["attention_mask"][i, length:].any()
        assert batch["labels"][i, :length].tolist() == prepared[i]["labels"]
        assert (batch["labels"][i, length:] == -100).all()
        assert (batch["input_ids"][i, length:] == tok.pad_token_id).all()
    assert ((batch["labels"] != -100).sum(dim=1) > 0).all()


def test_truncation_drops_rows_left_without_answer_tokens(
    tiny: Path, family_rows: Dataset, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tok = modeling.load_tokenizer(str(tiny))
    prompt_lengths = [len(tok(build_prompt(r["instruction"], r["input"]))["input_ids"]) for r in family_rows]
    max_length = sorted(prompt_lengths)[len(prompt_lengths) // 2]  # about half the prompts fill it
    answerless = sum(n >= max_length for n in prompt_lengths)
    assert 0 < answerless < len(family_rows)
    with caplog.at_level(logging.WARNING, logger="medtune_utils.train"):
        trainer = _trainer(tiny, family_rows, tmp_path, {"train.max_length": max_length})
    prepared = trainer.train_dataset
    assert len(prepared) == len(family_rows) - answerless
    assert f"{answerless} of {len(family_rows)} training rows dropped" in caplog.text
    kept = [n for n in prompt_lengths if n < max_length]
    for n, example in zip(kept, prepared):
        labels = example["labels"]
        assert len(labels) <= max_length
        assert labels[:n] == [-100] * n and -100 not in labels[n:]  # a cut answer keeps its first tokens, loses its eos
        assert any(label != -100 for label in labels)


def test_packing_keeps_the_masks_and_sequences_apart(tiny: Path, family_rows: Dataset, tmp_path: Path) -> None:
    """Padding-free packing on CPU (sdpa): each sequence attends only to itself, prompts stay masked."""
    unpacked = _trainer(tiny, family_rows, tmp_path, {"train.max_length": 1024})
    trainer = _trainer(tiny, family_rows, tmp_path, {"train.max_length": 1024, "train.packing": True})
    assert trainer.padding_free
    packs = [trainer.train_dataset[i] for i in range(2)]
    assert any(len(p["seq_lengths"]) > 1 for p in packs)
    batch = trainer.data_collator(packs)
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1
    by_ids = {tuple(e["input_ids"]): e["labels"] for e in unpacked.train_dataset}
    positions = batch["position_ids"][0]
    starts = [*(positions == 0).nonzero().flatten().tolist(), positions.numel()]
    model = trainer.model.eval()
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits[0]
        for start, end in zip(starts, starts[1:]):
            ids = batch["input_ids"][:, start:end]
            assert batch["labels"][0, start:end].tolist() == by_ids[tuple(ids[0].tolist())]  # same mask as unpacked
            torch.testing.assert_close(packed[start:end], model(input_ids=ids).logits[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("packing", [False, True])
def test_training_runs_with_and_without_packing(tiny: Path, family_rows: Dataset, tmp_path: Path, packing: bool) -> None:
    overrides = {"train.max_length": 512, "train.packing": packing, "train.max_steps": 3, "train.per_device_train_batch_size": 4}
    trainer = _trainer(tiny, family_rows, tmp_path, overrides)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    result = trainer.train()
    assert trainer.state.global_step == 3 and torch.isfinite(torch.tensor(result.training_loss))
    assert any(not torch.equal(before[n], p) for n, p in trainer.model.named_parameters())


# --- whole runs: the data assembled once, then trained through `train()` and the command line ----------------------


@pytest.fixture(scope="module")
def assembled(train_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder after notebook 01: NCBI-disease, GAD and HoC rows in data/ (~300 real ones, ~30 samples)."""
    run_dir = tmp_path_factory.mktemp("assembled") / "run"
    run_assembly(load_profile("tiny", _overrides(train_data_dir)), run_dir)
    return run_dir


def _copy_run(assembled: Path, target: Path) -> Path:
    shutil.copytree(assembled, target)
    return target


@pytest.fixture(scope="module")
def cli_run(assembled: Path, train_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted reference run, trained through `python -m medtune_utils.train` (in-process)."""
    run_dir = _copy_run(assembled, tmp_path_factory.mktemp("cli") / "run")
    args = ["--profile", "tiny", "--run-dir", str(run_dir)]
    for key, value in _overrides(train_data_dir).items():
        args += ["--set", f"{key}={json.dumps(value)}"]
    T.main(args)
    return run_dir


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(model_dir / "model.safetensors")


@pytest.mark.slow
def test_cli_trains_and_saves_a_complete_model_folder(cli_run: Path) -> None:
    model_dir = cli_run / "model"
    assert {"model.safetensors", "config.json", "tokenizer.json", "generation_config.json", "README.md"} <= {
        p.name for p in model_dir.iterdir()
    }
    assert not (cli_run / ".model.staging").exists()
    summary = Run(cli_run).env()["steps"]["finetune"]["summary"]
    assert summary["global_step"] == STEPS and summary["resumed_from"] is None
    tok = modeling.load_tokenizer(str(model_dir))
    gen = GenerationConfig.from_pretrained(model_dir)
    assert (gen.eos_token_id, gen.pad_token_id) == (tok.eos_token_id, tok.pad_token_id)
    assert gen.pad_token_id != gen.eos_token_id
    card = (model_dir / "README.md").read_text()
    assert "Base model: `tiny`" in card and "full weights" in card and f"Steps: {STEPS}" in card
    commit = Run(cli_run).env()["git_commit"]
    assert f"commit `{commit}`" in card and commit != "unknown"
    assert "NCBI-disease" in card  # the data composition table


@pytest.mark.slow
def test_loss_falls_on_ner_re_and_hoc_rows(cli_run: Path) -> None:
    log = Run(cli_run).train_log()
    assert [r["step"] for r in log] == list(range(1, STEPS + 1))
    losses = [r["loss"] for r in log]
    last = sum(losses[-5:]) / 5
    assert last < 0.7 * losses[0], losses
    assert all(r["tokens_per_second"] > 0 for r in log[1:])


class StopAt(TrainerCallback):
    """Stop training after a given step, as a killed job would (the checkpoint before it survives)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.step:
            control.should_training_stop = True


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_weights_and_log(
    assembled: Path, cli_run: Path, train_data_dir: Path, tmp_path: Path
) -> None:
    profile = load_profile("tiny", _overrides(train_data_dir))
    assert profile.train.resume
    run_dir = _copy_run(assembled, tmp_path / "run")
    assert T.train(profile, run_dir, callbacks=[StopAt(15)]) == run_dir / "checkpoints"
    assert not (run_dir / "model").exists()
    assert [r["step"] for r in Run(run_dir).train_log()] == list(range(1, 16))
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("checkpoint-*")) == ["checkpoint-10"]

    assert T.train(profile, run_dir) == run_dir / "model"  # resumes from step 10; steps 11-15 are redone
    log, reference = Run(run_dir).train_log(), Run(cli_run).train_log()
    assert [r["step"] for r in log] == list(range(1, STEPS + 1))  # no duplicated steps
    assert [r["loss"] for r in log] == pytest.approx([r["loss"] for r in reference], rel=1e-4)
    assert Run(run_dir).env()["steps"]["finetune"]["summary"]["resumed_from"] == "checkpoint-10"
    resumed, uninterrupted = _weights(run_dir / "model"), _weights(cli_run / "model")
    assert resumed.keys() == uninterrupted.keys()
    for name, tensor in uninterrupted.items():
        assert torch.allclose(resumed[name], tensor, atol=1e-6), name


def _sample_profile(sample_dir: Path, **overrides: Any) -> Profile:
    base = {"data.dir": str(sample_dir), "train.max_steps": 3, "train.save_steps": 3, "train.logging_steps": 1}
    return load_profile("tiny", {**base, "train.max_length": 128, "train.per_device_train_batch_size": 4, **overrides})


@pytest.mark.slow
def test_rerun_reuses_a_finished_run_and_refuses_another_recipes_checkpoints(
    sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile = _sample_profile(sample_dir)
    run_assembly(profile, tmp_path)
    model_dir = T.train(profile, tmp_path)
    first, saved_at = _weights(model_dir), (model_dir / "model.safetensors").stat().st_mtime_ns
    files = sorted(p.name for p in model_dir.iterdir())

    assert T.train(profile, tmp_path) == model_dir  # same recipe, finished: nothing trained, nothing rewritten
    assert (model_dir / "model.safetensors").stat().st_mtime_ns == saved_at
    assert [r["step"] for r in Run(tmp_path).train_log()] == [1, 2, 3]

    shutil.rmtree(model_dir)  # as after a crash while saving: the finished checkpoint is saved, not trained further
    with monkeypatch.context() as patch:  # recovery loads no model and builds no trainer (no private Trainer API either)
        patch.setattr(T, "SFTTrainer", None)
        patch.setattr(T.modeling, "load_model", None)
        T.train(profile, tmp_path)
    assert sorted(p.name for p in model_dir.iterdir()) == files  # the same folder as a run that saved normally
    assert [r["step"] for r in Run(tmp_path).train_log()] == [1, 2, 3]
    summary = Run(tmp_path).env()["steps"]["finetune"]["summary"]
    assert (summary["global_step"], summary["resumed_from"]) == (3, "checkpoint-3")
    assert all(torch.equal(first[k], v) for k, v in _weights(model_dir).items())

    other = _sample_profile(sample_dir, **{"train.learning_rate": 1e-3})
    with pytest.raises(ConfigError, match="different train settings"):
        T.train(other, tmp_path)
    T.train(_sample_profile(sample_dir, **{"train.learning_rate": 1e-3, "train.resume": False}), tmp_path)
    assert [r["step"] for r in Run(tmp_path).train_log()] == [1, 2, 3]
    assert Run(tmp_path).env()["steps"]["finetune"]["summary"]["resumed_from"] is None
    assert not all(torch.equal(first[k], v) for k, v in _weights(model_dir).items())


def _logits(model: torch.nn.Module, tok: Any, text: str) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(**tok(text, return_tensors="pt")).logits


@pytest.mark.slow
@pytest.mark.parametrize("merge", [False, True])
def test_lora_run_saves_adapters_or_a_merged_model(assembled: Path, train_data_dir: Path, tmp_path: Path, merge: bool) -> None:
    from peft import PeftModel

    lora = {"lora.enabled": True, "lora.r": 8, "lora.merge_on_save": merge}
    train_overrides = {"train.max_steps": 4, "train.save_steps": 4, "train.learning_rate": 1e-2, "train.max_length": 128}
    profile = load_profile("tiny", {**_overrides(train_data_dir), **lora, **train_overrides})
    run_dir = _copy_run(assembled, tmp_path / "run")
    model_dir = T.train(profile, run_dir)
    files = {p.name for p in model_dir.iterdir()}
    tok = modeling.load_tokenizer(str(model_dir))
    gen = GenerationConfig.from_pretrained(model_dir)
    assert (gen.eos_token_id, gen.pad_token_id) == (tok.eos_token_id, tok.pad_token_id)
    card = (model_dir / "README.md").read_text()
    assert "Base model: `tiny`" in card and "medtune commit `" in card

    base = modeling.load_model(str(run_dir / "base-model"), profile.model)
    text = build_prompt("Does the sentence describe a gene-disease association?", "BRCA1 variants cause breast cancer.")
    base_logits = _logits(base, tok, text)
    adapter_dir = run_dir / "checkpoints" / "checkpoint-4"
    tuned_logits = _logits(PeftModel.from_pretrained(base, str(adapter_dir)), tok, text)
    assert not torch.allclose(tuned_logits, base_logits, atol=1e-3)  # the adapters learned something
    if merge:
        assert "model.safetensors" in files and "adapter_config.json" not in files and "full weights" in card
        merged = AutoModelForCausalLM.from_pretrained(model_dir)
        assert not any("lora" in name for name, _ in merged.named_parameters())
        torch.testing.assert_close(_logits(merged, tok, text), tuned_logits, atol=1e-5, rtol=1e-5)
    else:
        assert {"adapter_config.json", "adapter_model.safetensors"} <= files and "model.safetensors" not in files
        assert "LoRA adapters" in card
        saved = PeftModel.from_pretrained(modeling.load_model(str(run_dir / "base-model"), profile.model), str(model_dir))
        torch.testing.assert_close(_logits(saved, tok, text), tuned_logits)
