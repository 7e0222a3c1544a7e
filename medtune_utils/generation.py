"""Batched greedy decoding: left padding, KV cache, per-row token budgets, stops at eos and the next `###`.

A vLLM backend is used when asked for and installed; the Hugging Face backend runs everywhere.
"""

from __future__ import annotations

import importlib.util
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .modeling import token_counts
from .tasks import Task
from .tasks.ner import NerTask

STOP_STRINGS = ("###",)


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
    """`max_new_tokens` per row, capped at `cap`.

    An NER answer's format is fixed by its input (a line per token, or a line per mention), so its budget is
    the token length of the longest well-formed answer (`NerTask.longest_answers`) plus 10% and 8 tokens. Other
    tasks get the longest gold output among the `reference` rows of their source plus 25% and 8 tokens, or `cap`
    without reference rows. Pass training rows as `reference`, so that no row's own gold answer is used.
    """
    longest: dict[str, int] = defaultdict(int)
    for row, n_out in zip(reference, token_counts(tokenizer, [row["output"] for row in reference])):
        longest[row["source"]] = max(longest[row["source"]], n_out)
    bounds = [_longest_answer_tokens(tokenizer, tasks.get(row["source"]), row["input"]) for row in rows]
    budgets = []
    for row, bound in zip(rows, bounds):
        if bound is not None:
            need = math.ceil(1.1 * bound) + 8
        else:
            need = math.ceil(1.25 * longest[row["source"]]) + 8 if longest[row["source"]] else cap
        budgets.append(min(cap, need))
    return budgets


def _longest_answer_tokens(tokenizer: PreTrainedTokenizerBase, task: Task | None, input_text: str) -> int | None:
    """Tokens of the task's longest well-formed answer for `input_text`, for tasks whose format fixes it."""
    if not isinstance(task, NerTask):
        return None
    return max(token_counts(tokenizer, task.longest_answers(input_text)))


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
) -> list[Generation]:
    """Greedy (or beam) continuations of `prompts`, in input order, each cut before its first stop string.

    Prompts are sorted by length so that each batch pads little; each row is cut to its own budget, so
    the result does not depend on the batch size. Like vLLM, the stop string itself is not returned.
    A row hit its budget when it used every token of it without an eos or a stop string.
    """
    budgets = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    if len(budgets) != len(prompts):
        raise ValueError(f"max_new_tokens has {len(budgets)} budgets for {len(prompts)} prompts")
    stops = list(stop_strings or ())
    encoded = [tokenizer(p)["input_ids"] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: (-len(encoded[i]), -budgets[i]))
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
                generated = model.generate(
                    **{k: v.to(device) for k, v in padded.items()},
                    max_new_tokens=max(budgets[i] for i in batch),
                    do_sample=False,
                    num_beams=num_beams,
                    use_cache=True,
                    stop_strings=stops or None,
                    tokenizer=tokenizer if stops else None,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                )
                new_tokens = generated[:, padded["input_ids"].shape[1] :]
                for row, i in enumerate(batch):
                    by_index[i] = _finish(tokenizer, new_tokens[row, : budgets[i]].tolist(), budgets[i], stops)
                bar.update(len(batch))
    finally:
        model.train(was_training)
    return [by_index[i] for i in range(len(prompts))]


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


def vllm_available() -> bool:
    """Whether the optional vLLM backend is installed."""
    return importlib.util.find_spec("vllm") is not None


def generate_vllm(model_path: str, prompts: Sequence[str], max_new_tokens: Sequence[int], **engine_args: Any) -> list[Generation]:
    """Greedy continuations with vLLM (continuous batching); needs merged weights, not LoRA adapters."""
    from vllm import LLM, SamplingParams

    llm = LLM(model=model_path, **engine_args)
    params = [SamplingParams(temperature=0.0, max_tokens=n, stop=list(STOP_STRINGS)) for n in max_new_tokens]
    return [
        Generation(c.text, hit_budget=c.finish_reason == "length")
        for c in (out.outputs[0] for out in llm.generate(list(prompts), params))
    ]
