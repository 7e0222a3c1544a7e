"""The preallocated KV cache gives Hugging Face's results without copying the cache at each step."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.cache_utils import DynamicCache

from medtune_utils.kv_cache import PreallocatedCache, PreallocatedLayer, preallocated_cache

STEPS = 6


@pytest.fixture(scope="module")
def model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
    )
    return LlamaForCausalLM(config).eval()


def _decode(model: LlamaForCausalLM, cache: object, prompt: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    """Greedy logits of a prefill and `STEPS` single-token steps through `cache`, with a left-padded mask."""
    logits = []
    with torch.no_grad():
        out = model(input_ids=prompt, attention_mask=mask, cache=cache, use_cache=True)
        for _ in range(STEPS):
            logits.append(out.logits[:, -1])
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            out = model(input_ids=out.logits[:, -1:].argmax(-1), attention_mask=mask, cache=cache, use_cache=True)
    return logits


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    prompt = torch.randint(0, 97, (3, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(prompt)
    mask[0, :4] = 0
    mask[2, :2] = 0
    return prompt, mask


@pytest.mark.parametrize("initial", [9 + STEPS, 1, 10])
def test_logits_equal_the_growing_cache_whether_the_buffer_fits_or_has_to_grow(
    model: LlamaForCausalLM, batch: tuple[torch.Tensor, torch.Tensor], initial: int
) -> None:
    reference = _decode(model, DynamicCache(), *batch)
    cache = PreallocatedCache(2, limit=9 + STEPS, initial=initial)
    ours = _decode(model, cache, *batch)
    for step, (a, b) in enumerate(zip(reference, ours)):
        torch.testing.assert_close(a, b, msg=f"step {step}")
    assert cache.get_seq_length() == 9 + STEPS


def test_steps_write_into_one_buffer_and_return_views_of_the_filled_part(
    model: LlamaForCausalLM, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    cache = PreallocatedCache(2, limit=9 + STEPS)
    layer = cache.layers[0]
    assert isinstance(layer, PreallocatedLayer)
    prompt, mask = batch
    with torch.no_grad():
        model(input_ids=prompt, attention_mask=mask, cache=cache, use_cache=True)
        buffer = layer._keys.data_ptr()
        model(input_ids=prompt[:, :1], attention_mask=torch.cat([mask, mask[:, :1]], 1), cache=cache)
    assert layer._keys.data_ptr() == buffer
    assert layer.keys.shape[-2] == 10 and layer.keys.data_ptr() == buffer
    assert layer._keys.shape[-2] == 9 + STEPS


def test_the_buffer_doubles_when_full_but_never_past_its_limit() -> None:
    layer = PreallocatedLayer(limit=20, initial=6)
    step = torch.zeros(1, 1, 1, 2)
    sizes = []
    for _ in range(20):
        layer.update(step, step)
        sizes.append(layer._keys.shape[-2])
    assert sorted(set(sizes)) == [6, 12, 20] and layer.get_seq_length() == 20
    layer.update(step, step)
    assert layer._keys.shape[-2] == 21  # a caller that under-sized the limit still gets every position


def test_crop_and_batch_changes_keep_the_views_consistent() -> None:
    layer = PreallocatedLayer(limit=8)
    keys = torch.arange(2 * 1 * 5 * 2, dtype=torch.float32).reshape(2, 1, 5, 2)
    layer.update(keys, -keys)
    layer.crop(-2)
    assert layer.get_seq_length() == 3 and torch.equal(layer.keys, keys[..., :3, :])
    layer.reorder_cache(torch.tensor([1, 0]))
    assert torch.equal(layer.keys, keys[[1, 0], :, :3]) and torch.equal(layer.values, -keys[[1, 0], :, :3])
    layer.batch_select_indices(torch.tensor([1]))
    assert torch.equal(layer.keys, keys[:1, :, :3])
    with pytest.raises(ValueError, match="negative"):
        layer.crop(2)


def test_models_with_sliding_window_layers_get_no_preallocated_cache() -> None:
    full = LlamaConfig(num_hidden_layers=3)
    assert isinstance(preallocated_cache(full, 16), PreallocatedCache)
    mixed = LlamaConfig(num_hidden_layers=2)
    mixed.layer_types = ["full_attention", "sliding_attention"]
    assert preallocated_cache(mixed, 16) is None
