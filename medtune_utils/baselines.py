"""Encoder baselines (notebook 06): BERT-style encoders fine-tuned on a run's own training rows, scored beside its LLMs.

An encoder profile, `configs/encoders/<name>.yaml`, names a checkpoint (a hub id at a pinned revision, or `tiny-bert`: a
tiny BERT built on the spot, with a WordPiece vocabulary trained on the run's training inputs) and its `Trainer`
settings. Each source gets its own model, trained on the run's training rows of that source and scored on the rows the
LLMs are scored on (`evaluate.select_rows`) with the same task metrics (`evaluate.score_predictions`). Predictions go
into the run folder in the LLMs' format under the model name `encoder-<profile>`, and their scores are merged into
`scores.json` beside the other models', so notebook 04 shows them beside the paper's BioBERT/BioClinicalBERT numbers.

Task families become encoder tasks as follows: NER is token classification (the label sits on the first sub-word of
each input token and is read back from there); relations (GAD, i2b2-2010) are sequence classification with the entity
masks (`@GENE$`, ...) as added special tokens; MedNLI and PubMedQA are sentence-pair classification; HoC is multi-label
classification (sigmoid, `threshold`). Free-text sources have no encoder counterpart and are left out with a notice.
"""

from __future__ import annotations

import logging
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .analysis import majority_values
from .config import ConfigError, _apply_mapping, _nest, _parse_overrides, load_yaml
from .evaluate import score_predictions, select_rows
from .paths import looks_like_hub_id, repo_root, resolve
from .run import Run
from .tasks import TASKS, Task, get_task
from .tasks.classification import LabelTask, MultiLabelTask, NliTask, PubMedQaTask, RelationTask
from .tasks.ner import NerTask

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

ENCODER_PROFILES_DIR = "configs/encoders"
TINY_BERT = "tiny-bert"
TOKEN, SINGLE, PAIR, MULTI = "token-classification", "sequence-classification", "pair-classification", "multi-label"
PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
FIGURE = "encoder_baselines"


# ---------------------------------------------------------------- profiles


@dataclass
class TinyBertConfig:
    """Shape of the tiny BERT built on the spot, and its WordPiece vocabulary."""

    hidden_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    intermediate_size: int = 512
    max_position_embeddings: int = 512
    vocab_size: int = 4000
    lowercase: bool = True


@dataclass
class EncoderTrainConfig:
    """`TrainingArguments` for every source's model; `max_length` caps the tokens of one input (special ones included)."""

    learning_rate: float = 5e-5
    num_train_epochs: float = 3.0
    max_steps: int = -1
    per_device_train_batch_size: int = 32
    per_device_eval_batch_size: int = 64
    gradient_accumulation_steps: int = 1
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    lr_scheduler_type: str = "linear"
    max_grad_norm: float = 1.0
    max_length: int = 256
    bf16: bool | None = None
    logging_steps: int = 50


@dataclass
class EncoderProfile:
    """An encoder baseline: which checkpoint (pinned), which sources, how it is trained.

    `lowercase` forces a hub tokenizer's casing (None keeps the checkpoint's own setting; a checkpoint published
    without a tokenizer config loads as lower-casing, which a cased model must override). `sources` None means every
    source of the run that an encoder can learn. `threshold` is the probability above which a HoC label is predicted.
    """

    name: str = "unnamed"
    description: str = ""
    seed: int = 42
    checkpoint: str = TINY_BERT
    revision: str | None = None
    lowercase: bool | None = None
    sources: list[str] | None = None
    threshold: float = 0.5
    tiny: TinyBertConfig = field(default_factory=TinyBertConfig)
    train: EncoderTrainConfig = field(default_factory=EncoderTrainConfig)

    @property
    def model_name(self) -> str:
        """The name its predictions and scores carry in the run folder."""
        return f"encoder-{self.name}"

    @property
    def is_tiny(self) -> bool:
        return self.checkpoint == TINY_BERT


