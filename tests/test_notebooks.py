"""The notebooks are clean, parameterised thin drivers, and nothing the user runs holds a machine's absolute path."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest

from medtune_utils.paths import repo_root
from medtune_utils.pipeline import NOTEBOOKS

ROOT = repo_root()
NOTEBOOK_PATHS = sorted((ROOT / "notebooks").glob("*.ipynb"))
ABSOLUTE_PATH = re.compile(r"/work/|/home/|/Users/|\b[A-Z]:\\")
REQUIRED = {"run_dir": "results/tiny"}


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=nbformat.NO_CONVERT)


def _code(source: str) -> ast.Module:
    """Parse a code cell, leaving out IPython magics and shell escapes."""
    return ast.parse("\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))))


def _assignments(source: str) -> dict[str, Any]:
    """Top-level `name = literal` assignments of a cell."""
    values = {}
    for node in _code(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


def test_notebooks_01_to_04_are_the_pipeline_then_the_study_and_the_baselines() -> None:
    names = [p.stem for p in NOTEBOOK_PATHS]
    assert tuple(names[:4]) == NOTEBOOKS, names
    assert names[4:] == [n for n in ("05_composition_study", "06_encoder_baselines") if n in names], names


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=lambda p: p.stem)
def test_notebook_is_valid_and_has_no_outputs(path: Path) -> None:
    notebook = _read(path)
    nbformat.validate(notebook)
    assert notebook.nbformat == 4
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {index} has outputs"
            assert cell.execution_count is None, f"{path.name} cell {index} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=lambda p: p.stem)
def test_notebook_has_one_parameters_cell_with_the_tiny_defaults(path: Path) -> None:
    cells = [c for c in _read(path).cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{path.name}: {len(cells)} cells tagged parameters"
    assert cells[0].cell_type == "code"
    values = _assignments(cells[0].source)
    if path.stem.startswith("05_"):
        assert values.get("study") == "tiny-sample" and "out_dir" in values and "profile" not in values, values
        return
    assert {key: values.get(key) for key in REQUIRED} == REQUIRED, values
    if path.stem.startswith("06_"):
        assert "profile" in values, values
        return
    if path.stem.startswith("01_"):
        assert values.get("profile") == "tiny" and "data_dir" in values, values
    else:
        assert "profile" not in values, f"{path.name}: the profile is the run's own config.yaml, not a parameter"
    if not path.stem.startswith("04_"):
        assert values.get("overrides") == {}, values


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=lambda p: p.stem)
def test_code_cells_define_no_functions_or_classes(path: Path) -> None:
    for index, cell in enumerate(_read(path).cells):
        if cell.cell_type != "code":
            continue
        defined = [
            node.name
            for node in ast.walk(_code(cell.source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        ]
        assert not defined, f"{path.name} cell {index} defines {defined}: move it into medtune_utils"


def _user_facing_texts() -> list[tuple[str, str]]:
    """(name, text) of the notebooks' cells, every file under configs/, the Makefile and the README."""
    texts = [(f"{p.name} cell {i}", cell.source) for p in NOTEBOOK_PATHS for i, cell in enumerate(_read(p).cells)]
    files = [p for p in sorted((ROOT / "configs").rglob("*")) if p.is_file()] + [ROOT / "Makefile", ROOT / "README.md"]
    texts += [(str(p.relative_to(ROOT)), p.read_text(encoding="utf-8")) for p in files]
    return texts


def test_no_absolute_paths_in_notebooks_configs_makefile_or_readme() -> None:
    texts = _user_facing_texts()
    assert any(name.startswith("configs/profiles/") for name, _ in texts) and any(name == "Makefile" for name, _ in texts)
    found = [f"{name}: {match.group(0)!r}" for name, text in texts for match in ABSOLUTE_PATH.finditer(text)]
    assert not found, found


@pytest.mark.parametrize("text", ["see /work/shared/data", "/home/me/x", "/Users/me/x", r"C:\data"])
def test_the_absolute_path_pattern_catches_each_form(text: str) -> None:
    assert ABSOLUTE_PATH.search(text)
