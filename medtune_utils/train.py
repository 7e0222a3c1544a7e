"""Profile -> TRL `SFTConfig` + `SFTTrainer`: completion-only loss on prompt/completion columns, resumable.

Also a command line for clusters: `accelerate launch -m medtune_utils.train --profile llama2-13b --run-dir DIR`.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from datasets import Dataset, DatasetDict
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback
from transformers.trainer_utils import get_last_checkpoint
from trl import SFTConfig, SFTTrainer

from . import modeling
from .assemble import load_assembly
from .config import ConfigError, Profile, load_profile, parse_set_args
from .io import atomic_dir, read_jsonl, write_text_atomic
from .paths import resolve
from .prompts import to_prompt_completion, training_text
from .runinfo import STEP_INPUTS, check_upstream, git_commit, read_env, record_step

log = logging.getLogger(__name__)

LOG_FILE = "train_log.jsonl"
LOG_KEYS = ("loss", "learning_rate", "grad_norm", "mean_token_accuracy", "num_tokens", "epoch")
RECIPE_FILE = "recipe.json"
# Settings that do not change the trained weights: a checkpoint may be resumed with other values of these.
NOT_IN_RECIPE = ("resume", "logging_steps", "save_steps", "save_total_limit", "report_to", "dataloader_num_workers")


@dataclass
class RunPaths:
    """Where a run's training artifacts live."""

    run_dir: Path

    @property
    def data(self) -> Path:
        return self.run_dir / "data"

    @property
    def base_model(self) -> Path:
        return self.run_dir / "base-model"

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def model(self) -> Path:
        return self.run_dir / "model"

    @property
    def train_log(self) -> Path:
        return self.run_dir / LOG_FILE

    @property
    def staging(self) -> Path:
        return self.run_dir / ".model.staging"


def on_gpu() -> bool:
    """Whether training runs on a CUDA device."""
    return torch.cuda.is_available()


def sft_config(profile: Profile, output_dir: str | Path) -> SFTConfig:
    """The TRL config for a profile: bf16 and checkpointing on GPU, fp32 without checkpointing on CPU."""
    t = profile.train
    gpu = on_gpu()
    bf16 = t.bf16 if t.bf16 is not None else gpu and torch.cuda.is_bf16_supported()
    checkpointing = t.gradient_checkpointing if t.gradient_checkpointing is not None else gpu
    liger = t.use_liger_kernel if t.use_liger_kernel is not None else gpu and importlib.util.find_spec("liger_kernel") is not None
    report_to = t.report_to if t.report_to is not None else (["tensorboard"] if importlib.util.find_spec("tensorboard") else [])
    return SFTConfig(
        output_dir=str(output_dir),
        num_train_epochs=t.num_train_epochs,
        max_steps=t.max_steps,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler_type,
        warmup_steps=t.warmup_ratio,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        per_device_train_batch_size=t.per_device_train_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        max_length=t.max_length,
        packing=t.packing,
        completion_only_loss=True,
        bf16=bf16,
        fp16=False,
        activation_checkpointing=checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if checkpointing else None,
        use_liger_kernel=liger,
        optim=t.optim,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        seed=profile.seed,
        data_seed=profile.seed,
        use_cpu=not gpu,
        dataloader_num_workers=t.dataloader_num_workers,
        report_to=report_to,
        disable_tqdm=False,
        dataset_num_proc=None,
    )


def prompt_completion(dataset: Dataset) -> Dataset:
    """Instruction rows -> TRL's prompt/completion columns, via the shared prompt builder."""
    return dataset.map(to_prompt_completion, remove_columns=dataset.column_names, desc="Building prompts")


def base_model_location(profile: Profile, paths: RunPaths, data: DatasetDict) -> str:
    """The base model's hub id or path; for `tiny`, build it from the run's own training text first."""
    if not modeling.is_tiny(profile.model.base):
        return profile.model.base
    if not (paths.base_model / "config.json").is_file():
        texts = (training_text(row) for row in data["train"])
        modeling.create_tiny_base(profile.model.tiny, texts, paths.base_model, profile.seed)
    return str(paths.base_model)


