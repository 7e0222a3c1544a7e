"""Models and tokenizers: load by hub id or path, build the tiny CPU model, LoRA/QLoRA, Llama-2 shapes."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from .config import LoraConfig, ModelConfig, TinyModelConfig
from .paths import resolve

log = logging.getLogger(__name__)

TINY = "tiny"
BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"

# Published shapes of the Llama-2 checkpoints (their config.json), so the recipes can be checked offline.
LLAMA2_SHAPES: dict[str, dict[str, int]] = {
    "7b": {
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
    },
    "13b": {
        "hidden_size": 5120,
        "intermediate_size": 13824,
        "num_hidden_layers": 40,
        "num_attention_heads": 40,
        "num_key_value_heads": 40,
    },
}
LLAMA2_COMMON = {
    "vocab_size": 32000,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-5,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 0,
}


def is_tiny(base: str) -> bool:
    """Whether a profile's base model is the tiny model built on the spot."""
    return base == TINY


def is_saved_model(folder: str | Path) -> bool:
    """Whether `folder` holds a saved Hugging Face model (its `config.json`)."""
    return (resolve(folder) / "config.json").is_file()


def is_adapter(location: str | Path) -> bool:
    """Whether `location` is a folder of PEFT adapters (LoRA/QLoRA runs save only those) rather than full weights."""
    return (resolve(location) / "adapter_config.json").is_file()


def build_tiny_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on `texts`, with `<s>` prepended and distinct pad/eos tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[UNK, BOS, EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        padding_side="right",
        model_max_length=1 << 30,
    )


def tiny_config(shape: TinyModelConfig, vocab_size: int | None = None, **token_ids: int | None) -> LlamaConfig:
    """The tiny Llama's config (tied input/output embeddings); `vocab_size` defaults to the profile's."""
    return LlamaConfig(
        vocab_size=vocab_size or shape.vocab_size,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
        max_position_embeddings=shape.max_position_embeddings,
        tie_word_embeddings=True,
        **token_ids,
    )


