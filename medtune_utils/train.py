"""Profile -> TRL `SFTConfig` + `SFTTrainer`: completion-only loss on prompt/completion columns, resumable.

Also a command line for clusters: `accelerate launch -m medtune_utils.train --profile llama2-13b --run-dir DIR`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from datasets import Dataset, DatasetDict
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback
from transformers.trainer_utils import get_last_checkpoint
from trl import SFTConfig, SFTTrainer

from . import modeling
from .config import ConfigError, Profile, load_profile, parse_set_args
from .environment import git_commit
from .io import atomic_dir, write_text_atomic
from .prompts import to_prompt_completion, training_text
from .run import MODEL_CARD, STEP_INPUTS, Run, section_hashes

log = logging.getLogger(__name__)

LOG_KEYS = ("loss", "learning_rate", "grad_norm", "mean_token_accuracy", "num_tokens", "epoch")
# Settings that do not change the trained weights: a checkpoint may be resumed with other values of these.
NOT_IN_RECIPE = (
    "resume",
    "logging_steps",
    "logging_strategy",
    "log_level",
    "save_steps",
    "save_total_limit",
    "save_only_model",
    "report_to",
    "run_name",
    "project",
    "push_to_hub",
    "hub_model_id",
    "hub_strategy",
    "dataloader_num_workers",
    "torch_empty_cache_steps",
)


def on_gpu() -> bool:
    """Whether training runs on a CUDA device."""
    return torch.cuda.is_available()


def sft_config(profile: Profile, output_dir: str | Path) -> SFTConfig:
    """The TRL config for a profile: every `train` setting, and those the code fixes (`config.TRAIN_SET_BY_CODE`).

    A null `bf16`, `gradient_checkpointing`, `use_liger_kernel` or `report_to` is decided from the hardware: bf16 and
    checkpointing on GPU, fp32 without checkpointing on CPU.
    """
    gpu = on_gpu()
    auto = {
        "bf16": gpu and torch.cuda.is_bf16_supported(),
        "gradient_checkpointing": gpu,
        "use_liger_kernel": gpu and importlib.util.find_spec("liger_kernel") is not None,
        "report_to": ["tensorboard"] if importlib.util.find_spec("tensorboard") else [],
    }
    settings = {key: auto[key] if value is None and key in auto else value for key, value in vars(profile.train).items()}
    settings.pop("resume")
    checkpointing = settings.pop("gradient_checkpointing")
    warmup_ratio = settings.pop("warmup_ratio")
    return SFTConfig(
        **settings,
        output_dir=str(output_dir),
        warmup_steps=warmup_ratio,  # transformers 5 has no warmup_ratio: a warmup_steps below 1 is a ratio of all steps
        activation_checkpointing=checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if checkpointing else None,
        completion_only_loss=True,
        fp16=False,
        logging_first_step=True,
        save_strategy="steps",
        seed=profile.seed,
        data_seed=profile.seed,
        use_cpu=not gpu,
        disable_tqdm=False,
    )


def prompt_completion(dataset: Dataset) -> Dataset:
    """Instruction rows -> TRL's prompt/completion columns, via the shared prompt builder."""
    return dataset.map(to_prompt_completion, remove_columns=dataset.column_names, desc="Building prompts")


def base_model_location(profile: Profile, run: Run, data: DatasetDict) -> str:
    """The base model's hub id or path; for `tiny`, build it from the run's own training text first."""
    if not modeling.is_tiny(profile.model.base):
        return profile.model.base
    if not modeling.is_saved_model(run.base_model_dir):
        texts = (training_text(row) for row in data["train"])
        modeling.create_tiny_base(profile.model.tiny, texts, run.base_model_dir, profile.seed)
    return str(run.base_model_dir)


class JsonlLogCallback(TrainerCallback):
    """Append each log event (loss, learning rate, grad norm, tokens/s) to the run's training log.

    At the start of training the log keeps only the records up to the step training starts from: none for a fresh
    run, those before the checkpoint on resume (so steps logged after the last checkpoint are not duplicated).
    """

    def __init__(self, run: Run) -> None:
        self.run = run
        self._last: tuple[float, float] | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            self.run.trim_train_log(state.global_step)

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
        self.run.append_train_log(record)


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
    """Fine-tune on the run's instruction data, resuming from the last checkpoint when `train.resume`; save its model.

    A finished run of the same recipe is reused as it is; a stopped one returns the checkpoints folder instead.
    """
    run = Run(run_dir)
    run.check_upstream("finetune", profile)
    data = run.dataset()
    args = sft_config(profile, run.checkpoints_dir)  # sets up the (distributed) process state, as the trainer will use it
    resume_from = _resume_point(profile, run, args)
    finished = _finished_state(resume_from)
    previous = (run.step("finetune") or {}).get("summary")
    if finished and previous and previous["global_step"] == finished["global_step"] and run.has_model():
        log.info("training already finished at %s; keeping %s", resume_from, run.model_dir)
        if args.process_index == 0:
            run.record_step("finetune", profile, {"summary": previous})
        return run.model_dir
    with args.main_process_first(local=False, desc="tiny base model"):  # built once, not by every process at once
        base = base_model_location(profile, run, data)
    tokenizer = modeling.load_tokenizer(base, padding_side="right", revision=profile.model.revision)
    model = modeling.load_model(base, profile.model, profile.lora, revision=profile.model.revision)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    model.generation_config = modeling.generation_config_for(tokenizer)

    callbacks = [JsonlLogCallback(run), *(callbacks or [])]
    trainer = build_trainer(profile, model, tokenizer, data["train"], run.checkpoints_dir, callbacks, args)
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
            return run.checkpoints_dir
        global_step, train_loss = trainer.state.global_step, result.training_loss
    summary = {
        "global_step": global_step,
        "train_loss": train_loss,
        "train_seconds": time.perf_counter() - started,
        "resumed_from": Path(resume_from).name if resume_from else None,
        "base_model": profile.model.base,
    }
    save_model(trainer, tokenizer, profile, run, summary)
    if trainer.is_world_process_zero():
        run.record_step("finetune", profile, {"summary": summary})
    return run.model_dir