class JsonlLogCallback(TrainerCallback):
    """Append each log event (loss, learning rate, grad norm, tokens/s) to `train_log.jsonl`.

    At the start of training the log keeps only the records up to the step training starts from: none for a fresh
    run, those before the checkpoint on resume (so steps logged after the last checkpoint are not duplicated).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._last: tuple[float, float] | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            _trim_log(self.path, state.global_step)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        now = time.perf_counter()
        record: dict[str, Any] = {"step": state.global_step, **{k: logs[k] for k in LOG_KEYS if k in logs}}
        tokens = logs.get("num_tokens")
        if tokens is not None and self._last is not None and now > self._last[0]:
            record["tokens_per_second"] = (tokens - self._last[1]) / (now - self._last[0])
        if tokens is not None:
            self._last = (now, tokens)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")


def build_trainer(
    profile: Profile,
    model: PreTrainedModel | str,
    tokenizer: PreTrainedTokenizerBase,
    train_dataset: Dataset,
    output_dir: str | Path,
    callbacks: list[TrainerCallback] | None = None,
    args: SFTConfig | None = None,
) -> SFTTrainer:
    """An `SFTTrainer` on prompt/completion data, with LoRA adapters when the profile asks for them.

    Without packing TRL truncates rows to `max_length` and drops those left with no answer token; a warning counts them.
    """
    trainer = SFTTrainer(
        model=model,
        args=args or sft_config(profile, output_dir),
        train_dataset=prompt_completion(train_dataset),
        processing_class=tokenizer,
        peft_config=modeling.peft_config(profile.lora) if profile.lora.enabled else None,
        callbacks=callbacks,
    )
    dropped = len(train_dataset) - len(trainer.train_dataset)
    if not profile.train.packing and dropped:
        log.warning(
            "%d of %d training rows dropped: their prompt fills train.max_length=%d, leaving no answer token",
            dropped,
            len(train_dataset),
            profile.train.max_length,
        )
    return trainer


def train(profile: Profile, run_dir: str | Path, callbacks: list[TrainerCallback] | None = None) -> Path:
    """Fine-tune on `<run_dir>/data`, resuming from the last checkpoint when `train.resume`; save `<run_dir>/model`.

    A finished run of the same recipe is reused as it is; a stopped one returns `<run_dir>/checkpoints` instead.
    """
    paths = RunPaths(resolve(run_dir))
    check_upstream(paths.run_dir, "finetune", profile)
    data = load_assembly(paths.data)
    args = sft_config(profile, paths.checkpoints)  # sets up the (distributed) process state, as the trainer will use it
    resume_from = _resume_point(profile, paths, args)
    finished = _finished_state(resume_from)
    previous = read_env(paths.run_dir).get("steps", {}).get("finetune", {}).get("summary")
    if finished and previous and previous["global_step"] == finished["global_step"] and (paths.model / "README.md").is_file():
        log.info("training already finished at %s; keeping %s", resume_from, paths.model)
        if args.process_index == 0:
            record_step(paths.run_dir, "finetune", profile, {"summary": previous})
        return paths.model
    with args.main_process_first(local=False, desc="tiny base model"):  # built once, not by every process at once
        base = base_model_location(profile, paths, data)
    tokenizer = modeling.load_tokenizer(base, padding_side="right", revision=profile.model.revision)
    model = modeling.load_model(base, profile.model, profile.lora, revision=profile.model.revision)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    model.generation_config = modeling.generation_config_for(tokenizer)

    callbacks = [JsonlLogCallback(paths.train_log), *(callbacks or [])]
    trainer = build_trainer(profile, model, tokenizer, data["train"], paths.checkpoints, callbacks, args)
    started = time.perf_counter()
    if finished:
        # Its model folder is missing (a crash while saving). `Trainer.train` would run one step past `max_steps`
        # when resumed from a finished checkpoint, so load the checkpoint's weights instead.
        trainer._load_from_checkpoint(resume_from)
        losses = [entry["loss"] for entry in finished["log_history"] if "loss" in entry]
        global_step, train_loss = finished["global_step"], sum(losses) / len(losses) if losses else float("nan")
    else:
        result = trainer.train(resume_from_checkpoint=resume_from)
        if trainer.state.global_step < trainer.state.max_steps:
            log.warning("training stopped at step %d of %d; rerun to resume", trainer.state.global_step, trainer.state.max_steps)
            return paths.checkpoints
        global_step, train_loss = trainer.state.global_step, result.training_loss
    summary = {
        "global_step": global_step,
        "train_loss": train_loss,
        "train_seconds": time.perf_counter() - started,
        "resumed_from": Path(resume_from).name if resume_from else None,
        "base_model": profile.model.base,
    }
    save_model(trainer, tokenizer, profile, paths, summary)
    if trainer.is_world_process_zero():
        record_step(paths.run_dir, "finetune", profile, {"summary": summary})
    return paths.model


def save_model(
    trainer: SFTTrainer, tokenizer: PreTrainedTokenizerBase, profile: Profile, paths: RunPaths, summary: dict[str, Any]
) -> None:
    """Save weights (LoRA adapters, or merged when `lora.merge_on_save`), tokenizer, generation config, model card.

    Every process calls this: `Trainer.save_model` gathers FSDP / DeepSpeed ZeRO-3 shards (a plain `save_pretrained`
    on the main process alone would hang or write shards); the main process then assembles `model/` atomically.
    """
    accelerator = trainer.accelerator
    if trainer.is_world_process_zero():
        shutil.rmtree(paths.staging, ignore_errors=True)
    accelerator.wait_for_everyone()
    trainer.save_model(str(paths.staging))
    accelerator.wait_for_everyone()
    if not trainer.is_world_process_zero():
        return
    with atomic_dir(paths.model) as tmp:
        if profile.lora.enabled and profile.lora.merge_on_save:
            _merged(paths.staging, profile, tokenizer).save_pretrained(tmp)
        else:
            for item in paths.staging.iterdir():
                item.rename(tmp / item.name)
        tokenizer.save_pretrained(tmp)
        modeling.generation_config_for(tokenizer).save_pretrained(tmp)
        write_text_atomic(tmp / "README.md", model_card(profile, paths, summary))
    shutil.rmtree(paths.staging, ignore_errors=True)


def _merged(adapter_dir: Path, profile: Profile, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """Merge the LoRA adapters in `adapter_dir` into an unquantised copy of their base model."""
    from peft import PeftConfig, PeftModel

    base = modeling.load_model(PeftConfig.from_pretrained(str(adapter_dir)).base_model_name_or_path, profile.model, None)
    if len(tokenizer) > base.get_input_embeddings().num_embeddings:
        base.resize_token_embeddings(len(tokenizer))
    return PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()


def model_card(profile: Profile, paths: RunPaths, summary: dict[str, Any]) -> str:
    """A Markdown model card: base model, recipe, data composition, training summary, commit."""
    import pandas as pd

    stats_path = paths.data / "stats.csv"
    stats = pd.read_csv(stats_path).to_markdown(index=False) if stats_path.is_file() else "(no stats.csv)"
    kind = "LoRA adapters" if profile.lora.enabled and not profile.lora.merge_on_save else "full weights"
    return (
        f"# medtune model: profile `{profile.name}`\n\n"
        f"{profile.description}\n\n"
        f"- Base model: `{profile.model.base}`\n"
        f"- Saved as: {kind}\n"
        f"- Prompt template: `medtune_utils.prompts.build_prompt` (Alpaca-style; use the same template to query it)\n"
        f"- Steps: {summary['global_step']}, final mean training loss {summary['train_loss']:.4f}, "
        f"{summary['train_seconds']:.0f} s\n"
        f"- Code: medtune commit `{git_commit()}`\n"
        f"- Recipe: see `config.yaml` in the run folder\n\n"
        "Research artefact, not a medical device: never use it for clinical decisions.\n\n"
        f"## Training data\n\n{stats}\n"
    )


def read_train_log(run_dir: str | Path) -> list[dict[str, Any]]:
    """The run's training log records (empty when training has not run)."""
    path = RunPaths(resolve(run_dir)).train_log
    return list(read_jsonl(path)) if path.is_file() else []


