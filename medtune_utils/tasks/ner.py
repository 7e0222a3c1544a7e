"""Named entity recognition: the paper's `token : TAG` line format and a compact entity-list format."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..records import NerRecord
from ..sources import read_conll
from .base import Task

NONE_ANSWER = "None"
_OCCURRENCE = re.compile(r"\s\[occurrence (\d{1,6})\]$")


@dataclass(frozen=True, kw_only=True)
class NerTask(Task):
    """An IOB2 tagging task. `entity_types` is empty for untyped `B/I/O` data (the BioBERT sets)."""

    entity_types: tuple[str, ...] = ()
    output_format: str = "lines"
    entity_instructions: tuple[str, ...] = ()

    def with_format(self, output_format: str) -> NerTask:
        """The same task writing `lines` (one `token : TAG` per token) or `entities` (one mention per line)."""
        if output_format not in {"lines", "entities"}:
            raise ValueError(f"unknown NER output format {output_format!r}; expected lines or entities")
        chosen = self.instructions if output_format == "lines" else self.entity_instructions
        return replace(self, output_format=output_format, instructions=chosen or self.instructions)

    @property
    def label_names(self) -> tuple[str, ...]:
        if not self.entity_types:
            return ("B", "I", "O")
        return ("O",) + tuple(f"{p}-{t}" for t in self.entity_types for p in "BI")

    def read_file(self, path: Path, id_prefix: str) -> list[NerRecord]:
        return read_conll(path, id_prefix, self.entity_types or None)

    def to_example(self, record: NerRecord) -> tuple[str, str]:
        return " ".join(record.tokens), self.format_tags(record.tokens, record.tags)

    def format_tags(self, tokens: tuple[str, ...], tags: tuple[str, ...]) -> str:
        """Render gold tags in this task's output format."""
        if self.output_format == "lines":
            return "\n".join(f"{tok} : {tag}" for tok, tag in zip(tokens, tags))
        return _format_entities(tokens, tags, typed=bool(self.entity_types))

    def render(self, value: tuple[str, ...], input_text: str) -> str:
        return self.format_tags(tuple(input_text.split(" ")), tuple(value))

    def longest_answers(self, input_text: str) -> list[str]:
        """Answers with every token given the same tag; a well-formed answer is about as long as one of these at most."""
        n_tokens = len(input_text.split(" "))
        return [self.render((tag,) * n_tokens, input_text) for tag in self.label_names]

    def interpret(self, answer: str, input_text: str) -> tuple[str, ...]:
        tokens = input_text.split(" ")
        if self.output_format == "lines":
            return _tags_from_lines(answer, tokens, set(self.label_names))
        return _tags_from_entities(answer, tokens, self.entity_types)

    def compute_metrics(
        self, gold: Sequence[tuple[str, ...]], pred: Sequence[tuple[str, ...] | None], groups: Sequence[str]
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Entity-level F1 (strict IOB2 headline, lenient); an unreadable answer tags every token O."""
        from ..metrics import ner_counts, score_ner

        tags = [p if p is not None else ("O",) * len(g) for g, p in zip(gold, pred)]
        rows = {"f1_strict": ner_counts(gold, tags, strict=True), "f1_lenient": ner_counts(gold, tags, strict=False)}
        return score_ner(gold, tags), rows


def entity_spans(tags: tuple[str, ...] | list[str]) -> list[tuple[int, int, str]]:
    """`(start, end, type)` of each IOB2 entity; untyped entities have type ''."""
    spans: list[tuple[int, int, str]] = []
    start, kind = None, ""
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, _, this_kind = tag.partition("-")
        continues = prefix == "I" and start is not None and this_kind == kind
        if start is not None and not continues:
            spans.append((start, i, kind))
            start = None
        if prefix == "B" or (prefix == "I" and start is None and i < len(tags)):
            start, kind = i, this_kind
    return spans


def _occurrences(tokens: list[str] | tuple[str, ...], mention: list[str]) -> list[int]:
    n = len(mention)
    return [j for j in range(len(tokens) - n + 1) if list(tokens[j : j + n]) == mention]


def _format_entities(tokens: tuple[str, ...], tags: tuple[str, ...], typed: bool) -> str:
    lines, cursor = [], 0
    for start, end, kind in entity_spans(tags):
        mention = list(tokens[start:end])
        line = " ".join(mention) + (f" ({kind})" if typed else "")
        starts = _occurrences(tokens, mention)
        if next(j for j in starts if j >= cursor) != start or line.lower() in {"none", "none."}:
            line += f" [occurrence {starts.index(start) + 1}]"
        lines.append(line)
        cursor = end
    return "\n".join(lines) if lines else NONE_ANSWER


def _tags_from_lines(answer: str, tokens: list[str], valid_tags: set[str]) -> tuple[str, ...]:
    """Tags from `token : TAG` lines; lines are aligned to the input by token text when their count is off."""
    pairs: list[tuple[str, str]] = []
    for line in answer.split("\n"):
        token, sep, tag = line.rpartition(":")
        if not sep:
            continue
        tag = tag.strip().upper()
        pairs.append((token.strip(), tag if tag in valid_tags else "O"))
    if len(pairs) == len(tokens):
        return tuple(tag for _, tag in pairs)
    predicted = ["O"] * len(tokens)
    matcher = difflib.SequenceMatcher(None, tokens, [token for token, _ in pairs], autojunk=False)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            predicted[block.a + k] = pairs[block.b + k][1]
    return tuple(predicted)


def _tags_from_entities(answer: str, tokens: list[str], entity_types: tuple[str, ...]) -> tuple[str, ...]:
    """Tags from one mention per line, each placed at its numbered occurrence or the next one after the last."""
    predicted = ["O"] * len(tokens)
    if answer.lower() in {"none", "none."}:
        return tuple(predicted)
    cursor = 0
    type_pattern = re.compile(r"\s\((" + "|".join(map(re.escape, entity_types)) + r")\)$") if entity_types else None
    for line in answer.split("\n"):
        text = line.strip()
        occurrence = _OCCURRENCE.search(text)
        if occurrence:
            text = text[: occurrence.start()]
        kind = ""
        if type_pattern is not None:
            typed = type_pattern.search(text)
            if typed is None:
                continue
            kind, text = typed.group(1), text[: typed.start()]
        span = _locate(tokens, text.split(), cursor, int(occurrence.group(1)) if occurrence else None)
        if span is None or any(tag != "O" for tag in predicted[span[0] : span[1]]):
            continue
        start, end = span
        suffix = f"-{kind}" if kind else ""
        predicted[start:end] = [f"B{suffix}"] + [f"I{suffix}"] * (end - start - 1)
        cursor = end
    return tuple(predicted)


def _locate(tokens: list[str], mention: list[str], cursor: int, occurrence: int | None) -> tuple[int, int] | None:
    """Where a mention sits: its numbered occurrence, else the first at or after the cursor.

    Falls back to a case- and spacing-insensitive match (a model may write `IL-2` for `IL - 2`).
    """
    if not mention:
        return None
    starts = _occurrences(tokens, mention)
    if occurrence is not None and 0 < occurrence <= len(starts):
        return starts[occurrence - 1], starts[occurrence - 1] + len(mention)
    after = [j for j in starts if j >= cursor]
    if after:
        return after[0], after[0] + len(mention)
    target = "".join(mention).lower()
    for begin in list(range(cursor, len(tokens))) + list(range(0, cursor)):
        joined = ""
        for end in range(begin, len(tokens)):
            joined += tokens[end].lower()
            if joined == target:
                return begin, end + 1
            if not target.startswith(joined):
                break
    return None
