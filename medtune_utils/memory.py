"""Computed GPU memory for fine-tuning a model: weights, gradients, optimizer state, activations.

The parameter counts come from the real architecture built on the meta device, so they are exact; the byte costs per
parameter follow from what the libraries allocate for each recipe:

- full fine-tune: fp32 master weights, fp32 gradients and two fp32 AdamW moments (16 bytes per parameter) whatever
  `model.dtype` says: with bf16 mixed precision accelerate upcasts trainable parameters to fp32 before FSDP2 shards
  them, and DeepSpeed keeps fp32 master weights and moments beside its bf16 copy. Sharded over N GPUs each holds 1/N of
  it, plus FSDP2's working set: the all-gathered bf16 weights of the root unit (embeddings, head) and of two decoder
  layers (the current one and the prefetched one), and one unit's unsharded bf16 gradient before its reduce-scatter.
  With gradient accumulation and no sync between micro-batches (the Trainer's `no_sync`), FSDP2 keeps the whole
  model's unsharded bf16 gradients on every rank: `accumulate_unsharded=True` counts them (our code syncs each
  micro-batch under FSDP instead, see `train.sync_each_micro_batch`).
- LoRA: a bf16 frozen base; fp32 adapters (PEFT upcasts them), fp32 gradients, fp32 AdamW moments.
- QLoRA: an NF4 base (bf16 for what is not quantised); bf16 adapters and gradients (TRL casts the adapters of a
  quantised model to bf16), 8-bit paged AdamW moments.

Activations assume gradient checkpointing and SDPA/flash attention. These are estimates to be checked against a
measured run: they leave out allocator fragmentation beyond a fixed allowance.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

GIB = 1024**3
METHODS = ("full", "lora", "qlora")
CUDA_OVERHEAD_GIB = 1.5  # CUDA context, cuBLAS workspace and allocator slack on one GPU
NF4_BYTES = 0.5 + 0.127 / 8  # 4-bit weights plus double-quantised block constants (QLoRA paper)
ACTIVATION_BYTES_PER_LAYER = 34  # x seq x batch x hidden, one layer recomputed in bf16 with fused attention
LOGIT_BYTES = 2 + 4 + 4  # bf16 logits, their fp32 upcast for the loss, and its gradient


@dataclass(frozen=True)
class MemoryEstimate:
    """GiB per GPU for one training method."""

    weights: float
    gradients: float
    optimizer: float
    activations: float
    overhead: float = CUDA_OVERHEAD_GIB

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations + self.overhead


def lora_parameters(model: nn.Module, target_modules: tuple[str, ...], r: int) -> int:
    """Adapter parameters: `r * (in + out)` for each targeted linear layer."""
    return sum(
        r * (module.in_features + module.out_features)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in target_modules
    )


def decoder_linear_parameters(model: nn.Module) -> int:
    """Parameters of the linear layers inside the decoder blocks (the ones QLoRA quantises)."""
    head = model.get_output_embeddings()
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear) and m is not head)


def decoder_layer_parameters(model: nn.Module) -> int:
    """Parameters of one decoder layer (an FSDP unit in `configs/accelerate/fsdp.yaml`)."""
    layers = model.model.layers
    return sum(p.numel() for p in layers[0].parameters())


def estimate(
    model: nn.Module,
    method: str,
    *,
    batch_size: int = 1,
    seq_len: int = 2048,
    lora_r: int = 16,
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    shards: int = 1,
    accumulate_unsharded: bool = False,
) -> MemoryEstimate:
    """Memory on one GPU for `method` (full, lora, qlora) with gradient checkpointing.

    `shards` > 1 spreads a full fine-tune's weights, gradients and optimizer state over that many GPUs (FSDP2 full
    shard or ZeRO-3) and adds FSDP2's working set; activations are per GPU either way. `accumulate_unsharded` adds the
    whole model's bf16 gradients that FSDP2 keeps on each rank when micro-batches are accumulated without sync.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    config = model.config
    total = sum(p.numel() for p in model.parameters())
    tokens = batch_size * seq_len
    checkpoints = config.num_hidden_layers * tokens * config.hidden_size * 2
    recompute = ACTIVATION_BYTES_PER_LAYER * tokens * config.hidden_size
    logits = LOGIT_BYTES * tokens * config.vocab_size
    activations = (checkpoints + recompute + logits) / GIB
    if method == "full":
        per_gpu = total / shards
        gathered = unsharded_grad = 0.0
        if shards > 1:
            layer = decoder_layer_parameters(model)
            root = total - config.num_hidden_layers * layer
            gathered = 2 * (root + 2 * layer)
            unsharded_grad = 2 * max(root, layer)
        if accumulate_unsharded:
            unsharded_grad = 2 * total
        return MemoryEstimate(
            (4 * per_gpu + gathered) / GIB, (4 * per_gpu + unsharded_grad) / GIB, 8 * per_gpu / GIB, activations
        )
    adapters = lora_parameters(model, lora_targets, lora_r)
    if method == "lora":
        base, adapter_bytes, optimizer_bytes = 2 * total, 4, 8  # fp32 adapters and gradients, fp32 AdamW moments
    else:
        quantised = decoder_linear_parameters(model)
        base = NF4_BYTES * quantised + 2 * (total - quantised)
        adapter_bytes, optimizer_bytes = 2, 2  # bf16 adapters and gradients (cast by TRL), 8-bit paged AdamW
    return MemoryEstimate(
        (base + adapter_bytes * adapters) / GIB,
        adapter_bytes * adapters / GIB,
        optimizer_bytes * adapters / GIB,
        activations,
    )


def fits_table(models: dict[str, nn.Module], gpus_gib: tuple[int, ...] = (24, 40, 80), **kwargs: int) -> list[dict[str, str]]:
    """Rows `model, method, need, <gpu> GB...` saying whether each recipe fits on one GPU of each size."""
    rows = []
    for name, model in models.items():
        for method in METHODS:
            need = estimate(model, method, **kwargs).total
            row = {"model": name, "method": method, "needs (computed)": f"{need:.1f} GiB"}
            for gpu in gpus_gib:
                row[f"{gpu} GB"] = "fits" if need <= 0.95 * gpu * 1e9 / GIB else "no"
            rows.append(row)
    return rows
