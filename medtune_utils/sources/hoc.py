"""Hallmarks of Cancer in BLURB TSV: header `labels<TAB>sentence<TAB>index`, labels `k_v` for k = 0..9."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..records import DataFormatError, MultiLabelRecord
from .text import check_unique_id, read_lines

HEADER = ("labels", "sentence", "index")


def read_hoc(path: Path, id_prefix: str, class_names: Sequence[str]) -> list[MultiLabelRecord]:
    """Read HoC sentences; `class_names[k]` names class index k. `index` is `PMID_sN`; the PMID is the group."""
    lines = read_lines(path)
    while lines and not lines[-1].strip():
        lines.pop()
    header = tuple(c.strip() for c in lines[0].split("\t"))
    if header != HEADER:
        raise DataFormatError(path, 1, f"expected the header {'<TAB>'.join(HEADER)}, found {lines[0][:60]!r}")
    n = len(class_names)
    records: list[MultiLabelRecord] = []
    seen: dict[str, int | None] = {}
    for number, line in enumerate(lines[1:], start=2):
        columns = line.split("\t")
        if len(columns) != 3:
            raise DataFormatError(
                path, number, f"expected 3 tab-separated columns (labels, sentence, index), found {len(columns)}"
            )
        raw_labels, sentence, index = columns
        items = raw_labels.split(",")
        if len(items) != n:
            raise DataFormatError(path, number, f"expected {n} comma-separated k_v label items, found {len(items)}")
        chosen = []
        for position, item in enumerate(items):
            k, sep, v = item.strip().partition("_")
            if not sep or k != str(position) or v not in {"0", "1"}:
                raise DataFormatError(path, number, f"label item {item!r}: expected {position}_0 or {position}_1")
            if v == "1":
                chosen.append(class_names[position])
        pmid, sep, _ = index.strip().rpartition("_")
        if not sep or not pmid:
            raise DataFormatError(path, number, f"index {index!r}: expected PMID_sN")
        if not sentence.strip():
            raise DataFormatError(path, number, "empty sentence; expected labels<TAB>sentence<TAB>index")
        check_unique_id(path, number, index.strip(), seen)
        records.append(MultiLabelRecord(f"{id_prefix}{index.strip()}", sentence.strip(), tuple(chosen), pmid))
    if not records:
        raise DataFormatError(path, None, "no sentences after the header; expected labels<TAB>sentence<TAB>index lines")
    return records
