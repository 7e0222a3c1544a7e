"""Profile -> TRL `SFTConfig` + `SFTTrainer`: completion-only loss on prompt/completion columns, resumable.

Also a command line for clusters: `accelerate launch -m medtune_utils.train --profile llama2-13b --run-dir DIR`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import random
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from accelerate import PartialState
from datasets import Dataset, DatasetDict
from transformers import IntervalStrategy, PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback
from transformers.trainer import FSDP_MODEL_NAME, SCALER_NAME, SCHEDULER_NAME, TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import SFTConfig, SFTTrainer

from . import modeling
from .config import ConfigError, Profile, accumulation_steps, load_profile, parse_set_args, with_accumulation
from .environment import git_commit
from .io import atomic_dir, write_text_atomic
from .prompts import TEMPLATE, to_prompt_completion, training_text
from .run import MODEL_CARD, STEP_INPUTS, Run, section_hashes

log = logging.getLogger(__name__)

# Files of a checkpoint that only resuming reads: trainer state, optimizer (also FSDP's `optimizer_0`, DeepSpeed's
# shards), scheduler, grad scaler, RNG states, FSDP sharded weights, DeepSpeed's `latest` and recovery script.
RESUME_STATE_PREFIXES = (
    TRAINER_STATE_NAME,
    "optimizer",
    SCHEDULER_NAME,
    SCALER_NAME,
    "rng_state",
    FSDP_MODEL_NAME,
    "latest",
    "zero_to_fp32",
    "global_step",
)
LOG_KEYS = ("loss", "learning_rate", "grad_norm", "mean_token_accuracy", "num_tokens", "epoch")
# Settings that do not change the trained weights: a checkpoint may be resumed with other values of these.
NOT_IN_RECIPE = (
    "resume",
    "on_too_long",
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
    "eval_rows",
    "eval_strategy",
    "eval_steps",
)


def on_gpu() -> bool:
    """Whether training runs on a CUDA device."""
    return torch.cuda.is_available()


def sft_config(profile: Profile, output_dir: str | Path) -> SFTConfig:
    """The TRL config for a profile: every `train` setting, and those the code fixes (`config.TRAIN_SET_BY_CODE`).

    A null `bf16`, `gradient_checkpointing`, `use_liger_kernel` or `report_to` is decided from the hardware: bf16 and
    checkpointing on GPU, fp32 without checkpointing on CPU. The accumulation comes from `train.global_batch_size` and the
    number of processes when the profile states a global batch; under FSDP gradients are synced every micro-batch.
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
    settings.pop("on_too_long")
    settings.pop("global_batch_size")
    eval_rows = settings.pop("eval_rows")
    eval_strategy = settings.pop("eval_strategy", "steps" if eval_rows else "no")
    checkpointing = settings.pop("gradient_checkpointing")
    warmup_ratio = settings.pop("warmup_ratio")
    if fsdp_launch(settings.get("fsdp")):
        settings["accelerator_config"] = sync_each_micro_batch(settings.get("accelerator_config"))
    args = SFTConfig(
        **settings,
        output_dir=str(output_dir),
        warmup_steps=warmup_ratio,  # transformers 5 has no warmup_ratio: a warmup_steps below 1 is a ratio of all steps
        activation_checkpointing=checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if checkpointing else None,
        completion_only_loss=True,
        fp16=False,
        logging_first_step=True,
        save_strategy="steps",
        eval_strategy=eval_strategy,
        seed=profile.seed,
        data_seed=profile.seed,
        use_cpu=not gpu,
        disable_tqdm=False,
    )
    args.gradient_accumulation_steps = accumulation_steps(profile.train, args.world_size)
    return args


def fsdp_launch(fsdp_setting: Any = None) -> bool:
    """Whether training runs under FSDP: launched with an FSDP accelerate config, or `train.fsdp` set in the profile."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true" or bool(fsdp_setting)


def sync_each_micro_batch(accelerator_config: dict[str, Any] | None) -> dict[str, Any]:
    """`accelerator_config` with `gradient_accumulation_kwargs.sync_each_batch` on, unless the profile set it.

    Between micro-batches the Trainer enters `Accelerator.no_sync`, which under FSDP2 turns off gradient sync: every
    rank then keeps the whole model's unsharded bf16 gradients (+12.6 GiB per GPU at 7B) until the last micro-batch.
    Syncing each micro-batch reduce-scatters them at once and keeps only the fp32 shard.
    """
    if accelerator_config is not None and not isinstance(accelerator_config, dict):
        raise ConfigError(f"train.accelerator_config must be a mapping under FSDP, got {accelerator_config!r}")
    merged = dict(accelerator_config or {})
    merged["gradient_accumulation_kwargs"] = {"sync_each_batch": True, **(merged.get("gradient_accumulation_kwargs") or {})}
    return merged


def prompt_completion(dataset: Dataset, template: str = TEMPLATE) -> Dataset:
    """Instruction rows -> TRL's prompt/completion columns, via the named prompt template."""
    return dataset.map(
        to_prompt_completion, fn_kwargs={"template": template}, remove_columns=dataset.column_names, desc="Building prompts"
    )


