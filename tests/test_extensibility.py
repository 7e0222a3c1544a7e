"""Adding a dataset: a reader function plus a registry entry, a per-entry headline, and the checklist every source passes."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from medtune_utils import tables
from medtune_utils.assemble import run_assembly
from medtune_utils.config import Profile, load_profile
from medtune_utils.evaluate import evaluate, score_predictions
from medtune_utils.new_source import checklist
from medtune_utils.records import DataFormatError, RelationRecord
from medtune_utils.run import Run
from medtune_utils.tasks import TASKS, Parsed, Task, get_task, registered, task_names
from medtune_utils.tasks.classification import RelationTask
from medtune_utils.train import train

# ---------------------------------------------------------------- a new layout: relation sentences as JSON lines

NAME = "DDI-jsonl"
LABELS = ("Mechanism", "Effect", "Advice", "No relation")
RAW_LABELS = {"mechanism": "Mechanism", "effect": "Effect", "advice": "Advice", "none": "No relation"}
DRUGS = ("aspirin", "warfarin", "ibuprofen", "digoxin", "metformin", "lithium")
PATTERNS = {
    "mechanism": "{a} raises the plasma level of {b} by slowing its clearance.",
    "effect": "Giving {a} with {b} increased the risk of bleeding.",
    "advice": "Avoid {a} in patients who take {b}.",
    "none": "{a} and {b} were both listed on admission.",
}


def read_relation_jsonl(path: Path, id_prefix: str, task: Task) -> list[RelationRecord]:
    """`{"text": ... <e1>drug</e1> ... <e2>drug</e2> ..., "label": ...}` per line (the reader a contributor writes)."""
    assert isinstance(task, RelationTask)
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        row = json.loads(line)
        if row["label"] not in task.raw_labels:
            raise DataFormatError(path, number, f"unknown label {row['label']!r}")
        if sum(row["text"].count(mask) for mask in task.masks) < task.min_masks:
            raise DataFormatError(path, number, f"expected {task.min_masks} entity markers")
        records.append(RelationRecord(f"{id_prefix}{number}", row["text"], task.raw_labels[row["label"]]))
    return records


ENTRY = RelationTask(
    name=NAME,
    family="re",
    description="drug-drug interactions, entities marked <e1>...</e1> and <e2>...</e2>",
    instructions=tuple(
        f"{lead} Answer with one of: Mechanism, Effect, Advice, No relation."
        for lead in (
            "Classify the interaction between the drugs marked <e1> and <e2>.",
            "Which interaction holds between the two marked drugs?",
            "Read the sentence and name the relation between drug <e1> and drug <e2>.",
            "You are curating drug interactions. Label the marked pair.",
            "Decide how the two marked drugs interact, if at all.",
        )
    ),
    labels=LABELS,
    raw_labels=RAW_LABELS,
    negative_labels=("No relation",),
    headline="micro_f1_positive",
    masks=("<e1>", "<e2>"),
    min_masks=2,
    reader=read_relation_jsonl,
    dirnames=(NAME,),
    split_files={"train": "train.jsonl", "devel": "dev.jsonl", "test": "test.jsonl"},
    obtain="Invented for this test.",
)


def _write_dataset(folder: Path) -> None:
    """Train, dev and test JSON-lines files: every label on several drug pairs."""
    folder.mkdir(parents=True)
    pairs = [(a, b) for a in DRUGS for b in DRUGS if a != b]
    labels = [list(PATTERNS)[i % len(PATTERNS)] for i in range(len(pairs))]
    rows = [
        {"text": PATTERNS[label].format(a=f"<e1>{a}</e1>", b=f"<e2>{b}</e2>"), "label": label}
        for (a, b), label in zip(pairs, labels)
    ]
    for name, part in (("train.jsonl", rows[:20]), ("dev.jsonl", rows[20:25]), ("test.jsonl", rows[25:30])):
        (folder / name).write_text("".join(json.dumps(row) + "\n" for row in part), encoding="utf-8")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    _write_dataset(tmp_path / "data" / NAME)
    return tmp_path / "data"


def _profile(data_dir: Path, steps: int) -> Profile:
    return load_profile(
        "tiny",
        {
            "data.dir": str(data_dir),
            "data.sources": [NAME],
            "train.max_steps": steps,
            "train.save_steps": steps,
            "eval.rows_per_source": 5,
            "eval.max_new_tokens_cap": 8,
            "eval.bootstrap_samples": 20,
        },
    )


def test_new_layout_is_a_reader_and_an_entry_and_every_gold_answer_round_trips(data_dir: Path, tmp_path: Path) -> None:
    with registered(ENTRY):
        assert NAME in task_names() and get_task(NAME) is ENTRY
        assembly = run_assembly(_profile(data_dir, 1), tmp_path / "run")
        for split, rows in assembly.dataset.items():
            assert len(rows) == (20 if split == "train" else 5)
            for row in rows:
                assert row["source"] == NAME and row["task"] == "re" and row["output"] in LABELS
                assert ENTRY.parse(row["output"], row["input"]) == Parsed(row["output"], True)
        for split in ("train", "devel", "test"):
            records = ENTRY.load(data_dir / NAME, split)
            assert [ENTRY.parse(ENTRY.to_example(r)[1], r.sentence).value for r in records] == [r.label for r in records]
    assert NAME not in TASKS


def test_new_layout_trains_and_scores_with_the_tiny_profile_under_its_headline(data_dir: Path, tmp_path: Path) -> None:
    """Assembly, a few optimizer steps and scoring of base and tuned models, with the entry's headline in every output."""
    profile, run_dir = _profile(data_dir, 3), tmp_path / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with registered(ENTRY):
            run_assembly(profile, run_dir)
            train(profile, run_dir)
            scores = evaluate(profile, run_dir, models=["base", "tuned"], progress=False)
            table = tables.scores_table(scores)
    finally:
        torch.set_num_threads(threads)
    for model in ("base", "tuned"):
        entry = scores["models"][model][NAME]
        assert entry["headline"] == "micro_f1_positive" and entry["n"] == 5
        assert entry["value"] == entry["metrics"]["micro_f1_positive"]
    assert set(table.metric) == {"Micro-F1 (positive classes)"}
    predictions = Run(run_dir).predictions(["tuned"], [NAME])
    assert list(predictions.gold) == [r.label for r in ENTRY.load(data_dir / NAME, "devel")]


