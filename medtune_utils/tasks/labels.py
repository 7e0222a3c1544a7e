"""Finding label names inside free text: whole-word, case-insensitive, longest match first."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache


def normalise(text: str) -> str:
    """Lower-case, single spaces, no surrounding quotes or final full stop."""
    text = " ".join(text.split()).lower()
    return text.strip("\"'`* ").rstrip(".").strip()


def find_labels(text: str, surface_forms: Mapping[str, Sequence[str]]) -> list[str]:
    """Labels mentioned in `text`, in order of appearance; a longer form wins over one it contains.

    `surface_forms` maps each label to the strings that name it (its verbalisation, code, aliases).
    """
    pattern, owners = _compile(tuple((label, tuple(forms)) for label, forms in surface_forms.items()))
    found = []
    for match in pattern.finditer(text):
        label = owners.get(normalise(match.group(0))) or _owner_by_regex(match.group(0), owners)
        if label not in found:
            found.append(label)
    return found


def _owner_by_regex(matched: str, owners: Mapping[str, str]) -> str:
    """The owner of a match whose lower-casing differs from the regex's case folding (`ſ` matches `s`)."""
    for form, label in sorted(owners.items(), key=lambda item: len(item[0]), reverse=True):
        if re.fullmatch(re.escape(form).replace(r"\ ", r"\s+"), matched, re.IGNORECASE):
            return label
    raise AssertionError(f"{matched!r} matched no surface form")


@lru_cache(maxsize=64)
def _compile(items: tuple[tuple[str, tuple[str, ...]], ...]) -> tuple[re.Pattern[str], dict[str, str]]:
    owners: dict[str, str] = {}
    for label, forms in items:
        for form in (label, *forms):
            owners.setdefault(normalise(form), label)
    alternatives = sorted(owners, key=len, reverse=True)
    body = "|".join(re.escape(form).replace(r"\ ", r"\s+") for form in alternatives)
    return re.compile(rf"(?<![\w])(?:{body})(?![\w])", re.IGNORECASE), owners