def base_model_location(profile: Profile, run: Run, data: DatasetDict) -> str:
    """The base model's hub id or path; for `tiny`, build it from the run's own training text first."""
    if not modeling.is_tiny(profile.model.base):
        return profile.model.base
    if not modeling.is_saved_model(run.base_model_dir):
        texts = (training_text(row, profile.data.template) for row in data["train"])
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
        if state.is_world_process_zero and logs and "eval_loss" in logs:
            self.run.append_train_log({"step": state.global_step, "eval_loss": logs["eval_loss"]})
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
    eval_dataset: Dataset | None = None,
) -> SFTTrainer:
    """An `SFTTrainer` on prompt/completion data, with LoRA adapters when the profile asks for them.

    `eval_dataset` (instruction rows) gives the evaluation loss at each evaluation step (`train.eval_rows`).

    Without packing TRL truncates rows to `max_length` and drops those left with no answer token; a warning counts them.
    """
    args = args or sft_config(profile, output_dir)
    if eval_dataset is None and "eval_strategy" not in vars(profile.train):
        args.eval_strategy = IntervalStrategy.NO  # `train.eval_rows` with no rows given (an empty split, a bare trainer)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=prompt_completion(train_dataset, profile.data.template),
        eval_dataset=prompt_completion(eval_dataset, profile.data.template) if eval_dataset is not None else None,
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


def eval_subset(validation: Dataset, rows: int | None) -> Dataset | None:
    """A fixed subset of `rows` validation rows for the evaluation loss (seeded by a constant, not the run's seed)."""
    if not rows or not len(validation):
        return None
    keep = sorted(random.Random("eval_loss").sample(range(len(validation)), min(rows, len(validation))))
    return validation.select(keep)


def train(profile: Profile, run_dir: str | Path, callbacks: list[TrainerCallback] | None = None) -> Path:
    """Fine-tune on the run's instruction data, resuming from the last complete checkpoint when `train.resume`; save its model.

    A finished run of the same recipe is reused as it is; a stopped one returns the checkpoints folder instead. The main
    process holds the run folder's lock throughout (the other ranks of its launch follow it).
    """
    run = Run(run_dir)
    run.check_upstream("finetune", profile)
    args = sft_config(profile, run.checkpoints_dir)  # sets up the (distributed) process state, as the trainer will use it
    profile = with_accumulation(profile, args.world_size)  # the accumulation in use is what config.yaml records
    with run.lock("finetune", active=args.process_index == 0):
        return _train(profile, run, args, callbacks)


def _train(profile: Profile, run: Run, args: SFTConfig, callbacks: list[TrainerCallback] | None) -> Path:
    """`train` under the lock."""
    data = run.dataset()
    resume_from = _resume_point(profile, run, args)
    finished = _finished_state(resume_from)
    previous = (run.step("finetune") or {}).get("summary")
    if finished and previous and previous["global_step"] == finished["global_step"] and run.has_model():
        log.info("training already finished at %s; keeping %s", resume_from, run.model_dir)
        if args.process_index == 0:  # recorded as trained: with the accumulation of the launch that trained it
            trained = with_accumulation(profile, previous.get("world_size", args.world_size))
            run.record_step("finetune", trained, {"summary": previous})
        return run.model_dir
    with args.main_process_first(local=False, desc="tiny base model"):  # built once, not by every process at once
        base = base_model_location(profile, run, data)
    tokenizer = modeling.load_tokenizer(base, padding_side="right", revision=profile.model.revision)
    too_long = check_lengths(profile, run, data["train"], tokenizer, args.process_index == 0)
    started = time.perf_counter()
    if finished:
        # Its model folder is missing (a crash while saving). `Trainer.train` would run one step past `max_steps` when
        # resumed from a finished checkpoint; the checkpoint already holds what `Trainer.save_model` writes, so publish that.
        summary = _summary(finished["global_step"], finished["log_history"], too_long, started, resume_from, profile)
        recover_model(Path(resume_from), tokenizer, profile, run, summary, main=args.process_index == 0)
        if args.process_index == 0:
            run.record_step("finetune", profile, {"summary": summary})
        return run.model_dir
    packing = bool(profile.train.packing)
    model = modeling.load_model(base, profile.model, profile.lora, revision=profile.model.revision, packing=packing)
    attention = modeling.resolve_attention(profile.model.attn_implementation, packing)
    modeling.warn_if_dense_packing(attention, packing, profile.train.max_length)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    model.generation_config = modeling.generation_config_for(tokenizer)

    callbacks = [JsonlLogCallback(run), *(callbacks or [])]
    evaluation = eval_subset(data["validation"], profile.train.eval_rows)
    trainer = build_trainer(profile, model, tokenizer, data["train"], run.checkpoints_dir, callbacks, args, evaluation)
    trainer.train(resume_from_checkpoint=resume_from)
    if trainer.state.global_step < trainer.state.max_steps:
        log.warning("training stopped at step %d of %d; rerun to resume", trainer.state.global_step, trainer.state.max_steps)
        return run.checkpoints_dir
    summary = _summary(trainer.state.global_step, trainer.state.log_history, too_long, started, resume_from, profile)
    save_model(trainer, tokenizer, profile, run, summary)
    if trainer.is_world_process_zero():
        run.record_step("finetune", profile, {"summary": summary})
    return run.model_dir


