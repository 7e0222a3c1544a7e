"""The real Llama-2 tokenizer (../shared/tokenizers/llama-2) where the tiny BPE stood in for it.

SentencePiece is not byte-level BPE: a word gets a `▁` prefix at the start of a text but not after a newline, `:` and
newlines are tokens of their own, and the tokenizer has no pad token. These tests check, in its real vocabulary,
the prompt/answer boundary and the loss mask as TRL tokenizes the prompt and completion columns, eos and pad, the
NER generation budgets on every real devel row, the token counts in stats.csv, and a pipeline run end to end.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from datasets import Dataset, concatenate_datasets
from transformers import PreTrainedTokenizerBase

from medtune_utils import modeling
from medtune_utils import train as T
from medtune_utils.assemble import assemble, run_assembly
from medtune_utils.config import DataConfig, load_profile
from medtune_utils.evaluate import budget_reference, eval_dtype
from medtune_utils.generation import token_budgets
from medtune_utils.prompts import get_template, trainable_templates
from medtune_utils.tasks import get_task

PROFILE = "tiny-llama2-tokenizer"
PAPER = load_profile("llama2-7b")  # its template and generation cap
PUBLIC = ["NCBI-disease", "GAD", "HoC", "PubMedQA", "ChatDoctor"]
CREDENTIALED = ["MedNLI", "i2b2-2010", "i2b2-2012"]
NER_DEVEL = ["NCBI-disease", "BC5CDR-disease", "BC5CDR-chem"]
NEWLINE = "<0x0A>"  # SentencePiece's byte-fallback piece for "\n"


@pytest.fixture(scope="module")
def base(llama2_tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model of the profile, built around the real tokenizer (no text needed: nothing is trained)."""
    return modeling.create_tiny_base(load_profile(PROFILE).model.tiny, [], tmp_path_factory.mktemp("llama2-base"), seed=0)


def _rows(data_dir: Path, sample_dir: Path, template: str, ner_format: str) -> Dataset:
    """Rows of every task family in `template`'s layout: the public data (or samples) and the credentialed samples."""
    public = DataConfig(dir=str(data_dir), sources=PUBLIC, train_rows={"default": 6}, ner_format=ner_format, template=template)
    credentialed = DataConfig(
        dir=str(sample_dir), sources=CREDENTIALED, credentialed_dir=str(sample_dir), ner_format=ner_format, template=template
    )
    return concatenate_datasets([assemble(public, seed=3).dataset["train"], assemble(credentialed, seed=3).dataset["train"]])


def _in_context(tokenizer: PreTrainedTokenizerBase, prompts: list[str], answers: list[str]) -> list[int]:
    """Tokens each answer takes after its prompt (what a model generates, and what TRL labels, before eos)."""
    alone = tokenizer(prompts)["input_ids"]
    joined = tokenizer([p + a for p, a in zip(prompts, answers)])["input_ids"]
    return [len(j) - len(p) for p, j in zip(alone, joined)]


def test_special_tokens_and_padding_sides(llama2_tokenizer: PreTrainedTokenizerBase, llama2_tokenizer_dir: Path) -> None:
    tok = llama2_tokenizer
    assert (tok.bos_token_id, tok.eos_token_id, tok.unk_token_id, tok.pad_token_id) == (1, 2, 0, 0)
    assert len(tok) == 32000  # pad is unk: no token added, no embedding to resize
    ids = tok("BRCA1 : O")["input_ids"]
    assert ids[0] == tok.bos_token_id and tok.eos_token_id not in ids  # bos added; TRL appends eos to completions
    batch = ["BRCA1", "BRCA1 c.68_69delAG raises breast-cancer risk"]
    right = tok(batch, padding=True)["input_ids"][0]
    assert tok.padding_side == "right" and right[0] == 1 and right[-1] == 0
    left = modeling.load_tokenizer(str(llama2_tokenizer_dir), padding_side="left")
    assert left.padding_side == "left" and left(batch, padding=True)["input_ids"][0][0] == 0


