"""An exclusive lock on a folder that a crash cannot leave held: an `flock`ed file naming its holder.

The operating system releases an `flock` when its holder dies, so a lock file left by a killed process is taken
over (with a warning); a live holder makes a second process stop at once with a message naming it.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Lock files this process holds, and their descriptors (the lock is re-entrant within a process).
_HELD: dict[Path, int] = {}


class RunLockedError(RuntimeError):
    """Another live process holds the lock."""


def lock_holder(path: Path) -> dict[str, Any] | None:
    """Who holds (or last held without releasing) the lock file `path`: pid, host, step, since; None when free."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return json.loads(text) if text.strip() else None


@contextmanager
def exclusive_lock(path: Path, step: str, what: Path) -> Iterator[bool]:
    """Hold the lock file `path` for `step` on `what`; yields True when taken now, False when this process held it."""
    if path in _HELD:
        yield False
        return
    fd = _acquire(path, step, what)
    try:
        yield True
    finally:
        del _HELD[path]
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _acquire(path: Path, step: str, what: Path) -> int:
    """Take the lock or raise `RunLockedError`; write the holder's pid, host, step and start time into it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        holder = lock_holder(path) or {}
        raise RunLockedError(
            f"{what} is in use by step {holder.get('step', '?')} of process {holder.get('pid', '?')} on host "
            f"{holder.get('host', '?')} (since {holder.get('since', '?')}): wait for it to finish or use another run_dir"
        ) from None
    stale = lock_holder(path)
    if stale:
        log.warning(
            "%s: taking over the lock left by step %s of process %s on host %s, which ended without releasing it",
            what,
            stale.get("step"),
            stale.get("pid"),
            stale.get("host"),
        )
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "step": step, "since": now}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)
    _HELD[path] = fd
    return fd
