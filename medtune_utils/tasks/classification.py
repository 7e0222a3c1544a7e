"""Closed-label tasks: relation extraction, NLI and closed QA (one label), and HoC (a set of labels)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..records import MultiLabelRecord, NliRecord, QaRecord, RelationRecord
from ..sources import read_hoc, read_mednli, read_relation_tsv
from ..sources.pubmedqa import read_pubmedqa, read_test_pmids
from .base import Task
from .labels import find_labels, normalise


@dataclass(frozen=True, kw_only=True)
class LabelTask(Task):
    """A task whose answer is exactly one label; `labels` are the output strings, in display order."""

    labels: tuple[str, ...]
    raw_labels: dict[str, str] = field(default_factory=dict)
    surface_forms: dict[str, tuple[str, ...]] = field(default_factory=dict)
    positive_label: str | None = None
    negative_labels: tuple[str, ...] = ()

    @property
    def label_names(self) -> tuple[str, ...]:
        return self.labels

    def interpret(self, answer: str, input_text: str) -> str | None:
        exact = {normalise(label): label for label in self.labels}
        if normalise(answer) in exact:
            return exact[normalise(answer)]
        found = find_labels(answer, {label: self.surface_forms.get(label, ()) for label in self.labels})
        return found[0] if found else None

    def compute_metrics(
        self, gold: Sequence[str], pred: Sequence[str | None], groups: Sequence[str]
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Accuracy, micro/macro F1; F1 of `positive_label`; micro F1 without `negative_labels` (BLURB)."""
        from ..metrics import label_counts, positive_counts, score_single_label, without

        metrics = score_single_label(gold, pred, self.labels, self.positive_label, self.negative_labels)
        rows = {"accuracy": np.array([g == p for g, p in zip(gold, pred)], dtype=float)}
        if self.positive_label is not None:
            rows["f1"] = positive_counts(gold, pred, [self.positive_label])
        if self.negative_labels:
            rows["micro_f1"] = label_counts(gold, pred, self.labels, unparsed_counts=True)
            rows["micro_f1_positive"] = positive_counts(gold, pred, without(self.labels, self.negative_labels))
        return metrics, rows


@dataclass(frozen=True, kw_only=True)
class RelationTask(LabelTask):
    """Masked-entity relation classification (GAD, i2b2-2010); each sentence holds at least `min_masks` masks."""

    masks: tuple[str, ...]
    min_masks: int = 2

    def read_default(self, path: Path, id_prefix: str) -> list[RelationRecord]:
        return read_relation_tsv(path, id_prefix, self.raw_labels, self.masks, self.min_masks)

    def to_example(self, record: RelationRecord) -> tuple[str, str]:
        return record.sentence, record.label


@dataclass(frozen=True, kw_only=True)
class NliTask(LabelTask):
    """Premise/hypothesis inference (MedNLI)."""

    def read_default(self, path: Path, id_prefix: str) -> list[NliRecord]:
        return read_mednli(path, id_prefix, self.raw_labels)

    def to_example(self, record: NliRecord) -> tuple[str, str]:
        if self.layout == "authors":
            return f"Sentence 1: {record.premise}\nSentence 2: {record.hypothesis}", record.label
        return f"Premise: {record.premise}\nHypothesis: {record.hypothesis}", record.label


@dataclass(frozen=True, kw_only=True)
class PubMedQaTask(LabelTask):
    """PubMedQA PQA-L: the official 500 test questions; the other 500 split into train and devel.

    The split uses its own fixed seed, not the run's, so every run is evaluated on the same questions.
    """

    devel_fraction: float = 0.1
    split_seed: int = 0

    def load(self, folder: Path, split: str) -> list[QaRecord]:
        actual = self.resolve_split(split)
        labelled = read_pubmedqa(folder / self.split_files["train"], f"{self.name}/labelled/")
        test = set(read_test_pmids(folder / self.split_files["test"], labelled))
        if actual == "test":
            return [_with_id(labelled[p], f"{self.name}/test/{p}") for p in labelled if p in test]
        pool = sorted(p for p in labelled if p not in test)
        devel = _stratified_sample(pool, [labelled[p].label for p in pool], self.devel_fraction, self.split_seed)
        chosen = [p for p in pool if (p in devel) == (actual == "devel")]
        return [_with_id(labelled[p], f"{self.name}/{actual}/{p}") for p in chosen]

    def read_default(self, path: Path, id_prefix: str) -> list[QaRecord]:
        return list(read_pubmedqa(path, id_prefix).values())

    def to_example(self, record: QaRecord) -> tuple[str, str]:
        return f"Question: {record.question}\nContext: {record.context}", record.label


