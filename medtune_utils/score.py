"""Score generations made anywhere: `python -m medtune_utils.score PREDICTIONS.jsonl [--out scores.json] [--model NAME]`.

Each line of a predictions file is `{"source": ..., "input": ..., "gold": ..., "generation": ...}` (optionally `id`):
`gold` is the answer in the task's output format and `generation` the model's raw text after the prompt. The file
is parsed with the task parsers and scored with the task metrics and bootstrap intervals of notebook 03, into a
`scores.json` of the same structure (per model, per source: `n`, `malformed_rate`, `metrics`, intervals).
`score_folder` does the same for a folder of such files, one model per file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .evaluate import compare_models, score_predictions
from .io import write_json_atomic
from .prompts import TEMPLATE, TEMPLATES
from .records import DataFormatError
from .run import SCORES
from .sources.jsonutil import iter_json_lines, require_str_fields
from .tasks import get_task, task_names
from .tasks.base import Task

FIELDS = ("source", "input", "gold", "generation")


def read_predictions(path: Path, ner_format: str = "lines", template: str = TEMPLATE) -> list[dict[str, Any]]:
    """Prediction records (as `evaluate.prediction_records` writes them) from a JSON Lines file of generations.

    Raises `DataFormatError` naming the file and line of a line that is not an object with the four string fields,
    names an unknown source, repeats an id, or whose `gold` is not a well-formed answer in the task's format.
    """
    records = []
    seen: dict[str, int] = {}
    for number, obj in iter_json_lines(path):
        require_str_fields(path, number, obj, FIELDS, allow_empty=("input", "generation"))
        if obj["source"] not in task_names():
            raise DataFormatError(path, number, f"unknown source {obj['source']!r}; expected one of {', '.join(task_names())}")
        row_id = obj.get("id", f"{path.stem}/{number}")
        if not isinstance(row_id, str | int) or isinstance(row_id, bool):
            raise DataFormatError(path, number, f"field 'id' must be a string or an integer, found {type(row_id).__name__}")
        row_id = str(row_id)
        if row_id in seen:
            raise DataFormatError(path, number, f"id {row_id!r} already used on line {seen[row_id]}; expected unique ids")
        seen[row_id] = number
        task = get_task(obj["source"], ner_format, template)
        gold = task.parse(obj["gold"], obj["input"])
        if not gold.well_formed:
            raise DataFormatError(
                path, number, f"gold is not a well-formed {obj['source']} answer for its input: {obj['gold']!r}"
            )
        parsed = task.parse(obj["generation"], obj["input"])
        records.append(
            {
                "id": row_id,
                "source": obj["source"],
                "task": task.family,
                "group": row_id,
                "input": obj["input"],
                "generation": obj["generation"],
                "prediction": parsed.value,
                "gold": gold.value,
                "well_formed": parsed.well_formed,
                "template": template,
            }
        )
    if not records:
        raise DataFormatError(path, None, f"no predictions; expected JSON Lines with {', '.join(FIELDS)}")
    return records


def score_files(
    paths: Sequence[str | Path],
    models: Sequence[str] | None = None,
    ner_format: str = "lines",
    template: str = TEMPLATE,
    samples: int = 1000,
    seed: int = 42,
) -> dict[str, Any]:
    """Scores of each predictions file as one model (named by `models`, else by the file's stem), and paired tests
    of every later model against the first on the sources where both scored the same rows."""
    names = list(models) if models is not None else [Path(p).stem for p in paths]
    if len(names) != len(paths) or len(set(names)) != len(names):
        raise ValueError(f"expected one distinct model name per file, got {names} for {len(paths)} file(s)")
    results: dict[str, Any] = {}
    row_stats: dict[str, Any] = {}
    rows_of: dict[str, dict[str, list[tuple[str, str]]]] = {}
    for name, path in zip(names, paths):
        records = read_predictions(Path(path), ner_format, template)
        tasks: dict[str, Task] = {r["source"]: get_task(r["source"], ner_format, template) for r in records}
        results[name], row_stats[name] = score_predictions(records, tasks, samples, seed)
        rows_of[name] = {s: [(r["id"], r["input"]) for r in records if r["source"] == s] for s in tasks}
    first = names[0]
    comparable = {
        name: {s: v for s, v in stats.items() if rows_of[name][s] == rows_of[first].get(s)} for name, stats in row_stats.items()
    }
    return {
        "profile": None,
        "prompting": {name: {"template": template, "shots": None} for name in names},
        "models": results,
        "comparisons": compare_models(comparable, samples, seed),
        "scored_files": {name: str(Path(p)) for name, p in zip(names, paths)},
    }


def score_folder(folder: str | Path, **options: Any) -> dict[str, Any]:
    """`score_files` over every `*.jsonl` in `folder`, each file one model named by its stem."""
    paths = sorted(Path(folder).glob("*.jsonl"))
    if not paths:
        raise FileNotFoundError(f"no *.jsonl predictions files in {folder}")
    return score_files(paths, **options)


def format_table(scores: dict[str, Any]) -> str:
    """One line per model and source: n, headline metric with its interval, malformed rate; then the NER readings."""
    lines = [f"{'model':<28} {'source':<16} {'n':>6}  {'headline':<18} {'value':>7}  {'95% CI':<17} {'malformed':>9}"]
    for model, sources in scores["models"].items():
        for source, entry in sources.items():
            interval = f"[{100 * entry['ci_low']:.2f}, {100 * entry['ci_high']:.2f}]"
            lines.append(
                f"{model:<28} {source:<16} {entry['n']:>6}  {entry['headline']:<18} {100 * entry['value']:>7.2f}  "
                f"{interval:<17} {100 * entry['malformed_rate']:>8.1f}%"
            )
            extra = [f"{k} {100 * entry['metrics'][k]:.2f}" for k in ("f1_strict_aligned", "f1_authors") if k in entry["metrics"]]
            if extra:
                lines.append(f"{'':<28} {'':<16} {'':>6}  " + ", ".join(extra))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medtune_utils.score", description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", type=Path, metavar="PREDICTIONS.jsonl", help="source, input, gold, generation[, id]")
    parser.add_argument("--out", type=Path, default=Path(SCORES), help="where to write the scores (default: %(default)s)")
    parser.add_argument("--model", action="append", help="model name per file, in order (default: each file's stem)")
    parser.add_argument("--ner-format", choices=("lines", "entities"), default="lines", help="NER answer format")
    parser.add_argument(
        "--template", choices=sorted(TEMPLATES), default=TEMPLATE, help="template whose label spellings to accept"
    )
    parser.add_argument("--bootstrap-samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    try:
        scores = score_files(args.files, args.model, args.ner_format, args.template, args.bootstrap_samples, args.seed)
    except (DataFormatError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_json_atomic(args.out, scores)
    print(format_table(scores))
    print(f"scores: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
