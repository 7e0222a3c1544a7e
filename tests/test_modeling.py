"""Models and tokenizers: the tiny CPU model, Llama-2 shapes on the meta device, the paper profiles' SFT/LoRA/QLoRA configs."""

from __future__ import annotations

import importlib.util
import resource
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from medtune_utils import modeling
from medtune_utils.assemble import assemble
from medtune_utils.config import DataConfig, TinyModelConfig, load_profile
from medtune_utils.prompts import build_prompt, training_text
from medtune_utils.train import sft_config

SENTENCE = "BRCA1 c.68_69delAG raises breast-cancer risk ≥60%; IL-2Rα and TNF-α (β-thalassaemia, 5 µg/mL) were tested."
OFFICIAL_PARAMETERS = {"7b": 6_738_415_616, "13b": 13_015_864_320}
PAPER_PROFILES = {
    "llama2-7b": "7b",
    "llama2-7b-chat": "7b",
    "llama2-7b-lora": "7b",
    "llama2-13b": "13b",
    "llama2-13b-qlora": "13b",
}


@pytest.fixture(scope="module")
def texts(sample_dir: Path) -> list[str]:
    """Training texts of every source in data/sample (NER, RE, NLI, HoC, QA), as the tiny tokenizer sees them."""
    data = DataConfig(dir=str(sample_dir), credentialed_dir=str(sample_dir))
    return [training_text(row) for row in assemble(data, seed=42).dataset["train"]]


