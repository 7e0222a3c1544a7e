"""Greedy generation with vLLM, one subprocess per model, on exactly the inputs the Hugging Face backend sees.

The parent tokenizes the prompts with the model's own tokenizer (as `generation.generate` does), writes a request
(engine arguments, prompt token ids, one `SamplingParams` per row: its budget, temperature 0, the stop strings) and
runs `python -m medtune_utils.vllm_backend REQUEST RESPONSE`. The child builds the `LLM`, generates and writes the
generated token ids; when it exits, the GPU memory of its engine is freed (a second `LLM` in one process does not
reliably free the first). The parent decodes and cuts the ids exactly as the Hugging Face backend does.

A folder of LoRA/QLoRA adapters is served on its base model through `enable_lora` and a `LoRARequest`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .paths import resolve

if TYPE_CHECKING:
    from .generation import Generation

# `max_lora_rank` values vLLM accepts (>= 0.8; later ones also take 1); an adapter of rank r gets the smallest one >= r.
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
ADAPTER_NAME = "tuned"
TAIL_LINES = 40


def available() -> bool:
    """Whether vLLM can be imported here (the child runs on this interpreter and import path)."""
    return importlib.util.find_spec("vllm") is not None


def build_request(
    location: str,
    prompt_token_ids: Sequence[Sequence[int]],
    max_new_tokens: Sequence[int],
    dtype: str,
    seed: int,
    stop_strings: Sequence[str],
    engine_args: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What the child needs: `LLM` arguments, the adapter to apply (or None), prompt token ids, per-row sampling."""
    from . import modeling  # not at the top: the child needs neither torch nor transformers of its own

    if len(prompt_token_ids) != len(max_new_tokens):
        raise ValueError(f"{len(max_new_tokens)} budgets for {len(prompt_token_ids)} prompts")
    folder = resolve(location)
    engine: dict[str, Any] = {"model": str(folder) if folder.exists() else location, "dtype": dtype, "seed": seed}
    lora = None
    if modeling.is_adapter(location):
        config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        base = config.get("base_model_name_or_path")
        if not base:
            raise ValueError(f"{folder / 'adapter_config.json'}: no base_model_name_or_path, so no base model to serve")
        engine.update(
            model=str(resolve(base)) if resolve(base).exists() else base,
            tokenizer=str(folder),  # training saved the tokenizer beside the adapters
            enable_lora=True,
            max_lora_rank=lora_rank(int(config["r"])),
            max_loras=1,
        )
        lora = {"name": ADAPTER_NAME, "id": 1, "path": str(folder)}
    engine.update(engine_args or {})
    return {
        "engine": engine,
        "lora": lora,
        "prompt_token_ids": [list(ids) for ids in prompt_token_ids],
        "sampling": [{"max_tokens": int(n), "temperature": 0.0, "stop": list(stop_strings)} for n in max_new_tokens],
    }


def lora_rank(r: int) -> int:
    """The `max_lora_rank` that serves an adapter of rank `r`."""
    for rank in LORA_RANKS:
        if r <= rank:
            return rank
    raise ValueError(f"LoRA rank {r} is above vLLM's largest max_lora_rank {LORA_RANKS[-1]}")


def generate(
    location: str,
    tokenizer: Any,
    prompts: Sequence[str],
    max_new_tokens: Sequence[int],
    dtype: str,
    seed: int,
    engine_args: Mapping[str, Any] | None = None,
) -> list[Generation]:
    """Greedy continuations of `prompts` by the model (or adapters) at `location`.

    Same token ids, budgets, stop strings and post-processing as `generation.generate`; `dtype` is a torch dtype name.
    """
    from .generation import STOP_STRINGS, _finish

    if not available():
        raise RuntimeError("eval.backend is vllm but vllm is not installed: pip install -e '.[vllm]' or use eval.backend: hf")
    ids = [tokenizer(p)["input_ids"] for p in prompts]
    request = build_request(location, ids, max_new_tokens, dtype, seed, STOP_STRINGS, engine_args)
    outputs = run_child(request)
    if len(outputs) != len(prompts):
        raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(prompts)} prompts")
    return [_finish(tokenizer, out["token_ids"], n, STOP_STRINGS) for out, n in zip(outputs, max_new_tokens)]


def run_child(request: dict[str, Any]) -> list[dict[str, Any]]:
    """Run one request in a fresh Python process (this interpreter and import path); its outputs in prompt order.

    The child's output (vLLM's logs and progress) is echoed to this process's stderr as it comes.
    """
    with tempfile.TemporaryDirectory(prefix="medtune-vllm-") as tmp:
        request_path, response_path = Path(tmp) / "request.json", Path(tmp) / "response.json"
        request_path.write_text(json.dumps(request), encoding="utf-8")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        command = [sys.executable, "-m", __name__, str(request_path), str(response_path)]
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as child:
            assert child.stdout is not None
            for line in child.stdout:
                sys.stderr.write(line)
                tail.append(line)
        if child.returncode != 0:
            raise RuntimeError(
                f"vLLM subprocess for {request['engine']['model']} failed (exit {child.returncode}); "
                f"its last lines:\n{''.join(tail)}"
            )
        return json.loads(response_path.read_text(encoding="utf-8"))


def serve(request: dict[str, Any]) -> list[dict[str, Any]]:
    """In the child: build the engine, generate every prompt with its own sampling parameters, return the token ids."""
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    llm = LLM(**request["engine"])
    params = [SamplingParams(**sampling) for sampling in request["sampling"]]
    lora = request["lora"]
    adapter = LoRARequest(lora["name"], lora["id"], lora["path"]) if lora else None
    prompts = [{"prompt_token_ids": ids} for ids in request["prompt_token_ids"]]
    results = llm.generate(prompts, params, lora_request=adapter)
    return [
        {"token_ids": list(completion.token_ids), "finish_reason": completion.finish_reason}
        for completion in (result.outputs[0] for result in results)
    ]


def main(argv: list[str] | None = None) -> int:
    """`python -m medtune_utils.vllm_backend REQUEST RESPONSE`: serve one request file, write the response file."""
    from .io import write_json_atomic

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m medtune_utils.vllm_backend REQUEST.json RESPONSE.json", file=sys.stderr)
        return 2
    request = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    write_json_atomic(args[1], serve(request))
    return 0


if __name__ == "__main__":
    sys.exit(main())
