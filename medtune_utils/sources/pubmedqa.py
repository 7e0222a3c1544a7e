"""PubMedQA PQA-L: `{PMID: {QUESTION, CONTEXTS, final_decision, ...}}` plus the official test PMIDs."""

from __future__ import annotations

from pathlib import Path

from ..records import DataFormatError, QaRecord
from .jsonutil import load_json
from .text import line_of

ANSWERS = ("yes", "no", "maybe")


def read_pubmedqa(path: Path, id_prefix: str) -> dict[str, QaRecord]:
    """Read every labelled question, keyed by PMID; contexts are joined with blank lines."""
    text, data = load_json(path, "a JSON object {PMID: record}")
    if not isinstance(data, dict) or not data:
        raise DataFormatError(path, 1, "expected a non-empty JSON object {PMID: record}")
    records: dict[str, QaRecord] = {}
    for pmid, rec in data.items():
        line = line_of(text, max(text.find(f'"{pmid}"'), 0))
        if not isinstance(rec, dict):
            raise DataFormatError(path, line, f"PMID {pmid!r}: expected an object with QUESTION, CONTEXTS, final_decision")
        for key in ("QUESTION", "CONTEXTS", "final_decision"):
            if key not in rec:
                raise DataFormatError(path, line, f"PMID {pmid!r}: missing {key!r}; expected QUESTION, CONTEXTS, final_decision")
        question, contexts, answer = rec["QUESTION"], rec["CONTEXTS"], rec["final_decision"]
        if not isinstance(question, str) or not question.strip():
            raise DataFormatError(path, line, f"PMID {pmid!r}: QUESTION must be a non-empty string")
        if not isinstance(contexts, list) or not contexts or not all(isinstance(c, str) for c in contexts):
            raise DataFormatError(path, line, f"PMID {pmid!r}: CONTEXTS must be a non-empty list of strings")
        if answer not in ANSWERS:
            raise DataFormatError(path, line, f"PMID {pmid!r}: unknown final_decision {answer!r}; expected yes, no or maybe")
        context = "\n\n".join(c.strip() for c in contexts)
        records[pmid] = QaRecord(f"{id_prefix}{pmid}", question.strip(), context, answer)
    return records


def read_test_pmids(path: Path, labelled: dict[str, QaRecord]) -> list[str]:
    """The official test PMIDs (`{PMID: label}`), checked against the labelled set."""
    text, data = load_json(path, "a JSON object {PMID: answer}")
    if not isinstance(data, dict) or not data:
        raise DataFormatError(path, 1, "expected a non-empty JSON object {PMID: answer}")
    for pmid, answer in data.items():
        line = line_of(text, max(text.find(f'"{pmid}"'), 0))
        if pmid not in labelled:
            raise DataFormatError(
                path, line, f"PMID {pmid!r} is not in the labelled questions file; expected only PMIDs labelled there"
            )
        if answer != labelled[pmid].label:
            raise DataFormatError(
                path, line, f"PMID {pmid!r}: answer {answer!r} disagrees with final_decision {labelled[pmid].label!r}"
            )
    return list(data)