def available_encoder_profiles() -> list[str]:
    """Names of the encoder profiles in `configs/encoders/`."""
    return sorted(p.stem for p in (repo_root() / ENCODER_PROFILES_DIR).glob("*.yaml"))


def encoder_profile_path(name_or_path: str | Path) -> Path:
    """An encoder profile by name (`configs/encoders/<name>.yaml`) or by path."""
    candidate = Path(name_or_path)
    path = (
        resolve(candidate)
        if candidate.suffix in {".yaml", ".yml"}
        else repo_root() / ENCODER_PROFILES_DIR / f"{name_or_path}.yaml"
    )
    if not path.is_file():
        known = ", ".join(available_encoder_profiles()) or "none"
        raise ConfigError(f"unknown encoder profile {str(name_or_path)!r} (no {path}); known encoder profiles: {known}")
    return path


def load_encoder_profile(name_or_path: str | Path, overrides: dict[str, Any] | str | None = None) -> EncoderProfile:
    """Load an encoder profile, then apply `overrides` (dotted or nested keys); unknown keys and bad values are errors."""
    path = encoder_profile_path(name_or_path)
    try:
        raw = load_yaml(path.read_text(encoding="utf-8")) or {}
    except Exception as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    profile = EncoderProfile(name=path.stem)
    _apply_mapping(profile, raw, str(path), prefix="")
    if overrides:
        _apply_mapping(profile, _nest(_parse_overrides(overrides)), "overrides", prefix="")
    _validate(profile, path)
    return profile


def _validate(profile: EncoderProfile, path: Path) -> None:
    where = f"{path}"
    if not profile.is_tiny:
        if looks_like_hub_id(profile.checkpoint) and not profile.revision:
            raise ConfigError(f"{where}: checkpoint {profile.checkpoint!r} is a hub id: pin it with `revision` (a commit hash)")
        if not looks_like_hub_id(profile.checkpoint) and not resolve(profile.checkpoint).is_dir():
            raise ConfigError(f"{where}: checkpoint {profile.checkpoint!r} is neither {TINY_BERT}, a hub id nor a folder")
    unknown = [s for s in profile.sources or [] if s not in TASKS or encoder_kind(get_task(s)) is None]
    if unknown:
        able = ", ".join(s for s, t in TASKS.items() if encoder_kind(t) is not None)
        raise ConfigError(f"{where}: sources {unknown} have no encoder task; expected some of {able}")
    train, tiny = profile.train, profile.tiny
    limit = tiny.max_position_embeddings if profile.is_tiny else 512
    checks = {
        "threshold": 0 < profile.threshold < 1,
        "train.warmup_ratio": 0 <= train.warmup_ratio < 1,
        f"train.max_length (8 to {limit})": 8 <= train.max_length <= limit,
        "tiny.hidden_size (a multiple of tiny.num_attention_heads)": tiny.hidden_size % max(tiny.num_attention_heads, 1) == 0,
    }
    for key, ok in checks.items():
        if not ok:
            raise ConfigError(f"{where}: {key} is out of range in encoder profile {profile.name!r}")


# ---------------------------------------------------------------- tasks and inputs


def encoder_kind(task: Task) -> str | None:
    """How an encoder learns `task`: token, sequence, sentence-pair or multi-label classification; None for free text."""
    if isinstance(task, NerTask):
        return TOKEN
    if isinstance(task, MultiLabelTask):
        return MULTI
    if isinstance(task, (NliTask, PubMedQaTask)):
        return PAIR
    if isinstance(task, LabelTask):
        return SINGLE
    return None


def label_list(task: Task) -> list[str]:
    """The classes of the encoder's output layer, in the task's own order."""
    return list(task.label_names)


