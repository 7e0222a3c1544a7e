"""Sources -> instruction rows -> a seeded, checked `DatasetDict(train, validation)` with a stats table."""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from datasets import Dataset, DatasetDict

from .config import DataConfig, Profile
from .io import write_text_atomic
from .paths import looks_like_hub_id, resolve
from .prompts import TEMPLATE, build_prompt, training_text
from .records import MissingSourceError, Record
from .run import Run
from .tasks import Task, get_task, match_source, task_names

log = logging.getLogger(__name__)

# The released dataset's four columns, then the task family, the row id, the document it belongs to (HoC: the PMID;
# otherwise the row itself) and the source split it was read from (train, devel, test, heldout, ...).
COLUMNS = ("instruction", "input", "output", "source", "task", "id", "group", "split")
SPLITS = ("train", "validation")
EVAL_SEED = 0  # validation rows and their instructions do not depend on the run seed: every run is scored alike


class LeakageError(RuntimeError):
    """Validation inputs were found in the training rows and the profile asked for `leakage: fail`."""


@dataclass
class Assembly:
    """The assembled dataset, its per-source statistics, the notices shown, and the raw files read."""

    dataset: DatasetDict
    stats: pd.DataFrame
    notices: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)

    def save_to(self, run: Run) -> Path:
        """Write the dataset, its statistics and a manifest of notices and source files into the run's data folder."""
        return run.save_data(self.dataset, self.stats, {"notices": self.notices, "source_files": self.files})


