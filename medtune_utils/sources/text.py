"""Decoding helpers shared by the readers: UTF-8 with a line number on failure, non-empty files."""

from __future__ import annotations

from pathlib import Path

from ..records import DataFormatError


def read_text(path: Path) -> str:
    """Read a whole file as UTF-8; bad bytes and empty files raise `DataFormatError` with the line."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise DataFormatError(path, None, "file not found") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataFormatError(path, line, f"not valid UTF-8 (byte 0x{data[exc.start]:02x}); expected UTF-8 text") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise DataFormatError(path, None, "file is empty; expected at least one example")
    return text


def read_lines(path: Path) -> list[str]:
    """The file's lines without line endings (`\\n` or `\\r\\n`)."""
    return [line.rstrip("\r") for line in read_text(path).split("\n")]


def line_of(text: str, offset: int) -> int:
    """1-based line number of a character offset."""
    return text.count("\n", 0, offset) + 1
