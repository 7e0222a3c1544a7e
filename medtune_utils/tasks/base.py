"""What every task entry shares: the parsed-prediction type, answer cleaning, and split handling."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..prompts import ANSWER_HEADERS
from ..records import MissingSourceError, Record
from ..sources.text import check_not_broken_folder

_NEXT_HEADER = re.compile(r"(?:^|\n)\s*###")
LAYOUTS = ("medtune", "authors")
_SPECIAL_TOKENS = re.compile(r"</s>|<\|endoftext\|>|<\|eot_id\|>|<eos>")


@dataclass(frozen=True)
class Parsed:
    """A parsed generation: the prediction in the gold's own form, and whether it followed the format exactly."""

    value: Any
    well_formed: bool


def clean_generation(text: str) -> str:
    """The answer part of a generation: after an echoed answer header (any template's), before the next `###` header."""
    cut = max((text.rfind(h) + len(h) for h in ANSWER_HEADERS if h in text), default=0)
    text = text[cut:]
    text = _SPECIAL_TOKENS.sub("", text)
    match = _NEXT_HEADER.search(text)
    if match:
        text = text[: match.start()]
    return text.strip()


Reader = Callable[[Path, str, "Task"], Sequence[Record]]
"""A raw-file reader as a registry entry names it: `reader(path, id_prefix, task)` returns the file's records."""


