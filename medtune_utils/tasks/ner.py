"""Named entity recognition: the paper's `token : TAG` line format and a compact entity-list format."""

from __future__ import annotations

import bisect
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
ALIGN_WINDOW = 32


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

    def read_default(self, path: Path, id_prefix: str) -> list[NerRecord]:
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


class _TokenIndex:
    """Where tokens, mentions and spacing-free spellings occur in one input; each is looked up once, so parsing is linear."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self.tokens = tokens
        self.positions: dict[str, list[int]] = {}
        self.lowered: dict[str, list[int]] = {}
        for i, token in enumerate(tokens):
            self.positions.setdefault(token, []).append(i)
            self.lowered.setdefault(token.lower(), []).append(i)
        self.longest = max((len(token) for token in tokens), default=0)
        self._starts: dict[tuple[str, ...], list[int]] = {}
        self._spellings: dict[str, list[tuple[int, int]]] = {}

    def starts(self, mention: Sequence[str]) -> list[int]:
        """The sorted starts of every occurrence of `mention`, anchored on its rarest token."""
        key = tuple(mention)
        if key not in self._starts:
            offset = min(range(len(key)), key=lambda k: len(self.positions.get(key[k], ())))
            n = len(key)
            candidates = (p - offset for p in self.positions.get(key[offset], ()))
            self._starts[key] = [j for j in candidates if j >= 0 and tuple(self.tokens[j : j + n]) == key]
        return self._starts[key]

    def first_start(self, mention: Sequence[str], cursor: int) -> int | None:
        """The first occurrence of `mention` at or after `cursor`."""
        starts = self.starts(mention)
        k = bisect.bisect_left(starts, cursor)
        return starts[k] if k < len(starts) else None

    def spelled(self, target: str, cursor: int) -> tuple[int, int] | None:
        """The first span at or after `cursor` (then from the start) whose lowercased tokens, joined, are `target`."""
        if target not in self._spellings:
            self._spellings[target] = self._spans_spelling(target)
        spans = self._spellings[target]
        if not spans:
            return None
        k = bisect.bisect_left(spans, (cursor, 0))
        return spans[k] if k < len(spans) else spans[0]

    def _spans_spelling(self, target: str) -> list[tuple[int, int]]:
        """Every span spelling `target`, tried only from tokens that are a prefix of it."""
        begins = sorted(b for size in range(1, min(len(target), self.longest) + 1) for b in self.lowered.get(target[:size], ()))
        spans = []
        for begin in begins:
            joined, end = "", begin
            while end < len(self.tokens) and len(joined) < len(target):
                joined += self.tokens[end].lower()
                end += 1
                if not target.startswith(joined):
                    break
            if joined == target:
                spans.append((begin, end))
        return spans


def _format_entities(tokens: tuple[str, ...], tags: tuple[str, ...], typed: bool) -> str:
    """One mention per line; an occurrence number where the mention is not the first after the last, or could be misread."""
    index = _TokenIndex(tokens)
    lines, cursor = [], 0
    for start, end, kind in entity_spans(tags):
        mention = tokens[start:end]
        line = " ".join(mention) + (f" ({kind})" if typed else "")
        ambiguous = line.lower() in {"none", "none."} or _OCCURRENCE.search(line) is not None
        if index.first_start(mention, cursor) != start or ambiguous:
            line += f" [occurrence {bisect.bisect_left(index.starts(mention), start) + 1}]"
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
    for i, j in _align(tokens, [token for token, _ in pairs]):
        predicted[i] = pairs[j][1]
    return tuple(predicted)


def _align(tokens: Sequence[str], written: Sequence[str], window: int = ALIGN_WINDOW) -> list[tuple[int, int]]:
    """Pairs `(input index, answer index)` of equal tokens, in order, in linear time.

    The common prefix and suffix match as they stand; in between, each written token matches the next input
    position holding it, at most `window` ahead, and only when the following written token matches too (so one
    stray common word does not skip part of the input).
    """
    n, m = len(tokens), len(written)
    head = 0
    while head < min(n, m) and tokens[head] == written[head]:
        head += 1
    tail = 0
    while tail < min(n, m) - head and tokens[n - 1 - tail] == written[m - 1 - tail]:
        tail += 1
    pairs = [(k, k) for k in range(head)]
    index = _TokenIndex(tokens[: n - tail])
    cursor = head
    for j in range(head, m - tail):
        i = _next_match(index, written, j, cursor, window, n - tail)
        if i is not None:
            pairs.append((i, j))
            cursor = i + 1
    return pairs + [(n - tail + k, m - tail + k) for k in range(tail)]


def _next_match(index: _TokenIndex, written: Sequence[str], j: int, cursor: int, window: int, limit: int) -> int | None:
    """Where written token `j` matches at or after `cursor`: right there, or within `window` when `j + 1` also matches."""
    positions = index.positions.get(written[j], [])
    for k in range(bisect.bisect_left(positions, cursor), len(positions)):
        i = positions[k]
        if i > cursor + window:
            return None
        if i == cursor or j + 1 == len(written) or (i + 1 < limit and index.tokens[i + 1] == written[j + 1]):
            return i
    return None


def _tags_from_entities(answer: str, tokens: list[str], entity_types: tuple[str, ...]) -> tuple[str, ...]:
    """Tags from one mention per line, each placed at its numbered occurrence or the next one after the last."""
    predicted = ["O"] * len(tokens)
    if answer.lower() in {"none", "none."}:
        return tuple(predicted)
    cursor, index = 0, _TokenIndex(tokens)
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
        span = _locate(index, text.split(), cursor, int(occurrence.group(1)) if occurrence else None)
        if span is None or any(tag != "O" for tag in predicted[span[0] : span[1]]):
            continue
        start, end = span
        suffix = f"-{kind}" if kind else ""
        predicted[start:end] = [f"B{suffix}"] + [f"I{suffix}"] * (end - start - 1)
        cursor = end
    return tuple(predicted)


def _locate(index: _TokenIndex, mention: list[str], cursor: int, occurrence: int | None) -> tuple[int, int] | None:
    """Where a mention sits: its numbered occurrence, else the first at or after the cursor.

    Falls back to a case- and spacing-insensitive match (a model may write `IL-2` for `IL - 2`).
    """
    if not mention:
        return None
    starts = index.starts(mention)
    if occurrence is not None and 0 < occurrence <= len(starts):
        return starts[occurrence - 1], starts[occurrence - 1] + len(mention)
    first = index.first_start(mention, cursor)
    if first is not None:
        return first, first + len(mention)
    return index.spelled("".join(mention).lower(), cursor)
