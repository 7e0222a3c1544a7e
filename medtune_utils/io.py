"""Atomic file writes and JSON Lines helpers: a crash never leaves a half-written result behind."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# What an interrupted `atomic_path` / `atomic_dir` leaves: `.NAME.<8 random>.tmp`, and `.NAME.old` (the folder being replaced).
TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
OLD_NAME = re.compile(r"^\.(.+)\.old$")


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary file path beside `path` to write; on success it is renamed onto `path`, on failure removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write `text` to a temporary file beside `path`, then rename it into place."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write `obj` as indented, key-sorted JSON, atomically."""
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_jsonl_atomic(path: str | os.PathLike[str], rows: Iterable[dict[str, Any]]) -> Path:
    """Write one JSON object per line, atomically."""
    return write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Yield the objects of a JSON Lines file, skipping blank lines."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


@contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces `path` whole, on failure `path` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        old = path.with_name(f".{path.name}.old")
        if old.exists():
            shutil.rmtree(old)
        if path.exists():
            path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def clean_interrupted_writes(folders: Iterable[Path]) -> list[Path]:
    """Remove what killed atomic writes left in `folders`; restore a `.NAME.old` folder whose NAME is gone.

    `atomic_dir` renames NAME to `.NAME.old` before moving the new folder in: a kill in between leaves only the old.
    Call it only where no live writer can be at work (e.g. while holding the run folder's lock).
    """
    removed = []
    for folder in folders:
        for item in sorted(folder.iterdir()) if folder.is_dir() else []:
            old = OLD_NAME.match(item.name)
            if TEMP_NAME.match(item.name) or (old and item.with_name(old[1]).exists()):
                _remove(item)
                removed.append(item)
            elif old and item.is_dir():
                item.rename(item.with_name(old[1]))
                log.warning("restored %s from %s (a replacement was interrupted)", old[1], item)
    if removed:
        log.warning("removed %d temporary file(s) left by an interrupted run: %s", len(removed), [p.name for p in removed])
    return removed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def settings_hash(value: Any) -> str:
    """A short, stable hash of JSON-serialisable settings (key order does not matter)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]
