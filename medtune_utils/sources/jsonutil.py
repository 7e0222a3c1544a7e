"""JSON helpers that keep line numbers, so a bad example is reported where it is."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..records import DataFormatError
from .text import line_of, read_text


def iter_json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield `(line, object)` for each non-blank line of a JSON Lines file."""
    for number, line in enumerate(read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise DataFormatError(path, number, f"invalid JSON ({_reason(exc)}); expected one JSON object per line") from None
        yield number, obj


class _DuplicateKeyError(ValueError):
    """A key repeated within one JSON object."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object hook that refuses repeated keys (json keeps the last one silently)."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateKeyError(key)
        obj[key] = value
    return obj


def load_json(path: Path, expected: str = "one JSON document") -> tuple[str, Any]:
    """Parse a whole JSON file; a syntax error or a repeated key names its line and `expected` (what the file should hold)."""
    text = read_text(path)
    try:
        return text, json.loads(text, object_pairs_hook=_unique_object)
    except _DuplicateKeyError as exc:
        needle = json.dumps(exc.key, ensure_ascii=False)
        second = text.find(needle, text.find(needle) + 1)
        line = line_of(text, second) if second >= 0 else None
        message = f"duplicate key {exc.key!r} (the last copy would win); expected {expected} with unique keys"
        raise DataFormatError(path, line, message) from None
    except (ValueError, RecursionError) as exc:
        raise DataFormatError(path, _error_line(exc), f"invalid JSON ({_reason(exc)}); expected {expected}") from None


def iter_json_array(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield `(line, element)` for each element of a top-level JSON array, decoding one element at a time."""
    text = read_text(path)
    decoder = json.JSONDecoder()
    pos = _skip_ws(text, 0)
    if pos >= len(text) or text[pos] != "[":
        raise DataFormatError(path, line_of(text, pos), "expected a JSON array of objects")
    pos = _skip_ws(text, pos + 1)
    if pos < len(text) and text[pos] == "]":
        return
    line, counted = 1, 0
    while True:
        line, counted = line + text.count("\n", counted, pos), pos
        try:
            element, end = decoder.raw_decode(text, pos)
        except (ValueError, RecursionError) as exc:
            raise DataFormatError(
                path, _error_line(exc) or line, f"invalid JSON ({_reason(exc)}); expected a JSON array of objects"
            ) from None
        yield line, element
        pos = _skip_ws(text, end)
        if pos < len(text) and text[pos] == ",":
            pos = _skip_ws(text, pos + 1)
            continue
        if pos < len(text) and text[pos] == "]":
            extra = _skip_ws(text, pos + 1)
            if text[extra:].strip():
                raise DataFormatError(path, line_of(text, extra), "unexpected text after the closing ]; expected the end of file")
            return
        line = line_of(text, min(pos, len(text) - 1))
        raise DataFormatError(path, line, "expected , or ] after an array element (truncated file?)")


def require_str_fields(path: Path, line: int, obj: Any, fields: tuple[str, ...], allow_empty: tuple[str, ...] = ()) -> None:
    """Check that `obj` is an object whose `fields` are strings (non-empty unless listed in `allow_empty`)."""
    if not isinstance(obj, dict):
        raise DataFormatError(path, line, f"expected a JSON object with {', '.join(fields)}, found {type(obj).__name__}")
    for name in fields:
        if name not in obj:
            raise DataFormatError(path, line, f"missing field {name!r}; expected {', '.join(fields)}")
        value = obj[name]
        if not isinstance(value, str):
            raise DataFormatError(path, line, f"field {name!r} must be a string, found {type(value).__name__}")
        if not value.strip() and name not in allow_empty:
            raise DataFormatError(path, line, f"field {name!r} is empty; expected a non-empty string")
        if not is_encodable(value):
            raise DataFormatError(path, line, f"field {name!r} holds a lone UTF-16 surrogate escape; expected valid Unicode text")


def is_encodable(value: str) -> bool:
    """Whether `value` is valid Unicode (no lone surrogate such as a JSON `\\ud800` escape), so Arrow can store it."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _error_line(exc: ValueError | RecursionError) -> int | None:
    """The line of a JSON syntax error; None for other decode failures (too deep, too long an integer)."""
    return exc.lineno if isinstance(exc, json.JSONDecodeError) else None


def _reason(exc: ValueError | RecursionError) -> str:
    """A one-line reason for a decode failure."""
    return exc.msg if isinstance(exc, json.JSONDecodeError) else " ".join(str(exc).split())


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos
