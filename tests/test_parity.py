"""Paper parity: the authors' prompt template, their input layouts and label spellings, and the released data's prompts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import Dataset
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from medtune_utils.assemble import assemble
from medtune_utils.config import ConfigError, load_profile, save_profile
from medtune_utils.evaluate import build_prompts
from medtune_utils.prompts import TEMPLATES, build_prompt, get_template, to_prompt_completion, trainable_templates
from medtune_utils.tasks import get_task
from medtune_utils.train import build_trainer

ROW = {"instruction": "Tag the diseases.", "input": "Tay - Sachs disease", "output": "Tay : B\n- : I\nSachs : I\ndisease : I"}
SOURCES = ["NCBI-disease", "HoC", "MedNLI", "GAD", "ChatDoctor"]


def _authors_prompt(instruction: str, input_text: str) -> str:
    """The authors' training layout (Finetuning/training.py) up to and including `### Output:`, written out by hand."""
    return "### Instruction: " + instruction + "\n ### Input: " + input_text + "\n ### Output:"


@pytest.fixture(scope="module")
def authors_rows(sample_dir: Path) -> list[dict[str, Any]]:
    """Training rows of five sample sources (NER, multi-label, NLI, RE, free text) assembled for the `authors` template."""
    profile = load_profile("tiny", {"data.dir": str(sample_dir), "data.sources": SOURCES, "data.template": "authors"})
    return assemble(profile.data, profile.seed).dataset["train"].to_list()


def test_authors_template_is_the_authors_layout_with_their_spacing() -> None:
    authors = get_template("authors")
    assert authors.prompt(ROW["instruction"], ROW["input"]) == _authors_prompt(ROW["instruction"], ROW["input"])
    assert authors.completion("Neutral") == " Neutral \n"  # then TRL appends eos, as the authors' text does
    assert authors.text({"instruction": "I", "input": "", "output": "o"}) == "### Instruction: I\n ### Input: \n ### Output: o \n"
    inference = get_template("authors-inference").prompt("I", "x")
    assert inference == "### Instruction: I\n ### Input: x\n ### Output:\n"  # deepspeed-inference.py
    assert (
        get_template("authors-base").prompt("I", "x") == "### Instruction:\nI\n\n### Input:\nx\n\n### Output:\n"
    )  # evaluation.py
    assert build_prompt("I", "x").endswith("### Input:\nx\n\n### Response:\n")  # ours is unchanged
    assert trainable_templates() == ["medtune", "authors"]


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_training_text_cut_at_the_prompt_gives_back_every_rows_answer(template: str, authors_rows: list[dict[str, Any]]) -> None:
    """Round trip: the text after the evaluation prefix parses to the row's gold, well formed, for every task family."""
    chosen = get_template(template)
    assert {r["source"] for r in authors_rows} == set(SOURCES)
    for row in authors_rows:
        prompt = chosen.prompt(row["instruction"], row["input"])
        text = chosen.text(row)
        assert text.startswith(prompt)
        task = get_task(row["source"], template=template)
        parsed = task.parse(text[len(prompt) :], row["input"])
        assert parsed.well_formed, (template, row["source"])
        assert parsed.value == task.gold(row["output"], row["input"])


@pytest.mark.parametrize("template", ["authors", "medtune"])
def test_completion_mask_starts_exactly_at_the_answer_with_the_llama2_tokenizer(
    template: str, authors_rows: list[dict[str, Any]], llama2_tokenizer: PreTrainedTokenizerBase, tmp_path: Path
) -> None:
    """TRL's own tokenisation (through `train.build_trainer`): the prompt's tokens are a prefix, the loss starts at the answer."""
    tok = llama2_tokenizer
    profile = load_profile(
        "tiny", {"data.template": template, "train.max_length": 4096, "train.packing": False, "train.eval_rows": None}
    )
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    trainer = build_trainer(profile, LlamaForCausalLM(config), tok, Dataset.from_list(authors_rows), tmp_path / "out")
    chosen = get_template(template)
    for row, example in zip(authors_rows, trainer.train_dataset):
        prompt_ids = tok(chosen.prompt(row["instruction"], row["input"]))["input_ids"]
        ids, labels = example["input_ids"], example["labels"]  # TRL folds the completion mask into the labels
        assert ids[: len(prompt_ids)] == prompt_ids
        assert labels == [-100] * len(prompt_ids) + ids[len(prompt_ids) :]
        assert ids[-1] == tok.eos_token_id
        assert tok.decode(ids[len(prompt_ids) :], skip_special_tokens=True).strip() == row["output"]
        if template == "authors":  # token for token what the authors' formatting function fed SFTTrainer
            authors_text = chosen.prompt(row["instruction"], row["input"]) + f" {row['output']} \n{tok.eos_token}"
            assert ids == tok(authors_text)["input_ids"]


def _released_table(rows: list[dict[str, str]]) -> pa.Table:
    return pa.table({name: [r[name] for r in rows] for name in ("instruction", "input", "output", "source")})


