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
    tokens of slack and are capped at `cap`. A row's own gold answer is never used.
    """
    ratio: dict[str, float] = defaultdict(float)
    longest: dict[str, int] = defaultdict(int)
    for row in reference:
        n_out = _count(tokenizer, row["output"])
        longest[row["source"]] = max(longest[row["source"]], n_out)
        if families.get(row["source"]) == "ner":
            ratio[row["source"]] = max(ratio[row["source"]], n_out / max(1, _count(tokenizer, row["input"])))
    budgets = []
    for row in rows:
        source = row["source"]
        if families.get(source) == "ner" and ratio[source]:
            need = ratio[source] * _count(tokenizer, row["input"])
        else:
            need = longest[source] or cap
        budgets.append(min(cap, math.ceil(1.25 * need) + 8))
    return budgets


def _count(tokenizer: PreTrainedTokenizerBase, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


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
    """Greedy (or beam) continuations of `prompts`, in input order.

    Prompts are sorted by length so that each batch pads little; each row is cut to its own budget, so
    the result does not depend on the batch size.
    """
    budgets = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    encoded = [tokenizer(p)["input_ids"] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: (-len(encoded[i]), -budgets[i]))
    outputs: list[str] = [""] * len(prompts)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
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
                stop_strings=list(stop_strings) if stop_strings else None,
                tokenizer=tokenizer if stop_strings else None,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            new_tokens = generated[:, padded["input_ids"].shape[1] :]
            for row, i in enumerate(batch):
                outputs[i] = _decode(tokenizer, new_tokens[row, : budgets[i]])
            bar.update(len(batch))
    model.train(was_training)
    return outputs


def _decode(tokenizer: PreTrainedTokenizerBase, ids: torch.Tensor) -> str:
    """Decode up to the first eos (later tokens are padding or another row's budget)."""
    ids = ids.tolist()
    if tokenizer.eos_token_id in ids:
        ids = ids[: ids.index(tokenizer.eos_token_id)]
    return tokenizer.decode(ids, skip_special_tokens=True)


def vllm_available() -> bool:
    """Whether the optional vLLM backend is installed."""
    return importlib.util.find_spec("vllm") is not None


def generate_vllm(model_path: str, prompts: Sequence[str], max_new_tokens: Sequence[int], **engine_args: Any) -> list[str]:
    """Greedy continuations with vLLM (continuous batching); needs merged weights, not LoRA adapters."""
    from vllm import LLM, SamplingParams

    llm = LLM(model=model_path, **engine_args)
    params = [SamplingParams(temperature=0.0, max_tokens=n, stop=list(STOP_STRINGS)) for n in max_new_tokens]
    return [out.outputs[0].text for out in llm.generate(list(prompts), params)]
