"""Where things live: the repository root and path resolution relative to it."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT_ENV = "MEDTUNE_ROOT"


def repo_root() -> Path:
    """The repository root: `$MEDTUNE_ROOT`, else the folder above this package that holds `configs/`."""
    if env := os.environ.get(ROOT_ENV):
        return Path(env).resolve()
    here = Path(__file__).resolve().parent.parent
    if (here / "configs").is_dir():
        return here
    return Path.cwd().resolve()


def resolve(path: str | os.PathLike[str]) -> Path:
    """Resolve `path` against the repository root unless it is absolute.

    Notebooks run with the notebook folder as working directory in JupyterLab and with the caller's
    directory under papermill; resolving against the root makes `results/x` mean the same in both.
    """
    p = Path(path).expanduser()
    return p if p.is_absolute() else (repo_root() / p).resolve()


def shared_data_dir() -> Path:
    """The read-only public datasets beside the checkout (`../shared/data`), or `$MEDTUNE_SHARED_DATA`."""
    if env := os.environ.get("MEDTUNE_SHARED_DATA"):
        return Path(env).resolve()
    return (repo_root().parent / "shared" / "data").resolve()


def looks_like_hub_id(location: str) -> bool:
    """Whether `location` names a hub repository (`name` or `owner/name`) rather than a local path.

    An existing local path, or anything absolute, relative (`./`, `../`, `~`) or deeper than `owner/name`, is a path.
    """
    if location.startswith((".", "~", "/")) or resolve(location).exists():
        return False
    return re.fullmatch(r"[\w.-]+(/[\w.-]+)?", location) is not None
