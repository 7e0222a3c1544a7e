"""Open-ended instructions (ChatDoctor, PMC-LLaMA): kept as written, scored by overlap with the reference."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..records import InstructionRecord
from ..sources import read_instruction_json
from .base import Task


@dataclass(frozen=True, kw_only=True)
class FreeTextTask(Task):
    """A folder of instruction JSON/JSONL files with no official split: a fixed share is held out.

    The held-out rows are chosen with the task's own seed, not the run's, so every run sees the same ones.
    """

    keep_source_instruction: bool = False
    holdout_fraction: float = 0.05
    split_seed: int = 0

    def load(self, folder: Path, split: str) -> list[InstructionRecord]:
        files = sorted(p for p in folder.iterdir() if p.suffix in {".json", ".jsonl"})
        if not files:
            raise FileNotFoundError(f"{self.name}: no .json or .jsonl file in {folder}. {self.obtain}")
        records = [r for path in files for r in self.read_file(path, f"{self.name}/{path.stem}/")]
        order = list(range(len(records)))
        random.Random(self.split_seed).shuffle(order)
        n_holdout = max(1, round(self.holdout_fraction * len(records))) if len(records) > 1 else 0
        held = set(order[:n_holdout])
        keep_held = split in {"devel", "test"}
        return [r for i, r in enumerate(records) if (i in held) == keep_held]

    def resolve_split(self, split: str) -> str:
        return "train" if split == "train" else "heldout"

    def read_default(self, path: Path, id_prefix: str) -> list[InstructionRecord]:
        return read_instruction_json(path, id_prefix, self.name)

    def instruction_for(self, record: InstructionRecord, choice: int) -> str:
        if self.keep_source_instruction and record.instruction:
            return record.instruction
        return super().instruction_for(record, choice)

    def to_example(self, record: InstructionRecord) -> tuple[str, str]:
        return record.input, record.output

    def interpret(self, answer: str, input_text: str) -> str:
        return answer

    def compute_metrics(
        self, gold: Sequence[str], pred: Sequence[str | None], groups: Sequence[str]
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Mean ROUGE-L against the reference answers."""
        from ..metrics import rouge_l, score_text

        return score_text(gold, pred), {"rouge_l": rouge_l(gold, pred)}

    def is_exact(self, answer: str, value: str, input_text: str) -> bool:
        return bool(answer)
