"""Scaffold a new source dataset, and the checklist every registered source must pass.

    python -m medtune_utils.new_source MyDataset --like GAD

writes into the repository, copied from the `--like` source: a registry entry (`tasks/registry.py`), an
instruction stub (`tasks/instructions.py`: the `--like` paraphrases, to rewrite), the sample folder
`data/sample/MyDataset/` with its row in `data/sample/README.md`, and, for a closed-label task, a table of
answers its parser must read (`tests/test_source_mydataset.py`). `checklist` names what a registered source
lacks; `tests/test_extensibility.py` runs it for every source.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .paths import repo_root
from .records import MissingSourceError
from .tasks import TASKS, Task
from .tasks.classification import LabelTask

REGISTRY = Path("medtune_utils/tasks/registry.py")
INSTRUCTIONS = Path("medtune_utils/tasks/instructions.py")
SAMPLE = Path("data/sample")
SAMPLE_README = SAMPLE / "README.md"
REGISTRY_END = "    ]\n    return {task.name: task for task in tasks}\n"
LINE = 130
SKIPPED_FIELDS = {"name", "aliases", "output_format", "reader"}
NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")


def checklist(task: Task, root: Path | None = None) -> list[str]:
    """What `task` lacks: a sample folder, its README row, readable splits, a headline its scoring gives."""
    root = root or repo_root()
    try:
        folder = task.find_folder(root / SAMPLE)
    except MissingSourceError:
        return [f"{task.name}: no {SAMPLE}/{task.dirnames[0]}/ (every source needs a sample)"]
    problems = [] if _readme_row(root, folder.name) else [f"{task.name}: no row for `{folder.name}/` in {SAMPLE_README}"]
    for split in ("train", "devel", "test"):
        problems += _split_problems(task, folder, split)
    return problems


def _readme_row(root: Path, folder: str) -> str | None:
    """The row of `data/sample/README.md` that describes `folder`, if any."""
    rows = [line for line in (root / SAMPLE_README).read_text(encoding="utf-8").splitlines() if line.startswith(f"| `{folder}/`")]
    return rows[0] if rows else None


def _split_problems(task: Task, folder: Path, split: str) -> list[str]:
    """Whether `split` of the sample reads, and scoring its gold against itself gives the task's headline."""
    where = f"{task.name}: {split} split of {SAMPLE}/{folder.name}/"
    try:
        records = task.load(folder, split)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"{where} does not read: {exc}"]
    if not records:
        return [f"{where} has no rows"]
    examples = [task.to_example(record) for record in records]
    gold = [task.gold(output, text) for text, output in examples]
    try:
        metrics, _ = task.score(gold, gold, [record.id for record in records])
    except ValueError as exc:
        return [f"{where} does not score: {exc}"]
    return [] if task.headline in (None, metrics["headline"]) else [f"{where}: headline is {metrics['headline']!r}"]


def scaffold(name: str, like: str, root: Path | None = None) -> list[Path]:
    """Write a new source `name` copied from the registered source `like`; return the files written."""
    root = root or repo_root()
    template = _check(name, like, root)
    constant = _constant(name)
    sample = template.find_folder(root / SAMPLE)
    test_file = root / "tests" / f"test_source_{constant.lower()}.py"
    _append(root / INSTRUCTIONS, _instructions_stub(template, constant))
    _insert_entry(root / REGISTRY, _entry(template, name, constant))
    shutil.copytree(sample, root / SAMPLE / name)
    _add_readme_row(root, sample.name, name)
    written = [root / INSTRUCTIONS, root / REGISTRY, root / SAMPLE / name, root / SAMPLE_README]
    if isinstance(template, LabelTask):
        test_file.write_text(_parser_tests(template, name), encoding="utf-8")
        written.append(test_file)
    return written