def pair_fields(task: Task) -> tuple[str, str]:
    """How a pair task's row input (`to_example`) introduces its two texts: the first's prefix, the second's separator."""
    if isinstance(task, NliTask):
        return ("Sentence 1: ", "\nSentence 2: ") if task.layout == "authors" else ("Premise: ", "\nHypothesis: ")
    return "Question: ", "\nContext: "


def split_pair(task: Task, row: dict[str, Any]) -> tuple[str, str]:
    """The two texts of a pair task's row input (`Premise: ...\\nHypothesis: ...`), or a clear error."""
    prefix, separator = pair_fields(task)
    text = row["input"]
    first, found, second = text.partition(separator)
    if not first.startswith(prefix) or not found:
        expected = f"{prefix.strip()} ...{separator!r}..."
        raise ValueError(f"row {row['id']} ({task.name}): input does not read as {expected}: {text[:80]!r}")
    return first[len(prefix) :], second


def build_wordpiece_tokenizer(
    texts: list[str], vocab_size: int, lowercase: bool, special: tuple[str, ...] = ()
) -> PreTrainedTokenizerBase:
    """A BERT-style WordPiece tokenizer trained on `texts`; `special` (entity masks) stay whole tokens."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token=UNK))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=[PAD, UNK, CLS, SEP, MASK, *special], show_progress=False
    )
    tok.train_from_iterator(texts, trainer=trainer)
    ids = [(CLS, tok.token_to_id(CLS)), (SEP, tok.token_to_id(SEP))]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}", pair=f"{CLS} $A {SEP} $B:1 {SEP}:1", special_tokens=ids
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        unk_token=UNK,
        cls_token=CLS,
        sep_token=SEP,
        mask_token=MASK,
        model_max_length=1 << 30,
    )


def entity_masks(tasks: dict[str, Task]) -> tuple[str, ...]:
    """Every entity mask of the relation tasks, in order of first appearance."""
    return tuple(dict.fromkeys(mask for task in tasks.values() if isinstance(task, RelationTask) for mask in task.masks))


@dataclass
class Encoded:
    """A source's rows as model inputs, with what is needed to read predictions back."""

    features: list[dict[str, Any]]
    word_ids: list[list[int | None]]
    truncated: list[bool]
    shown: list[str]


def encode(tokenizer: PreTrainedTokenizerBase, task: Task, rows: list[dict[str, Any]], max_length: int) -> Encoded:
    """Tokenize rows (truncated to `max_length`) with their gold labels as training targets."""
    kind = encoder_kind(task)
    if kind == TOKEN:
        args: tuple[list[Any], ...] = ([row["input"].split(" ") for row in rows],)
    elif kind == PAIR:
        pairs = [split_pair(task, row) for row in rows]
        args = ([a for a, _ in pairs], [b for _, b in pairs])
    else:
        args = ([row["input"] for row in rows],)
    words = kind == TOKEN
    full = tokenizer(*args, is_split_into_words=words, verbose=False)["input_ids"]
    enc = tokenizer(*args, is_split_into_words=words, truncation=True, max_length=max_length)
    labels = label_list(task)
    features, word_ids = [], []
    for i, row in enumerate(rows):
        item = {key: enc[key][i] for key in enc}
        ids = enc.word_ids(i) if words else []
        item["labels"] = _target(task, kind, row, labels, ids)
        features.append(item)
        word_ids.append(ids)
    shown = tokenizer.batch_decode(enc["input_ids"])
    return Encoded(features, word_ids, [len(ids) > max_length for ids in full], shown)


def _target(task: Task, kind: str | None, row: dict[str, Any], labels: list[str], word_ids: list[int | None]) -> Any:
    """The training target of one row: label ids per sub-word (first sub-word only), a class id, or a 0/1 vector."""
    gold = task.gold(row["output"], row["input"])
    unknown = [g for g in (gold if isinstance(gold, tuple) else [gold]) if g not in labels]
    if unknown:
        raise ValueError(f"row {row['id']} ({task.name}): gold {unknown} not among the labels {labels}")
    if kind == MULTI:
        return [float(label in gold) for label in labels]
    if kind != TOKEN:
        return labels.index(gold)
    targets, seen = [], set()
    for word in word_ids:
        targets.append(-100 if word is None or word in seen else labels.index(gold[word]))
        if word is not None:
            seen.add(word)
    return targets


