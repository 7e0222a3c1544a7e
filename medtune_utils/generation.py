"""Batched greedy decoding: left padding, a KV cache allocated per batch, per-row token budgets, stops at eos and `###`.

The Hugging Face backend runs everywhere; `vllm_backend` serves the same inputs with vLLM on a GPU.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase, StoppingCriteria, StoppingCriteriaList

from .kv_cache import preallocated_cache
from .modeling import token_counts
from .tasks import Task
from .tasks.freetext import FreeTextTask
from .tasks.ner import NerTask

STOP_STRINGS = ("###",)
CACHE_FIRST_TOKENS = 256


@dataclass(frozen=True)
class Generation:
    """A continuation: its text (cut before any stop string), and whether it ran out of budget instead of stopping."""

    text: str
    hit_budget: bool


def token_budgets(
    rows: Sequence[dict[str, str]],
    reference: Sequence[dict[str, str]],
    tokenizer: PreTrainedTokenizerBase,
    tasks: Mapping[str, Task],
    cap: int,
) -> list[int]:
    """`max_new_tokens` per row, capped at `cap`. Pass training rows as `reference`, so no row's own gold answer is used.

    An NER answer's format is fixed by its input, so its budget is the token length of the longest well-formed
    answer (`NerTask.longest_answers`: every token given one tag) plus 10% and 8 tokens. That bound is tight for
    the `lines` format; in the `entities` format it means every token a mention, so with reference rows of the
    source the budget is also held to the line `a + b x input tokens` that lies above every reference answer's
    length with the least mean height (`_envelope`), plus 25% and 8 tokens. Free-text sources get the 99th
    percentile of their reference answers' lengths plus 25% and 8 tokens (the longest answers are outliers);
    other tasks the longest reference answer plus 25% and 8 tokens. Without reference rows a non-NER source
    gets `cap`.
    """
    lengths: dict[str, list[int]] = defaultdict(list)
    for row, n_out in zip(reference, token_counts(tokenizer, [row["output"] for row in reference])):
        lengths[row["source"]].append(n_out)
    envelopes = _entity_envelopes(reference, tokenizer, tasks)
    ner = [k for k, row in enumerate(rows) if isinstance(tasks.get(row["source"]), NerTask)]
    longest = _longest_answer_tokens(tokenizer, [(tasks[rows[k]["source"]], rows[k]["input"]) for k in ner])
    bounded = [k for k in ner if rows[k]["source"] in envelopes]
    inputs = dict(zip(bounded, token_counts(tokenizer, [rows[k]["input"] for k in bounded])))
    format_bounds = dict(zip(ner, longest))
    budgets = []
    for k, row in enumerate(rows):
        task, source = tasks.get(row["source"]), row["source"]
        if k in format_bounds:
            need = math.ceil(1.1 * format_bounds[k]) + 8
            if k in inputs:
                intercept, slope = envelopes[source]
                need = min(need, math.ceil(1.25 * (intercept + slope * inputs[k])) + 8)
        elif lengths[source]:
            longest_seen = _quantile(lengths[source], 0.99) if isinstance(task, FreeTextTask) else max(lengths[source])
            need = math.ceil(1.25 * longest_seen) + 8
        else:
            need = cap
        budgets.append(min(cap, need))
    return budgets


def _longest_answer_tokens(tokenizer: PreTrainedTokenizerBase, items: Sequence[tuple[NerTask, str]]) -> list[int]:
    """Per (task, input): tokens of the task's longest well-formed answer, counted in one batch."""
    answers = [task.longest_answers(input_text) for task, input_text in items]
    counts = iter(token_counts(tokenizer, [answer for group in answers for answer in group]))
    return [max(next(counts) for _ in group) for group in answers]


def _entity_envelopes(
    reference: Sequence[dict[str, str]], tokenizer: PreTrainedTokenizerBase, tasks: Mapping[str, Task]
) -> dict[str, tuple[float, float]]:
    """Per `entities`-format NER source with reference rows: `_envelope` of (input tokens, answer tokens)."""
    rows = [r for r in reference if isinstance(t := tasks.get(r["source"]), NerTask) and t.output_format == "entities"]
    inputs = token_counts(tokenizer, [r["input"] for r in rows])
    outputs = token_counts(tokenizer, [r["output"] for r in rows])
    pairs: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for row, n_in, n_out in zip(rows, inputs, outputs):
        pairs[row["source"]].append((n_in, n_out))
    return {source: _envelope(points) for source, points in pairs.items()}


def _envelope(points: Sequence[tuple[int, int]], steps: int = 20) -> tuple[float, float]:
    """`(a, b)` of the line `y = a + b x` on or above every point with the least mean height over the points' x.

    The slope is searched from 0 to 1 in `steps` steps (an answer listing mentions of the input is at most about
    as long as the input); for each slope the intercept is the smallest that keeps every point under the line.
    """
    mean_x = sum(x for x, _ in points) / len(points)
    lines = []
    for i in range(steps + 1):
        slope = i / steps
        intercept = max(y - slope * x for x, y in points)
        lines.append((intercept + slope * mean_x, intercept, slope))
    _, intercept, slope = min(lines)
    return intercept, slope


