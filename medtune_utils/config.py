"""Run profiles: one YAML file per recipe in `configs/profiles/`, loaded into typed sections.

A profile may `extends:` another profile; `overrides` (nested or dotted keys) are applied last. The `train` section
takes any field of TRL's `SFTConfig` (checked against its type) besides our own `resume` and `warmup_ratio`; the other
sections are the dataclasses below. An unknown key or a value of the wrong type is an error naming the key and the
file it came from.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pydantic
import yaml

from .paths import repo_root, resolve

PROFILES_DIR = "configs/profiles"

# Our `train` defaults where they differ from SFTConfig's; null means "decide from the hardware" (see `TRAIN_AUTO`).
TRAIN_DEFAULTS: dict[str, Any] = {
    "num_train_epochs": 3.0,
    "max_steps": -1,
    "learning_rate": 2e-5,
    "lr_scheduler_type": "cosine",
    "warmup_ratio": 0.03,
    "weight_decay": 0.0,
    "max_grad_norm": 1.0,
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 8,
    "global_batch_size": None,
    "eval_rows": None,
    "max_length": 1024,
    "packing": False,
    "bf16": None,
    "gradient_checkpointing": None,
    "use_liger_kernel": None,
    "optim": "adamw_torch",
    "logging_steps": 10,
    "save_steps": 500,
    "save_total_limit": 2,
    "resume": True,
    "on_too_long": "drop",
    "dataloader_num_workers": 0,
    "report_to": None,
}
# `train` keys that are not SFTConfig fields: resume from the last checkpoint; warmup as a fraction of the steps;
# what to do with training rows longer than `max_length` (`drop`: train on what fits, counted in stats.csv; `fail`: stop);
# the global batch in sequences per optimizer step (null: `gradient_accumulation_steps` as given; else the accumulation is
# derived from it, the per-device batch and the number of processes, see `with_accumulation`); how many validation rows
# (a fixed subset) give the evaluation loss beside the training loss (null: none; when set, `eval_strategy` defaults to steps).
TRAIN_OWN: dict[str, Any] = {
    "resume": bool,
    "warmup_ratio": float,
    "on_too_long": str,
    "global_batch_size": int | None,
    "eval_rows": int | None,
}
# SFTConfig fields whose null means "decide from the hardware" in `train.sft_config`.
TRAIN_AUTO = ("bf16", "gradient_checkpointing", "use_liger_kernel", "report_to")
# SFTConfig fields that `train.sft_config` sets itself, and how: a profile may not set them.
TRAIN_SET_BY_CODE = {
    "output_dir": "the run's checkpoints folder",
    "seed": "from the top-level seed",
    "data_seed": "from the top-level seed",
    "use_cpu": "from the hardware",
    "warmup_steps": "from train.warmup_ratio",
    "activation_checkpointing": "from train.gradient_checkpointing",
    "activation_checkpointing_kwargs": "from train.gradient_checkpointing",
    "gradient_checkpointing_kwargs": "from train.gradient_checkpointing",
    "completion_only_loss": "always true: the loss counts the answer tokens only",
    "fp16": "always false; see train.bf16",
    "logging_first_step": "always true",
    "save_strategy": "always steps",
    "disable_tqdm": "always false",
}
_YAML12_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")


class ConfigError(ValueError):
    """A profile or override that cannot be used."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading numbers as YAML 1.2 does: `2e-3`, `1E5` and `+.5` are floats, not strings."""


