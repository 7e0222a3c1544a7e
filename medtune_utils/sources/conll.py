"""CoNLL-style NER files: one `token<TAB>tag` per line, a blank line between sentences (BioBERT format)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..records import DataFormatError, NerRecord
from .text import read_lines

UNTYPED_TAGS = frozenset({"B", "I", "O"})
TEMPLATE_MARKERS = ("###", "</s>", "<eos>", "<|endoftext|>", "<|eot_id|>")
"""Strings that the prompt template and answer cleaning treat specially; a token holding one cannot round-trip."""


def read_conll(path: Path, id_prefix: str, entity_types: Iterable[str] | None = None) -> list[NerRecord]:
    """Read IOB2 sentences. Untyped (`B/I/O`) when `entity_types` is None, else `B-TYPE/I-TYPE/O`.

    Checks every line: two tab-separated columns, a token without whitespace or template markers, a known
    tag, and IOB2 order (an `I` must continue an entity of the same type).
    """
    types = frozenset(entity_types) if entity_types is not None else None
    records: list[NerRecord] = []
    tokens: list[str] = []
    tags: list[str] = []

    def flush() -> None:
        if tokens:
            records.append(NerRecord(f"{id_prefix}{len(records)}", tuple(tokens), tuple(tags)))
            tokens.clear()
            tags.clear()

    lines = read_lines(path)
    if lines and lines[-1] == "":
        lines.pop()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            flush()
            continue
        if line.startswith("-DOCSTART-"):
            continue
        columns = line.split("\t")
        if len(columns) != 2:
            raise DataFormatError(
                path, number, f"expected 2 tab-separated columns (token<TAB>tag), found {len(columns)}: {line[:60]!r}"
            )
        token, tag = columns[0], columns[1].strip()
        _check_token(path, number, token)
        _check_tag(path, number, tag, tags[-1] if tags else "O", types)
        tokens.append(token)
        tags.append(tag)
    flush()
    if not records:
        raise DataFormatError(path, None, "no sentences found; expected token<TAB>tag lines")
    return records


def _check_token(path: Path, number: int, token: str) -> None:
    """A token must be non-empty, without whitespace, and free of the template's markers (it could not round-trip)."""
    if not token or any(ch.isspace() for ch in token):
        raise DataFormatError(path, number, f"expected a token without whitespace, found {token!r}")
    marker = next((m for m in TEMPLATE_MARKERS if m in token), None)
    if marker is not None:
        message = f"token {token!r} holds {marker!r}, which the prompt template reserves; expected a token without it"
        raise DataFormatError(path, number, message)


def _check_tag(path: Path, number: int, tag: str, previous: str, types: frozenset[str] | None) -> None:
    if types is None:
        if tag not in UNTYPED_TAGS:
            raise DataFormatError(path, number, f"unknown tag {tag!r}; expected one of B, I, O")
        if tag == "I" and previous == "O":
            raise DataFormatError(path, number, "I tag after O or at a sentence start; expected IOB2 (an entity starts with B)")
        return
    if tag == "O":
        return
    prefix, _, kind = tag.partition("-")
    if prefix not in {"B", "I"} or kind not in types:
        raise DataFormatError(path, number, f"unknown tag {tag!r}; expected O or B-/I- with a type in {sorted(types)}")
    if prefix == "I" and previous[2:] != kind:
        raise DataFormatError(path, number, f"{tag} after {previous}; expected IOB2 (an entity starts with B-{kind})")