def _summary(
    global_step: int,
    history: list[dict[str, Any]],
    too_long: dict[str, dict[str, int]],
    started: float,
    resume_from: str | None,
    profile: Profile,
) -> dict[str, Any]:
    """What `env.json` and the model card record about a finished training run."""
    return {
        "global_step": global_step,
        "train_loss": mean_logged_loss(history),
        "too_long": too_long,
        "train_seconds": time.perf_counter() - started,
        "resumed_from": Path(resume_from).name if resume_from else None,
        "base_model": profile.model.base,
        "world_size": PartialState().num_processes,
    }


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
    if trainer.is_world_process_zero():
        publish_model(run, tokenizer, profile, summary)


def is_resume_state(name: str) -> bool:
    """Whether a checkpoint file holds the trainer's resume state rather than what `Trainer.save_model` writes."""
    return name.startswith(RESUME_STATE_PREFIXES)


def recover_model(
    checkpoint: Path, tokenizer: PreTrainedTokenizerBase, profile: Profile, run: Run, summary: dict[str, Any], main: bool
) -> None:
    """The model folder from a finished checkpoint: its saved weights (gathered by `Trainer.save_model` when it was
    written, whatever the sharding), without the optimizer, scheduler, RNG and trainer state. No model is loaded."""
    if main:
        shutil.rmtree(run.staging_dir, ignore_errors=True)
        run.staging_dir.mkdir(parents=True)
        for item in sorted(checkpoint.iterdir()):
            if item.is_file() and not is_resume_state(item.name):
                shutil.copy2(item, run.staging_dir / item.name)
        if not any(run.staging_dir.glob("*.safetensors")):
            raise RuntimeError(
                f"{checkpoint} holds no gathered weights to publish (an FSDP SHARDED_STATE_DICT checkpoint?): use "
                "fsdp_state_dict_type FULL_STATE_DICT as configs/accelerate/fsdp.yaml does, or set train.resume: false"
            )
        publish_model(run, tokenizer, profile, summary)
    PartialState().wait_for_everyone()


def publish_model(run: Run, tokenizer: PreTrainedTokenizerBase, profile: Profile, summary: dict[str, Any]) -> None:
    """Move the staged weights into the model folder atomically, with tokenizer, generation config and model card."""
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
        f"- Prompt template: `{profile.data.template}` (`medtune_utils.prompts.TEMPLATES`; query the model with the same one)\n"
        f"- Steps: {summary['global_step']}, mean logged training loss {summary['train_loss']:.4f}, "
        f"{summary['train_seconds']:.0f} s\n"
        f"- Code: medtune commit `{git_commit()}`\n"
        f"- Recipe: see `config.yaml` in the run folder\n\n"
        "Research artefact, not a medical device: never use it for clinical decisions.\n\n"
        f"## Training data\n\n{composition}\n"
    )


def recipe(profile: Profile) -> dict[str, str]:
    """Hashes of the settings a checkpoint's weights depend on (the fine-tuning inputs less `NOT_IN_RECIPE`).

    With a `global_batch_size` the accumulation is not part of it: it only splits the same global batch over however
    many processes run (so a run may resume on another number of GPUs).
    """
    derived = ("gradient_accumulation_steps",) if profile.train.global_batch_size is not None else ()
    return section_hashes(profile, STEP_INPUTS["finetune"], drop={"train": NOT_IN_RECIPE + derived})


def mean_logged_loss(log_history: list[dict[str, Any]]) -> float:
    """The mean of the losses logged over the whole run: the same whether or not the run was interrupted and resumed.

    (`TrainOutput.training_loss` averages only the steps of the last session, so it depends on where a run resumed.)
    """
    losses = [entry["loss"] for entry in log_history if "loss" in entry]
    return sum(losses) / len(losses) if losses else float("nan")


