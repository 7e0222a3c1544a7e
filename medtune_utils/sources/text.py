"""Decoding helpers shared by the readers: regular files only, UTF-8 with a line number on failure, non-empty files."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from ..records import DataFormatError

FORBIDDEN_CHARS = {"\x00": "a NUL byte", "\ufeff": "a byte-order mark (U+FEFF) after the start of the file"}


def check_regular_file(path: Path) -> None:
    """Refuse what cannot be read as a data file (missing, a directory, a FIFO, a symlink loop) before opening it."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise DataFormatError(path, None, "file not found") from None
    except OSError as exc:
        raise DataFormatError(path, None, f"cannot be read ({_os_reason(exc)}); expected a regular file") from None
    if stat.S_ISDIR(mode):
        raise DataFormatError(path, None, "is a directory; expected a regular data file")
    if not stat.S_ISREG(mode):
        raise DataFormatError(path, None, "is not a regular file (a FIFO, socket or device); expected a regular data file")


def read_bytes(path: Path) -> bytes:
    """The bytes of a regular file; OS errors (no permission, a loop) become `DataFormatError` naming the file."""
    check_regular_file(path)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataFormatError(path, None, f"cannot be read ({_os_reason(exc)}); expected a readable regular file") from None


def read_text(path: Path) -> str:
    """Read a whole file as UTF-8; bad bytes, NUL bytes, stray BOMs and empty files raise `DataFormatError` with the line."""
    data = read_bytes(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataFormatError(path, line, f"not valid UTF-8 (byte 0x{data[exc.start]:02x}); expected UTF-8 text") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    for char, name in FORBIDDEN_CHARS.items():
        offset = text.find(char)
        if offset >= 0:
            raise DataFormatError(path, line_of(text, offset), f"contains {name}; expected plain UTF-8 text")
    if not text.strip():
        raise DataFormatError(path, None, "file is empty; expected at least one example")
    return text


def read_lines(path: Path) -> list[str]:
    """The file's lines without line endings (`\\n` or `\\r\\n`)."""
    return [line.rstrip("\r") for line in read_text(path).split("\n")]


def line_of(text: str, offset: int) -> int:
    """1-based line number of a character offset."""
    return text.count("\n", 0, offset) + 1


def check_unique_id(path: Path, line: int | None, record_id: str, seen: dict[str, int | None]) -> None:
    """Record `record_id` as seen at `line`; a repeat raises `DataFormatError` naming both lines."""
    if record_id in seen:
        first = seen[record_id]
        where = f"line {first}" if first is not None else "an earlier record"
        raise DataFormatError(path, line, f"duplicate id {record_id!r} (also at {where}); expected unique ids per split")
    seen[record_id] = line


def _os_reason(exc: OSError) -> str:
    """A short reason for an OS error: a symlink loop named as such, else the system's message."""
    if exc.errno == errno.ELOOP:
        return "a symbolic link loop"
    return exc.strerror or os.strerror(exc.errno or 0) or type(exc).__name__


def check_not_broken_folder(path: Path) -> None:
    """Refuse something at `path` that is not a usable folder (a symlink loop, a dangling link, a file); absence is fine."""
    if not os.path.lexists(path) or path.is_dir():
        return
    try:
        path.stat()
    except OSError as exc:
        raise DataFormatError(path, None, f"cannot be opened ({_os_reason(exc)}); expected the source's folder") from None
    raise DataFormatError(path, None, "is a file; expected the source's folder of split files")
