"""Run profiles: one YAML file per recipe in `configs/profiles/`, loaded into typed dataclasses.

A profile may `extends:` another profile; `overrides` (nested or dotted keys) are applied last. Any key
that no dataclass field declares is an error naming the key and the file it came from.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .paths import repo_root, resolve

PROFILES_DIR = "configs/profiles"


class ConfigError(ValueError):
    """A profile or override that cannot be used."""


@dataclass
class TinyModelConfig:
    """Shape of the tiny Llama built on the spot for CPU smoke runs."""

    hidden_size: int = 64
    intermediate_size: int = 172
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 4
    vocab_size: int = 1024
    max_position_embeddings: int = 2048


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


@dataclass
class TrainConfig:
    """Arguments that become TRL's `SFTConfig`; `None` means "decide from the hardware"."""

    num_train_epochs: float = 3.0
    max_steps: int = -1
    learning_rate: float = 2e-5
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    per_device_train_batch_size: int = 4
    gradient_accumulation_steps: int = 8
    max_length: int = 1024
    packing: bool = False
    bf16: bool | None = None
    gradient_checkpointing: bool | None = None
    use_liger_kernel: bool | None = None
    optim: str = "adamw_torch"
    logging_steps: int = 10
    save_steps: int = 500
    save_total_limit: int = 2
    resume: bool = True
    dataloader_num_workers: int = 0
    report_to: list[str] | None = None


@dataclass
class EvalConfig:
    """Which models are evaluated, on how many rows per source, and how generation runs."""

    models: list[str] = field(default_factory=lambda: ["tuned"])
    rows_per_source: int | None = None
    sources: list[str] | None = None
    batch_size: int = 16
    backend: str = "hf"
    max_new_tokens_cap: int = 1024
    bootstrap_samples: int = 1000


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
        """Plain nested dict, ready for YAML."""
        return dataclasses.asdict(self)


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
    raw = _read_with_parents(profile_path(name_or_path), seen=())
    profile = Profile()
    _apply(profile, raw_with_origin=raw)
    if overrides:
        _apply(profile, raw_with_origin=[(_nest(_parse_overrides(overrides)), "overrides")])
    _validate(profile)
    return profile


def save_profile(profile: Profile, path: str | Path) -> None:
    """Write the resolved profile as YAML (atomically)."""
    from .io import write_text_atomic

    write_text_atomic(path, yaml.safe_dump(profile.to_dict(), sort_keys=False))


def _read_with_parents(path: Path, seen: tuple[Path, ...]) -> list[tuple[dict[str, Any], str]]:
    if path in seen:
        raise ConfigError(f"{path}: `extends` forms a cycle")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    parent = data.pop("extends", None)
    chain = _read_with_parents(profile_path(parent), seen + (path,)) if parent else []
    return chain + [(data, str(path))]


def _parse_overrides(overrides: dict[str, Any] | str) -> dict[str, Any]:
    if isinstance(overrides, str):
        parsed = yaml.safe_load(overrides) if overrides.strip() else {}
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
        out[key.strip()] = yaml.safe_load(value)
    return out


def _apply(target: Any, raw_with_origin: list[tuple[dict[str, Any], str]]) -> None:
    for raw, origin in raw_with_origin:
        _apply_mapping(target, raw, origin, prefix="")


def _apply_mapping(target: Any, raw: dict[str, Any], origin: str, prefix: str) -> None:
    hints = typing.get_type_hints(type(target))
    names = {f.name for f in dataclasses.fields(target)}
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"{origin}: unknown key {dotted!r} (known here: {', '.join(sorted(names))})")
        current = getattr(target, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{origin}: {dotted!r} must be a mapping, got {value!r}")
            _apply_mapping(current, value, origin, prefix=f"{dotted}.")
        else:
            setattr(target, key, _coerce(value, hints[key], dotted, origin))


def _coerce(value: Any, hint: Any, key: str, origin: str) -> Any:
    """Check `value` against a simple type hint (int, float, bool, str, list, dict, optional)."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(f"{origin}: {key!r} may not be null")
    for option in options:
        base = typing.get_origin(option) or option
        if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if base is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if base in (bool, str, list, dict) and isinstance(value, base):
            return value
    expected = " or ".join(getattr(o, "__name__", str(o)) for o in options)
    raise ConfigError(f"{origin}: {key!r} expects {expected}, got {value!r}")


def _validate(profile: Profile) -> None:
    checks = {
        "data.eval_split": (profile.data.eval_split, {"devel", "test"}),
        "data.ner_format": (profile.data.ner_format, {"lines", "entities"}),
        "data.leakage": (profile.data.leakage, {"report", "drop", "fail"}),
        "eval.backend": (profile.eval.backend, {"hf", "vllm"}),
        "model.dtype": (profile.model.dtype, {"auto", "float32", "bfloat16", "float16"}),
    }
    for key, (value, allowed) in checks.items():
        if value not in allowed:
            raise ConfigError(f"profile {profile.name!r}: {key} must be one of {sorted(allowed)}, got {value!r}")
    if not 0 <= profile.train.warmup_ratio < 1:
        raise ConfigError(f"profile {profile.name!r}: train.warmup_ratio must be in [0, 1), got {profile.train.warmup_ratio}")
    if profile.lora.load_in_4bit and not profile.lora.enabled:
        raise ConfigError(f"profile {profile.name!r}: lora.load_in_4bit needs lora.enabled: true")
