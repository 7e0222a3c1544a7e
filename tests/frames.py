"""Helpers for tests that look into pandas tables."""

from __future__ import annotations

import pandas as pd


def only_row(table: pd.DataFrame, **where: str) -> pd.Series:
    """The one row of `table` whose columns equal `where` (fails unless exactly one matches)."""
    hit = table
    for column, value in where.items():
        hit = hit[hit[column] == value]
    assert len(hit) == 1, where
    return hit.iloc[0]
