"""Shared helpers for the benchmark scripts: where the real data is, and a peak-memory reading."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

from medtune_utils.paths import shared_data_dir

REPO = Path(__file__).resolve().parents[1]


def real_data_dir(argument: str | None) -> Path:
    """The data folder given on the command line, else `../shared/data`; exits with a message when absent."""
    folder = Path(argument) if argument else shared_data_dir()
    if folder is None or not folder.is_dir():
        sys.exit(f"benchmark needs the real datasets: pass --data-dir, or place them in ../shared/data (got {folder})")
    return folder


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