RELEASED_TRAIN = [
    {**ROW, "source": "NCBI-disease"},
    {
        "instruction": "Assign the hallmarks of cancer that apply:\nActivating invasion & metastasis (IM)\nNone",
        "input": "Cells migrate through the membrane.",
        "output": "Activating invasion & metastasis (IM), Genome instability & mutation (GI)",
        "source": "hoc",
    },
    {
        "instruction": "Relate the two sentences.",
        "input": "Sentence 1: He is febrile.\nSentence 2: He has a fever.",
        "output": "Entailment",
        "source": "MedNLI",
    },
    {"instruction": "Answer the patient.  ", "input": "", "output": "Rest, fluids and paracetamol.\n", "source": "ChatDoctor"},
]
RELEASED_VALIDATION = [
    {
        "instruction": "Tag the diseases.",
        "input": "No disease here",
        "output": "No : O\ndisease : O\nhere : O",
        "source": "NCBI-disease",
    }
]


def test_released_rows_with_the_authors_template_reproduce_the_released_prompts_exactly(tmp_path: Path) -> None:
    """`data.released` + `authors`: rows as released; prompts and training text as the authors built them."""
    folder = tmp_path / "released" / "data"
    folder.mkdir(parents=True)
    pq.write_table(_released_table(RELEASED_TRAIN), folder / "train-00000-of-00001.parquet")
    pq.write_table(_released_table(RELEASED_VALIDATION), folder / "validation-00000-of-00001.parquet")
    profile = load_profile("tiny", {"data.released": str(tmp_path / "released"), "data.template": "authors"})
    dataset = assemble(profile.data, profile.seed).dataset
    for split, released in (("train", RELEASED_TRAIN), ("validation", RELEASED_VALIDATION)):
        rows = sorted(dataset[split].to_list(), key=lambda r: r["instruction"] + r["input"])
        released = sorted(released, key=lambda r: r["instruction"] + r["input"])
        assert [(r["instruction"], r["input"], r["output"]) for r in rows] == [
            (r["instruction"], r["input"], r["output"]) for r in released
        ]
        expected = [_authors_prompt(r["instruction"], r["input"]) for r in released]
        assert build_prompts(rows, "authors") == expected  # what evaluation sends the model
        for row, prompt in zip(rows, expected):
            pair = to_prompt_completion(row, "authors")  # what training gives TRL
            assert pair["prompt"] == prompt
            assert pair["prompt"] + pair["completion"] + "</s>" == f"{prompt} {row['output']} \n</s>"
            parsed = get_task(row["source"], template="authors").parse(pair["completion"], row["input"])
            assert parsed.well_formed, row["source"]  # the released HoC spelling included


def test_mednli_inputs_follow_the_authors_layout_under_authors(sample_dir: Path) -> None:
    record = get_task("MedNLI").load(sample_dir / "MedNLI", "train")[0]
    ours, _ = get_task("MedNLI").to_example(record)
    theirs, label = get_task("MedNLI", template="authors").to_example(record)
    assert ours == f"Premise: {record.premise}\nHypothesis: {record.hypothesis}"
    assert theirs == f"Sentence 1: {record.premise}\nSentence 2: {record.hypothesis}"
    assert label == record.label


@pytest.mark.parametrize(
    ("answer", "template", "expected", "well_formed"),
    [
        ("Activating invasion & metastasis (IM), Genome instability & mutation (GI)", "authors", ("IM", "GI"), True),
        ("Genome instability & mutation (GI), Sustaining proliferative signaling (PS)", "authors", ("PS", "GI"), True),
        ("Genomic instability and mutation (GI)", "authors", ("GI",), True),
        ("Activating invasion & metastasis (IM), Activating invasion & metastasis (IM)", "authors", ("IM",), False),
        ("Activating invasion & metastasis (IM)", "medtune", ("IM",), False),
        ("None", "authors", (), True),
        ("", "authors", None, False),
    ],
)
def test_hoc_answers_in_the_authors_spelling(
    answer: str, template: str, expected: tuple[str, ...] | None, well_formed: bool
) -> None:
    """Under `authors` their spellings (with `&`, `Genome instability`) are well formed, in any order; ours stay valid."""
    task = get_task("HoC", template=template)
    by_code = {label.rsplit("(", 1)[1].rstrip(")"): label for label in task.labels}
    parsed = task.parse(answer, "A sentence.")
    assert parsed.value == (
        None if expected is None else tuple(label for label in task.labels if label in {by_code[c] for c in expected})
    )
    assert parsed.well_formed is well_formed


def test_paper_profiles_train_with_authors_and_the_template_is_recorded(tmp_path: Path) -> None:
    for name in ("llama2-7b", "llama2-13b"):
        assert load_profile(name).data.template == "authors"
    assert load_profile("tiny").data.template == "medtune"
    profile = load_profile("released")
    assert profile.eval.require_gpu and profile.data.template == "authors"
    assert [m["name"] for m in profile.eval.models] == ["nlpie/Llama2-MedTuned-7b", "nlpie/Llama2-MedTuned-13b"]
    save_profile(profile, tmp_path / "config.yaml")
    assert load_profile(tmp_path / "config.yaml").data.template == "authors"
    with pytest.raises(ConfigError, match="data.template must be one of"):
        load_profile("tiny", {"data.template": "authors-inference"})  # evaluation only
    with pytest.raises(ConfigError, match="eval.models: .*unknown template 'alpaca'"):
        load_profile("tiny", {"eval.models": [{"name": "tuned", "template": "alpaca"}]})