class _Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper, quoting the strings that `_Loader` would read as numbers."""


for _cls in (_Loader, _Dumper):
    _cls.add_implicit_resolver("tag:yaml.org,2002:float", _YAML12_FLOAT, list("-+.0123456789"))


def load_yaml(text: str) -> Any:
    """Parse config YAML (profiles, overrides, a run's `config.yaml`) with YAML 1.2 numbers."""
    return yaml.load(text, Loader=_Loader)


def dump_yaml(data: Any) -> str:
    """Config YAML that `load_yaml` reads back to the same values."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False)


@dataclass
class TinyModelConfig:
    """Shape of the tiny Llama built on the spot for CPU smoke runs, and its tokenizer.

    `tokenizer` null: a byte-level BPE of `vocab_size` tokens trained on the run's text; else a tokenizer folder (relative
    to the repository root, e.g. ../shared/tokenizers/llama-2) whose length `vocab_size` must equal.
    """

    hidden_size: int = 64
    intermediate_size: int = 172
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 4
    vocab_size: int = 1024
    max_position_embeddings: int = 2048
    tokenizer: str | None = None


@dataclass
class ModelConfig:
    """Base model: `tiny`, a hub id or a local path."""

    base: str = "tiny"
    revision: str | None = None
    dtype: str = "auto"
    attn_implementation: str = "auto"
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)


@dataclass
class LoraConfig:
    """LoRA / QLoRA adapters (PEFT); `load_in_4bit` turns LoRA into QLoRA via bitsandbytes."""

    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    load_in_4bit: bool = False
    merge_on_save: bool = False


@dataclass
class DataConfig:
    """Which sources to read, how many rows of each, which split is evaluated, and the output format."""

    dir: str = "data/sample"
    credentialed_dir: str | None = None
    sources: list[str] | None = None
    eval_split: str = "devel"
    ner_format: str = "lines"
    train_rows: dict[str, int] = field(default_factory=dict)
    validation_rows: dict[str, int] = field(default_factory=dict)
    dedup: bool = False
    leakage: str = "report"
    released: str | None = None
    template: str = "medtune"  # the prompt template trained on and evaluated with (medtune_utils.prompts)


class TrainConfig(SimpleNamespace):
    """Arguments that become TRL's `SFTConfig`: `TRAIN_DEFAULTS` updated with the profile's `train` section."""

    def __init__(self, **values: Any) -> None:
        super().__init__(**{**TRAIN_DEFAULTS, **values})


@dataclass
class EvalConfig:
    """Which models are evaluated, on how many rows per source, and how generation runs."""

    models: list[str | dict[str, Any]] = field(default_factory=lambda: ["tuned"])  # a name, or {name, template, shots}
    rows_per_source: int | None = None
    sources: list[str] | None = None
    batch_size: int = 16
    backend: str = "hf"
    dtype: str = "auto"  # auto: bfloat16 on a GPU (float16 where it lacks bf16) whatever model.dtype, float32 on CPU
    max_new_tokens_cap: int = 1024
    bootstrap_samples: int = 1000
    require_gpu: bool = False  # stop before any work when no GPU is visible or a hub model cannot be reached


@dataclass
class Profile:
    """A whole run recipe."""

    name: str = "unnamed"
    description: str = ""
    seed: int = 42
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict, ready for YAML; `train` holds our defaults and what the profile set."""
        data = dataclasses.asdict(self)
        data["train"] = vars(data["train"])
        return data


def accumulation_steps(train: TrainConfig, world_size: int) -> int:
    """Gradient accumulation for `world_size` processes: `global_batch_size / (per_device_train_batch_size * world_size)`.

    Without a `global_batch_size` it is `gradient_accumulation_steps` as given. A global batch that the per-device batch
    times the number of processes does not divide is an error naming the values that would divide it.
    """
    if train.global_batch_size is None:
        return train.gradient_accumulation_steps
    per_step = train.per_device_train_batch_size * world_size
    steps, rest = divmod(train.global_batch_size, per_step)
    if rest or not steps:
        raise ConfigError(
            f"train.global_batch_size={train.global_batch_size} is not a multiple of train.per_device_train_batch_size="
            f"{train.per_device_train_batch_size} x {world_size} process(es) = {per_step}; choose a global batch that "
            f"{per_step} divides (e.g. {max(steps, 1) * per_step}) or another per-device batch"
        )
    return steps


def with_accumulation(profile: Profile, world_size: int) -> Profile:
    """A copy of `profile` whose `train.gradient_accumulation_steps` is resolved for `world_size` processes."""
    resolved = copy.deepcopy(profile)
    resolved.train.gradient_accumulation_steps = accumulation_steps(profile.train, world_size)
    return resolved


