"""Readers for each raw format; each yields typed records and raises `DataFormatError` on bad input."""

from .conll import read_conll
from .hoc import read_hoc
from .instruction_json import read_instruction_json
from .mednli import read_mednli
from .pubmedqa import read_pubmedqa
from .relation import read_relation_tsv
from .released import read_released

__all__ = [
    "read_conll",
    "read_hoc",
    "read_instruction_json",
    "read_mednli",
    "read_pubmedqa",
    "read_relation_tsv",
    "read_released",
]
