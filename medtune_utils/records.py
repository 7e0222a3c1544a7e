"""Typed records that the source readers yield, one kind per task family, and the data-format error."""

from __future__ import annotations

import os
from dataclasses import dataclass


class DataFormatError(ValueError):
    """Malformed input: names the file, the line (1-based, when there is one) and what was expected."""

    def __init__(self, path: str | os.PathLike[str], line: int | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class MissingSourceError(FileNotFoundError):
    """A source's files are absent; the message says where to obtain them and the layout expected."""


@dataclass(frozen=True)
class NerRecord:
    """A tokenised sentence with one IOB2 tag per token (`B`, `I`, `O`, or typed such as `B-PROBLEM`)."""

    id: str
    tokens: tuple[str, ...]
    tags: tuple[str, ...]


@dataclass(frozen=True)
class RelationRecord:
    """A sentence with masked entities (`@GENE$`, `@problem$`, ...) and one relation label."""

    id: str
    sentence: str
    label: str


@dataclass(frozen=True)
class NliRecord:
    """A premise/hypothesis pair with its inference label."""

    id: str
    premise: str
    hypothesis: str
    label: str


@dataclass(frozen=True)
class MultiLabelRecord:
    """A sentence with zero or more labels; `group` ties sentences of one document (HoC: the PMID)."""

    id: str
    sentence: str
    labels: tuple[str, ...]
    group: str


@dataclass(frozen=True)
class QaRecord:
    """A question with its context passages and a closed answer (PubMedQA: yes/no/maybe)."""

    id: str
    question: str
    context: str
    label: str


@dataclass(frozen=True)
class InstructionRecord:
    """A ready-made instruction example (ChatDoctor, PMC-LLaMA, the released dataset)."""

    id: str
    instruction: str
    input: str
    output: str
    source: str = ""


Record = NerRecord | RelationRecord | NliRecord | MultiLabelRecord | QaRecord | InstructionRecord