def recipe(profile: Profile) -> dict[str, str]:
    """Hashes of the settings a checkpoint's weights depend on (the fine-tuning inputs less `NOT_IN_RECIPE`)."""
    sections = profile.to_dict()
    sections["train"] = {k: v for k, v in sections["train"].items() if k not in NOT_IN_RECIPE}
    return {
        key: hashlib.sha256(json.dumps(sections[key], sort_keys=True).encode()).hexdigest()[:16]
        for key in STEP_INPUTS["finetune"]
    }


def _resume_point(profile: Profile, paths: RunPaths, args: SFTConfig) -> str | None:
    """The checkpoint to resume from, or None after clearing `checkpoints/` for a fresh run of this recipe.

    Resuming a checkpoint written with other settings would mix two recipes in one model: that is an error.
    A fresh run also removes the previous run's model folder, so a finished checkpoint and `model/` always match.
    """
    folder = paths.checkpoints
    last = get_last_checkpoint(str(folder)) if profile.train.resume and folder.is_dir() else None
    current = recipe(profile)
    if last is not None:
        recorded_path = folder / RECIPE_FILE
        recorded = json.loads(recorded_path.read_text()) if recorded_path.is_file() else current
        changed = [key for key, value in recorded.items() if current.get(key) != value]
        if changed:
            raise ConfigError(
                f"{folder}: its checkpoints were written with different {', '.join(changed)} settings; "
                "set train.resume: false to start over (their checkpoints are deleted) or use another run_dir"
            )
        return last
    if args.process_index == 0:
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(paths.model, ignore_errors=True)
        folder.mkdir(parents=True)
        write_text_atomic(folder / RECIPE_FILE, json.dumps(current, indent=2) + "\n")
    PartialState().wait_for_everyone()
    return None


def _finished_state(checkpoint: str | None) -> dict[str, Any] | None:
    """The checkpoint's trainer state when it is the last step of its run, else None."""
    if checkpoint is None:
        return None
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))
    return state if state["global_step"] >= state["max_steps"] else None


def _trim_log(path: Path, step: int) -> None:
    """Keep only the log records up to `step` (none when training starts from scratch)."""
    if not path.is_file():
        return
    kept = [r for r in read_jsonl(path) if r["step"] <= step]
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))


def main(argv: list[str] | None = None) -> None:
    """Command line: `python -m medtune_utils.train --profile NAME --run-dir DIR [--set key=value ...]`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", required=True, help="profile name in configs/profiles/ or a YAML path")
    parser.add_argument("--run-dir", required=True, help="run folder holding data/ (from notebook 01)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. train.max_steps=50")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    profile = load_profile(args.profile, parse_set_args(args.set))
    print(f"model saved to {train(profile, args.run_dir)}")


if __name__ == "__main__":
    main()
