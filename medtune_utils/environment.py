"""The software environment a step ran in: Python, package versions, git commit, accelerator."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from typing import Any

from .paths import repo_root

PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "tokenizers", "seqeval", "scikit-learn")


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
