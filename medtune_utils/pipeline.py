"""Run the four notebooks in order with papermill: `python -m medtune_utils.pipeline --profile tiny`.

Notebook 01 takes the profile; the later ones read it from the run folder. Executed notebooks are kept in the
run folder. A failing notebook stops the pipeline with a non-zero exit and the failing cell's error.

Training in several processes (`--num-processes`, by default every visible GPU for a GPU profile) runs step 02 as
`accelerate launch -m medtune_utils.train` with the profile's accelerate config (`--accelerate-config`, by default
FSDP2 for a full fine-tune and DDP for LoRA/QLoRA); notebook 02 then finds the finished run and draws its curves.
A GPU profile first checks, without any download, that this machine has a GPU, the data and access to the weights.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import ConfigError, Profile, dump_yaml, load_profile, parse_set_args
from .launch import Machines, accelerate_command
from .paths import repo_root, resolve
from .run import Run

NOTEBOOKS = ("01_assemble_instructions", "02_finetune", "03_evaluate", "04_figures_and_tables")
TRAIN_NOTEBOOK = "02_finetune"
GPU_NOTEBOOKS = (TRAIN_NOTEBOOK, "03_evaluate")
GATED_ORGS = ("meta-llama/",)  # hub organisations whose weights need an accepted licence and a token
ACCELERATE_CONFIGS = {"full": "configs/accelerate/fsdp.yaml", "lora": "configs/accelerate/multi_gpu.yaml"}


class NotebookFailed(RuntimeError):
    """A notebook raised; the message names the notebook, the cell and the error."""


class MissingRequirements(RuntimeError):
    """This machine lacks what the profile needs (GPU, data, access to gated weights); the message lists each."""


def missing_requirements(profile: Profile, run: Run, notebooks: Sequence[str]) -> list[str]:
    """What a GPU profile needs for `notebooks` and this machine lacks; empty for `tiny`. Downloads nothing.

    Checked: a CUDA GPU (steps 02 and 03), the source data (step 01) or the run's assembled data (a later step alone),
    and the base model's weights: a local folder, the hub cache, or for gated repositories a hub token.
    """
    from . import modeling

    if modeling.is_tiny(profile.model.base):
        return []
    missing = []
    if "01_assemble_instructions" in notebooks and not resolve(profile.data.dir).is_dir():
        missing.append(f"data: {resolve(profile.data.dir)} not found (python -m medtune_utils.download; data/README.md)")
    elif "01_assemble_instructions" not in notebooks and not run.has_data():
        missing.append(f"data: {run.data_dir} has no assembled data (run notebook 01 first: --only 01)")
    if not set(notebooks) & set(GPU_NOTEBOOKS):
        return missing
    import torch

    if not torch.cuda.is_available():
        missing.append(f"GPU: no CUDA device visible (torch {torch.__version__}); {profile.name} trains and evaluates on GPUs")
    weights = weights_problem(profile.model.base, profile.model.revision)
    if weights:
        missing.append(weights)
    return missing


def weights_problem(base: str, revision: str | None) -> str | None:
    """Why `base`'s weights cannot be loaded here, found without downloading; None when they can or may be."""
    import huggingface_hub
    from huggingface_hub import constants, errors

    if resolve(base).exists() or isinstance(huggingface_hub.try_to_load_from_cache(base, "config.json", revision=revision), str):
        return None
    if constants.HF_HUB_OFFLINE:
        return f"weights: {base} is not in the local hub cache and HF_HUB_OFFLINE is set"
    if not base.startswith(GATED_ORGS):
        return None
    gate = f"accept the licence on https://huggingface.co/{base}, then `huggingface-cli login` (or set HF_TOKEN)"
    if huggingface_hub.get_token() is None:
        return f"weights: {base} is gated and no Hugging Face token is set: {gate}"
    try:
        huggingface_hub.auth_check(base, revision=revision)
    except errors.GatedRepoError:
        return f"weights: this Hugging Face token has no access to the gated {base}: {gate}"
    except (errors.HfHubHTTPError, OSError) as exc:
        return f"weights: cannot reach the Hugging Face hub to check access to {base} ({type(exc).__name__})"
    return None