@dataclass(frozen=True, kw_only=True)
class Task(ABC):
    """One source dataset: how to read it, turn a record into an instruction row, and parse an answer back.

    `reader` reads a file layout the task class does not know (default: the class's own layout, `read_default`);
    `headline` picks the metric that tables and figures report (default: the class's choice). `layout` is `medtune`
    (ours) or `authors` (the released Llama2-MedTuned data's input layouts and label spellings, where they differ).
    """

    name: str
    family: str
    instructions: tuple[str, ...]
    dirnames: tuple[str, ...]
    obtain: str
    split_files: dict[str, str] = field(default_factory=dict)
    credentialed: bool = False
    description: str = ""
    aliases: tuple[str, ...] = field(default=())
    reader: Reader | None = None
    headline: str | None = None
    layout: str = "medtune"

    def __post_init__(self) -> None:
        if len(self.instructions) < 5:
            raise ValueError(f"task {self.name}: needs at least five instruction paraphrases")

    def with_layout(self, layout: str) -> Task:
        """The same task writing inputs and reading labels as `layout` (`medtune` or `authors`) does."""
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
        return self if layout == self.layout else replace(self, layout=layout)

    def find_folder(self, data_dir: Path) -> Path:
        """The source's folder under `data_dir`, or `MissingSourceError` saying how to get it (`DataFormatError` if broken)."""
        for name in self.dirnames:
            if (data_dir / name).is_dir():
                return data_dir / name
            check_not_broken_folder(data_dir / name)
        raise MissingSourceError(f"{self.name}: not found in {data_dir} (looked for {', '.join(self.dirnames)}). {self.obtain}")

    def resolve_split(self, split: str) -> str:
        """The split actually read for `split`: sources without a devel split fall back to test."""
        if split in self.split_files:
            return split
        if split == "devel" and "test" in self.split_files:
            return "test"
        raise ValueError(f"{self.name}: no {split!r} split (has {', '.join(self.split_files)})")

    def load(self, folder: Path, split: str) -> list[Record]:
        """Read the records of `split` (train, devel or test) from the source's folder."""
        actual = self.resolve_split(split)
        return self.read_file(folder / self.split_files[actual], f"{self.name}/{actual}/")

    def read_file(self, path: Path, id_prefix: str) -> list[Record]:
        """Read one raw file of this source with the entry's `reader`, else the task class's own layout."""
        if self.reader is not None:
            return list(self.reader(path, id_prefix, self))
        return self.read_default(path, id_prefix)

    def read_default(self, path: Path, id_prefix: str) -> list[Record]:
        """Read one raw file in the task class's own layout; a class without one needs `reader` in the entry."""
        raise TypeError(f"{self.name}: {type(self).__name__} has no default file layout; give the registry entry a reader")

    @abstractmethod
    def to_example(self, record: Record) -> tuple[str, str]:
        """The row's `(input, output)` for a record."""

    def parse(self, generation: str, input_text: str) -> Parsed:
        """Turn a generation into a prediction; never raises.

        The answer is well formed when it is exactly what `render` writes for the predicted value, so any
        tolerated deviation (case, spacing, extra text, label order) is flagged.
        """
        answer = clean_generation(generation)
        value = self.interpret(answer, input_text)
        return Parsed(value, self.is_exact(answer, value, input_text))

    @abstractmethod
    def interpret(self, answer: str, input_text: str) -> Any:
        """What a cleaned answer means, in the gold's form (None when it cannot be read); tolerant and never raises."""

    def score(
        self,
        gold: Sequence[Any],
        pred: Sequence[Any],
        groups: Sequence[str],
        generations: Sequence[str] | None = None,
        inputs: Sequence[str] | None = None,
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """This task's metrics (with `headline`) and, per interval-bearing metric, per-row statistics.

        `metrics.row_statistic` turns the per-row statistics back into the metric on any subset of rows, so
        bootstrap intervals and paired tests resample rows. `groups` ties rows of one document (HoC abstracts).
        With the raw `generations` and the rows' `inputs`, metrics that read the generations otherwise are added
        (`generation_metrics`).
        """
        if not len(gold) == len(pred) == len(groups):
            counts = f"{len(gold)} gold values, {len(pred)} predictions and {len(groups)} groups"
            raise ValueError(f"{self.name}: {counts}; expected equal counts")
        metrics, rows = self.compute_metrics(gold, pred, groups)
        if generations is not None:
            if inputs is None or not len(generations) == len(inputs) == len(gold):
                raise ValueError(f"{self.name}: generations and inputs must come with one of each per gold value")
            extra, extra_rows = self.generation_metrics(gold, generations, inputs)
            metrics, rows = {**metrics, **extra}, {**rows, **extra_rows}
        return self._with_headline(metrics, rows), rows

    def generation_metrics(
        self, gold: Sequence[Any], generations: Sequence[str], inputs: Sequence[str]
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Metrics computed from the raw generations rather than the parsed predictions (none for most tasks)."""
        return {}, {}

    def _with_headline(self, metrics: dict[str, Any], rows: dict[str, np.ndarray]) -> dict[str, Any]:
        """`metrics` with the entry's `headline`, which needs per-row statistics for its interval."""
        if self.headline is None:
            return metrics
        if self.headline not in metrics or self.headline not in rows:
            raise ValueError(f"{self.name}: headline {self.headline!r} is not one of this task's metrics {sorted(rows)}")
        return {**metrics, "headline": self.headline}

    @abstractmethod
    def compute_metrics(
        self, gold: Sequence[Any], pred: Sequence[Any], groups: Sequence[str]
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Metrics of equally long gold and predicted values (a prediction may be None: unreadable)."""

    def is_exact(self, answer: str, value: Any, input_text: str) -> bool:
        """Whether `answer` is exactly the formatter's output for `value`."""
        return value is not None and answer == self.render(value, input_text)

    def instruction_for(self, record: Record, choice: int) -> str:
        """The instruction paraphrase number `choice` (modulo the number of paraphrases)."""
        return self.instructions[choice % len(self.instructions)]

    def render(self, value: Any, input_text: str) -> str:
        """Write a gold or predicted value back in this task's answer format (the inverse of `parse`)."""
        return str(value) if value is not None else ""

    def gold(self, output: str, input_text: str) -> Any:
        """The gold value of a row, recovered from its output (the formatter is exactly invertible)."""
        return self.parse(output, input_text).value

    @property
    def label_names(self) -> Sequence[str]:
        """Labels of a classification task (empty for others)."""
        return ()