@pytest.mark.parametrize("ner_format", ["lines", "entities"])
@pytest.mark.parametrize("template", trainable_templates())
def test_trl_masks_exactly_the_prompt_and_learns_the_answer_and_one_eos(
    template: str,
    ner_format: str,
    base: Path,
    llama2_tokenizer: PreTrainedTokenizerBase,
    train_data_dir: Path,
    sample_dir: Path,
    tmp_path: Path,
) -> None:
    tok = llama2_tokenizer
    rows = _rows(train_data_dir, sample_dir, template, ner_format)
    assert set(rows["task"]) == {"ner", "re", "nli", "cls", "qa"}
    overrides = {"data.template": template, "data.ner_format": ner_format, "train.max_length": 4096, "train.eval_rows": None}
    profile = load_profile(PROFILE, overrides)
    model = modeling.load_model(str(base), profile.model)
    trainer = T.build_trainer(profile, model, tok, rows, tmp_path / "out")
    prepared = trainer.train_dataset
    assert len(prepared) == len(rows)  # nothing truncated, nothing dropped
    chosen = get_template(template)
    for i, row in enumerate(rows):
        prompt, completion = chosen.prompt(row["instruction"], row["input"]), chosen.completion(row["output"])
        ids, labels = prepared[i]["input_ids"], prepared[i]["labels"]
        prompt_ids = tok(prompt)["input_ids"]
        n = len(prompt_ids)
        # No piece merges across the boundary: the prompt tokenizes the same alone (at inference) and with its answer.
        assert ids[:n] == prompt_ids, row["id"]
        assert labels[:n] == [-100] * n and labels[n:] == ids[n:], row["id"]
        assert ids[-1] == tok.eos_token_id and ids.count(tok.eos_token_id) == 1, row["id"]
        assert tok.decode(ids[:n], skip_special_tokens=True) == prompt, row["id"]
        assert tok.decode(ids, skip_special_tokens=True) == prompt + completion, row["id"]
        # The answer is labelled from its first piece: the prompt ends at `:` (authors) or at the newline after it.
        last = tok.convert_ids_to_tokens(prompt_ids[-1])
        assert last == (":" if chosen.prompt("x", "y").endswith(":") else NEWLINE), row["id"]

    # The collator pads with unk (id 0) on the right, never learns padding, always learns the eos.
    batch = trainer.data_collator([prepared[i] for i in range(len(prepared))])
    for i in range(len(prepared)):
        length = len(prepared[i]["input_ids"])
        assert (batch["input_ids"][i, length:] == 0).all() and (batch["labels"][i, length:] == -100).all()
        assert batch["labels"][i, length - 1] == tok.eos_token_id


def test_the_answer_starts_without_the_word_prefix_it_has_alone(llama2_tokenizer: PreTrainedTokenizerBase) -> None:
    """Why answers are counted after their prompt: alone, a text's first word gets `▁` and may split differently."""
    tok = llama2_tokenizer
    prompt = get_template("medtune").prompt("Tag each token.", "risk factors")
    assert tok.convert_ids_to_tokens(tok(prompt + "risk : O")["input_ids"][-5:]) == [NEWLINE, "ris", "k", "▁:", "▁O"]
    assert tok.convert_ids_to_tokens(tok("risk : O", add_special_tokens=False)["input_ids"]) == ["▁risk", "▁:", "▁O"]
    assert _in_context(tok, [prompt], ["risk : O"]) == [4]


@pytest.fixture(scope="module")
def ner_devel(shared_data: Path) -> dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """Per NER format, in the paper profile's template: devel rows of NCBI-disease, BC5CDR-disease and BC5CDR-chem where
    budgets are tightest (per source the 150 longest inputs, the 150 longest answers for their input, 50 others), and
    the budgets' reference rows."""
    out = {}
    for ner_format in ("lines", "entities"):
        config = DataConfig(dir=str(shared_data), sources=NER_DEVEL, ner_format=ner_format, template=PAPER.data.template)
        data = assemble(config, seed=42).dataset
        rows: list[dict[str, Any]] = []
        for source in NER_DEVEL:
            part = [r for r in data["validation"] if r["source"] == source]
            longest = sorted(part, key=lambda r: (-len(r["input"]), r["id"]))[:150]
            densest = sorted(part, key=lambda r: (-len(r["output"]) / len(r["input"]), r["id"]))[:150]
            chosen = {r["id"]: r for r in longest + densest}
            others = [r for r in part if r["id"] not in chosen]
            rows += [*chosen.values(), *random.Random(source).sample(others, 50)]
        out[ner_format] = (rows, budget_reference(data["train"], set(NER_DEVEL)))
    return out


@pytest.mark.parametrize("ner_format", ["lines", "entities"])
def test_ner_budgets_never_cut_a_gold_answer_of_a_real_devel_row(
    ner_format: str, ner_devel: dict[str, Any], llama2_tokenizer: PreTrainedTokenizerBase
) -> None:
    tok = llama2_tokenizer
    rows, reference = ner_devel[ner_format]
    tasks = {source: get_task(source, ner_format, PAPER.data.template) for source in NER_DEVEL}
    budgets = token_budgets(rows, reference, tok, tasks, PAPER.eval.max_new_tokens_cap)
    template = get_template(PAPER.data.template)
    prompts = [template.prompt(r["instruction"], r["input"]) for r in rows]
    # The answer is whole once its text is out (the template's trailing whitespace and eos may follow or not).
    needed = _in_context(tok, prompts, [template.completion(r["output"]).rstrip() for r in rows])
    cut = [(r["id"], n, b) for r, n, b in zip(rows, needed, budgets) if n > b]
    assert not cut, f"{len(cut)} gold answers longer than their budget (id, tokens, budget), e.g. {cut[:5]}"
    if ner_format == "lines":  # the format fixes the answer: even the longest well-formed one fits, and little more
        longest = [
            max(
                _in_context(
                    tok, [p] * 3, [template.completion(a).rstrip() for a in tasks[r["source"]].longest_answers(r["input"])]
                )
            )
            for p, r in zip(prompts, rows)
        ]
        assert all(n <= b for n, b in zip(longest, budgets))
        assert sum(budgets) < 1.5 * sum(needed)