def assemble(data: DataConfig, seed: int) -> Assembly:
    """Build the instruction dataset described by `data` (no files written; see `Assembly.save_to`)."""
    data_dir = resolve(data.dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data directory not found: {data_dir}")
    notices: list[str] = []
    files: dict[str, str] = {}
    rows: dict[str, list[dict[str, Any]]] = {"train": [], "validation": []}
    read_counts: dict[tuple[str, str], int] = {}
    if data.released:
        _add_released(data, seed, rows, read_counts, files)
    else:
        for task, folder in _available_tasks(data, data_dir, notices):
            for split, requested in (("train", "train"), ("validation", data.eval_split)):
                records = task.load(folder, requested)
                read_counts[(task.name, split)] = len(records)
                split_seed = seed if split == "train" else EVAL_SEED
                chosen = _cap(records, _limit(data, split, task.name), split_seed, f"{task.name}/{split}")
                read = task.resolve_split(requested)
                rows[split].extend(to_row(task, record, split_seed, read) for record in chosen)
            files.update(_hash_folder(folder))
    if not rows["train"]:
        raise ValueError(f"no training rows: no usable source in {data_dir} (notices: {' | '.join(notices) or 'none'})")
    duplicates = _dedup(rows["train"]) if data.dedup else Counter()
    leaked = _check_leakage(rows, data.leakage)
    random.Random(seed).shuffle(rows["train"])
    dataset = DatasetDict({split: Dataset.from_list(rows[split], features=None) if rows[split] else _empty() for split in SPLITS})
    stats = _stats(rows, read_counts, duplicates, leaked)
    return Assembly(dataset, stats, notices, files)


def to_row(task: Task, record: Record, seed: int, split: str) -> dict[str, str]:
    """One instruction row read from source split `split`; the paraphrase is chosen by a hash of the seed and the id."""
    choice = random.Random(f"{seed}|{record.id}").randrange(1 << 30)
    input_text, output = task.to_example(record)
    return {
        "instruction": task.instruction_for(record, choice),
        "input": input_text,
        "output": output,
        "source": task.name,
        "task": task.family,
        "id": record.id,
        "group": getattr(record, "group", None) or record.id,
        "split": split,
    }


def run_assembly(profile: Profile, run_dir: str | Path, tokenizer: str | None = None) -> Assembly:
    """Notebook 01's job: assemble, add token lengths, save to `<run_dir>/data/`, record the step (holding the run's lock).

    Token lengths are read from the cache kept with the previous dataset (`Run.token_counts_path`) when it was
    counted with the same tokenizer; only new texts are encoded, and the cache is saved with the new dataset.
    """
    from .modeling import tokenizer_for_stats

    run = Run(run_dir)
    with run.lock("assemble"):
        assembly = assemble(profile.data, profile.seed)
        texts = (training_text(row, profile.data.template) for row in assembly.dataset["train"])
        stats_tokenizer = tokenizer_for_stats(profile, texts, tokenizer)
        counter = None
        if stats_tokenizer is not None:
            counter = TokenCounter.load(stats_tokenizer, run.token_counts_path)
            lengths = token_stats(assembly.dataset, counter, template=profile.data.template)
            assembly.stats = assembly.stats.merge(lengths, on=["source", "split"])
        assembly.save_to(run)
        if counter is not None:
            counter.save(run.token_counts_path)
        run.record_step("assemble", profile, {"notices": assembly.notices, "source_files": assembly.files})
    return assembly


class TokenCounter:
    """Token counts in one tokenizer: each unique text is encoded once, in batches, and remembered (by its hash).

    `load` and `save` keep the counts in a JSON file tagged with a fingerprint of the tokenizer, so a cache made
    with another tokenizer (or another tiny vocabulary) is never used.
    """

    def __init__(self, tokenizer: Any, batch_size: int = 4096) -> None:
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.fingerprint = _fingerprint(tokenizer)
        self.known: dict[str, int] = {}
        self.encoded = 0

    @classmethod
    def load(cls, tokenizer: Any, path: Path) -> TokenCounter:
        """A counter that starts from the counts cached at `path` when they were made with this tokenizer."""
        counter = cls(tokenizer)
        try:
            cached = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        except (OSError, ValueError) as exc:
            log.warning("token count cache %s unreadable (%s); counting again", path, exc)
            cached = {}
        if cached.get("tokenizer") == counter.fingerprint:
            counter.known = {key: int(n) for key, n in cached["counts"].items()}
        return counter

    def save(self, path: Path) -> Path:
        """Write every count known so far, atomically."""
        return write_text_atomic(path, json.dumps({"tokenizer": self.fingerprint, "counts": self.known}, sort_keys=True))

    def counts(self, texts: Sequence[str], special: bool = False) -> list[int]:
        """Token count of each text, with or without the tokenizer's special tokens."""
        keys = [_text_key(text, special) for text in texts]
        new = {key: text for key, text in zip(keys, texts) if key not in self.known}
        pending = list(new.items())
        for start in range(0, len(pending), self.batch_size):
            chunk = pending[start : start + self.batch_size]
            lengths = _encoded_lengths(self.tokenizer, [text for _, text in chunk], special)
            self.known.update((key, n) for (key, _), n in zip(chunk, lengths))
        self.encoded += len(pending)
        return [self.known[key] for key in keys]


def token_stats(dataset: DatasetDict, tokenizer: Any, batch_size: int = 4096, template: str = TEMPLATE) -> pd.DataFrame:
    """Mean prompt (in `template`) and completion length in tokens, per source and split; `tokenizer` may be a `TokenCounter`."""
    counter = tokenizer if isinstance(tokenizer, TokenCounter) else TokenCounter(tokenizer, batch_size)
    frames = []
    for split in SPLITS:
        part = dataset[split]
        prompts = [build_prompt(i, x, template) for i, x in zip(part["instruction"], part["input"])]
        frame = pd.DataFrame(
            {
                "source": part["source"],
                "prompt_tokens": counter.counts(prompts, True),
                "completion_tokens": counter.counts(part["output"], False),
            }
        )
        frames.append(frame.groupby("source", sort=False).mean().reset_index().assign(split=split))
    columns = ["source", "split", "prompt_tokens", "completion_tokens"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def _encoded_lengths(tokenizer: Any, texts: list[str], special: bool) -> list[int]:
    """Token counts of a batch; a fast tokenizer encodes in Rust without building offsets or Python id lists."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "encode_batch_fast"):
        return [len(encoding.ids) for encoding in backend.encode_batch_fast(texts, add_special_tokens=special)]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=special)["input_ids"]]


def _text_key(text: str, special: bool) -> str:
    return hashlib.blake2b(f"{int(special)}{text}".encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


def _fingerprint(tokenizer: Any) -> str:
    """A hash of the tokenizer's full definition (vocabulary, merges, normalizer, special tokens)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    definition = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    return hashlib.sha256(definition.encode()).hexdigest()[:24]


def _available_tasks(data: DataConfig, data_dir: Path, notices: list[str]) -> Iterable[tuple[Task, Path]]:
    explicit = data.sources is not None
    for name in data.sources if explicit else task_names():
        task = get_task(name, data.ner_format, data.template)
        base = resolve(data.credentialed_dir) if task.credentialed and data.credentialed_dir else data_dir
        try:
            folder = task.find_folder(base)
        except MissingSourceError as exc:
            if explicit and not task.credentialed:
                raise
            notices.append(f"skipped {exc}")
            log.warning("skipped %s", exc)
            continue
        yield task, folder


def _limit(data: DataConfig, split: str, source: str) -> int | None:
    caps = data.train_rows if split == "train" else data.validation_rows
    return caps.get(source, caps.get("default"))


def _cap(records: list[Record], limit: int | None, seed: int, salt: str) -> list[Record]:
    """A seeded sample of at most `limit` records, in their original order."""
    if limit is None or len(records) <= limit:
        return records
    keep = sorted(random.Random(f"{seed}|{salt}").sample(range(len(records)), limit))
    return [records[i] for i in keep]


def _dedup(train: list[dict[str, Any]]) -> Counter:
    """Drop repeated (source, input, output) training rows in place; count removals per source."""
    seen: set[tuple[str, str, str]] = set()
    removed: Counter = Counter()
    kept = []
    for row in train:
        key = (row["source"], row["input"], row["output"])
        if key in seen:
            removed[row["source"]] += 1
            continue
        seen.add(key)
        kept.append(row)
    train[:] = kept
    return removed


def _normal(text: str) -> str:
    return " ".join(text.split()).lower()


def _check_leakage(rows: dict[str, list[dict[str, Any]]], policy: str) -> Counter:
    """Count validation rows whose input also appears in training; drop those training rows or fail if asked."""
    validation_inputs = {_normal(r["input"]) for r in rows["validation"] if r["input"].strip()}
    train_inputs = {_normal(r["input"]) for r in rows["train"]}
    leaked = Counter(r["source"] for r in rows["validation"] if r["input"].strip() and _normal(r["input"]) in train_inputs)
    if leaked and policy == "fail":
        detail = ", ".join(f"{s}: {n}" for s, n in sorted(leaked.items()))
        raise LeakageError(f"validation inputs found in training rows ({detail}); set data.leakage to report or drop")
    if leaked and policy == "drop":
        rows["train"][:] = [r for r in rows["train"] if _normal(r["input"]) not in validation_inputs]
    if leaked:
        log.warning("validation inputs also in training rows: %s (policy: %s)", dict(leaked), policy)
    return leaked


def _stats(
    rows: dict[str, list[dict[str, Any]]],
    read_counts: dict[tuple[str, str], int],
    duplicates: Counter,
    leaked: Counter,
) -> pd.DataFrame:
    records = []
    for split in SPLITS:
        by_source: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows[split]:
            by_source[row["source"]].append(row)
        for source, group in sorted(by_source.items()):
            records.append(
                {
                    "source": source,
                    "task": group[0]["task"],
                    "split": split,
                    "source_split": "/".join(sorted({r["split"] for r in group})),
                    "rows": len(group),
                    "rows_read": read_counts.get((source, split), len(group)),
                    "duplicates_removed": duplicates.get(source, 0) if split == "train" else 0,
                    "leaked_inputs": leaked.get(source, 0) if split == "validation" else 0,
                    "prompt_chars": sum(len(build_prompt(r["instruction"], r["input"])) for r in group) / len(group),
                    "completion_chars": sum(len(r["output"]) for r in group) / len(group),
                }
            )
    return pd.DataFrame(records)


def _add_released(
    data: DataConfig,
    seed: int,
    rows: dict[str, list[dict[str, Any]]],
    read_counts: dict[tuple[str, str], int],
    files: dict[str, str],
) -> None:
    """Rows from the released parquet (a local folder of `train-*.parquet` / `validation-*.parquet`, or the hub)."""
    from .sources import read_released

    location = None if looks_like_hub_id(data.released) else resolve(data.released)
    for split in SPLITS:
        if location is not None:
            paths = sorted(location.rglob(f"{split}-*.parquet"))
            if split == "train" and not paths:
                raise FileNotFoundError(f"no train-*.parquet under {location} (data.released)")
            records = [r for p in paths for r in read_released(p, f"released/{split}/{p.stem}/")]
            files.update(_hash_files(paths))
        else:
            records = _released_from_hub(str(data.released), split)
        grouped: dict[str, list[Record]] = defaultdict(list)
        for record in records:
            grouped[match_source(record.source) or record.source].append(record)
        for source, group in sorted(grouped.items()):
            read_counts[(source, split)] = len(group)
            family = get_task(source).family if source in task_names() else "qa"
            split_seed = seed if split == "train" else EVAL_SEED
            for record in _cap(group, _limit(data, split, source), split_seed, f"released/{source}/{split}"):
                rows[split].append(
                    {
                        "instruction": record.instruction,
                        "input": record.input,
                        "output": record.output,
                        "source": source,
                        "task": family,
                        "id": record.id,
                        "group": record.id,
                        "split": "train" if split == "train" else "released-validation",
                    }
                )


def _released_from_hub(repo_id: str, split: str) -> list[Record]:
    from datasets import load_dataset

    from .records import InstructionRecord

    try:
        ds = load_dataset(repo_id, split=split)
    except ValueError:
        if split == "train":
            raise
        return []
    return [
        InstructionRecord(f"released/{split}/{i}", r["instruction"], r["input"], r["output"], r["source"])
        for i, r in enumerate(ds)
    ]


def _hash_folder(folder: Path) -> dict[str, str]:
    return _hash_files(sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix != ".md"))


def _hash_files(paths: Iterable[Path]) -> dict[str, str]:
    return {f"{p.parent.name}/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def _empty() -> Dataset:
    return Dataset.from_dict({c: [] for c in COLUMNS})