def _check(name: str, like: str, root: Path) -> Task:
    """The `like` task, after checking that nothing `name` would write exists yet."""
    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"{name!r}: a source name starts with a letter and holds letters, digits, '_', '.' or '-'")
    if name in TASKS:
        raise ValueError(f"{name} is already registered")
    if like not in TASKS:
        raise ValueError(f"unknown source {like!r} to copy; known sources: {', '.join(TASKS)}")
    template = TASKS[like]
    if template.reader is not None:
        raise ValueError(f"{like} reads its files with a custom reader; copy its entry by hand")
    if REGISTRY_END not in (root / REGISTRY).read_text(encoding="utf-8"):
        raise ValueError(f"{root / REGISTRY}: cannot find the end of the entry list in _build()")
    if re.search(rf"^{_constant(name)} = ", (root / INSTRUCTIONS).read_text(encoding="utf-8"), re.MULTILINE):
        raise ValueError(f"{root / INSTRUCTIONS} already defines {_constant(name)}")
    if (root / SAMPLE / name).exists():
        raise ValueError(f"{root / SAMPLE / name} already exists")
    return template


def _constant(name: str) -> str:
    """The Python name of a source's instruction tuple: `My-Data.set` -> `MY_DATA_SET`."""
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").upper()


def _instructions_stub(task: Task, constant: str) -> str:
    """The `--like` source's paraphrases under the new name, for the contributor to rewrite."""
    stub = f"\n{constant} = {_literal(task.instructions, 0, strings_wrap=True)}\n"
    entity_instructions = getattr(task, "entity_instructions", ())
    if entity_instructions:
        stub += f"\n{constant}_ENTITIES = {_literal(entity_instructions, 0, strings_wrap=True)}\n"
    return stub


def _entry(task: Task, name: str, constant: str) -> str:
    """The registry entry text: every field of `task` that differs from its default, renamed to `name`."""
    values: dict[str, Any] = {"name": name, "family": task.family, "description": task.description}
    values["instructions"] = f"ins.{constant}"
    for field in dataclasses.fields(task):
        value = getattr(task, field.name)
        if field.name in SKIPPED_FIELDS or field.name in values or value == _default(field):
            continue
        values[field.name] = f"ins.{constant}_ENTITIES" if field.name == "entity_instructions" else value
    values.pop("dirnames", None)
    values.pop("obtain", None)
    values["dirnames"] = (name,)
    where = "data.credentialed_dir" if task.credentialed else "data.dir"
    values["obtain"] = f"Place the {name} files in a {name}/ folder under {where}; see data/README.md."
    lines = [f"{' ' * 12}{key}={_code(value, 12, LINE - len(key) - 1)}," for key, value in values.items()]
    return f"        {type(task).__name__}(\n" + "\n".join(lines) + "\n        ),\n"


def _default(field: dataclasses.Field) -> Any:
    """A dataclass field's default value (`MISSING` for a required field)."""
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def _code(value: Any, indent: int, width: int) -> str:
    """`value` as source text in `width` columns; `ins.X` references are written as code, not as strings."""
    if isinstance(value, str):
        return value if value.startswith("ins.") else _string(value, indent, False, width)
    return _literal(value, indent)


def _literal(value: Any, indent: int, strings_wrap: bool = False) -> str:
    """A Python literal for `value` in the layout `ruff format` keeps: collections one item a line."""
    inner = " " * (indent + 4)
    if isinstance(value, str):
        return _string(value, indent, strings_wrap)
    if isinstance(value, tuple) and len(value) == 1:
        return f"({_literal(value[0], indent)},)"
    if isinstance(value, tuple) and value:
        items = [f"{inner}{_literal(item, indent + 4, strings_wrap)}," for item in value]
        return "(\n" + "\n".join(items) + f"\n{' ' * indent})"
    if isinstance(value, dict) and value:
        items = [f"{inner}{_literal(k, indent + 4)}: {_literal(v, indent + 4)}," for k, v in value.items()]
        return "{\n" + "\n".join(items) + f"\n{' ' * indent}}}"
    if value is None or isinstance(value, (bool, int, float, tuple, dict)):
        return repr(value)
    raise ValueError(f"cannot write {value!r} as a registry field; copy that entry by hand")


