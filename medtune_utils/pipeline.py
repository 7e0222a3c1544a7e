"""Run the four notebooks in order with papermill: `python -m medtune_utils.pipeline --profile tiny`.

Notebook 01 takes the profile; the later ones read it from the run folder. Executed notebooks are kept in the
run folder. A failing notebook stops the pipeline with a non-zero exit and the failing cell's error.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import ConfigError, load_profile, parse_set_args
from .paths import repo_root, resolve
from .run import Run

NOTEBOOKS = ("01_assemble_instructions", "02_finetune", "03_evaluate", "04_figures_and_tables")


class NotebookFailed(RuntimeError):
    """A notebook raised; the message names the notebook, the cell and the error."""


def run_pipeline(
    profile: str,
    run_dir: str | None = None,
    data_dir: str | None = None,
    overrides: dict[str, Any] | None = None,
    notebooks: Sequence[str] = NOTEBOOKS,
    progress: bool = True,
) -> Path:
    """Execute `notebooks` with the same parameters; return the run folder. Settings are checked before any work."""
    import papermill as pm
    from traitlets.config import Config

    overrides = dict(overrides or {})
    if data_dir is not None:
        if not resolve(data_dir).is_dir():
            raise FileNotFoundError(f"data directory not found: {resolve(data_dir)}")
        overrides["data.dir"] = data_dir
    resolved = load_profile(profile, overrides)
    if not resolve(resolved.data.dir).is_dir():
        raise FileNotFoundError(f"data directory not found: {resolve(resolved.data.dir)} (profile {resolved.name}, data.dir)")
    run_dir = run_dir or f"results/{resolved.name}"
    run = Run(run_dir)
    run.notebooks_dir.mkdir(parents=True, exist_ok=True)
    values = {"profile": profile, "run_dir": run_dir, "overrides": overrides}
    for number, name in enumerate(notebooks, start=1):
        source = repo_root() / "notebooks" / f"{name}.ipynb"
        target = run.executed_notebook(name)
        declared = pm.inspect_notebook(str(source))
        parameters = {key: value for key, value in values.items() if key in declared}
        print(f"[{number}/{len(notebooks)}] {name} ...", flush=True)
        started = time.perf_counter()
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
    args = parser.parse_args(argv)
    try:
        notebooks = select_notebooks(args.only)
        run_dir = run_pipeline(
            args.profile, args.run_dir, args.data_dir, parse_set_args(args.set), notebooks, progress=not args.no_progress
        )
    except (ConfigError, FileNotFoundError, NotebookFailed, ValueError) as exc:
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
