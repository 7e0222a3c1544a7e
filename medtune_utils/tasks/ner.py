"""Named entity recognition: the paper's `token : TAG` line format and a compact entity-list format."""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from seqeval.metrics import f1_score as seq_f1

from ..records import NerRecord
from ..sources import read_conll
from .base import Task, clean_generation

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

    def interpret(self, answer: str, input_text: str) -> tuple[str, ...] | None:
        """Tags by position (`lines`) or by mention (`entities`); None when the answer holds no `token : TAG` line
        (`lines`) or is blank (`entities`)."""
        tokens = input_text.split(" ")
        if self.output_format == "lines":
            if not any(":" in line for line in answer.split("\n")):
                return None
            return tags_by_position(answer, len(tokens), set(self.label_names))
        if not answer.strip():
            return None
        return _tags_from_entities(answer, tokens, self.entity_types)

    def compute_metrics(
        self, gold: Sequence[tuple[str, ...]], pred: Sequence[tuple[str, ...] | None], groups: Sequence[str]
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Entity-level P/R/F1 (strict IOB2 headline, lenient) from seqeval's entity sets.

        An unreadable answer (None) tags every token O and counts one false positive more, so it never scores as well
        as a right answer, even on a sentence without entities.
        """
        tags = [p if p is not None else ("O",) * len(g) for g, p in zip(gold, pred)]
        return _entity_scores(gold, tags, [p is None for p in pred], "")

    def generation_metrics(
        self, gold: Sequence[tuple[str, ...]], generations: Sequence[str], inputs: Sequence[str]
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """For `lines` answers, two other readings of the same generations (README, "NER scoring, three ways").

        `f1_strict_aligned`/`f1_lenient_aligned`: lines aligned to the input by token text when their count is off.
        `f1_authors`: what the authors' `evaluations/evaluating_ner.py` computes (`authors_sequences`), seqeval's default
        (lenient) mode.
        """
        from ..metrics import ner_counts, typed_tags

        if self.output_format != "lines":
            return {}, {}
        valid = set(self.label_names)
        answers = [clean_generation(g) for g in generations]
        unread = [not any(":" in line for line in a.split("\n")) for a in answers]
        aligned = [aligned_tags(a, x.split(" "), valid) for a, x in zip(answers, inputs)]
        metrics, rows = _entity_scores(gold, aligned, unread, "_aligned")
        keep = {"f1_strict_aligned", "f1_lenient_aligned"}
        metrics, rows = {k: v for k, v in metrics.items() if k in keep}, {k: v for k, v in rows.items() if k in keep}
        pairs = [authors_sequences(self.render(g, x), text, valid) for g, x, text in zip(gold, inputs, generations)]
        gold_a, pred_a = [p[0] for p in pairs], [p[1] for p in pairs]
        metrics["f1_authors"] = float(seq_f1([typed_tags(t) for t in gold_a], [typed_tags(t) for t in pred_a], zero_division=0))
        rows["f1_authors"] = ner_counts(gold_a, pred_a, strict=False)
        return metrics, rows


def _entity_scores(
    gold: Sequence[Sequence[str]], tags: Sequence[Sequence[str]], unread: Sequence[bool], suffix: str
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Precision, recall and F1, strict and lenient, from per-row entity counts; each unread row adds a false positive."""
    from ..metrics import ner_counts

    metrics: dict[str, Any] = {}
    rows: dict[str, np.ndarray] = {}
    for mode, strict in (("strict", True), ("lenient", False)):
        counts = ner_counts(gold, tags, strict=strict)
        counts[:, 1] += np.asarray(unread, dtype=np.int64)
        tp, fp, fn = (int(x) for x in counts.sum(axis=0))
        metrics[f"precision_{mode}{suffix}"] = tp / (tp + fp) if tp + fp else 0.0
        metrics[f"recall_{mode}{suffix}"] = tp / (tp + fn) if tp + fn else 0.0
        metrics[f"f1_{mode}{suffix}"] = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        rows[f"f1_{mode}{suffix}"] = counts
    metrics["headline"] = "f1_strict"
    return metrics, rows


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


def tags_by_position(answer: str, n_tokens: int, valid_tags: set[str]) -> tuple[str, ...]:
    """Tags from `token : TAG` lines by position: the i-th non-empty line tags token i.

    A line's tag is the text after its last `:` (upper-cased); anything that is not a valid tag is O, missing lines
    are O and extra lines are ignored.
    """
    lines = [line for line in answer.split("\n") if line.strip()][:n_tokens]
    tags = []
    for line in lines:
        _, sep, tag = line.rpartition(":")
        tag = tag.strip().upper()
        tags.append(tag if sep and tag in valid_tags else "O")
    return tuple(tags) + ("O",) * (n_tokens - len(tags))


def authors_sequences(gold_output: str, answer: str, valid_tags: set[str]) -> tuple[list[str], list[str]]:
    """Gold and predicted tags as the authors' NER scorer builds them from a gold output and a raw generation.

    The generation is cut at its first `###`. Each text becomes a dict from token text to tag, from every line with a
    `:` (token: before the first `:`; tag: between the first and second), so a repeated token keeps one entry (at its
    first place, with its last tag). One tag pair per gold entry, in order; a tag that is not valid, or a token the
    answer lacks, is O. (The authors' list of valid tags is B, I, O; typed tasks use their own tag set.)
    """
    gold = _token_dict(gold_output)
    pred = _token_dict(answer.split("###")[0].strip())
    gold_tags = [tag if tag in valid_tags else "O" for tag in gold.values()]
    pred_tags = [pred[token] if pred.get(token) in valid_tags else "O" for token in gold]
    return gold_tags, pred_tags


def _token_dict(text: str) -> dict[str, str]:
    """`token : TAG` lines as a dict keyed by token text (later lines overwrite earlier ones of the same token)."""
    items: dict[str, str] = {}
    for line in text.strip().split("\n"):
        parts = line.split(":")
        if len(parts) > 1:
            items[parts[0].strip()] = parts[1].strip()
    return items


def aligned_tags(answer: str, tokens: list[str], valid_tags: set[str]) -> tuple[str, ...]:
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
