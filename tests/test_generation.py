"""Batched greedy generation equals one-by-one generation, stops where it should, and gets sensible token budgets."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from medtune_utils import modeling
from medtune_utils.assemble import to_row
from medtune_utils.config import TinyModelConfig, load_profile
from medtune_utils.evaluate import budget_reference
from medtune_utils.generation import Generation, batch_order, generate, token_budgets
from medtune_utils.paths import repo_root, shared_data_dir
from medtune_utils.prompts import build_prompt, training_text
from medtune_utils.tasks import get_task

SOURCE = "NCBI-disease"
TASKS = {SOURCE: get_task(SOURCE), "GAD": get_task("GAD")}
SEED = 42


def _ncbi_rows(split: str, ner_format: str = "lines") -> list[dict[str, str]]:
    """Instruction rows of NCBI-disease: the full public data when present, else the committed samples."""
    task = get_task(SOURCE, ner_format)
    folder = shared_data_dir() / SOURCE
    if not folder.is_dir():
        folder = repo_root() / "data" / "sample" / SOURCE
    return [to_row(task, record, SEED, task.resolve_split(split)) for record in task.load(folder, split)]


def _scramble(model: LlamaForCausalLM, seed: int) -> LlamaForCausalLM:
    """Re-draw the weights with a large spread: the default init only ever repeats one token, this one babbles."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" not in name:
                param.normal_(0.0, 0.3, generator=generator)
    return model.eval()


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread: the tiny model gains nothing from more, and loses a lot when the cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def shape() -> TinyModelConfig:
    """The tiny profile's model shape."""
    return load_profile("tiny").model.tiny


@pytest.fixture(scope="module")
def train_rows() -> list[dict[str, str]]:
    """NCBI-disease training rows: tokenizer text and the budgets' reference answers."""
    return _ncbi_rows("train")


@pytest.fixture(scope="module")
def tokenizer(train_rows: list[dict[str, str]], shape: TinyModelConfig) -> PreTrainedTokenizerFast:
    """The tiny tokenizer, as built (right padding: `generate` has to switch to left padding itself)."""
    return modeling.build_tiny_tokenizer([training_text(r) for r in train_rows[:400]], shape.vocab_size)


@pytest.fixture(scope="module")
def model(tokenizer: PreTrainedTokenizerFast, shape: TinyModelConfig) -> LlamaForCausalLM:
    """A random tiny Llama that produces varied tokens."""
    return _scramble(modeling.build_tiny_model(shape, tokenizer, SEED), SEED)


@pytest.fixture(scope="module")
def devel_rows(tokenizer: PreTrainedTokenizerFast) -> list[dict[str, str]]:
    """16 devel rows from the shortest to the longest input (evenly spaced in token length)."""
    rows = sorted(_ncbi_rows("devel"), key=lambda r: (len(tokenizer(r["input"])["input_ids"]), r["id"]))
    if len(rows) < 16:
        pytest.skip(
            f"only {len(rows)} NCBI-disease devel rows in data/sample; the 16 this needs come with the public data "
            f"(set MEDTUNE_SHARED_DATA or place it in ../shared/data)"
        )
    return [rows[round(i * (len(rows) - 1) / 15)] for i in range(16)]


@pytest.fixture(scope="module")
def prompts(devel_rows: list[dict[str, str]]) -> list[str]:
    """The evaluation prompts of the 16 rows."""
    return [build_prompt(r["instruction"], r["input"]) for r in devel_rows]


@pytest.fixture(scope="module")
def budgets(devel_rows: list[dict[str, str]], train_rows: list[dict[str, str]], tokenizer: PreTrainedTokenizerFast) -> list[int]:
    return token_budgets(devel_rows, train_rows[:500], tokenizer, TASKS, cap=64)


@pytest.fixture(scope="module")
def one_by_one(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, prompts: list[str], budgets: list[int]
) -> list[Generation]:
    return generate(model, tokenizer, prompts, budgets, batch_size=1, progress=False)


def test_prompts_differ_widely_in_length_and_outputs_vary(
    tokenizer: PreTrainedTokenizerFast, prompts: list[str], budgets: list[int], one_by_one: list[Generation]
) -> None:
    lengths = [len(tokenizer(p)["input_ids"]) for p in prompts]
    assert max(lengths) - min(lengths) >= 40, lengths
    assert len(set(budgets)) > 1, budgets
    texts = [g.text for g in one_by_one]
    assert len(set(texts)) >= 12, texts
    assert max(len(set(text)) for text in texts) >= 10, texts


