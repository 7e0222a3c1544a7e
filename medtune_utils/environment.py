"""Run folders: the resolved profile, the environment, and checks that a step's inputs match its upstream."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from .config import ConfigError, Profile, save_profile
from .io import write_json_atomic
from .paths import repo_root, resolve

PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "tokenizers", "seqeval", "scikit-learn")
# Which profile sections each step's outputs depend on.
STEP_INPUTS: dict[str, tuple[str, ...]] = {
    "assemble": ("seed", "data"),
    "finetune": ("seed", "data", "model", "lora", "train"),
    "evaluate": ("seed", "data", "model", "lora", "train", "eval"),
}
UPSTREAM = {"finetune": "assemble", "evaluate": "finetune"}


def git_commit() -> str:
    """The repository's commit, with `+dirty` when the work tree has changes; `unknown` outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo_root(), capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=repo_root(), capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def environment() -> dict[str, Any]:
    """Python, package versions, git commit and accelerator."""
    import torch

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "git_commit": git_commit(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
    }


def section_hashes(profile: Profile) -> dict[str, str]:
    """A short hash of each top-level profile section."""
    data = profile.to_dict()
    return {key: hashlib.sha256(json.dumps(data[key], sort_keys=True).encode()).hexdigest()[:16] for key in data}


def record_step(run_dir: str | Path, step: str, profile: Profile, extra: dict[str, Any] | None = None) -> Path:
    """Write `config.yaml` and add this step (time, environment, inputs' hashes) to `env.json`."""
    run_dir = resolve(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_profile(profile, run_dir / "config.yaml")
    env = read_env(run_dir)
    hashes = section_hashes(profile)
    env.setdefault("steps", {})[step] = {
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "profile": profile.name,
        "inputs": {key: hashes[key] for key in STEP_INPUTS[step]},
        **(extra or {}),
    }
    env["seed"] = profile.seed
    env.update(environment())
    write_json_atomic(run_dir / "env.json", env)
    return run_dir


def read_env(run_dir: str | Path) -> dict[str, Any]:
    """The run's `env.json`, or an empty dict."""
    path = resolve(run_dir) / "env.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def check_upstream(run_dir: str | Path, step: str, profile: Profile) -> None:
    """Refuse to run `step` on outputs made from different settings (it would mix results)."""
    upstream = UPSTREAM.get(step)
    if upstream is None:
        return
    recorded = read_env(run_dir).get("steps", {}).get(upstream)
    if recorded is None:
        return
    current = section_hashes(profile)
    changed = [key for key, value in recorded["inputs"].items() if current.get(key) != value]
    if changed:
        config = resolve(run_dir) / "config.yaml"
        raise ConfigError(
            f"{resolve(run_dir)}: its {upstream} step ran with different {', '.join(changed)} settings than this one "
            f"(see {config}); rerun {upstream} first or use another run_dir"
        )


def load_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The resolved profile a run folder was made with, as a dict."""
    path = resolve(run_dir) / "config.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else {}
