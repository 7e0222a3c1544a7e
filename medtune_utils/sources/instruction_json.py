"""Instruction-style JSON (ChatDoctor, PMC-LLaMA instructions): an array or JSON Lines of instruction/input/output."""

from __future__ import annotations

from pathlib import Path

from ..records import DataFormatError, InstructionRecord
from .jsonutil import iter_json_array, iter_json_lines, require_str_fields

FIELDS = ("instruction", "input", "output")


def read_instruction_json(path: Path, id_prefix: str, source: str) -> list[InstructionRecord]:
    """Read `{"instruction", "input", "output"}` objects from a `.json` array or a `.jsonl` file.

    `input` may be empty (many general instructions have none); instruction and output may not.
    """
    items = iter_json_lines(path) if path.suffix == ".jsonl" else iter_json_array(path)
    records: list[InstructionRecord] = []
    for number, obj in items:
        require_str_fields(path, number, obj, FIELDS, allow_empty=("input",))
        records.append(
            InstructionRecord(
                f"{id_prefix}{len(records)}", obj["instruction"].strip(), obj["input"].strip(), obj["output"].strip(), source
            )
        )
    if not records:
        raise DataFormatError(path, None, "no examples found; expected objects with instruction, input, output")
    return records
