"""Display names and orders shared by tables and figures: metrics, task families, sources, visible whitespace."""

from __future__ import annotations

import re
from collections.abc import Iterable

FAMILY_ORDER = ("ner", "re", "nli", "cls", "qa")
FAMILY_NAMES = {"ner": "NER", "re": "Relation extraction", "nli": "NLI", "cls": "Classification", "qa": "QA / instructions"}
METRIC_NAMES = {
    "f1_strict": "F1 (strict)",
    "f1_lenient": "F1 (lenient)",
    "f1_authors": "F1 (authors' scorer)",
    "f1_strict_aligned": "F1 (strict, aligned)",
    "f1_lenient_aligned": "F1 (lenient, aligned)",
    "f1": "F1",
    "accuracy": "Accuracy",
    "micro_f1": "Micro-F1",
    "micro_f1_positive": "Micro-F1 (positive classes)",
    "macro_f1": "Macro-F1",
    "abstract_micro_f1": "Micro-F1 (per abstract)",
    "rouge_l": "ROUGE-L",
}
NEWLINE, SPACE, TAB = "⏎", "·", "⇥"


def metric_name(metric: str) -> str:
    return METRIC_NAMES.get(metric, metric)


def metric_rank(metric: str) -> int:
    """Where `metric` goes among a source's rows: the order of `METRIC_NAMES`, unknown metrics last."""
    return list(METRIC_NAMES).index(metric) if metric in METRIC_NAMES else len(METRIC_NAMES)


def family_name(family: str) -> str:
    return FAMILY_NAMES.get(family, family)


def row_label(source: str, metric: str) -> str:
    """`NCBI-disease: F1 (lenient)`."""
    return f"{source}: {metric_name(metric)}"


def source_order(sources: Iterable[str]) -> list[str]:
    """`sources` without repeats, in the task registry's order, unknown ones last (sorted)."""
    from .tasks import task_names

    known = task_names()
    unique = set(sources)
    return [s for s in known if s in unique] + sorted(unique - set(known))


def visible_whitespace(text: str) -> str:
    """`text` with its whitespace made visible, never a run of empty lines.

    A blank answer becomes `(blank: 3 newlines)`; inside an answer, each run of blank lines becomes one
    `⏎` line (`⏎ × 4 blank lines`), and trailing spaces and tabs on a line show as `·` and `⇥`.
    """
    if not text.strip():
        return f"(blank: {_whitespace_counts(text)})"
    lines: list[str] = []
    blank = 0
    for line in text.split("\n"):
        if not line.strip():
            blank += 1
            continue
        lines += [_blank_lines(blank)] if blank else []
        blank = 0
        body = line.rstrip()
        lines.append(body + line[len(body) :].replace(" ", SPACE).replace("\t", TAB))
    return "\n".join(lines + ([_blank_lines(blank)] if blank else []))


def _blank_lines(count: int) -> str:
    return f"{NEWLINE} blank line" if count == 1 else f"{NEWLINE} × {count} blank lines"


def _whitespace_counts(text: str) -> str:
    if not text:
        return "empty"
    counts = {"newline": text.count("\n"), "space": text.count(" "), "tab": text.count("\t")}
    counts["other whitespace character"] = len(re.findall(r"[^\n \t]", text))
    return ", ".join(f"{n} {kind}{'s' if n > 1 else ''}" for kind, n in counts.items() if n)
