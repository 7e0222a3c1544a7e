"""The released `nlpie/Llama2-MedTuned-Instructions` parquet (instruction, input, output, source)."""

from __future__ import annotations

from pathlib import Path

from ..records import DataFormatError, InstructionRecord
from .text import check_regular_file

COLUMNS = ("instruction", "input", "output", "source")


def read_released(path: Path, id_prefix: str) -> list[InstructionRecord]:
    """Read one parquet split; every column must be present and `instruction`/`output` non-empty."""
    import pyarrow.parquet as pq

    check_regular_file(path)
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:
        reason = " ".join(str(exc).split())
        expected = ", ".join(COLUMNS)
        message = f"not a readable parquet file ({reason}); expected parquet with columns {expected}"
        raise DataFormatError(path, None, message) from None
    try:
        names = table.column_names
    except UnicodeDecodeError:
        raise DataFormatError(path, None, f"column names are not valid UTF-8; expected columns {', '.join(COLUMNS)}") from None
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise DataFormatError(path, None, f"missing columns {missing}; expected {', '.join(COLUMNS)}")
    columns = {c: table.column(c).to_pylist() for c in COLUMNS}
    records = []
    for row in range(table.num_rows):
        values = {c: columns[c][row] for c in COLUMNS}
        if not all(isinstance(v, str) for v in values.values()):
            raise DataFormatError(path, None, f"row {row}: every column must be a string; expected no nulls")
        if not values["instruction"].strip() or not values["output"].strip():
            raise DataFormatError(path, None, f"row {row}: empty instruction or output; expected both non-empty")
        records.append(
            InstructionRecord(f"{id_prefix}{row}", values["instruction"], values["input"], values["output"], values["source"])
        )
    return records