def test_reader_errors_name_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "dev.jsonl"
    path.write_text(json.dumps({"text": "<e1>a</e1> and b", "label": "effect"}) + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"dev.jsonl:1: expected 2 entity markers"):
        ENTRY.read_file(path, "x/")


def test_min_masks_is_set_in_the_entry(sample_dir: Path) -> None:
    strict = replace(get_task("GAD"), min_masks=3)
    with pytest.raises(DataFormatError, match="at least 3 entity masks"):
        strict.load(sample_dir / "GAD", "train")


# ---------------------------------------------------------------- the headline metric, per entry


def _i2b2_records(task: Task) -> list[dict[str, Any]]:
    gold = ["TrIP", "TrAP", "No Relations", "No Relations", "PIP", "TeRP"]
    pred = ["TrIP", "TrWP", "No Relations", "TrAP", "PIP", None]
    return [
        {"source": task.name, "gold": g, "prediction": p, "group": str(i), "well_formed": p is not None}
        for i, (g, p) in enumerate(zip(gold, pred))
    ]


def test_headline_is_chosen_per_entry_and_scoring_reports_it() -> None:
    blurb = replace(get_task("i2b2-2010"), headline="micro_f1_positive")
    default, _ = score_predictions(_i2b2_records(get_task("i2b2-2010")), TASKS, samples=20, seed=0)
    chosen, rows = score_predictions(_i2b2_records(blurb), {blurb.name: blurb}, samples=20, seed=0)
    assert default["i2b2-2010"]["headline"] == "micro_f1"
    entry = chosen["i2b2-2010"]
    assert entry["headline"] == "micro_f1_positive" and entry["value"] == entry["metrics"]["micro_f1_positive"]
    assert entry["metrics"]["micro_f1"] == default["i2b2-2010"]["metrics"]["micro_f1"]
    assert [entry["ci_low"], entry["ci_high"]] == entry["intervals"]["micro_f1_positive"]
    assert rows["i2b2-2010"].shape == (6, 3)


def test_a_headline_without_per_row_statistics_is_refused_by_name() -> None:
    macro = replace(get_task("GAD"), headline="macro_f1")
    with pytest.raises(ValueError, match=r"GAD: headline 'macro_f1' is not one of this task's metrics \['accuracy', 'f1'\]"):
        macro.score(["Association"], ["Association"], ["a"])


# ---------------------------------------------------------------- the checklist every registered source passes


@pytest.mark.parametrize("name", task_names())
def test_every_registered_source_passes_the_checklist(name: str) -> None:
    """A sample folder with its README row, readable splits, and a headline its scoring gives."""
    assert checklist(TASKS[name]) == []


def test_checklist_names_a_missing_sample() -> None:
    with registered(replace(get_task("GAD"), name="NewSet", dirnames=("NewSet",))) as task:
        assert checklist(task) == ["NewSet: no data/sample/NewSet/ (every source needs a sample)"]


def test_checklist_names_a_missing_readme_row_and_unreadable_splits(sample_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "data" / "sample").mkdir(parents=True)
    shutil.copy(sample_dir / "README.md", tmp_path / "data" / "sample" / "README.md")
    shutil.copytree(sample_dir / "GAD", tmp_path / "data" / "sample" / "NewSet")
    (tmp_path / "data" / "sample" / "NewSet" / "test.tsv").unlink()
    task = replace(get_task("GAD"), name="NewSet", dirnames=("NewSet",))
    problems = checklist(task, tmp_path)
    assert problems[0] == "NewSet: no row for `NewSet/` in data/sample/README.md"
    assert [p.split(" does not read")[0] for p in problems[1:]] == [
        "NewSet: devel split of data/sample/NewSet/",
        "NewSet: test split of data/sample/NewSet/",
    ]