def build_tiny_model(shape: TinyModelConfig, tokenizer: PreTrainedTokenizerBase, seed: int) -> LlamaForCausalLM:
    """A randomly initialised Llama of a few hundred thousand parameters, sized to `tokenizer`."""
    config = tiny_config(
        shape,
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = generation_config_for(tokenizer)
    return model


def create_tiny_base(shape: TinyModelConfig, texts: Iterable[str], out_dir: str | Path, seed: int) -> Path:
    """Train the tiny tokenizer on `texts`, build the tiny model, and save both to `out_dir` (atomically)."""
    from .io import atomic_dir

    out_dir = resolve(out_dir)
    tokenizer = tiny_tokenizer(shape, texts)
    model = build_tiny_model(shape, tokenizer, seed)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return out_dir


def tiny_tokenizer(shape: TinyModelConfig, texts: Iterable[str]) -> PreTrainedTokenizerBase:
    """The tiny model's tokenizer: `shape.tokenizer` loaded (its length must be `shape.vocab_size`), else trained on `texts`."""
    if shape.tokenizer is None:
        return build_tiny_tokenizer(texts, shape.vocab_size)
    if not resolve(shape.tokenizer).is_dir():
        raise FileNotFoundError(f"model.tiny.tokenizer: no tokenizer folder at {resolve(shape.tokenizer)}")
    tokenizer = load_tokenizer(shape.tokenizer)
    if len(tokenizer) != shape.vocab_size:
        raise ValueError(
            f"model.tiny.vocab_size is {shape.vocab_size} but the tokenizer {resolve(shape.tokenizer)} has "
            f"{len(tokenizer)} tokens: set model.tiny.vocab_size: {len(tokenizer)}"
        )
    return tokenizer


def tokenizer_for_stats(profile: Any, texts: Iterable[str], name_or_path: str | None = None) -> PreTrainedTokenizerBase | None:
    """The tokenizer that length statistics are counted in: the one given, the base model's, or tiny's.

    For `tiny` it is `tiny_tokenizer`'s, as fine-tuning will build it. A hub tokenizer that cannot be
    loaded (offline, gated) gives None and a warning: the statistics then carry character lengths only.
    """
    name = name_or_path or profile.model.base
    if is_tiny(name):
        return tiny_tokenizer(profile.model.tiny, texts)
    try:
        return load_tokenizer(name, revision=profile.model.revision)
    except OSError as exc:
        log.warning("token lengths left out of stats.csv: tokenizer %s not loadable (%s)", name, exc)
        return None


def token_counts(
    tokenizer: PreTrainedTokenizerBase, texts: list[str], special: bool = False, batch_size: int = 4096
) -> list[int]:
    """Token count of each text (with or without the tokenizer's special tokens), encoded in batches."""
    counts: list[int] = []
    for start in range(0, len(texts), batch_size):
        encoded = tokenizer(texts[start : start + batch_size], add_special_tokens=special)["input_ids"]
        counts.extend(len(ids) for ids in encoded)
    return counts


def generation_config_for(tokenizer: PreTrainedTokenizerBase) -> GenerationConfig:
    """Greedy decoding that stops at eos and pads with the tokenizer's pad token."""
    return GenerationConfig(
        do_sample=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def load_tokenizer(name_or_path: str, padding_side: str = "right", revision: str | None = None) -> PreTrainedTokenizerBase:
    """Load a tokenizer with the padding side set at construction; give it a pad token distinct from eos.

    Llama-2 has no pad token: its `<unk>` is used (as the paper did), so no embedding has to be added.
    """
    tokenizer = AutoTokenizer.from_pretrained(_location(name_or_path), padding_side=padding_side, revision=revision)
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        if tokenizer.unk_token is not None and tokenizer.unk_token_id != tokenizer.eos_token_id:
            tokenizer.pad_token = tokenizer.unk_token
        else:
            tokenizer.add_special_tokens({"pad_token": PAD})
    return tokenizer


def resolve_dtype(name: str) -> torch.dtype:
    """`auto` is bfloat16 on a GPU that supports it, else float32."""
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    return getattr(torch, name)


DENSE_ATTENTION = ("sdpa", "eager")


def resolve_attention(name: str, packing: bool = False) -> str:
    """`auto` is FlashAttention-2 when installed on a GPU; else, for packed training on a GPU, PyTorch's FlexAttention
    (block-sparse over the packed documents, built into torch: the `gpu` extra cannot install flash-attn, PyPI has only
    its source); else PyTorch SDPA. FlexAttention has no backward pass on CPU, so CPU training stays on SDPA."""
    if name != "auto":
        return name
    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    if torch.cuda.is_available() and packing:
        return "flex_attention"
    return "sdpa"


def warn_if_dense_packing(attention: str, packing: bool, max_length: int) -> None:
    """Packed rows under SDPA or eager attention get a dense block-diagonal mask: correct, but quadratic in the row."""
    if packing and attention in DENSE_ATTENTION:
        log.warning(
            "packing with %s attention: each packed row of up to %d tokens gets a dense block-diagonal mask, so "
            "attention costs grow with the square of the row, not of each document; on a GPU use flash_attention_2 "
            "(pip install flash-attn) or flex_attention (model.attn_implementation), or train without packing",
            attention,
            max_length,
        )


def load_model(
    name_or_path: str,
    model_cfg: ModelConfig,
    lora: LoraConfig | None = None,
    revision: str | None = None,
    packing: bool = False,
) -> PreTrainedModel:
    """Load a causal LM with the profile's dtype and attention (for packed training when `packing`); 4-bit (QLoRA)
    when `lora.load_in_4bit`."""
    kwargs: dict[str, Any] = {
        "dtype": resolve_dtype(model_cfg.dtype),
        "attn_implementation": resolve_attention(model_cfg.attn_implementation, packing),
        "revision": revision,
    }
    if lora is not None and lora.load_in_4bit:
        kwargs["quantization_config"] = quantization_config(kwargs["dtype"])
    return AutoModelForCausalLM.from_pretrained(_location(name_or_path), **kwargs)


def quantization_config(compute_dtype: torch.dtype) -> Any:
    """4-bit NF4 with double quantisation (QLoRA); needs bitsandbytes and a GPU."""
    if importlib.util.find_spec("bitsandbytes") is None:
        raise RuntimeError("QLoRA (lora.load_in_4bit) needs bitsandbytes: pip install -e '.[gpu]'")
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute_dtype
    )


def peft_config(lora: LoraConfig) -> Any:
    """The PEFT `LoraConfig` for a profile's adapter settings."""
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        task_type="CAUSAL_LM",
    )


def architecture_config(base: str, tiny: TinyModelConfig | None = None) -> Any:
    """The model config of `base` without weights: Llama-2 shapes offline, else the hub/local config."""
    key = _llama2_size(base)
    if key is not None:
        return LlamaConfig(**LLAMA2_SHAPES[key], **LLAMA2_COMMON)
    if is_tiny(base):
        return tiny_config(tiny or TinyModelConfig())
    return AutoConfig.from_pretrained(_location(base))


def meta_model(base: str, tiny: TinyModelConfig | None = None) -> PreTrainedModel:
    """Instantiate `base`'s architecture on the meta device: real shapes, no memory, no download of weights."""
    config = architecture_config(base, tiny)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def _llama2_size(base: str) -> str | None:
    name = base.lower()
    if "llama-2" not in name:
        return None
    for size in LLAMA2_SHAPES:
        if f"-{size}" in name:
            return size
    return None


def _location(name_or_path: str) -> str:
    """A local path (resolved against the repository root) when it exists, else the hub id as given."""
    local = resolve(name_or_path)
    return str(local) if local.exists() else name_or_path
