"""A KV cache that is allocated per batch, grows by doubling, and attends over its filled part only.

Hugging Face's default `DynamicCache` grows by `torch.cat` at every decoding step, so each step copies the whole
cache, and the copies grow with the batch and the answer. Its `StaticCache` avoids the copy but attends over the
whole preallocated length at every step. `PreallocatedCache` writes each step into a buffer and returns a view of
the filled part, so a step neither copies the cache nor attends past the tokens written so far. The buffer starts
at `initial` positions and doubles when full, never past `limit` (the batch's prompt plus its largest budget), so
a batch whose rows stop early does not hold memory for budgets it never uses. `benchmarks/eval_speed.py` measures
it against both.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers import PreTrainedConfig
from transformers.cache_utils import Cache, DynamicLayer


class PreallocatedLayer(DynamicLayer):
    """One layer's keys and values in a buffer of `initial` positions that doubles when full, up to `limit`."""

    def __init__(self, limit: int, initial: int | None = None) -> None:
        super().__init__()
        self.limit = limit
        self.initial = min(limit, initial or limit)
        self.length = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        capacity = max(self.initial, key_states.shape[-2])
        self._keys = key_states.new_empty((*key_states.shape[:-2], capacity, key_states.shape[-1]))
        self._values = value_states.new_empty((*value_states.shape[:-2], capacity, value_states.shape[-1]))
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object, **kwargs: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new positions after the filled part; return views of everything filled so far."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if end > self._keys.shape[-2]:
            self._grow(end)
        self._keys[..., self.length : end, :] = key_states
        self._values[..., self.length : end, :] = value_states
        self._set_length(end)
        return self.keys, self.values

    def _grow(self, needed: int) -> None:
        """Move the filled part into a buffer twice as long (at most `limit`, at least `needed`)."""
        capacity = max(needed, min(2 * self._keys.shape[-2], self.limit))
        keys = self._keys.new_empty((*self._keys.shape[:-2], capacity, self._keys.shape[-1]))
        values = self._values.new_empty((*self._values.shape[:-2], capacity, self._values.shape[-1]))
        keys[..., : self.length, :] = self._keys[..., : self.length, :]
        values[..., : self.length, :] = self._values[..., : self.length, :]
        self._keys, self._values = keys, values

    def _set_length(self, length: int) -> None:
        self.length = length
        self.keys = self._keys[..., :length, :]
        self.values = self._values[..., :length, :]

    def get_seq_length(self) -> int:
        return self.length

    def reset(self) -> None:
        self.length = 0
        super().reset()

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError(f"crop takes a negative number of tokens to remove, got {tokens_to_remove}")
        if tokens_to_remove and self.is_initialized:
            self._set_length(max(0, self.length + tokens_to_remove))

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self._rebatch(lambda buffer: buffer.index_select(0, beam_idx.to(buffer.device)))

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._rebatch(lambda buffer: buffer.repeat_interleave(repeats, dim=0))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._rebatch(lambda buffer: buffer[indices, ...])

    def _rebatch(self, change: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Apply a change of the batch dimension to both buffers and refresh the views."""
        if self.is_initialized:
            self._keys, self._values = change(self._keys), change(self._values)
            self._set_length(self.length)


class PreallocatedCache(Cache):
    """A `Cache` of `PreallocatedLayer`s, one per decoder layer."""

    def __init__(self, num_layers: int, limit: int, initial: int | None = None) -> None:
        super().__init__(layers=[PreallocatedLayer(limit, initial) for _ in range(num_layers)])


def preallocated_cache(config: PreTrainedConfig, limit: int, initial: int | None = None) -> PreallocatedCache | None:
    """A `PreallocatedCache` for a model whose every layer attends over the full sequence; None otherwise
    (sliding-window or linear-attention layers need their own cache types, which Hugging Face builds)."""
    text_config = config.get_text_config(decoder=True)
    layer_types = getattr(text_config, "layer_types", None) or ["full_attention"] * text_config.num_hidden_layers
    if any(kind != "full_attention" for kind in layer_types):
        return None
    return PreallocatedCache(len(layer_types), limit, initial)
