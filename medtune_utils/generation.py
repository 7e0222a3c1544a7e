"""Batched greedy decoding: left padding, KV cache, per-row token budgets, stops at eos and the next `###`.

A vLLM backend is used when asked for and installed; the Hugging Face backend runs everywhere.
"""

from __future__ import annotations

import importlib.util
import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

STOP_STRINGS = ("###",)


def token_budgets(
    rows: Sequence[dict[str, str]],
    reference: Sequence[dict[str, str]],
    tokenizer: PreTrainedTokenizerBase,
    families: dict[str, str],
    cap: int,
) -> list[int]:
    """`max_new_tokens` per row, from the gold outputs of `reference` rows of the same source.

    NER answers grow with the sentence, so their budget is the largest output/input token ratio seen in the
    source times the row's input length; other tasks get the longest reference output. Both get 25% and 8
    tokens of slack and are capped at `cap`; a source without reference rows gets `cap`. Only `reference`
    rows are read for answer lengths: pass training rows, so that no row's own gold answer is used.
    """
    ratio: dict[str, float] = defaultdict(float)
    longest: dict[str, int] = defaultdict(int)
    out_lengths = _counts(tokenizer, [row["output"] for row in reference])
    in_lengths = _counts(tokenizer, [row["input"] for row in reference])
    for row, n_out, n_in in zip(reference, out_lengths, in_lengths):
        source = row["source"]
        longest[source] = max(longest[source], n_out)
        if families.get(source) == "ner":
            ratio[source] = max(ratio[source], n_out / max(1, n_in))
    budgets = []
    for row, n_in in zip(rows, _counts(tokenizer, [row["input"] for row in rows])):
        source = row["source"]
        need = ratio[source] * n_in if families.get(source) == "ner" and ratio[source] else (longest[source] or cap)
        budgets.append(min(cap, math.ceil(1.25 * need) + 8))
    return budgets


def _counts(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[int]:
    """Token counts of `texts` without special tokens (one batched call)."""
    if not texts:
        return []
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


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
) -> list[str]:
    """Greedy (or beam) continuations of `prompts`, in input order, each cut before its first stop string.

    Prompts are sorted by length so that each batch pads little; each row is cut to its own budget, so
    the result does not depend on the batch size. Like vLLM, the stop string itself is not returned.
    """
    budgets = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    if len(budgets) != len(prompts):
        raise ValueError(f"max_new_tokens has {len(budgets)} budgets for {len(prompts)} prompts")
    stops = list(stop_strings or ())
    encoded = [tokenizer(p)["input_ids"] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: (-len(encoded[i]), -budgets[i]))
    outputs: list[str] = [""] * len(prompts)
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
                    outputs[i] = _cut_at_stop(_decode(tokenizer, new_tokens[row, : budgets[i]]), stops)
                bar.update(len(batch))
    finally:
        model.train(was_training)
    return outputs


def _decode(tokenizer: PreTrainedTokenizerBase, ids: torch.Tensor) -> str:
    """Decode up to the first eos (later tokens are padding or another row's budget)."""
    ids = ids.tolist()
    if tokenizer.eos_token_id in ids:
        ids = ids[: ids.index(tokenizer.eos_token_id)]
    return tokenizer.decode(ids, skip_special_tokens=True)


def _cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """`text` up to its first stop string (Hugging Face keeps the matched stop string; vLLM does not)."""
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))
    return text[:cut]


def vllm_available() -> bool:
    """Whether the optional vLLM backend is installed."""
    return importlib.util.find_spec("vllm") is not None


def generate_vllm(model_path: str, prompts: Sequence[str], max_new_tokens: Sequence[int], **engine_args: Any) -> list[str]:
    """Greedy continuations with vLLM (continuous batching); needs merged weights, not LoRA adapters."""
    from vllm import LLM, SamplingParams

    llm = LLM(model=model_path, **engine_args)
    params = [SamplingParams(temperature=0.0, max_tokens=n, stop=list(STOP_STRINGS)) for n in max_new_tokens]
    return [out.outputs[0].text for out in llm.generate(list(prompts), params)]