def _quantile(values: Sequence[int], q: float) -> int:
    """The smallest value at or above a `q` share of `values` (the maximum for fewer than 1/(1-q) values)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


class RowBudgets(StoppingCriteria):
    """Marks a row done once it has generated its own budget of tokens, so a batch ends when every row is done."""

    def __init__(self, budgets: Sequence[int], prompt_length: int, device: torch.device) -> None:
        self.budgets = torch.tensor(list(budgets), device=device)
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: object) -> torch.BoolTensor:
        return (input_ids.shape[1] - self.prompt_length) >= self.budgets


def batch_order(lengths: Sequence[int], budgets: Sequence[int], groups: Sequence[str] | None = None) -> list[int]:
    """Indices in decoding order: by budget (largest first), then group (source), then prompt length.

    Consecutive rows then share a budget and a source, so a batch seldom waits for one row with a far larger
    budget (the worst-case decode steps are the sum of the batches' largest budgets) and pads little.
    """
    keys = groups if groups is not None else [""] * len(lengths)
    return sorted(range(len(lengths)), key=lambda i: (-budgets[i], keys[i], -lengths[i]))


@torch.inference_mode()
def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    max_new_tokens: Sequence[int] | int,
    batch_size: int = 16,
    num_beams: int = 1,
    stop_strings: Sequence[str] | None = STOP_STRINGS,
    progress: bool = True,
    desc: str = "generating",
    groups: Sequence[str] | None = None,
    cache_implementation: str = "preallocated",
) -> list[Generation]:
    """Greedy (or beam) continuations of `prompts`, in input order, each cut before its first stop string.

    Batches are grouped by budget and `groups` (e.g. each row's source), then prompt length (`batch_order`). A
    greedy row stops at eos, a stop string or its own budget, and a batch ends as soon as all of its rows have
    stopped; each row is cut to its own budget, so the result does not depend on the batch size. Like vLLM,
    the stop string itself is not returned. A row hit its budget when it used every token of it without an eos
    or a stop string. `cache_implementation`: `"preallocated"` (greedy only: `kv_cache.PreallocatedCache`, a
    buffer per batch that doubles when full, no copy per step), or any value Hugging Face takes (`"dynamic"`, its
    default, grows the cache by concatenation; `"static"` attends over the whole buffer); benchmarks/eval_speed.py
    compares them.
    """
    budgets = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    if len(budgets) != len(prompts):
        raise ValueError(f"max_new_tokens has {len(budgets)} budgets for {len(prompts)} prompts")
    if groups is not None and len(groups) != len(prompts):
        raise ValueError(f"groups has {len(groups)} entries for {len(prompts)} prompts")
    stops = list(stop_strings or ())
    encoded = [tokenizer(p)["input_ids"] for p in prompts]
    order = batch_order([len(ids) for ids in encoded], budgets, groups)
    by_index: dict[int, Generation] = {}
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with tqdm(total=len(prompts), desc=desc, unit="ex", disable=not progress) as bar:
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                padded = tokenizer.pad(
                    {"input_ids": [encoded[i] for i in batch]}, padding=True, padding_side="left", return_tensors="pt"
                )
                prompt_length = padded["input_ids"].shape[1]
                row_budgets = [budgets[i] for i in batch]
                own_budgets = num_beams == 1 and len(set(row_budgets)) > 1
                criteria = StoppingCriteriaList([RowBudgets(row_budgets, prompt_length, device)]) if own_budgets else None
                cache = _cache(model, cache_implementation, num_beams, prompt_length, max(row_budgets))
                generated = model.generate(
                    **{k: v.to(device) for k, v in padded.items()},
                    max_new_tokens=max(row_budgets),
                    do_sample=False,
                    num_beams=num_beams,
                    use_cache=True,
                    **cache,
                    stop_strings=stops or None,
                    tokenizer=tokenizer if stops else None,
                    stopping_criteria=criteria,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                )
                new_tokens = generated[:, prompt_length:]
                for row, i in enumerate(batch):
                    by_index[i] = _finish(tokenizer, new_tokens[row, : budgets[i]].tolist(), budgets[i], stops)
                bar.update(len(batch))
    finally:
        model.train(was_training)
    return [by_index[i] for i in range(len(prompts))]


def _cache(model: PreTrainedModel, implementation: str, num_beams: int, prompt_length: int, budget: int) -> dict[str, object]:
    """The cache argument for `model.generate`: our preallocated cache for greedy decoding, else Hugging Face's.

    Its buffer starts with room for the prompt and `CACHE_FIRST_TOKENS` new tokens and doubles up to the budget.
    """
    if implementation != "preallocated":
        return {"cache_implementation": implementation}
    limit, initial = prompt_length + budget, prompt_length + min(budget, CACHE_FIRST_TOKENS)
    cache = preallocated_cache(model.config, limit, initial) if num_beams == 1 else None
    return {"cache": cache} if cache is not None else {}


def _finish(tokenizer: PreTrainedTokenizerBase, ids: list[int], budget: int, stops: Sequence[str]) -> Generation:
    """Decode up to the first eos (later tokens are padding or another row's budget), then cut at the first stop string.

    Hugging Face keeps the matched stop string; like vLLM, it is dropped here.
    """
    ended = tokenizer.eos_token_id in ids
    if ended:
        ids = ids[: ids.index(tokenizer.eos_token_id)]
    text = tokenizer.decode(ids, skip_special_tokens=True)
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=None)
    if cut is not None:
        text = text[:cut]
    return Generation(text, hit_budget=not ended and cut is None and len(ids) >= budget)