def profile_path(name_or_path: str | Path) -> Path:
    """Find a profile by name (`configs/profiles/<name>.yaml`) or by path."""
    candidate = Path(name_or_path)
    if candidate.suffix in {".yaml", ".yml"}:
        path = resolve(candidate)
        if not path.is_file():
            raise ConfigError(f"profile file not found: {path}")
        return path
    path = repo_root() / PROFILES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(available_profiles()) or "none"
        raise ConfigError(f"unknown profile {str(name_or_path)!r} (no {path}); known profiles: {known}")
    return path


def available_profiles() -> list[str]:
    """Names of the profiles in `configs/profiles/`."""
    return sorted(p.stem for p in (repo_root() / PROFILES_DIR).glob("*.yaml"))


def load_profile(name_or_path: str | Path, overrides: dict[str, Any] | str | None = None) -> Profile:
    """Load a profile, following `extends:`, then apply `overrides` (checked like the file itself)."""
    profile = Profile()
    for raw, origin in _read_with_parents(profile_path(name_or_path), seen=()):
        _apply_mapping(profile, raw, origin, prefix="")
    if overrides:
        _apply_mapping(profile, _nest(_parse_overrides(overrides)), "overrides", prefix="")
    _validate(profile)
    return profile


def save_profile(profile: Profile, path: str | Path) -> None:
    """Write the resolved profile as YAML (atomically)."""
    from .io import write_text_atomic

    write_text_atomic(path, dump_yaml(profile.to_dict()))