@pytest.fixture(scope="module")
def tiny_dir(texts: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny base model and tokenizer, saved like any model."""
    return modeling.create_tiny_base(load_profile("tiny").model.tiny, texts, tmp_path_factory.mktemp("tiny"), seed=42)


def _n_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_tiny_tokenizer_special_tokens_are_distinct(texts: list[str]) -> None:
    tok = modeling.build_tiny_tokenizer(texts, vocab_size=1024)
    ids = {"bos": tok.bos_token_id, "eos": tok.eos_token_id, "pad": tok.pad_token_id, "unk": tok.unk_token_id}
    assert None not in ids.values() and len(set(ids.values())) == 4, ids
    assert len(tok) == 1024
    assert tok("Response")["input_ids"][0] == tok.bos_token_id  # bos prepended, as Llama's tokenizer does
    assert tok.eos_token_id not in tok("Response")["input_ids"]  # TRL appends eos to completions itself


def test_tiny_tokenizer_round_trips_biomedical_text(tiny_dir: Path) -> None:
    tok = modeling.load_tokenizer(str(tiny_dir))
    for text in (SENTENCE, build_prompt("List the disease mentions.", SENTENCE) + "BRCA1 : O\nrisk : O"):
        ids = tok(text)["input_ids"]
        assert tok.unk_token_id not in ids  # byte-level: every character is representable
        assert tok.decode(ids, skip_special_tokens=True) == text
        assert tok.decode(ids) == tok.bos_token + text


def test_padding_side_right_for_training_left_for_generation(tiny_dir: Path) -> None:
    batch = ["BRCA1", SENTENCE]
    right = modeling.load_tokenizer(str(tiny_dir))
    assert right.padding_side == "right"
    ids = right(batch, padding=True)["input_ids"][0]
    assert ids[0] == right.bos_token_id and ids[-1] == right.pad_token_id
    left = modeling.load_tokenizer(str(tiny_dir), padding_side="left")
    assert left.padding_side == "left"
    ids = left(batch, padding=True)["input_ids"][0]
    assert ids[0] == left.pad_token_id and ids[-1] != left.pad_token_id
    # Passed at construction, not set as an attribute: a fresh load is right-padded again.
    assert modeling.load_tokenizer(str(tiny_dir)).padding_side == "right"


def test_tiny_model_shape_and_saved_generation_config(tiny_dir: Path) -> None:
    profile = load_profile("tiny")
    model = modeling.load_model(str(tiny_dir), profile.model)
    tok = modeling.load_tokenizer(str(tiny_dir))
    assert type(model) is LlamaForCausalLM
    assert 200_000 <= _n_parameters(model) <= 800_000  # "a few hundred thousand"
    assert model.config.vocab_size == len(tok)
    assert model.config.tie_word_embeddings
    assert model.dtype == torch.float32
    assert model.config._attn_implementation == "sdpa"
    gen = model.generation_config
    assert (gen.eos_token_id, gen.pad_token_id, gen.bos_token_id) == (tok.eos_token_id, tok.pad_token_id, tok.bos_token_id)
    assert gen.do_sample is False


def test_meta_tiny_matches_the_built_tiny_model(tiny_dir: Path) -> None:
    shape = load_profile("tiny").model.tiny
    built = modeling.load_model(str(tiny_dir), load_profile("tiny").model)
    assert _n_parameters(modeling.meta_model("tiny", shape)) == _n_parameters(built)


@pytest.mark.parametrize("size", ["7b", "13b"])
def test_llama2_shapes_on_meta_device_have_the_official_parameter_counts(size: str) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    model = modeling.meta_model(f"meta-llama/Llama-2-{size}-hf")
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert type(model) is LlamaForCausalLM
    assert _n_parameters(model) == OFFICIAL_PARAMETERS[size]
    assert all(p.is_meta for p in model.parameters())
    assert grown_kib < 1 << 20  # well under 1 GiB; real 7B weights would take 13 GiB even in bf16
    assert not model.config.tie_word_embeddings and model.config.vocab_size == 32000


@pytest.mark.parametrize(("name", "size"), PAPER_PROFILES.items())
def test_every_paper_profile_names_a_llama2_shape(name: str, size: str) -> None:
    config = modeling.architecture_config(load_profile(name).model.base)
    assert config.hidden_size == modeling.LLAMA2_SHAPES[size]["hidden_size"]
    assert config.num_hidden_layers == modeling.LLAMA2_SHAPES[size]["num_hidden_layers"]


@pytest.mark.parametrize(("name", "lr", "batch", "accumulation"), [("llama2-7b", 2e-5, 1, 128), ("llama2-13b", 1e-5, 1, 128)])
def test_full_finetune_profiles_build_their_sft_config_on_cpu(
    name: str, lr: float, batch: int, accumulation: int, tmp_path: Path
) -> None:
    args = sft_config(load_profile(name), tmp_path)
    assert args.bf16 and not args.fp16  # the profile's explicit choice wins over the CPU default
    assert args.activation_checkpointing and args.gradient_checkpointing
    assert args.activation_checkpointing_kwargs == {"use_reentrant": False}
    assert args.completion_only_loss is True
    assert args.num_train_epochs == 3 and args.max_steps == -1
    assert args.learning_rate == pytest.approx(lr)
    assert args.lr_scheduler_type.value == "cosine"
    assert args.get_warmup_steps(1000) == 30  # warmup_ratio 0.03 of the schedule
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (batch, accumulation)  # one process
    assert args.max_length == 2048 and args.packing
    assert (args.save_steps, args.save_total_limit, args.logging_steps) == (200, 2, 10)
    assert args.seed == args.data_seed == 42
    assert args.weight_decay == 0.0 and args.max_grad_norm == 1.0
    assert args.optim.value == "adamw_torch"
    assert args.use_cpu == (not torch.cuda.is_available())  # decided from the hardware, on CPU and GPU machines alike
    assert not args.use_liger_kernel


def test_tiny_profile_turns_off_trl_gpu_defaults(tmp_path: Path) -> None:
    args = sft_config(load_profile("tiny"), tmp_path)
    assert not args.bf16 and not args.activation_checkpointing and not args.gradient_checkpointing
    assert args.max_steps == 40 and args.learning_rate == pytest.approx(3e-3)
    assert args.get_warmup_steps(40) == 2
    assert args.report_to == []


def test_lora_profile_gives_peft_config_with_profile_targets() -> None:
    from peft import LoraConfig as PeftLoraConfig
    from peft import TaskType

    profile = load_profile("llama2-7b-lora")
    config = modeling.peft_config(profile.lora)
    assert isinstance(config, PeftLoraConfig)
    assert (config.r, config.lora_alpha, config.lora_dropout) == (16, 32, 0.05)
    assert set(config.target_modules) == set(profile.lora.target_modules)
    assert config.task_type == TaskType.CAUSAL_LM
    layer_names = {name.rsplit(".", 1)[-1] for name, m in modeling.meta_model(profile.model.base).named_modules()}
    assert set(profile.lora.target_modules) <= layer_names  # every target exists in Llama-2


def test_lora_on_tiny_model_trains_only_adapters(tiny_dir: Path) -> None:
    from peft import get_peft_model

    profile = load_profile("tiny", {"lora.enabled": True, "lora.r": 4})
    model = get_peft_model(modeling.load_model(str(tiny_dir), profile.model), modeling.peft_config(profile.lora))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    wrapped = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable}
    assert wrapped == set(profile.lora.target_modules)


def test_qlora_without_bitsandbytes_says_to_install_the_gpu_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    find_spec = importlib.util.find_spec  # hide bitsandbytes, as on a CPU machine, even where the gpu extra is installed
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else find_spec(name, *a))
    profile = load_profile("llama2-13b-qlora")
    assert profile.lora.load_in_4bit
    with pytest.raises(RuntimeError, match=r"bitsandbytes.*pip install -e '\.\[gpu\]'"):
        modeling.load_model(profile.model.base, profile.model, profile.lora)  # fails before any download


def _word_level_tokenizer(path: Path, specials: dict[str, str]) -> Path:
    """A small tokenizer saved to `path` with only the given special tokens (as a Llama-2 one lacks a pad token)."""
    vocab = {tok: i for i, tok in enumerate([*specials.values(), "gene", "disease"])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token=specials.get("unk_token")))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, **specials).save_pretrained(path)
    return path


def test_load_tokenizer_uses_unk_as_pad_like_llama2(tmp_path: Path) -> None:
    path = _word_level_tokenizer(tmp_path / "llama-like", {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"})
    tok = modeling.load_tokenizer(str(path))
    assert tok.pad_token == "<unk>" and tok.pad_token_id == 0  # Llama-2: unk id 0, no new embedding needed
    assert len(tok) == 5  # three special tokens and two words: nothing added


def test_load_tokenizer_replaces_a_pad_equal_to_eos(tmp_path: Path) -> None:
    specials = {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "</s>"}
    tok = modeling.load_tokenizer(str(_word_level_tokenizer(tmp_path / "pad-is-eos", specials)))
    assert tok.pad_token_id != tok.eos_token_id and tok.pad_token == "<unk>"


def test_load_tokenizer_adds_a_pad_token_when_there_is_no_unk(tmp_path: Path) -> None:
    tok = modeling.load_tokenizer(str(_word_level_tokenizer(tmp_path / "no-unk", {"bos_token": "<s>", "eos_token": "</s>"})))
    assert tok.pad_token == modeling.PAD and tok.pad_token_id not in (tok.eos_token_id, tok.bos_token_id)
    assert len(tok) == 5  # two special tokens, two words and the new pad: the trainer resizes the embeddings


def test_real_llama2_tokenizer_pad_handling(llama2_tokenizer_dir: Path) -> None:
    tok = modeling.load_tokenizer(str(llama2_tokenizer_dir), padding_side="left")  # ../shared/tokenizers/llama-2
    assert (tok.bos_token_id, tok.eos_token_id, tok.unk_token_id, tok.pad_token_id) == (1, 2, 0, 0)
    assert len(tok) == 32000 and tok.padding_side == "left"


@pytest.mark.parametrize(
    ("cuda", "flash", "packing", "expected"),
    [
        (True, True, True, "flash_attention_2"),
        (True, False, True, "flex_attention"),  # block-sparse over packed documents, shipped with torch
        (True, False, False, "sdpa"),
        (False, False, True, "sdpa"),  # FlexAttention has no backward pass on CPU
    ],
)
def test_auto_attention_for_packed_training(
    monkeypatch: pytest.MonkeyPatch, cuda: bool, flash: bool, packing: bool, expected: str
) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    flash_spec = object() if flash else None
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: flash_spec if name == "flash_attn" else find_spec(name, *a))
    assert modeling.resolve_attention("auto", packing) == expected
    assert modeling.resolve_attention("eager", packing) == "eager"


def test_packing_over_a_dense_mask_is_warned(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="medtune_utils.modeling"):
        modeling.warn_if_dense_packing("flex_attention", True, 2048)
        modeling.warn_if_dense_packing("sdpa", False, 2048)
        assert not caplog.records
        modeling.warn_if_dense_packing("sdpa", True, 2048)
    assert "dense block-diagonal mask" in caplog.text and "2048 tokens" in caplog.text


def test_flex_attention_on_packed_rows_equals_each_document_alone() -> None:
    """What the GPU default for packed training computes, checked on CPU (forward only: no flex backward on CPU)."""
    config = modeling.tiny_config(TinyModelConfig(hidden_size=64, intermediate_size=172), vocab_size=300)
    torch.manual_seed(0)
    weights = LlamaForCausalLM(config).state_dict()
    lengths = [40, 7, 65, 16]
    ids = torch.randint(3, 300, (1, sum(lengths)))
    positions = torch.cat([torch.arange(n) for n in lengths])[None]
    flex = LlamaForCausalLM._from_config(config, attn_implementation="flex_attention")
    flex.load_state_dict(weights)
    alone = LlamaForCausalLM._from_config(config, attn_implementation="sdpa")
    alone.load_state_dict(weights)
    with torch.no_grad():
        packed = flex.eval()(input_ids=ids, position_ids=positions, use_cache=False).logits
        separate = torch.cat([alone.eval()(input_ids=doc).logits for doc in ids.split(lengths, dim=1)], dim=1)
    torch.testing.assert_close(packed, separate, atol=1e-4, rtol=1e-4)