def too_long_counts(
    rows: Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int, keep_end: bool = False, template: str = TEMPLATE
) -> pd.DataFrame:
    """Per source, training rows longer than `max_length` tokens (prompt, answer and eos, tokenized as TRL does).

    `too_long_dropped`: the prompt alone fills `max_length`, so no answer token is left to learn (TRL drops the row;
    packing keeps it fully masked); `too_long_truncated`: the answer is cut short. `keep_end` truncation never drops.
    """
    pairs = [to_prompt_completion(row, template) for row in rows]
    prompts = modeling.token_counts(tokenizer, [p["prompt"] for p in pairs], special=True)
    answers = modeling.token_counts(tokenizer, [p["completion"] for p in pairs], special=False)
    frame = pd.DataFrame({"source": rows["source"], "prompt": prompts, "total": [p + a + 1 for p, a in zip(prompts, answers)]})
    dropped = (frame.prompt >= max_length) & (not keep_end)
    frame = frame.assign(too_long_dropped=dropped, too_long_truncated=(frame.total > max_length) & ~dropped)
    counts = frame.groupby("source")[["too_long_dropped", "too_long_truncated"]].sum().reset_index()
    return counts.assign(split="train")[["source", "split", "too_long_dropped", "too_long_truncated"]]


def check_lengths(
    profile: Profile, run: Run, rows: Dataset, tokenizer: PreTrainedTokenizerBase, main: bool
) -> dict[str, dict[str, int]]:
    """Count the rows too long for `train.max_length` per source; fail when `train.on_too_long: fail`, else report them.

    The counts go into `stats.csv` (main process), the log and standard output; returned as {source: {kind: n}}.
    """
    max_length = profile.train.max_length
    keep_end = getattr(profile.train, "truncation_mode", "keep_start") == "keep_end"
    counts = too_long_counts(rows, tokenizer, max_length, keep_end, profile.data.template)
    if main:
        run.update_stats(counts)
    found = counts[(counts.too_long_dropped > 0) | (counts.too_long_truncated > 0)]
    by_source = {
        r.source: {"dropped": int(r.too_long_dropped), "truncated": int(r.too_long_truncated)} for r in found.itertuples()
    }
    if not by_source:
        return {}
    detail = "; ".join(f"{s}: {c['dropped']} dropped, {c['truncated']} truncated" for s, c in by_source.items())
    message = f"training rows longer than train.max_length={max_length} tokens, per source: {detail}"
    if profile.train.on_too_long == "fail":
        raise ValueError(f"{message} (train.on_too_long: fail; raise train.max_length or drop these sources)")
    log.warning(message)
    if main:
        print(message)
    return by_source


def checkpoint_is_complete(path: Path) -> bool:
    """Whether a checkpoint was saved whole: its `trainer_state.json` parses and names the folder's own step.

    `Trainer._save_checkpoint` writes `trainer_state.json` after the weights, optimizer, scheduler and RNG states (only
    the rotation of older checkpoints follows), and not atomically: a kill leaves it absent or cut short.
    """
    try:
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return path.name == f"{PREFIX_CHECKPOINT_DIR}-{state.get('global_step')}"


def last_complete_checkpoint(folder: Path) -> tuple[str | None, list[Path]]:
    """The newest complete checkpoint in `folder` (or None) and the incomplete ones newer than it (a kill while saving)."""
    named = {p: re.fullmatch(rf"{PREFIX_CHECKPOINT_DIR}-(\d+)", p.name) for p in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*")}
    steps = {p: int(match[1]) for p, match in named.items() if match and p.is_dir()}
    skipped: list[Path] = []
    for path in sorted(steps, key=steps.get, reverse=True):
        if checkpoint_is_complete(path):
            return str(path), skipped
        skipped.append(path)
    return None, skipped


def _resume_point(profile: Profile, run: Run, args: SFTConfig) -> str | None:
    """The last complete checkpoint to resume from, or None after clearing the checkpoints for a fresh run of this recipe.

    Incomplete checkpoints (a kill while one was written) are skipped with a warning and removed.
    Resuming a checkpoint written with other settings would mix two recipes in one model: that is an error.
    A fresh run also removes the previous run's model folder, so a finished checkpoint and the model always match.
    """
    folder = run.checkpoints_dir
    last, incomplete = last_complete_checkpoint(folder) if profile.train.resume and folder.is_dir() else (None, [])
    PartialState().wait_for_everyone()  # every rank has chosen before the main process removes anything
    for path in incomplete:
        log.warning("skipped incomplete checkpoint %s (interrupted while being saved); resuming from %s", path, last)
        if args.process_index == 0:
            shutil.rmtree(path)
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
