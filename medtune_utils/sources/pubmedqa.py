"""PubMedQA PQA-L: `{PMID: {QUESTION, CONTEXTS, final_decision, ...}}` plus the official test PMIDs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..records import DataFormatError, QaRecord
from .jsonutil import is_encodable, load_json
from .text import line_of

ANSWERS = ("yes", "no", "maybe")


def read_pubmedqa(path: Path, id_prefix: str) -> dict[str, QaRecord]:
    """Read every labelled question, keyed by PMID; contexts are joined with blank lines."""
    text, data = load_json(path, "a JSON object {PMID: record}")
    if not isinstance(data, dict) or not data:
        raise DataFormatError(path, 1, "expected a non-empty JSON object {PMID: record}")
    records: dict[str, QaRecord] = {}
    for pmid, rec in data.items():
        problem = _record_problem(rec) if is_encodable(pmid) else "the PMID holds a lone UTF-16 surrogate escape"
        if problem:
            raise DataFormatError(path, _line_of_key(text, pmid), f"PMID {pmid!r}: {problem}")
        context = "\n\n".join(c.strip() for c in rec["CONTEXTS"])
        records[pmid] = QaRecord(f"{id_prefix}{pmid}", rec["QUESTION"].strip(), context, rec["final_decision"])
    return records


def read_test_pmids(path: Path, labelled: dict[str, QaRecord]) -> list[str]:
    """The official test PMIDs (`{PMID: label}`), checked against the labelled set."""
    text, data = load_json(path, "a JSON object {PMID: answer}")
    if not isinstance(data, dict) or not data:
        raise DataFormatError(path, 1, "expected a non-empty JSON object {PMID: answer}")
    for pmid, answer in data.items():
        if pmid not in labelled:
            message = f"PMID {pmid!r} is not in the labelled questions file; expected only PMIDs labelled there"
            raise DataFormatError(path, _line_of_key(text, pmid), message)
        if answer != labelled[pmid].label:
            message = f"PMID {pmid!r}: answer {answer!r} disagrees with final_decision {labelled[pmid].label!r}"
            raise DataFormatError(path, _line_of_key(text, pmid), message)
    return list(data)


def _record_problem(rec: Any) -> str | None:
    """What is wrong with one labelled record, or None."""
    if not isinstance(rec, dict):
        return "expected an object with QUESTION, CONTEXTS, final_decision"
    for key in ("QUESTION", "CONTEXTS", "final_decision"):
        if key not in rec:
            return f"missing {key!r}; expected QUESTION, CONTEXTS, final_decision"
    question, contexts, answer = rec["QUESTION"], rec["CONTEXTS"], rec["final_decision"]
    if not isinstance(question, str) or not question.strip():
        return "QUESTION must be a non-empty string"
    if not isinstance(contexts, list) or not contexts or not all(isinstance(c, str) and c.strip() for c in contexts):
        return "CONTEXTS must be a non-empty list of non-empty strings"
    if not all(is_encodable(s) for s in [question, *contexts]):
        return "QUESTION or CONTEXTS hold a lone UTF-16 surrogate escape; expected valid Unicode text"
    if answer not in ANSWERS:
        return f"unknown final_decision {answer!r}; expected yes, no or maybe"
    return None


def _line_of_key(text: str, key: str) -> int:
    """The line where `"key"` first appears (computed only when an error is reported)."""
    return line_of(text, max(text.find(f'"{key}"'), 0))