def _read_with_parents(path: Path, seen: tuple[Path, ...]) -> list[tuple[dict[str, Any], str]]:
    if path in seen:
        raise ConfigError(f"{path}: `extends` forms a cycle")
    try:
        data = load_yaml(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    parent = data.pop("extends", None)
    chain = _read_with_parents(profile_path(parent), seen + (path,)) if parent else []
    return chain + [(data, str(path))]


def _parse_overrides(overrides: dict[str, Any] | str) -> dict[str, Any]:
    if isinstance(overrides, str):
        parsed = load_yaml(overrides) if overrides.strip() else {}
        if not isinstance(parsed, dict):
            raise ConfigError(f"overrides: expected a mapping, got {overrides!r}")
        return parsed
    return dict(overrides)


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    """Turn `{"train.max_steps": 5}` into `{"train": {"max_steps": 5}}`; nested dicts pass through."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        parts = str(key).split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"overrides: {key!r} conflicts with another override")
        if isinstance(value, dict) and isinstance(node.get(parts[-1]), dict):
            node[parts[-1]].update(value)
        else:
            node[parts[-1]] = value
    return out


def parse_set_args(pairs: list[str]) -> dict[str, Any]:
    """Parse command-line `key.path=value` pairs; values are read as YAML scalars."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = load_yaml(value)
    return out


def _apply_mapping(target: Any, raw: dict[str, Any], origin: str, prefix: str) -> None:
    train = isinstance(target, TrainConfig)
    hints = _train_hints() if train else typing.get_type_hints(type(target))
    if train and "gradient_accumulation_steps" in raw and "global_batch_size" not in raw:
        target.global_batch_size = None  # a layer that states the accumulation itself replaces an inherited global batch
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key not in hints:
            raise ConfigError(f"{origin}: {_unknown(dotted, key, hints, train)}")
        current = getattr(target, key, None)
        if dataclasses.is_dataclass(current) or isinstance(current, TrainConfig):
            if not isinstance(value, dict):
                raise ConfigError(f"{origin}: {dotted!r} must be a mapping, got {value!r}")
            _apply_mapping(current, value, origin, prefix=f"{dotted}.")
        else:
            setattr(target, key, _validated(value, hints[key], dotted, origin))


def _unknown(dotted: str, key: str, known: dict[str, Any], train: bool) -> str:
    """Why `key` is refused: set by the code, or unknown (with the closest known keys)."""
    if train and key in TRAIN_SET_BY_CODE:
        return f"{dotted!r} is set by medtune ({TRAIN_SET_BY_CODE[key]}); remove it"
    close = difflib.get_close_matches(key, known, n=3)
    prefix = dotted[: -len(key)]
    if close:
        return f"unknown key {dotted!r}; did you mean {' or '.join(repr(prefix + c) for c in close)}?"
    listing = f"{', '.join(TRAIN_OWN)} and any trl.SFTConfig field" if train else ", ".join(sorted(known))
    return f"unknown key {dotted!r} (known here: {listing})"


@functools.cache
def _train_hints() -> dict[str, Any]:
    """The type of each `train` key: SFTConfig's fields less those the code sets, and our own keys.

    transformers types its `*_steps` fields as float (below 1 they are a ratio); a whole number of steps stays an int.
    """
    from trl import SFTConfig

    hints = typing.get_type_hints(SFTConfig)
    names = [f.name for f in dataclasses.fields(SFTConfig) if f.init and f.name not in TRAIN_SET_BY_CODE]
    out = {name: int | hints[name] if name.endswith("_steps") else hints[name] for name in names}
    return {**out, **{key: out[key] | None for key in TRAIN_AUTO}, **TRAIN_OWN}


@functools.cache
def _adapter(hint: Any) -> pydantic.TypeAdapter:
    """A pydantic validator for `hint` (built once per hint)."""
    return pydantic.TypeAdapter(hint, config=pydantic.ConfigDict(arbitrary_types_allowed=True))


def _validated(value: Any, hint: Any, key: str, origin: str) -> Any:
    """`value` checked against `hint` in pydantic's strict mode.

    An int passes for a float (and becomes one); a string never passes for a number, nor a number for a bool.
    """
    try:
        return _adapter(hint).validate_python(value, strict=True)
    except pydantic.ValidationError:
        problem = "may not be null" if value is None else f"expects {_type_name(hint)}, got {value!r}"
        raise ConfigError(f"{origin}: {key!r} {problem}") from None


def _type_name(hint: Any) -> str:
    """`float`, `list[str] | None`, `SchedulerType | str`: the hint without module paths."""
    name = hint.__name__ if isinstance(hint, type) and not typing.get_args(hint) else str(hint)
    return re.sub(r"\b(?:[A-Za-z_]\w*\.)+(\w+)", r"\1", name).replace("NoneType", "None")


def _validate(profile: Profile) -> None:
    checks = {
        "data.eval_split": (profile.data.eval_split, {"devel", "test"}),
        "data.ner_format": (profile.data.ner_format, {"lines", "entities"}),
        "data.leakage": (profile.data.leakage, {"report", "drop", "fail"}),
        "eval.backend": (profile.eval.backend, {"hf", "vllm"}),
        "eval.dtype": (profile.eval.dtype, {"auto", "float32", "bfloat16", "float16"}),
        "model.dtype": (profile.model.dtype, {"auto", "float32", "bfloat16", "float16"}),
        "train.on_too_long": (profile.train.on_too_long, {"drop", "fail"}),
    }
    for key, (value, allowed) in checks.items():
        if value not in allowed:
            raise ConfigError(f"profile {profile.name!r}: {key} must be one of {sorted(allowed)}, got {value!r}")
    if not 0 <= profile.train.warmup_ratio < 1:
        raise ConfigError(f"profile {profile.name!r}: train.warmup_ratio must be in [0, 1), got {profile.train.warmup_ratio}")
    if profile.lora.load_in_4bit and not profile.lora.enabled:
        raise ConfigError(f"profile {profile.name!r}: lora.load_in_4bit needs lora.enabled: true")
    if profile.train.global_batch_size is not None and profile.train.global_batch_size < 1:
        size = profile.train.global_batch_size
        raise ConfigError(f"profile {profile.name!r}: train.global_batch_size must be positive, got {size}")
    _validate_prompting(profile)


def _validate_prompting(profile: Profile) -> None:
    """`data.template` names a trainable template; each `eval.models` entry is a name or a valid {name, template, shots}."""
    from .prompts import model_entry, trainable_templates

    if profile.data.template not in trainable_templates():
        known = sorted(trainable_templates())
        raise ConfigError(f"profile {profile.name!r}: data.template must be one of {known}, got {profile.data.template!r}")
    for item in profile.eval.models:
        try:
            model_entry(item)
        except ValueError as exc:
            raise ConfigError(f"profile {profile.name!r}: eval.models: {exc}") from None