@pytest.mark.parametrize("batch_size", [16, 5])
def test_batched_left_padded_generation_equals_batch_size_one(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    prompts: list[str],
    budgets: list[int],
    one_by_one: list[Generation],
    batch_size: int,
) -> None:
    assert generate(model, tokenizer, prompts, budgets, batch_size=batch_size, progress=False) == one_by_one


def test_the_preallocated_cache_gives_hugging_face_s_growing_cache_results(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, prompts: list[str], budgets: list[int]
) -> None:
    ours = generate(model, tokenizer, prompts, budgets, batch_size=8, progress=False)
    assert ours == generate(model, tokenizer, prompts, budgets, batch_size=8, progress=False, cache_implementation="dynamic")
    beams = generate(model, tokenizer, prompts[:3], 12, batch_size=1, num_beams=2, progress=False)
    assert beams == generate(
        model, tokenizer, prompts[:3], 12, batch_size=1, num_beams=2, progress=False, cache_implementation="dynamic"
    )


def test_generation_is_deterministic(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, prompts: list[str]) -> None:
    first = generate(model, tokenizer, prompts, 24, batch_size=8, progress=False)
    assert generate(model, tokenizer, prompts, 24, batch_size=8, progress=False) == first


def test_a_smaller_budget_gives_a_prefix(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, prompts: list[str]) -> None:
    long = generate(model, tokenizer, prompts[:6], 32, progress=False)
    short = generate(model, tokenizer, prompts[:6], [4, 32, 8, 32, 16, 1], progress=False)
    for a, b in zip(short, long):
        assert b.text.startswith(a.text)
    assert short[1] == long[1] and short[3] == long[3]
    assert short[5].hit_budget and short[0].hit_budget  # cut by their budgets of 1 and 4 tokens, not stopped


