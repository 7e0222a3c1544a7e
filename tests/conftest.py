"""Shared fixtures: the public datasets in ../shared/data (skipped with a reason when absent), data/sample, a tiny run."""

from __future__ import annotations

from pathlib import Path

import pytest

from medtune_utils.paths import repo_root, shared_data_dir

SAMPLE_DIR = repo_root() / "data" / "sample"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data` (or `$MEDTUNE_SHARED_DATA`); tests that need it skip when it is not there."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"public datasets not found at {path}: set MEDTUNE_SHARED_DATA or place them in ../shared/data")
    return path


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The committed hand-written examples in data/sample/."""
    return SAMPLE_DIR


@pytest.fixture(scope="session")
def train_data_dir() -> Path:
    """The public datasets when present, else data/sample: tests that train run on whatever data a checkout has."""
    path = shared_data_dir()
    return path if path.is_dir() else SAMPLE_DIR


def pytest_report_header() -> str:
    """Say which data the data-dependent tests use."""
    path = shared_data_dir()
    if path.is_dir():
        return f"public datasets: {path}"
    return f"public datasets: none at {path}; tests needing them skip, training tests use {SAMPLE_DIR}"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole pipeline (notebooks 01-04) run once with the tiny profile on data/sample."""
    from medtune_utils.pipeline import run_pipeline

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    return run_pipeline("tiny", run_dir=str(run_dir), progress=False)
