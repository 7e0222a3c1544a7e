"""Relation-extraction TSV (BioBERT / BLUE): `sentence<TAB>label`, or `index<TAB>sentence<TAB>label` with a header."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from ..records import DataFormatError, RelationRecord
from .text import check_unique_id, read_lines

HEADER = ("index", "sentence", "label")


def read_relation_tsv(
    path: Path,
    id_prefix: str,
    labels: Mapping[str, str],
    masks: Iterable[str],
    min_masks: int = 2,
) -> list[RelationRecord]:
    """Read masked-entity relation sentences.

    `labels` maps each raw label to its canonical name (e.g. GAD `1` -> `1`, i2b2 `false` -> `No Relations`).
    Each sentence must hold at least `min_masks` occurrences of the entity masks.
    """
    masks = tuple(masks)
    records: list[RelationRecord] = []
    lines = read_lines(path)
    while lines and not lines[-1].strip():
        lines.pop()
    start = 1 if tuple(c.strip().lower() for c in lines[0].split("\t")) == HEADER else 0
    layout: tuple[int, int] | None = None  # (column count, first line with it)
    seen: dict[str, int | None] = {}
    for number, line in enumerate(lines[start:], start=start + 1):
        if not line.strip():
            raise DataFormatError(path, number, "blank line; expected sentence<TAB>label")
        columns = line.split("\t")
        if len(columns) not in (2, 3):
            raise DataFormatError(
                path, number, f"expected 2 columns (sentence, label) or 3 (index, sentence, label), found {len(columns)}"
            )
        layout = layout or (len(columns), number)
        if len(columns) != layout[0]:
            message = f"{len(columns)} columns, but line {layout[1]} has {layout[0]}; expected one layout for the whole file"
            raise DataFormatError(path, number, message)
        native_id, sentence, raw = (str(len(records)), *columns) if len(columns) == 2 else columns
        check_unique_id(path, number, native_id.strip(), seen)
        raw = raw.strip()
        if raw not in labels:
            raise DataFormatError(path, number, f"unknown label {raw!r}; expected one of {sorted(labels)}")
        if not sentence.strip():
            raise DataFormatError(path, number, "empty sentence; expected sentence<TAB>label")
        if sum(sentence.count(m) for m in masks) < min_masks:
            raise DataFormatError(
                path, number, f"expected at least {min_masks} entity masks among {', '.join(masks)} in the sentence"
            )
        records.append(RelationRecord(f"{id_prefix}{native_id.strip()}", sentence.strip(), labels[raw]))
    if not records:
        raise DataFormatError(path, None, "no examples found; expected sentence<TAB>label lines")
    return records