@dataclass(frozen=True, kw_only=True)
class MultiLabelTask(Task):
    """Sentence classification into any subset of `labels` (HoC); an empty set is written `None`.

    `authors_spelling` maps labels to the authors' spelling of them; under the `authors` layout an answer in those
    spellings, official names or a mix of both, in any order, is well formed.
    """

    labels: tuple[str, ...]
    surface_forms: dict[str, tuple[str, ...]] = field(default_factory=dict)
    none_answer: str = "None"
    authors_spelling: dict[str, str] = field(default_factory=dict)

    @property
    def label_names(self) -> tuple[str, ...]:
        return self.labels

    def read_default(self, path: Path, id_prefix: str) -> list[MultiLabelRecord]:
        return read_hoc(path, id_prefix, self.labels)

    def to_example(self, record: MultiLabelRecord) -> tuple[str, str]:
        return record.sentence, self.render(record.labels, record.sentence)

    def render(self, value: tuple[str, ...], input_text: str) -> str:
        return ", ".join(value) or self.none_answer

    def compute_metrics(
        self, gold: Sequence[tuple[str, ...]], pred: Sequence[tuple[str, ...] | None], groups: Sequence[str]
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Sentence-level micro/macro F1, exact match and per-abstract micro F1 (rows grouped by `groups`)."""
        from ..metrics import score_multi_label, set_counts

        return score_multi_label(gold, pred, self.labels, groups), {"micro_f1": set_counts(gold, pred)}

    def interpret(self, answer: str, input_text: str) -> tuple[str, ...] | None:
        """The labels named; None (unreadable) when the answer is neither `None` nor names any label."""
        if normalise(answer) == normalise(self.none_answer):
            return ()
        exact = self._spellings()
        pieces = [normalise(p) for p in answer.split(",")]
        if all(p in exact for p in pieces):
            found = {exact[p] for p in pieces}
        else:
            forms = {label: (*self.surface_forms.get(label, ()), *self._authors_forms(label)) for label in self.labels}
            found = set(find_labels(answer, forms))
        if not found:
            return None
        return tuple(label for label in self.labels if label in found)

    def is_exact(self, answer: str, value: Any, input_text: str) -> bool:
        """Exactly `render`'s output; under the `authors` layout also the labels, each once, spelled either way."""
        if value is None or self.layout != "authors" or answer == self.render(value, input_text):
            return super().is_exact(answer, value, input_text)
        pieces = answer.split(", ")
        spelled = {label: label for label in self.labels} | {self.authors_spelling.get(x, x): x for x in self.labels}
        named = [spelled.get(p) for p in pieces]
        return None not in named and len(set(named)) == len(named) and set(named) == set(value)

    def _authors_forms(self, label: str) -> tuple[str, ...]:
        return (self.authors_spelling[label],) if self.layout == "authors" and label in self.authors_spelling else ()

    def _spellings(self) -> dict[str, str]:
        """Normalised label strings that name each label exactly: official names, and the authors' under that layout."""
        exact = {normalise(label): label for label in self.labels}
        return exact | {normalise(form): label for label in self.labels for form in self._authors_forms(label)}


def _with_id(record: QaRecord, new_id: str) -> QaRecord:
    return QaRecord(new_id, record.question, record.context, record.label)


def _stratified_sample(keys: list[str], labels: list[str], fraction: float, seed: int) -> set[str]:
    """A seeded subset of `round(fraction * len(keys))` keys, split across labels by largest remainder."""
    rng = random.Random(seed)
    groups = {label: [k for k, lab in zip(keys, labels) if lab == label] for label in sorted(set(labels))}
    exact = {label: fraction * len(group) for label, group in groups.items()}
    quota = {label: int(share) for label, share in exact.items()}
    leftover = round(fraction * len(keys)) - sum(quota.values())
    for label in sorted(exact, key=lambda lab: (quota[lab] - exact[lab], lab))[:leftover]:
        quota[label] += 1
    chosen: set[str] = set()
    for label, group in groups.items():
        rng.shuffle(group)
        chosen.update(group[: quota[label]])
    return chosen