def decode(task: Task, logits: np.ndarray, encoded: Encoded, rows: list[dict[str, Any]], threshold: float) -> list[Any]:
    """Predicted values in the gold's own form: tags per input token (O where truncated away), a label, or a label set."""
    kind, labels = encoder_kind(task), label_list(task)
    if kind == MULTI:
        cut = float(np.log(threshold / (1 - threshold)))
        return [tuple(label for label, z in zip(labels, row) if z > cut) for row in logits]
    if kind != TOKEN:
        return [labels[int(np.argmax(row))] for row in logits]
    values = []
    for row, scores, word_ids in zip(rows, logits, encoded.word_ids):
        tags = ["O"] * len(row["input"].split(" "))
        seen: set[int] = set()
        for position, word in enumerate(word_ids):
            if word is not None and word not in seen:
                seen.add(word)
                tags[word] = labels[int(np.argmax(scores[position]))]
        values.append(tuple(tags))
    return values


# ---------------------------------------------------------------- training


def _tokenizer_for(profile: EncoderProfile, task: Task, tiny: PreTrainedTokenizerBase | None) -> PreTrainedTokenizerBase:
    """The tiny tokenizer, or a fresh hub tokenizer (pinned revision, casing as the profile says, task masks added)."""
    if tiny is not None:
        return tiny
    from transformers import AutoTokenizer

    casing = {} if profile.lowercase is None else {"do_lower_case": profile.lowercase}
    tokenizer = AutoTokenizer.from_pretrained(_location(profile.checkpoint), revision=profile.revision, **casing)
    if isinstance(task, RelationTask):
        tokenizer.add_tokens(list(task.masks), special_tokens=True)
    return tokenizer


def _model_for(profile: EncoderProfile, task: Task, tokenizer: PreTrainedTokenizerBase) -> Any:
    """A fresh classifier for `task`: the tiny BERT from scratch, or the checkpoint with a new head."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, BertConfig

    labels = label_list(task)
    head = {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {label: i for i, label in enumerate(labels)},
        "problem_type": "multi_label_classification" if encoder_kind(task) == MULTI else None,
    }
    auto = AutoModelForTokenClassification if encoder_kind(task) == TOKEN else AutoModelForSequenceClassification
    torch.manual_seed(profile.seed)
    if profile.is_tiny:
        shape = profile.tiny
        config = BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=shape.hidden_size,
            num_hidden_layers=shape.num_hidden_layers,
            num_attention_heads=shape.num_attention_heads,
            intermediate_size=shape.intermediate_size,
            max_position_embeddings=shape.max_position_embeddings,
            pad_token_id=tokenizer.pad_token_id,
            **head,
        )
        return auto.from_config(config)
    model = auto.from_pretrained(_location(profile.checkpoint), revision=profile.revision, **head)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    return model


def training_arguments(profile: EncoderProfile, out_dir: str, progress: bool) -> Any:
    """The `TrainingArguments` of every source's model: no checkpoints kept, bf16 where the GPU supports it."""
    import torch
    from transformers import TrainingArguments

    cfg = profile.train
    cuda = torch.cuda.is_available()
    bf16 = cfg.bf16 if cfg.bf16 is not None else bool(cuda and torch.cuda.is_bf16_supported())
    return TrainingArguments(
        output_dir=out_dir,
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        per_device_eval_batch_size=cfg.per_device_eval_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_ratio,  # below 1: a fraction of the steps
        lr_scheduler_type=cfg.lr_scheduler_type,
        max_grad_norm=cfg.max_grad_norm,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        save_strategy="no",
        report_to=[],
        seed=profile.seed,
        data_seed=profile.seed,
        use_cpu=not cuda,
        bf16=bf16,
        disable_tqdm=not progress,
        dataloader_num_workers=0,
    )