def training_processes(profile: Profile, requested: int | None) -> int:
    """Processes for step 02: as requested, else every visible GPU for a GPU profile, else one."""
    from . import modeling

    if requested is not None:
        return requested
    if modeling.is_tiny(profile.model.base):
        return 1
    import torch

    return max(torch.cuda.device_count(), 1)


def train_command(profile: Profile, run_dir: str, overrides: dict[str, Any], processes: int, config: str | None) -> list[str]:
    """`accelerate launch ... -m medtune_utils.train` for step 02 on this machine, with the pipeline's overrides."""
    config = config or ACCELERATE_CONFIGS["lora" if profile.lora.enabled else "full"]
    target = ["-m", "medtune_utils.train", "--run-dir", run_dir]
    for key, value in overrides.items():
        target += ["--set", f"{key}={dump_yaml(value).strip().removesuffix('...').strip()}"]
    return accelerate_command(config, Machines(1, 0, processes, main_port=0), target)  # a free port on this machine


def run_pipeline(
    profile: str,
    run_dir: str | None = None,
    data_dir: str | None = None,
    overrides: dict[str, Any] | None = None,
    notebooks: Sequence[str] = NOTEBOOKS,
    progress: bool = True,
    num_processes: int | None = None,
    accelerate_config: str | None = None,
) -> Path:
    """Execute `notebooks` with the same parameters; return the run folder. Settings are checked before any work.

    With more than one training process (or an accelerate config given), step 02 trains through `accelerate launch`
    first; a GPU profile stops at once with every missing requirement named (`MissingRequirements`).
    """
    overrides = dict(overrides or {})
    if data_dir is not None:
        if not resolve(data_dir).is_dir():
            raise FileNotFoundError(f"data directory not found: {resolve(data_dir)}")
        overrides["data.dir"] = data_dir
    resolved = load_profile(profile, overrides)
    run_dir = run_dir or f"results/{resolved.name}"
    run = Run(run_dir)
    missing = missing_requirements(resolved, run, notebooks)
    if missing:
        listing = "; ".join(f"({number}) {item}" for number, item in enumerate(missing, start=1))
        raise MissingRequirements(f"profile {resolved.name} cannot run {', '.join(notebooks)} on this machine: {listing}")
    if not resolve(resolved.data.dir).is_dir():
        raise FileNotFoundError(f"data directory not found: {resolve(resolved.data.dir)} (profile {resolved.name}, data.dir)")
    processes = training_processes(resolved, num_processes)
    launched = TRAIN_NOTEBOOK in notebooks and (processes > 1 or accelerate_config is not None)
    import papermill as pm  # after the checks: importing it takes seconds
    from traitlets.config import Config

    run.notebooks_dir.mkdir(parents=True, exist_ok=True)
    values = {"profile": profile, "run_dir": run_dir, "overrides": overrides}
    for number, name in enumerate(notebooks, start=1):
        source = repo_root() / "notebooks" / f"{name}.ipynb"
        target = run.executed_notebook(name)
        declared = pm.inspect_notebook(str(source))
        parameters = {key: value for key, value in values.items() if key in declared}
        print(f"[{number}/{len(notebooks)}] {name} ...", flush=True)
        started = time.perf_counter()
        if launched and name == TRAIN_NOTEBOOK:
            command = train_command(resolved, str(run.dir), overrides, processes, accelerate_config)
            print(f"[{number}/{len(notebooks)}] training with {processes} processes: {' '.join(command)}", flush=True)
            if subprocess.run(command, cwd=repo_root(), env={**os.environ, "PYTHONUNBUFFERED": "1"}).returncode:
                raise NotebookFailed(f"{name}: `accelerate launch` of medtune_utils.train failed (its output is above)")
        try:
            pm.execute_notebook(
                str(source),
                str(target),
                parameters=parameters,
                kernel_name="python3",
                progress_bar=progress,
                cwd=str(repo_root()),
                # CurveZMQ keys for the kernel's sockets (ipykernel supports them): no plain-text TCP, and no warning about it
                config=Config(KernelManager={"transport_encryption": "auto"}),
            )
        except pm.PapermillExecutionError as exc:
            raise NotebookFailed(
                f"{name} failed in cell [{exc.exec_count}]: {exc.ename}: {exc.evalue} (executed notebook: {target})"
            ) from None
        print(f"[{number}/{len(notebooks)}] {name} done in {time.perf_counter() - started:.1f} s", flush=True)
    return run.dir


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; prints where the scores, figures and tables are."""
    parser = argparse.ArgumentParser(description="Run notebooks 01-04 headless with papermill.")
    parser.add_argument("--profile", default="tiny", help="profile name in configs/profiles/ (default: tiny)")
    parser.add_argument("--run-dir", help="run folder (default: results/<profile>)")
    parser.add_argument("--data-dir", help="source data folder (default: the profile's data.dir)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="profile override, e.g. train.max_steps=20"
    )
    parser.add_argument("--only", nargs="+", metavar="NN", help="run only these notebooks, by number: --only 01 or --only 03 04")
    parser.add_argument("--no-progress", action="store_true", help="no per-cell progress bars")
    parser.add_argument(
        "--num-processes",
        type=int,
        metavar="N",
        help="training processes for step 02 (default: every visible GPU for a GPU profile, 1 for tiny); "
        "more than one trains through `accelerate launch`",
    )
    parser.add_argument(
        "--accelerate-config",
        metavar="FILE",
        help="accelerate config for step 02 (default: configs/accelerate/fsdp.yaml for a full fine-tune, multi_gpu.yaml "
        "for LoRA/QLoRA); giving one always trains through `accelerate launch`",
    )
    args = parser.parse_args(argv)
    try:
        notebooks = select_notebooks(args.only)
        run_dir = run_pipeline(
            args.profile,
            args.run_dir,
            args.data_dir,
            parse_set_args(args.set),
            notebooks,
            progress=not args.no_progress,
            num_processes=args.num_processes,
            accelerate_config=args.accelerate_config,
        )
    except (ConfigError, FileNotFoundError, NotebookFailed, MissingRequirements, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print_outputs(Run(run_dir))
    return 0


def print_outputs(run: Run) -> None:
    """Say where the scores, figures, tables and executed notebooks of a run are."""
    if run.has_scores():
        print(f"scores:  {run.scores_path}")
    figures = sorted(run.figures_dir.glob("*.png"))
    tables = sorted(run.figures_dir.glob("*.md"))
    if figures:
        print(f"figures: {len(figures)} PNG/PDF pairs in {run.figures_dir}: {', '.join(p.stem for p in figures)}")
    if tables:
        print(f"tables:  {len(tables)} in {run.figures_dir} (Markdown, LaTeX, CSV): {', '.join(p.stem for p in tables)}")
    print(f"notebooks executed: {run.notebooks_dir}")


def select_notebooks(numbers: Sequence[str] | None) -> tuple[str, ...]:
    """The notebooks whose number prefixes are given (all four when none), in pipeline order."""
    if not numbers:
        return tuple(NOTEBOOKS)
    unknown = [n for n in numbers if not any(name.startswith(n.zfill(2) + "_") for name in NOTEBOOKS)]
    if unknown:
        raise ValueError(f"unknown notebook number(s) {', '.join(unknown)}; expected some of 01, 02, 03, 04")
    return tuple(name for name in NOTEBOOKS if any(name.startswith(n.zfill(2) + "_") for n in numbers))


if __name__ == "__main__":
    sys.exit(main())