def test_stats_csv_counts_llama2_tokens(llama2_tokenizer: PreTrainedTokenizerBase, train_data_dir: Path, tmp_path: Path) -> None:
    tok = llama2_tokenizer
    overrides = {
        "data.dir": str(train_data_dir),
        "data.sources": ["NCBI-disease", "GAD", "ChatDoctor"],
        "data.train_rows": {"default": 40},
    }
    profile = load_profile(PROFILE, overrides)
    assembly = run_assembly(profile, tmp_path / "run")
    stats = pd.read_csv(tmp_path / "run" / "data" / "stats.csv").set_index(["source", "split"])
    template = get_template(profile.data.template)
    for split, part in assembly.dataset.items():
        for source in set(part["source"]):
            rows = part.filter(lambda r, s=source: r["source"] == s)
            prompts = [template.prompt(i, x) for i, x in zip(rows["instruction"], rows["input"])]
            entry = stats.loc[(source, split)]
            # Prompts with bos: exactly the length TRL trains on and generation starts from.
            assert entry["prompt_tokens"] == pytest.approx(sum(len(ids) for ids in tok(prompts)["input_ids"]) / len(rows))
            # Answers are counted alone, where their first word gets SentencePiece's `▁`; after the prompt it does not,
            # and may split otherwise: the trained length differs by a token or two per answer.
            alone = tok(list(rows["output"]), add_special_tokens=False)["input_ids"]
            assert entry["completion_tokens"] == pytest.approx(sum(len(ids) for ids in alone) / len(rows)), (source, split)
            trained = _in_context(tok, prompts, [template.completion(o) for o in rows["output"]])
            assert abs(sum(trained) - sum(len(ids) for ids in alone)) <= 2 * len(rows), (source, split)


def test_tiny_tokenizer_folder_and_vocab_size_are_checked(llama2_tokenizer_dir: Path, tmp_path: Path) -> None:
    shape = load_profile(PROFILE, {"model.tiny.vocab_size": 1024}).model.tiny
    with pytest.raises(ValueError, match=r"model\.tiny\.vocab_size is 1024 but the tokenizer .* has 32000 tokens"):
        modeling.tiny_tokenizer(shape, [])
    shape = load_profile(PROFILE, {"model.tiny.tokenizer": str(tmp_path / "none")}).model.tiny
    with pytest.raises(FileNotFoundError, match="model.tiny.tokenizer: no tokenizer folder at .*none"):
        modeling.tiny_tokenizer(shape, [])


@pytest.mark.slow
def test_pipeline_assembles_trains_and_evaluates_with_the_real_tokenizer(
    llama2_tokenizer: PreTrainedTokenizerBase, llama2_tokenizer_dir: Path, tmp_path: Path
) -> None:
    """Notebooks 01-03 of the profile, as small as they go (notebook 04 reads only their outputs; the CLI runs all four)."""
    from medtune_utils.pipeline import NOTEBOOKS, run_pipeline

    overrides = {
        "data.sources": ["NCBI-disease", "GAD"],
        "train.max_steps": 2,
        "train.save_steps": 2,
        "train.eval_rows": None,
        "eval.rows_per_source": 2,
        "eval.bootstrap_samples": 20,
        "eval.max_new_tokens_cap": 64,
    }
    run_dir = run_pipeline(PROFILE, run_dir=str(tmp_path / "run"), overrides=overrides, notebooks=NOTEBOOKS[:3], progress=False)
    config = (run_dir / "config.yaml").read_text(encoding="utf-8")
    assert "tokenizer: ../shared/tokenizers/llama-2" in config and str(llama2_tokenizer_dir) not in config  # relative
    for folder in ("base-model", "model"):
        saved = modeling.load_tokenizer(str(run_dir / folder))
        assert len(saved) == 32000 and saved.get_vocab() == llama2_tokenizer.get_vocab(), folder
        assert json.loads((run_dir / folder / "config.json").read_text())["vocab_size"] == 32000, folder
    stats = pd.read_csv(run_dir / "data" / "stats.csv")
    assert set(stats["source"]) == {"NCBI-disease", "GAD"} and (stats["prompt_tokens"] > 20).all()
    scores = json.loads((run_dir / "scores.json").read_text())
    assert set(scores["models"]) == {"base", "tuned"}
    assert scores["generation"] == {"backend": "hf", "dtype": eval_dtype(load_profile(PROFILE))}  # float32 on CPU
    task = get_task("NCBI-disease")
    for line in (run_dir / "predictions" / "tuned" / "NCBI-disease.jsonl").read_text().splitlines():
        record = json.loads(line)
        answers = llama2_tokenizer(task.longest_answers(record["input"]), add_special_tokens=False)["input_ids"]
        assert record["budget"] >= min(64, max(len(ids) for ids in answers))  # counted in Llama-2 tokens
