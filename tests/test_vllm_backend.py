"""Evaluation precision (`eval.dtype`) and the vLLM backend: one subprocess per model, LoRA adapters, same inputs as HF.

vLLM needs a GPU and is not installed here, so a stand-in `vllm` package (below) is put on the import path: the real
`medtune_utils.vllm_backend` code runs end to end (request file, child process, `LLM`, `SamplingParams`,
`LoRARequest`, response file); the stand-in (tests/fixtures/fake_vllm) records every call and returns scripted tokens.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from datasets import DatasetDict
from peft import get_peft_model

from medtune_utils import evaluate as E
from medtune_utils import modeling, vllm_backend
from medtune_utils.assemble import assemble
from medtune_utils.config import DataConfig, load_profile
from medtune_utils.generation import STOP_STRINGS, Generation, token_budgets
from medtune_utils.prompts import build_prompt, training_text
from medtune_utils.tasks import get_task

SOURCES = ["NCBI-disease", "GAD"]
FAKE_VLLM = Path(__file__).parent / "fixtures" / "fake_vllm"
# Continuations the stand-in "generates": one ends at a stop string, one at eos, one runs out of budget.
SCRIPT = ["disease : B\n### Instruction: next", "cancer : O</s> after the end", "word " * 200]


@pytest.fixture(scope="module")
def data(train_data_dir: Path) -> DatasetDict:
    """NCBI-disease (NER) and GAD (RE) rows: the public data when present, else data/sample."""
    config = DataConfig(dir=str(train_data_dir), sources=SOURCES, train_rows={"default": 60}, validation_rows={"default": 4})
    return assemble(config, seed=42).dataset


@pytest.fixture(scope="module")
def models(data: DatasetDict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A tiny full model, and LoRA adapters of rank 4 saved on it with its tokenizer (as a LoRA run saves them)."""
    root = tmp_path_factory.mktemp("vllm-models")
    profile = load_profile("tiny", {"lora.enabled": True, "lora.r": 4})
    full = modeling.create_tiny_base(profile.model.tiny, [training_text(r) for r in data["train"]], root / "full", seed=0)
    peft = get_peft_model(modeling.load_model(str(full), profile.model), modeling.peft_config(profile.lora))
    peft.save_pretrained(root / "adapter")
    modeling.load_tokenizer(str(full)).save_pretrained(root / "adapter")
    return {"full": str(full), "adapter": str(root / "adapter")}


@pytest.fixture
def fake_vllm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The stand-in `vllm` on this process's import path (which the child inherits); returns its call log."""
    monkeypatch.syspath_prepend(str(FAKE_VLLM))
    log, script = tmp_path / "calls.jsonl", tmp_path / "script.json"
    script.write_text(json.dumps(SCRIPT), encoding="utf-8")
    monkeypatch.setenv("FAKE_VLLM_LOG", str(log))
    monkeypatch.setenv("FAKE_VLLM_SCRIPT", str(script))
    return log


