"""Proof on real data that the LLM pipe is correct: the tiny model memorises a few dozen real rows per source, and the
real generation, parsing and scoring path gives every one of them back well formed, with every headline metric >= 0.9.

A model this small cannot learn the tasks from scratch (see README), but it can learn these rows by heart; if it then
scored badly, something between the template, the loss mask, eos, the token budgets, the parsers and the metrics would
be wrong. Training rows are evaluated here, and only here, on purpose.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict

from medtune_utils.assemble import run_assembly
from medtune_utils.config import load_profile
from medtune_utils.evaluate import evaluate
from medtune_utils.run import Run
from medtune_utils.train import train

ROWS = 24
SOURCES = ("NCBI-disease", "GAD", "HoC")
OVERRIDES = {
    "data.sources": list(SOURCES),
    "data.train_rows": {"default": 300},
    "data.validation_rows": {"default": 2},
    "data.ner_format": "entities",
    "train.max_steps": 600,
    "train.learning_rate": 3.0e-3,
    "train.lr_scheduler_type": "cosine",
    "train.warmup_ratio": 0.03,
    "train.per_device_train_batch_size": 8,
    "train.logging_steps": 50,
    "train.save_steps": 600,
    "train.eval_rows": None,
    "eval.models": ["tuned"],
    "eval.rows_per_source": None,
    "eval.bootstrap_samples": 20,
}


def memorisation_rows(train_rows: Dataset) -> Dataset:
    """`ROWS` short rows per source: NCBI-disease sentences naming a disease, both GAD labels, HoC with and without labels."""
    chosen: list[int] = []
    for source in SOURCES:
        rows = [(len(r["input"]), i, r["output"]) for i, r in enumerate(train_rows) if r["source"] == source]
        rows.sort()
        if source == "NCBI-disease":
            pick = [i for _, i, out in rows if out != "None"][:ROWS]
        else:
            groups: dict[bool, list[int]] = {}
            for _, i, out in rows:
                groups.setdefault(out in {"None", "No association"}, []).append(i)
            pick = groups.get(False, [])[: ROWS * 2 // 3] + groups.get(True, [])[: ROWS - ROWS * 2 // 3]
        assert len(pick) == ROWS, f"{source}: only {len(pick)} usable training rows"
        chosen.extend(pick)
    return train_rows.select(sorted(chosen))


@pytest.mark.slow
def test_the_tiny_model_memorises_real_rows_and_the_pipe_gives_them_back(shared_data: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "memorise"
    profile = load_profile("tiny", {**OVERRIDES, "data.dir": str(shared_data)})
    run_assembly(profile, run_dir)
    run = Run(run_dir)
    rows = memorisation_rows(run.dataset()["train"])
    run.save_data(DatasetDict(train=rows, validation=rows), run.stats(), run.manifest())
    train(profile, run_dir)
    scores = evaluate(profile, run_dir, progress=False)["models"]["tuned"]
    summary = {s: (e["n"], e["malformed_rate"], round(e["value"], 3)) for s, e in scores.items()}
    assert set(scores) == set(SOURCES), summary
    for entry in scores.values():
        assert entry["n"] == ROWS and entry["malformed_rate"] == 0.0, summary
        assert entry["value"] >= 0.9, summary
    predictions = run.predictions(["tuned"])
    assert predictions.well_formed.all() and not predictions.hit_budget.any()
    assert (predictions.prediction.map(repr) == predictions.gold.map(repr)).mean() >= 0.9
