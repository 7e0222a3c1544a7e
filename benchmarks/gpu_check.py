"""One command that checks the GPU recipes on a bare GPU machine and writes one JSON file of measurements.

    # beforehand, on a machine with network: the wheels this check needs, pinned to the versions tested here
    python benchmarks/gpu_check.py --download-wheels wheels/ [--python-version 3.11]
    # on the GPU machine (CUDA torch, transformers, accelerate and PEFT installed; no network; ../shared/data beside it)
    python benchmarks/gpu_check.py --wheels wheels/ --out gpu_check.json
    # CPU dry run of the same plan with the tiny shape (tests/test_gpu_check.py)
    python benchmarks/gpu_check.py --dry-run --out /tmp/gpu_check.json

On one GPU, for a Llama-2-7B-shaped model with random weights and the real instruction length mix: full fine-tune
and LoRA tokens/s per GPU, MFU and peak memory (allocated and reserved), each method in its own process
(`benchmarks/gpu_train.py`); LoRA packed (the profile's attention) against padded and against packing over SDPA's
dense mask; and evaluation examples/s of our decoding (batched greedy) against the original recipe (batch 1, 4 beams)
at the same fixed budget of new tokens, since random weights never stop early. Sized to finish in under 8 minutes on
one H100/H200. The wheels are installed with `pip install --no-index --no-deps`, so nothing already on the machine
(its CUDA torch above all) is replaced.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import json
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# What a bare GPU machine already has, with everything they require: never downloaded, never replaced.
PRESENT = ("torch", "transformers", "accelerate", "peft")
# What this check imports beyond them (medtune_utils' own dependencies on its import path).
NEEDED = ("trl", "datasets", "pandas", "pydantic", "pyyaml", "seqeval", "scikit-learn", "tqdm")
SOURCE_ONLY = ("seqeval",)  # pure Python, published as a source archive only
EVAL_SOURCE = "NCBI-disease"


def _name(requirement: str) -> str:
    return re.split(r"[\s\[;<>=!~(]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def closure(names: tuple[str, ...]) -> dict[str, str]:
    """The installed distributions `names` need (their non-optional requirements, recursively), with versions."""
    from packaging.requirements import Requirement

    found: dict[str, str] = {}
    todo = [name.lower() for name in names]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        found[name] = dist.version
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(_name(line))
    return found


def wheels() -> dict[str, str]:
    """Distribution -> version for every wheel the GPU machine needs: `NEEDED`'s closure less `PRESENT`'s."""
    present = closure(PRESENT)
    return {name: version for name, version in sorted(closure(NEEDED).items()) if name not in present}


def download_commands(folder: Path, python_version: str) -> list[list[str]]:
    """`pip download` of the pinned binary wheels for a manylinux x86-64 CPython, without their dependencies; the
    pure-Python packages published only as source (`SOURCE_ONLY`) are built into wheels here with `pip wheel`."""
    pins = [f"{name}=={version}" for name, version in wheels().items()]
    binary = [pin for pin in pins if pin.split("==")[0] not in SOURCE_ONLY]
    built = [pin for pin in pins if pin.split("==")[0] in SOURCE_ONLY]
    pip = (sys.executable, "-m", "pip")
    return [
        [
            *(*pip, "download", "--dest", str(folder), "--no-deps", "--only-binary=:all:"),
            *("--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64", "--implementation", "cp"),
            *("--python-version", python_version, *binary),
        ],
        [*pip, "wheel", "--no-deps", "--wheel-dir", str(folder), *built],
    ]


def install_command(folder: Path) -> list[str]:
    """`pip install` of every wheel in `folder`, offline and without dependency resolution."""
    files = sorted(str(path) for path in folder.glob("*.whl"))
    if not files:
        raise SystemExit(f"no wheels in {folder}: run `python benchmarks/gpu_check.py --download-wheels {folder}` first")
    return [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", *files]


def train_runs(dry_run: bool, data_dir: str | None) -> list[tuple[str, list[str]]]:
    """The `gpu_train.py` runs: (label, arguments)."""
    if dry_run:
        sizes = ["--shape", "tiny", "--steps", "2", "--warmup", "1", "--batch-size", "2", "--max-length", "128"]
    else:
        sizes = ["--shape", "7b", "--steps", "12", "--warmup", "4", "--batch-size", "4", "--max-length", "2048"]
    sizes += ["--data-dir", data_dir] if data_dir else []
    runs = [
        ("full and LoRA, packed", [*sizes, "--methods", "full", "lora", "--packing"]),
        ("LoRA, padded", [*sizes, "--methods", "lora", "--no-packing"]),
    ]
    if not dry_run:  # on CPU packed training already runs over SDPA's dense mask (no FlexAttention backward there)
        runs.append(("LoRA, packed over a dense SDPA mask", [*sizes, "--methods", "lora", "--packing", "--attention", "sdpa"]))
    return runs


def run_train(label: str, arguments: list[str], out: Path) -> list[dict[str, Any]]:
    """One `gpu_train.py` invocation (which starts a process per method); its results, labelled."""
    subprocess.run([sys.executable, str(HERE / "gpu_train.py"), *arguments, "--out", str(out)], check=True, cwd=HERE)
    return [{"run": label, **result} for result in json.loads(out.read_text(encoding="utf-8"))]


def eval_speed(dry_run: bool, data_dir: str | None, budget: int) -> dict[str, Any]:
    """Examples/s of our decoding against the original recipe on real NCBI-disease prompts, at the same budget."""
    import torch
    from transformers import AutoModelForCausalLM

    sys.path.insert(0, str(HERE))
    from _common import real_data_dir

    from medtune_utils import modeling
    from medtune_utils.assemble import assemble
    from medtune_utils.config import load_profile
    from medtune_utils.generation import generate
    from medtune_utils.prompts import build_prompt, training_text

    gpu = torch.cuda.is_available()
    profile = load_profile("tiny", {"data": {"dir": str(real_data_dir(data_dir)), "sources": [EVAL_SOURCE]}})
    data = assemble(profile.data, profile.seed).dataset
    tokenizer = modeling.build_tiny_tokenizer((training_text(r) for r in data["train"]), 1024 if dry_run else 32000)
    tokenizer.padding_side = "left"
    config = modeling.architecture_config("tiny" if dry_run else "meta-llama/Llama-2-7b-hf", profile.model.tiny)
    config.vocab_size, config.pad_token_id = len(tokenizer), tokenizer.pad_token_id
    config.bos_token_id, config.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    torch.manual_seed(0)
    with torch.device("cuda" if gpu else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16 if gpu else torch.float32).eval()
    rows = data["validation"]
    prompts = [build_prompt(r["instruction"], r["input"]) for r in rows]
    recipes = {
        "ours: greedy, batch 32": (32, 1, 64 if not dry_run else 8),
        "original: 4 beams, batch 1": (1, 4, 4 if not dry_run else 2),
    }
    out: dict[str, Any] = {"source": EVAL_SOURCE, "max_new_tokens": budget}
    for name, (batch, beams, count) in recipes.items():
        chosen = (prompts * (count // len(prompts) + 1))[:count]
        generate(model, tokenizer, chosen[:batch], budget, batch_size=batch, num_beams=beams, progress=False)  # warm-up
        if gpu:
            torch.cuda.synchronize()
        started = time.perf_counter()
        generate(model, tokenizer, chosen, budget, batch_size=batch, num_beams=beams, stop_strings=None, progress=False)
        if gpu:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        out[name] = {"examples": count, "seconds": seconds, "examples_per_s": count / seconds}
    out["speed_up"] = out["ours: greedy, batch 32"]["examples_per_s"] / out["original: 4 beams, batch 1"]["examples_per_s"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--download-wheels", type=Path, metavar="DIR", help="download the pinned wheels into DIR and stop")
    parser.add_argument("--python-version", default=platform.python_version(), help="the GPU machine's Python (download)")
    parser.add_argument("--wheels", type=Path, metavar="DIR", help="install these wheels (--no-index --no-deps) first")
    parser.add_argument("--dry-run", action="store_true", help="the same plan on CPU with the tiny shape")
    parser.add_argument("--data-dir", help="folder with the raw datasets (default ../shared/data)")
    parser.add_argument("--eval-budget", type=int, help="new tokens per example for both decoders (default 128; 8 dry)")
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    args = parser.parse_args(argv)
    if args.download_wheels:
        args.download_wheels.mkdir(parents=True, exist_ok=True)
        for command in download_commands(args.download_wheels, args.python_version):
            subprocess.run(command, check=True)
        return 0
    print("wheels this check needs:", ", ".join(f"{n}=={v}" for n, v in wheels().items()), flush=True)
    if args.wheels:
        subprocess.run(install_command(args.wheels), check=True)
    sys.path.insert(0, str(REPO))  # medtune_utils from this checkout, not installed
    started = time.perf_counter()
    report: dict[str, Any] = {"dry_run": args.dry_run, "train": []}
    scratch = args.out.with_suffix(".train.json")
    for label, arguments in train_runs(args.dry_run, args.data_dir):
        print(f"== {label}", flush=True)
        report["train"] += run_train(label, arguments, scratch.resolve())
    scratch.unlink(missing_ok=True)
    print("== evaluation speed", flush=True)
    report["eval"] = eval_speed(args.dry_run, args.data_dir, args.eval_budget or (8 if args.dry_run else 128))
    report["seconds"] = time.perf_counter() - started
    report["versions"] = {name: metadata.version(name) for name in (*PRESENT, "trl", "datasets")}
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({report['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