def _calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def _gpu(monkeypatch: pytest.MonkeyPatch, bf16: bool = True) -> None:
    """Make this process believe it has a CUDA device (with or without bf16 support)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)


def _inputs(data: DatasetDict, location: str) -> tuple[Any, list[dict[str, Any]], list[str], dict[str, Any], list[int]]:
    rows = data["validation"].to_list()
    tasks = {source: get_task(source) for source in SOURCES}
    tokenizer = modeling.load_tokenizer(location, padding_side="left")
    prompts = [build_prompt(r["instruction"], r["input"]) for r in rows]
    budgets = token_budgets(rows, data["train"].to_list(), tokenizer, tasks, cap=24)
    return tokenizer, rows, prompts, tasks, budgets


# ------------------------------------------------------------------ evaluation precision


@pytest.mark.parametrize(
    ("profile", "gpu", "bf16", "expected"),
    [
        ("llama2-7b", True, True, "bfloat16"),  # fp32 master weights: evaluated in bf16 all the same
        ("llama2-7b-lora", True, True, "bfloat16"),
        ("llama2-7b", True, False, "float16"),  # a GPU without bf16
        ("llama2-7b", False, True, "float32"),
        ("llama2-7b-lora", False, True, "float32"),  # bf16 base weights, but CPU
        ("tiny", False, True, "float32"),
    ],
)
def test_auto_eval_dtype_is_bf16_on_gpu_whatever_the_master_dtype_and_fp32_on_cpu(
    profile: str, gpu: bool, bf16: bool, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if gpu:
        _gpu(monkeypatch, bf16)
    else:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert load_profile(profile).eval.dtype == "auto"
    assert E.eval_dtype(load_profile(profile)) == expected
    assert E.eval_dtype(load_profile(profile, {"eval.dtype": "float16"})) == "float16"  # an explicit value wins


def test_eval_dtype_must_be_a_known_dtype() -> None:
    from medtune_utils.config import ConfigError

    with pytest.raises(ConfigError, match=r"eval\.dtype must be one of .*'bfloat16'.*got 'fp8'"):
        load_profile("tiny", {"eval.dtype": "fp8"})


def test_hf_backend_loads_full_weights_and_adapters_in_the_eval_dtype(
    models: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from peft import AutoPeftModelForCausalLM

    seen: dict[str, Any] = {}

    def recorder(kind: str) -> Any:
        def from_pretrained(location: str, **kwargs: Any) -> Any:
            seen[kind] = kwargs
            return SimpleNamespace(device=torch.device("cuda", 0))  # already on the GPU: nothing to move

        return from_pretrained

    _gpu(monkeypatch)
    monkeypatch.setattr(modeling.AutoModelForCausalLM, "from_pretrained", recorder("full"))
    monkeypatch.setattr(AutoPeftModelForCausalLM, "from_pretrained", recorder("adapter"))
    E._load_for_eval(models["full"], load_profile("llama2-7b"))  # model.dtype float32
    E._load_for_eval(models["adapter"], load_profile("llama2-7b-lora"))
    assert seen["full"]["dtype"] == seen["adapter"]["dtype"] == torch.bfloat16
    attention = modeling.resolve_attention("auto")  # flash_attention_2 where installed, else sdpa
    assert seen["full"]["attn_implementation"] == seen["adapter"]["attn_implementation"] == attention


def test_on_cpu_adapters_of_a_bf16_recipe_are_evaluated_in_fp32(models: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # also on a GPU machine
    model = E._load_for_eval(models["adapter"], load_profile("tiny", {"model.dtype": "bfloat16"}))
    assert model.dtype == torch.float32 and model.device.type == "cpu"
    assert any("lora_B" in name for name, _ in model.named_parameters())


def test_both_backends_get_the_same_resolved_dtype(
    models: dict[str, str], data: DatasetDict, monkeypatch: pytest.MonkeyPatch
) -> None:
    requests: list[dict[str, Any]] = []

    def child(request: dict[str, Any]) -> list[dict[str, Any]]:
        requests.append(request)
        return [{"token_ids": [], "finish_reason": "stop"}] * len(request["prompt_token_ids"])

    _gpu(monkeypatch)
    monkeypatch.setattr(vllm_backend, "available", lambda: True)
    monkeypatch.setattr(vllm_backend, "run_child", child)
    profile = load_profile("llama2-7b", {"eval.backend": "vllm"})  # model.dtype float32
    tokenizer, rows, prompts, tasks, budgets = _inputs(data, models["full"])
    spec = E.ModelSpec("tuned", models["full"])
    E._generate_with(spec, profile, rows, data["train"].to_list(), prompts, tasks, progress=False)
    assert requests[0]["engine"]["dtype"] == "bfloat16" == E.eval_dtype(profile)
    expected = token_budgets(rows, data["train"].to_list(), tokenizer, tasks, profile.eval.max_new_tokens_cap)
    assert [s["max_tokens"] for s in requests[0]["sampling"]] == expected  # the HF backend's budgets


# ------------------------------------------------------------------ the vLLM backend


def test_vllm_serves_full_weights_and_adapters_each_in_its_own_process_on_the_hf_inputs(
    models: dict[str, str], data: DatasetDict, fake_vllm: Path
) -> None:
    tokenizer, rows, prompts, tasks, budgets = _inputs(data, models["full"])
    for kind in ("full", "adapter"):
        served = vllm_backend.generate(models[kind], tokenizer, prompts, budgets, "float32", seed=7)
        # Cut as the HF backend cuts: before the stop string, before eos, or at the row's own budget.
        for i, (generation, budget) in enumerate(zip(served, budgets)):
            script = SCRIPT[i % len(SCRIPT)]
            if i % 3 == 0:
                assert generation == Generation("disease : B\n", hit_budget=False)
            elif i % 3 == 1:
                assert generation == Generation("cancer : O", hit_budget=False)
            else:
                expected = tokenizer.decode(tokenizer(script, add_special_tokens=False)["input_ids"][:budget])
                assert generation == Generation(expected, hit_budget=True) and expected.startswith("word word")
    init_full, gen_full, init_adapter, gen_adapter = _calls(fake_vllm)
    assert len({c["pid"] for c in (init_full, init_adapter)}) == 2 and os.getpid() not in {init_full["pid"], init_adapter["pid"]}
    assert init_full | {"pid": 0} == {
        "event": "init",
        "pid": 0,
        "model": models["full"],
        "tokenizer": None,
        "dtype": "float32",
        "seed": 7,
        "enable_lora": False,
        "max_lora_rank": 16,
        "max_loras": 1,
    }
    assert gen_full["lora"] is None
    # Adapters: the base from adapter_config.json, the tokenizer saved with the adapters, rank 4 served at 8.
    assert (init_adapter["model"], init_adapter["tokenizer"]) == (models["full"], models["adapter"])
    assert (init_adapter["enable_lora"], init_adapter["max_lora_rank"], init_adapter["max_loras"]) == (True, 8, 1)
    assert gen_adapter["lora"] == {"lora_name": "tuned", "lora_int_id": 1, "lora_path": models["adapter"]}
    for call in (gen_full, gen_adapter):
        # Exactly the HF backend's inputs: its token ids (bos included), the same budgets, stop strings, greedy.
        assert call["prompt_token_ids"] == [tokenizer(p)["input_ids"] for p in prompts]
        assert call["sampling"] == [{"max_tokens": n, "temperature": 0.0, "stop": list(STOP_STRINGS)} for n in budgets]


def test_a_failing_child_names_the_model_and_shows_its_error(models: dict[str, str], fake_vllm: Path) -> None:
    request = vllm_backend.build_request(models["full"], [[1, 2]], [4], "float32", 0, STOP_STRINGS, {"no_such_arg": 1})
    with pytest.raises(RuntimeError, match=r"(?s)vLLM subprocess for .*full failed \(exit 1\).*TypeError.*no_such_arg"):
        vllm_backend.run_child(request)


def test_request_for_hub_adapters_serves_the_hub_base_with_the_saved_tokenizer(tmp_path: Path) -> None:
    folder = tmp_path / "adapters"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "meta-llama/Llama-2-7b-hf", "r": 16}))
    request = vllm_backend.build_request(str(folder), [[1, 5], [1]], [3, 9], "bfloat16", 42, ["###"])
    assert request["engine"] == {
        "model": "meta-llama/Llama-2-7b-hf",
        "tokenizer": str(folder),
        "dtype": "bfloat16",
        "seed": 42,
        "enable_lora": True,
        "max_lora_rank": 16,
        "max_loras": 1,
    }
    assert request["lora"] == {"name": "tuned", "id": 1, "path": str(folder)}
    assert [s["max_tokens"] for s in request["sampling"]] == [3, 9]
    with pytest.raises(ValueError, match="1 budgets for 2 prompts"):
        vllm_backend.build_request(str(folder), [[1], [2]], [3], "bfloat16", 42, ["###"])


@pytest.mark.parametrize(("r", "rank"), [(1, 8), (8, 8), (9, 16), (16, 16), (64, 64), (100, 128), (300, 320), (512, 512)])
def test_lora_rank_rounds_up_to_a_rank_vllm_serves(r: int, rank: int) -> None:
    assert vllm_backend.lora_rank(r) == rank


def test_a_lora_rank_vllm_cannot_serve_is_an_error() -> None:
    with pytest.raises(ValueError, match="LoRA rank 513 is above vLLM's largest max_lora_rank 512"):
        vllm_backend.lora_rank(513)


def test_missing_vllm_is_a_clear_error_before_any_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vllm_backend, "available", lambda: False)
    with pytest.raises(RuntimeError, match=r"vllm is not installed: pip install -e '\.\[vllm\]' or use eval\.backend: hf"):
        vllm_backend.generate("results/none", None, ["x"], [4], "bfloat16", 0)