def _string(text: str, indent: int, bare_wrap: bool, width: int = LINE) -> str:
    """A double-quoted string; one too long for `width` columns becomes implicitly concatenated pieces."""
    quoted = json.dumps(text, ensure_ascii=False)
    if indent + len(quoted) + 2 <= width:
        return quoted
    pieces, current = [], ""
    for word in re.split(r"(?<=[ \n])", text):
        if current and len(json.dumps(current + word, ensure_ascii=False)) > LINE - indent - 24:
            pieces.append(current)
            current = ""
        current += word
    pieces.append(current)
    pad = " " * (indent if bare_wrap else indent + 4)
    joined = f"\n{pad}".join(json.dumps(piece, ensure_ascii=False) for piece in pieces)
    return joined if bare_wrap else f"(\n{pad}{joined}\n{' ' * indent})"


def _append(path: Path, text: str) -> None:
    """Add `text` at the end of the file, after one blank line."""
    path.write_text(path.read_text(encoding="utf-8").rstrip("\n") + "\n\n" + text, encoding="utf-8")


def _insert_entry(path: Path, entry: str) -> None:
    """Add `entry` as the last item of the entry list in the registry's `_build()`."""
    source = path.read_text(encoding="utf-8")
    path.write_text(source.replace(REGISTRY_END, entry + REGISTRY_END, 1), encoding="utf-8")


def _add_readme_row(root: Path, like_folder: str, name: str) -> None:
    """A copy of the `--like` source's row in data/sample/README.md, right after the last row of the table."""
    path = root / SAMPLE_README
    lines = path.read_text(encoding="utf-8").splitlines()
    row = _readme_row(root, like_folder) or f"| `{like_folder}/` | | |"
    last = max(i for i, line in enumerate(lines) if line.startswith("| `"))
    lines.insert(last + 1, row.replace(f"`{like_folder}/`", f"`{name}/`", 1))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _parser_tests(task: LabelTask, name: str) -> str:
    """A test module with a table of answers (each label as written, lower-cased, in a sentence) and their parses."""
    answers = [variant for label in task.labels for variant in (label, label.lower(), f"The answer is {label}.")]
    rows = []
    for answer in dict.fromkeys(answers):
        parsed = task.parse(answer, "")
        rows.append(f"    ({_literal(answer, 4)}, {_literal(parsed.value, 4)}, {parsed.well_formed}),")
    return PARSER_TESTS.format(name=name, like=task.name, rows="\n".join(rows))


PARSER_TESTS = '''"""{name}: answers its parser must read (scaffolded from {like}; add the deviations your model makes)."""

from __future__ import annotations

import pytest

from medtune_utils.tasks import Parsed, get_task

CASES = [
{rows}
]


@pytest.mark.parametrize(("generation", "expected", "well_formed"), CASES)
def test_parse(generation: str, expected: str | None, well_formed: bool) -> None:
    assert get_task("{name}").parse(generation, "") == Parsed(expected, well_formed)
'''


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: scaffold, then print the files written and what to edit next."""
    parser = argparse.ArgumentParser(description="Scaffold a new source dataset from an existing one.")
    parser.add_argument("name", help="the new source's name, e.g. MyDataset")
    parser.add_argument("--like", default="GAD", help="the registered source to copy (default: GAD)")
    parser.add_argument("--root", type=Path, default=None, help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    try:
        written = scaffold(args.name, args.like, args.root)
    except ValueError as exc:
        parser.error(str(exc))
    print("\n".join(f"wrote {path}" for path in written))
    print(NEXT_STEPS.format(name=args.name))
    return 0


NEXT_STEPS = """Next (README, "Add a dataset"):
  1. rewrite the instructions and edit the entry's labels, file names and `obtain` for {name};
  2. a new file layout: write a reader (path, id_prefix, task) -> records and set `reader=` in the entry;
  3. replace data/sample/{name}/ with hand-written rows in the real layout, and its README row;
  4. public data: its files with their SHA-256 in MANIFEST (medtune_utils/download.py), a row in data/README.md;
  5. make test && make lint."""


if __name__ == "__main__":
    raise SystemExit(main())