def fine_tune(
    profile: EncoderProfile,
    task: Task,
    train_rows: list[dict[str, Any]],
    eval_rows: list[dict[str, Any]],
    tiny_tokenizer: PreTrainedTokenizerBase | None,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train one source's model and predict its evaluation rows: prediction records and the training log."""
    from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding, Trainer

    tokenizer = _tokenizer_for(profile, task, tiny_tokenizer)
    train = encode(tokenizer, task, train_rows, profile.train.max_length)
    evaluated = encode(tokenizer, task, eval_rows, profile.train.max_length)
    kind = encoder_kind(task)
    collator = DataCollatorForTokenClassification(tokenizer) if kind == TOKEN else DataCollatorWithPadding(tokenizer)
    with tempfile.TemporaryDirectory(prefix="medtune-encoder-") as out_dir:
        trainer = Trainer(
            model=_model_for(profile, task, tokenizer),
            args=training_arguments(profile, out_dir, progress),
            train_dataset=train.features,
            data_collator=collator,
        )
        trainer.train()
        logits = trainer.predict(evaluated.features).predictions
    values = decode(task, logits, evaluated, eval_rows, profile.threshold)
    records = [
        {
            "id": row["id"],
            "source": row["source"],
            "task": row["task"],
            "group": row["group"],
            "input": row["input"],
            "prompt": shown,
            "generation": task.render(value, row["input"]),
            "prediction": value,
            "gold": task.gold(row["output"], row["input"]),
            "well_formed": True,
            "budget": profile.train.max_length,
            "hit_budget": truncated,
            "template": f"encoder:{kind}",
            "model": profile.model_name,
        }
        for row, value, shown, truncated in zip(eval_rows, values, evaluated.shown, evaluated.truncated)
    ]
    history = [
        {
            "source": task.name,
            "step": entry["step"],
            "epoch": entry.get("epoch"),
            "loss": entry["loss"],
            "learning_rate": entry.get("learning_rate"),
        }
        for entry in trainer.state.log_history
        if "loss" in entry
    ]
    return records, history


# ---------------------------------------------------------------- the whole baseline


@dataclass
class BaselineResult:
    """What `run_baselines` wrote: the model name, its scores per source, and the sources left out (with why)."""

    model: str
    scores: dict[str, Any]
    skipped: dict[str, str]
    run: Run

    def table(self) -> pd.DataFrame:
        """Every model of the run, headline per source (encoder and LLMs side by side)."""
        from .tables import scores_table

        return scores_table(self.run.scores())


def run_baselines(
    profile: str | Path | EncoderProfile,
    run_dir: str | Path,
    overrides: dict[str, Any] | str | None = None,
    progress: bool = True,
) -> BaselineResult:
    """Fine-tune the profile's encoder per source on the run's training rows; score it on the run's evaluation rows.

    The evaluation rows and bootstrap settings are the run's own (`config.yaml`), so the encoder is scored on exactly
    the rows the LLMs are. Its predictions replace its earlier set; its scores are merged into `scores.json`.
    """
    encoder = profile if isinstance(profile, EncoderProfile) else load_encoder_profile(profile, overrides)
    run = Run(run_dir)
    run_profile = run.profile()
    data = run.dataset()
    rows = select_rows(data["validation"], run_profile)
    tasks, skipped = _choose_tasks(encoder, rows, run_profile.data.ner_format, run_profile.data.template)
    indices: dict[str, list[int]] = defaultdict(list)
    for index, source in enumerate(data["train"]["source"]):
        indices[source].append(index)
    train_by_source = {source: data["train"].select(indices[source]).to_list() for source in tasks}
    for source in [s for s in tasks if not train_by_source[s]]:
        skipped[source] = "no training rows in the run"
        del tasks[source]
    for source, why in skipped.items():
        log.warning("encoder %s: %s left out (%s)", encoder.model_name, source, why)
    if not tasks:
        raise ValueError(f"{run.dir}: no source an encoder can learn has both training and evaluation rows ({skipped})")
    tiny = _tiny_tokenizer(encoder, data["train"]["input"], tasks) if encoder.is_tiny else None
    records, history = [], []
    for source, task in tasks.items():
        chosen = [row for row in rows if row["source"] == source]
        found, log_rows = fine_tune(encoder, task, train_by_source[source], chosen, tiny, progress)
        records.extend(found)
        history.extend(log_rows)
    majority = majority_values(data["train"].select_columns(["source", "input", "output"]), tasks)
    scores, _ = score_predictions(records, tasks, run_profile.eval.bootstrap_samples, run_profile.seed, majority)
    fresh = {
        "run": run.name,
        "profile": run_profile.name,
        "eval_split": run_profile.data.eval_split,
        "source_splits": {row["source"]: row["split"] for row in rows if row["source"] in tasks},
    }
    with run.lock("encoder-baselines"):
        run.write_predictions(encoder.model_name, records)
        run.write_encoder_log(encoder.model_name, history)
        run.merge_scores({encoder.model_name: scores}, fresh)
    return BaselineResult(encoder.model_name, scores, skipped, run)


def _choose_tasks(
    encoder: EncoderProfile, rows: list[dict[str, Any]], ner_format: str, template: str
) -> tuple[dict[str, Task], dict[str, str]]:
    """The evaluated sources the encoder learns (the profile's `sources`, else all it can), and the others with why.

    Each task reads rows as the run wrote them (its NER format and its template's input layout).
    """
    tasks: dict[str, Task] = {}
    skipped: dict[str, str] = {}
    for source in dict.fromkeys(row["source"] for row in rows):
        task = get_task(source, ner_format, template)
        if encoder_kind(task) is None:
            skipped[source] = "free text: no encoder task"
        elif encoder.sources is not None and source not in encoder.sources:
            skipped[source] = "not in the encoder profile's sources"
        else:
            tasks[source] = task
    return tasks, skipped


def _tiny_tokenizer(encoder: EncoderProfile, texts: list[str], tasks: dict[str, Task]) -> PreTrainedTokenizerBase:
    """The tiny BERT's tokenizer, trained on every training input of the run (as the tiny Llama's is)."""
    shape = encoder.tiny
    return build_wordpiece_tokenizer(texts, shape.vocab_size, shape.lowercase, entity_masks(tasks))


def _location(checkpoint: str) -> str:
    """A local folder (resolved against the repository root) when it exists, else the hub id as given."""
    local = resolve(checkpoint)
    return str(local) if local.exists() else checkpoint


# ---------------------------------------------------------------- figure and table


def plot_baselines(run: Run) -> Figure:
    """Every model of the run (encoder and LLMs, 95% intervals) beside the paper's encoder numbers for the same sources."""
    from .figures import plot_results
    from .report import collect_scores, load_paper_results

    ours = collect_scores([run])
    paper = load_paper_results()
    paper = paper[(paper.role == "encoder baseline") & paper.source.isin(set(ours.source))]
    return plot_results(ours, paper)


def save_report(run_dir: str | Path) -> list[Path]:
    """The figure (PNG and PDF) and the table (Markdown, LaTeX, CSV) of notebook 06, in the run's figures folder."""
    from .figures import save_figure
    from .tables import save_table, scores_table

    run = Run(run_dir)
    paths = save_figure(plot_baselines(run), run.figures_dir, FIGURE)
    caption = "Encoder baselines re-run here beside the run's LLMs (percent; 95% bootstrap intervals)."
    return paths + save_table(scores_table(run.scores()), run.figures_dir, FIGURE, caption)