def test_ner_budgets_grow_with_the_input_and_stay_under_the_cap(
    devel_rows: list[dict[str, str]], train_rows: list[dict[str, str]], tokenizer: PreTrainedTokenizerFast
) -> None:
    cap = load_profile("tiny").eval.max_new_tokens_cap
    budgets = token_budgets(devel_rows, train_rows[:500], tokenizer, TASKS, cap)
    lengths = [len(tokenizer(r["input"], add_special_tokens=False)["input_ids"]) for r in devel_rows]
    pairs = sorted(zip(lengths, budgets))
    assert pairs[0][1] < pairs[len(pairs) // 2][1] < pairs[-1][1], pairs
    assert all(8 < b <= cap for b in budgets)
    assert budgets[-1] == cap  # the longest NCBI sentence's answer (one line per token) needs more than the cap
    # A line per input token: the budget covers the gold answer, with at most 10% and 8 tokens more than the
    # longest answer the format allows (every token given the same tag).
    for row, budget in zip(devel_rows, budgets):
        gold = len(tokenizer(row["output"], add_special_tokens=False)["input_ids"])
        longest = max(
            len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in TASKS[SOURCE].longest_answers(row["input"])
        )
        assert min(cap, gold) <= budget <= min(cap, math.ceil(1.1 * longest) + 8)


def test_ner_budgets_need_no_reference_rows_and_follow_the_format(tokenizer: PreTrainedTokenizerFast) -> None:
    """The entity-list format allows far shorter answers than a line per token, so its budgets are smaller."""
    row = {"source": SOURCE, "input": "Mutations in BRCA1 cause breast cancer in many families .", "output": "breast cancer"}
    lines = token_budgets([row], [], tokenizer, TASKS, cap=1000)[0]
    entities = token_budgets([row], [], tokenizer, {SOURCE: get_task(SOURCE, "entities")}, cap=1000)[0]
    gold_lines = len(
        tokenizer(TASKS[SOURCE].format_tags(tuple(row["input"].split(" ")), ("O",) * 10), add_special_tokens=False)["input_ids"]
    )
    assert lines >= gold_lines and entities < lines


def test_budgets_of_other_tasks_are_the_longest_reference_answer_and_never_the_row_own_gold(
    tokenizer: PreTrainedTokenizerFast,
) -> None:
    reference = [{"source": "GAD", "input": "x", "output": text} for text in ("Association", "No association")]
    row = {"source": "GAD", "input": "@GENE$ is linked to @DISEASE$.", "output": "Association"}
    longest = max(len(tokenizer(r["output"], add_special_tokens=False)["input_ids"]) for r in reference)
    assert token_budgets([row], reference, tokenizer, TASKS, cap=384) == [math.ceil(1.25 * longest) + 8]
    assert token_budgets([{**row, "output": "word " * 500}], reference, tokenizer, TASKS, cap=384) == [
        math.ceil(1.25 * longest) + 8
    ]
    assert token_budgets([row, {**row, "source": "HoC"}], [], tokenizer, TASKS, cap=50) == [50, 50]


def test_budget_reference_keeps_at_most_1000_seeded_rows_per_source() -> None:
    rows = [{"source": "NCBI-disease", "input": f"s{i}", "output": f"o{i}"} for i in range(2500)]
    rows += [{"source": "GAD", "input": f"g{i}", "output": "Association"} for i in range(30)]
    rows += [{"source": "HoC", "input": f"h{i}", "output": "None"} for i in range(40)]
    random.Random(0).shuffle(rows)
    train = Dataset.from_list(rows)
    reference = budget_reference(train, {SOURCE, "GAD"})
    counts = {s: sum(r["source"] == s for r in reference) for s in (SOURCE, "GAD", "HoC")}
    assert counts == {SOURCE: 1000, "GAD": 30, "HoC": 0}
    assert {r["input"] for r in reference} <= {r["input"] for r in rows}
    assert budget_reference(train, {SOURCE, "GAD"}) == reference
    alone = budget_reference(Dataset.from_list([r for r in rows if r["source"] == SOURCE]), {SOURCE})
    assert {r["input"] for r in alone} == {r["input"] for r in reference if r["source"] == SOURCE}
    assert budget_reference(train, set()) == []


def test_budgets_from_the_full_training_split_read_a_bounded_seeded_sample(
    train_rows: list[dict[str, str]], devel_rows: list[dict[str, str]], tokenizer: PreTrainedTokenizerFast
) -> None:
    train = Dataset.from_list(train_rows)
    started = time.perf_counter()
    reference = budget_reference(train, {SOURCE})
    budgets = token_budgets(devel_rows, reference, tokenizer, TASKS, cap=384)
    assert time.perf_counter() - started < 10
    assert len(reference) == min(1000, len(train_rows))
    assert reference == budget_reference(train, {SOURCE})
    assert len(budgets) == len(devel_rows)


@pytest.fixture(scope="module")
def scripted(tokenizer: PreTrainedTokenizerFast, shape: TinyModelConfig) -> tuple[LlamaForCausalLM, list[str], list[str]]:
    """A tiny model that has memorised two continuations: an answer then a new `###` block, and an answer then eos."""
    prompts = [build_prompt("Tag each token.", "Tay - Sachs disease ."), build_prompt("Tag each token.", "No cancer here .")]
    texts = [
        prompts[0] + "disease : B\n\n### Instruction:\nTag each token again.\n\n### Response:\nmore",
        prompts[1] + "cancer : O" + tokenizer.eos_token + "after the end of the answer",
    ]
    model = modeling.build_tiny_model(shape, tokenizer, SEED)
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(100):
        loss = model(**batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return model, prompts, ["disease : B", "cancer : O"]


def test_generation_stops_before_the_next_header_and_at_eos(
    scripted: tuple[LlamaForCausalLM, list[str], list[str]], tokenizer: PreTrainedTokenizerFast
) -> None:
    model, prompts, answers = scripted
    unstopped = generate(model, tokenizer, prompts, 40, stop_strings=None, progress=False)
    assert "### Instruction" in unstopped[0].text, "the model must really go on to a new block for this test to mean anything"
    for batch_size in (1, 2):
        generations = generate(model, tokenizer, prompts, 40, batch_size=batch_size, progress=False)
        assert not any(g.hit_budget for g in generations)  # one stopped at the next header, the other at eos
        texts = [g.text for g in generations]
        assert "###" not in texts[0] and texts[0].strip() == answers[0]
        assert texts[1] == answers[1]
        assert "after the end" not in texts[1] and tokenizer.eos_token not in texts[1]


def test_progress_bar_disabled_prints_nothing_and_changes_nothing(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, prompts: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    quiet = generate(model, tokenizer, prompts[:3], 8, progress=False)
    assert capsys.readouterr().err == ""
    loud = generate(model, tokenizer, prompts[:3], 8, progress=True, desc="tiny-check")
    assert "tiny-check" in capsys.readouterr().err
    assert quiet == loud
    assert generate(model, tokenizer, [], [], progress=False) == []
    assert not model.training


def test_budgets_must_match_the_prompts(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, prompts: list[str]) -> None:
    with pytest.raises(ValueError, match="2 budgets for 3 prompts"):
        generate(model, tokenizer, prompts[:3], [8, 8], progress=False)


def test_training_mode_is_restored(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, prompts: list[str]) -> None:
    model.train()
    try:
        generate(model, tokenizer, prompts[:2], 4, progress=False)
        assert model.training
    finally:
        model.eval()


def test_rows_come_from_real_devel_data(devel_rows: list[dict[str, str]]) -> None:
    assert all(r["source"] == SOURCE and "/devel/" in r["id"] for r in devel_rows)


def test_a_batch_ends_once_every_row_has_stopped_or_spent_its_own_budget(
    scripted: tuple[LlamaForCausalLM, list[str], list[str]], tokenizer: PreTrainedTokenizerFast
) -> None:
    """The first row runs on past its answer (no stop string) but has a budget of 3; the second stops at eos."""
    model, prompts, answers = scripted
    steps = []
    hook = model.register_forward_pre_hook(lambda module, args: steps.append(1))
    try:
        batched = generate(model, tokenizer, prompts, [3, 40], batch_size=2, stop_strings=None, progress=False)
        batch_steps = len(steps)
    finally:
        hook.remove()
    assert batched == generate(model, tokenizer, prompts, [3, 40], batch_size=1, stop_strings=None, progress=False)
    assert batched[0].hit_budget and not batched[1].hit_budget and batched[1].text == answers[1]
    answer_tokens = len(tokenizer(answers[1], add_special_tokens=False)["input_ids"])
    assert batch_steps <= answer_tokens + 2 < 40  # the prompt, the answer and its eos: not the larger budget of 40


def test_batches_are_grouped_by_budget_then_source_then_prompt_length() -> None:
    lengths = [50, 10, 30, 20, 40, 60]
    budgets = [8, 100, 8, 100, 8, 8]
    sources = ["GAD", "NCBI", "HoC", "NCBI", "GAD", "HoC"]
    assert batch_order(lengths, budgets, sources) == [3, 1, 0, 4, 5, 2]
    assert batch_order(lengths, budgets) == [3, 1, 5, 0, 4, 2]


@pytest.mark.parametrize("ner_format", ["lines", "entities"])
def test_no_gold_answer_of_real_devel_rows_exceeds_its_budget(ner_format: str, tokenizer: PreTrainedTokenizerFast) -> None:
    """Every NCBI-disease devel row (the full public set when present); budgets read only training rows."""
    tasks = {SOURCE: get_task(SOURCE, ner_format)}
    devel = _ncbi_rows("devel", ner_format)
    reference = budget_reference(Dataset.from_list(_ncbi_rows("train", ner_format)), {SOURCE})
    budgets = token_budgets(devel, reference, tokenizer, tasks, cap=100_000)
    gold = modeling.token_counts(tokenizer, [r["output"] for r in devel])
    assert all(g <= b for g, b in zip(gold, budgets)), max(g - b for g, b in zip(gold, budgets))
    format_bound = token_budgets(devel, [], tokenizer, tasks, cap=100_000)
    if ner_format == "lines":
        assert budgets == format_bound  # the format's own bound is tight: an all-O answer is a real answer
    else:  # every token a mention is far from what the training answers show
        assert sum(budgets) < 0.8 * sum(format_bound), (sum(budgets), sum(format_bound))  # 0.74 measured


def test_free_text_budgets_leave_out_the_longest_outliers_but_cover_real_answers(
    shared_data: Path, tokenizer: PreTrainedTokenizerFast
) -> None:
    task = get_task("ChatDoctor")
    folder = task.find_folder(shared_data)
    train = [to_row(task, r, SEED, "train") for r in task.load(folder, "train")]
    held_out = [to_row(task, r, SEED, "devel") for r in task.load(folder, "devel")]
    reference = budget_reference(Dataset.from_list(train), {"ChatDoctor"})
    budgets = token_budgets(held_out, reference, tokenizer, {"ChatDoctor": task}, cap=100_000)
    longest = max(modeling.token_counts(tokenizer, [r["output"] for r in reference]))
    assert len(set(budgets)) == 1 and budgets[0] < math.ceil(1.25 * longest) + 8
    gold = modeling.token_counts(tokenizer, [r["output"] for r in held_out])
    assert sum(g > budgets[0] for g in gold) <= 0.01 * len(gold), (budgets[0], sorted(gold)[-5:])
