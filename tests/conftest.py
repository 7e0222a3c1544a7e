"""Shared fixtures: the public datasets in ../shared/data and the real Llama-2 tokenizer in ../shared/tokenizers/llama-2
(each skipped with a reason when absent), data/sample, a tiny run."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import PreTrainedTokenizerBase

from medtune_utils.paths import repo_root, resolve, shared_data_dir

SAMPLE_DIR = repo_root() / "data" / "sample"
LLAMA2_TOKENIZER_PROFILE = "tiny-llama2-tokenizer"  # the profile that names where the real Llama-2 tokenizer is


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


def llama2_tokenizer_path() -> Path:
    """`../shared/tokenizers/llama-2`, as the tiny-llama2-tokenizer profile names it (relative to the repository root)."""
    from medtune_utils.config import load_profile

    return resolve(load_profile(LLAMA2_TOKENIZER_PROFILE).model.tiny.tokenizer)


@pytest.fixture(scope="session")
def llama2_tokenizer_dir() -> Path:
    """The real Llama-2 tokenizer's folder; tests that need it skip when it is not there."""
    path = llama2_tokenizer_path()
    if not (path / "tokenizer.json").is_file():
        pytest.skip(f"real Llama-2 tokenizer not found at {path}: place ../shared/tokenizers/llama-2 beside the checkout")
    return path


@pytest.fixture(scope="session")
def llama2_tokenizer(llama2_tokenizer_dir: Path) -> PreTrainedTokenizerBase:
    """The real Llama-2 tokenizer, loaded as every step loads one (`modeling.load_tokenizer`: right padding, pad = unk)."""
    from medtune_utils.modeling import load_tokenizer

    return load_tokenizer(str(llama2_tokenizer_dir))


def pytest_report_header() -> list[str]:
    """Say which data and tokenizer the data-dependent tests use."""
    path, tokenizer = shared_data_dir(), llama2_tokenizer_path()
    if path.is_dir():
        lines = [f"public datasets: {path}"]
    else:
        lines = [f"public datasets: none at {path}; tests needing them skip, training tests use {SAMPLE_DIR}"]
    found = "" if (tokenizer / "tokenizer.json").is_file() else "none at "
    return [*lines, f"real Llama-2 tokenizer: {found}{tokenizer}" + ("; tests needing it skip" if found else "")]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole pipeline (notebooks 01-04) run once with the tiny profile on data/sample."""
    from medtune_utils.pipeline import run_pipeline

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    return run_pipeline("tiny", run_dir=str(run_dir), progress=False)