def save_model(
    trainer: SFTTrainer, tokenizer: PreTrainedTokenizerBase, profile: Profile, run: Run, summary: dict[str, Any]
) -> None:
    """Save weights (LoRA adapters, or merged when `lora.merge_on_save`), tokenizer, generation config, model card.

    Every process calls this: `Trainer.save_model` gathers FSDP / DeepSpeed ZeRO-3 shards (a plain `save_pretrained`
    on the main process alone would hang or write shards); the main process then assembles the model folder atomically.
    """
    accelerator = trainer.accelerator
    if trainer.is_world_process_zero():
        shutil.rmtree(run.staging_dir, ignore_errors=True)
    accelerator.wait_for_everyone()
    trainer.save_model(str(run.staging_dir))
    accelerator.wait_for_everyone()
    if not trainer.is_world_process_zero():
        return
    with atomic_dir(run.model_dir) as tmp:
        if profile.lora.enabled and profile.lora.merge_on_save:
            _merged(run.staging_dir, profile, tokenizer).save_pretrained(tmp)
        else:
            for item in run.staging_dir.iterdir():
                item.rename(tmp / item.name)
        tokenizer.save_pretrained(tmp)
        modeling.generation_config_for(tokenizer).save_pretrained(tmp)
        write_text_atomic(tmp / MODEL_CARD, model_card(profile, run, summary))
    shutil.rmtree(run.staging_dir, ignore_errors=True)


def _merged(adapter_dir: Path, profile: Profile, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """Merge the LoRA adapters in `adapter_dir` into an unquantised copy of their base model."""
    from peft import PeftConfig, PeftModel

    base = modeling.load_model(PeftConfig.from_pretrained(str(adapter_dir)).base_model_name_or_path, profile.model, None)
    if len(tokenizer) > base.get_input_embeddings().num_embeddings:
        base.resize_token_embeddings(len(tokenizer))
    return PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()


def model_card(profile: Profile, run: Run, summary: dict[str, Any]) -> str:
    """A Markdown model card: base model, recipe, data composition, training summary, commit."""
    stats = run.stats()
    composition = stats.to_markdown(index=False) if not stats.empty else "(no data statistics)"
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
        f"## Training data\n\n{composition}\n"
    )


def recipe(profile: Profile) -> dict[str, str]:
    """Hashes of the settings a checkpoint's weights depend on (the fine-tuning inputs less `NOT_IN_RECIPE`)."""
    return section_hashes(profile, STEP_INPUTS["finetune"], drop={"train": NOT_IN_RECIPE})


def _resume_point(profile: Profile, run: Run, args: SFTConfig) -> str | None:
    """The checkpoint to resume from, or None after clearing the checkpoints for a fresh run of this recipe.

    Resuming a checkpoint written with other settings would mix two recipes in one model: that is an error.
    A fresh run also removes the previous run's model folder, so a finished checkpoint and the model always match.
    """
    folder = run.checkpoints_dir
    last = get_last_checkpoint(str(folder)) if profile.train.resume and folder.is_dir() else None
    current = recipe(profile)
    if last is not None:
        recorded = run.recipe() or current
        changed = [key for key, value in recorded.items() if current.get(key) != value]
        if changed:
            raise ConfigError(
                f"{folder}: its checkpoints were written with different {', '.join(changed)} settings; "
                "set train.resume: false to start over (their checkpoints are deleted) or use another run_dir"
            )
        return last
    if args.process_index == 0:
        run.reset_checkpoints(current)
    PartialState().wait_for_everyone()
    return None


def _finished_state(checkpoint: str | None) -> dict[str, Any] | None:
    """The checkpoint's trainer state when it is the last step of its run, else None."""
    if checkpoint is None:
        return None
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))
    return state if state["global_step"] >= state["max_steps"] else None


def main(argv: list[str] | None = None) -> None:
    """Command line: `python -m medtune_utils.train --run-dir DIR [--profile NAME] [--set key=value ...]`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True, help="run folder holding the instruction data (from notebook 01)")
    parser.add_argument("--profile", help="profile name in configs/profiles/ or a YAML path (default: the run's own profile)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. train.max_steps=50")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    overrides = parse_set_args(args.set)
    profile = load_profile(args.profile, overrides) if args.profile else Run(args.run_dir).profile(overrides)
    print(f"model saved to {train(profile, args.run_dir)}")


if __name__ == "__main__":
    main()
