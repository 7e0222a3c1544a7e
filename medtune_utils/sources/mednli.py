"""MedNLI in its official JSON Lines form (`sentence1`, `sentence2`, `gold_label`, `pairID`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..records import DataFormatError, NliRecord
from .jsonutil import iter_json_lines, require_str_fields
from .text import check_unique_id


def read_mednli(path: Path, id_prefix: str, labels: Mapping[str, str]) -> list[NliRecord]:
    """Read premise/hypothesis pairs; `labels` maps raw gold labels to canonical names."""
    records: list[NliRecord] = []
    seen: dict[str, int | None] = {}
    for number, obj in iter_json_lines(path):
        require_str_fields(path, number, obj, ("sentence1", "sentence2", "gold_label"))
        raw = obj["gold_label"].strip()
        if raw not in labels:
            raise DataFormatError(path, number, f"unknown gold_label {raw!r}; expected one of {sorted(labels)}")
        native_id = str(obj.get("pairID", len(records)))
        check_unique_id(path, number, native_id, seen)
        records.append(NliRecord(f"{id_prefix}{native_id}", obj["sentence1"].strip(), obj["sentence2"].strip(), labels[raw]))
    if not records:
        raise DataFormatError(path, None, "no examples found")
    return records
