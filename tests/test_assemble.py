"""Assembly from the real public data: official counts, reproducibility, leakage, caps, notices, outputs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medtune_utils import assemble as assemble_module
from medtune_utils.assemble import COLUMNS, LeakageError, TokenCounter, assemble, run_assembly
from medtune_utils.config import DataConfig, load_profile
from medtune_utils.modeling import build_tiny_tokenizer
from medtune_utils.prompts import build_prompt, training_text
from medtune_utils.records import MissingSourceError
from medtune_utils.run import Run
from medtune_utils.tasks import get_task

TRAIN = {
    "NCBI-disease": 5424,
    "BC5CDR-disease": 4560,
    "BC5CDR-chem": 4560,
    "BC2GM": 12574,
    "JNLPBA": 14690,
    "GAD": 4796,
    "HoC": 12119,
}
DEVEL = {"NCBI-disease": 923, "BC5CDR-disease": 4581, "BC5CDR-chem": 4581, "BC2GM": 2519, "JNLPBA": 3856, "HoC": 1798}
TEST = {"NCBI-disease": 940, "BC5CDR-disease": 4797, "BC5CDR-chem": 4797, "BC2GM": 5038, "JNLPBA": 3856, "HoC": 3547, "GAD": 534}
SMALL = ["NCBI-disease", "GAD", "HoC", "PubMedQA", "ChatDoctor"]


@pytest.fixture(scope="module")
def full(shared_data: Path):
    """Everything in ../shared/data with the default settings (devel split, no caps)."""
    return assemble(DataConfig(dir=str(shared_data)), seed=42)


def _counts(stats, split: str) -> dict[str, int]:
    part = stats[stats.split == split]
    return dict(zip(part.source, part.rows))


@pytest.mark.slow
def test_train_counts_are_the_official_ones(full) -> None:
    counts = _counts(full.stats, "train")
    for source, expected in TRAIN.items():
        assert counts[source] == expected, source
    assert counts["PubMedQA"] == 450  # the 500 non-test questions minus a stratified devel share of 50
    assert counts["ChatDoctor"] == 5452 - 273  # no official split: 5% held out, seeded


@pytest.mark.slow
def test_devel_counts_and_gad_falls_back_to_test(full) -> None:
    counts = _counts(full.stats, "validation")
    for source, expected in DEVEL.items():
        assert counts[source] == expected, source
    assert counts["GAD"] == 534
    splits = dict(zip(full.stats.source, full.stats.source_split))
    assert splits["GAD"] == "test"  # GAD has no devel split; the table says which split was read


@pytest.mark.slow
def test_rows_carry_the_split_they_were_read_from_and_their_document(full) -> None:
    validation = full.dataset["validation"].to_pandas()
    read = validation.groupby("source").split.unique().map(list).to_dict()
    assert read["GAD"] == ["test"] and read["NCBI-disease"] == ["devel"] and read["ChatDoctor"] == ["heldout"]
    assert set(full.dataset["train"]["split"]) == {"train"}
    hoc = validation[validation.source == "HoC"]
    assert (hoc.group == hoc.id.str.rsplit("/", n=1).str[-1].str.rsplit("_", n=1).str[0]).all()  # the PMID
    assert hoc.group.nunique() < len(hoc)  # several sentences per abstract
    others = validation[validation.source != "HoC"]
    assert (others.group == others.id).all()


@pytest.mark.slow
def test_test_split_counts(shared_data: Path) -> None:
    sources = [s for s in TEST if s != "GAD"] + ["GAD", "PubMedQA"]
    assembly = assemble(DataConfig(dir=str(shared_data), sources=sources, eval_split="test", train_rows={"default": 10}), 0)
    counts = _counts(assembly.stats, "validation")
    assert {s: counts[s] for s in TEST} == TEST
    assert counts["PubMedQA"] == 500
    assert set(assembly.stats.loc[assembly.stats.split == "validation", "source_split"]) == {"test"}


@pytest.mark.slow
def test_rows_have_the_released_columns_and_one_family_each(full) -> None:
    assert tuple(full.dataset["train"].column_names) == COLUMNS
    families = dict(zip(full.stats.source, full.stats.task))
    assert families == {
        "NCBI-disease": "ner", "BC5CDR-disease": "ner", "BC5CDR-chem": "ner", "BC2GM": "ner", "JNLPBA": "ner",
        "GAD": "re", "HoC": "cls", "PubMedQA": "qa", "ChatDoctor": "qa",
    }  # fmt: skip
    ids = list(full.dataset["train"]["id"]) + list(full.dataset["validation"]["id"])
    assert len(ids) == len(set(ids))


@pytest.mark.slow
def test_absent_credentialed_and_hub_sources_are_skipped_with_a_notice(full) -> None:
    text = " ".join(full.notices)
    for name in ("MedNLI", "i2b2-2010", "i2b2-2012", "PMC-LLaMA"):
        assert f"skipped {name}" in text
    mednli = next(n for n in full.notices if "MedNLI" in n)
    assert "physionet" in mednli.lower() and "mli_{train,dev,test}_v1.jsonl" in mednli
    assert all("\n" not in notice for notice in full.notices)


def test_explicit_public_source_missing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(MissingSourceError, match="NCBI-disease: not found"):
        assemble(DataConfig(dir=str(tmp_path), sources=["NCBI-disease"]), 0)


def test_explicit_credentialed_source_missing_is_skipped(shared_data: Path) -> None:
    assembly = assemble(DataConfig(dir=str(shared_data), sources=["GAD", "MedNLI"]), 0)
    assert set(assembly.stats.source) == {"GAD"}
    assert any("MedNLI" in n for n in assembly.notices)


def test_credentialed_dir_is_searched(shared_data: Path, sample_dir: Path) -> None:
    config = DataConfig(dir=str(shared_data), credentialed_dir=str(sample_dir), sources=["GAD", "MedNLI"])
    assert set(assemble(config, 0).stats.source) == {"GAD", "MedNLI"}


def test_missing_data_dir_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="data directory not found") as exc:
        assemble(DataConfig(dir=str(tmp_path / "nowhere")), 0)
    assert "\n" not in str(exc.value)


def _digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.mark.slow
def test_same_seed_gives_byte_identical_data_and_another_seed_changes_instructions(shared_data: Path, tmp_path: Path) -> None:
    config = DataConfig(dir=str(shared_data), sources=SMALL)
    first = assemble(config, 7).save_to(Run(tmp_path / "a"))
    second = assemble(config, 7).save_to(Run(tmp_path / "b"))
    assert _digest(first) == _digest(second)
    other = assemble(config, 8)
    original = {r["id"]: r["instruction"] for r in Run(tmp_path / "a").dataset()["train"]}
    changed = sum(original[r["id"]] != r["instruction"] for r in other.dataset["train"])
    assert changed > 0.5 * len(original)  # five or more paraphrases: most rows pick another one
    assert _digest(other.save_to(Run(tmp_path / "c"))) != _digest(first)
    same_rows = sorted(list(Run(tmp_path / "a").dataset()["validation"]["id"]))
    assert sorted(list(other.dataset["validation"]["id"])) == same_rows  # the evaluation rows never depend on the seed


@pytest.mark.slow
def test_every_paraphrase_is_used(full) -> None:
    for source in ("NCBI-disease", "GAD", "HoC"):
        used = {r["instruction"] for r in full.dataset["train"] if r["source"] == source}
        assert len(used) == len(get_task(source).instructions) >= 5


def test_caps_sample_with_the_seed(shared_data: Path) -> None:
    config = DataConfig(dir=str(shared_data), sources=["GAD"], train_rows={"GAD": 100}, validation_rows={"default": 20})
    a, b, c = (assemble(config, seed) for seed in (1, 1, 2))
    assert a.dataset["train"].num_rows == 100 and a.dataset["validation"].num_rows == 20
    assert _counts(a.stats, "train") == {"GAD": 100} and int(a.stats.rows_read.iloc[0]) == 4796
    assert sorted(list(a.dataset["train"]["id"])) == sorted(list(b.dataset["train"]["id"]))
    assert sorted(list(a.dataset["train"]["id"])) != sorted(list(c.dataset["train"]["id"]))


def test_leakage_is_counted_dropped_or_fatal(shared_data: Path) -> None:
    config = DataConfig(dir=str(shared_data), sources=["NCBI-disease", "GAD"])
    reported = assemble(config, 0)
    leaked = dict(zip(reported.stats.source, reported.stats.leaked_inputs))
    assert leaked["NCBI-disease"] > 0 and leaked["GAD"] > 0  # the public splits share a few sentences
    dropped = assemble(DataConfig(**{**config.__dict__, "leakage": "drop"}), 0)
    validation_inputs = {" ".join(r["input"].split()).lower() for r in dropped.dataset["validation"]}
    assert not any(" ".join(r["input"].split()).lower() in validation_inputs for r in dropped.dataset["train"])
    assert dropped.dataset["validation"].num_rows == reported.dataset["validation"].num_rows
    with pytest.raises(LeakageError, match="NCBI-disease"):
        assemble(DataConfig(**{**config.__dict__, "leakage": "fail"}), 0)


def test_dedup_removes_exact_repeats(shared_data: Path) -> None:
    assembly = assemble(DataConfig(dir=str(shared_data), sources=["NCBI-disease"], dedup=True), 0)
    train = assembly.dataset["train"]
    assert len({(r["input"], r["output"]) for r in train}) == train.num_rows
    row = assembly.stats[assembly.stats.split == "train"].iloc[0]
    assert row.duplicates_removed == 23 and row.rows == 5424 - 23


def test_released_parquet_maps_sources(tmp_path: Path) -> None:
    rows = {
        "instruction": ["Tag diseases.", "Decide.", "Chat."],
        "input": ["a b", "x", ""],
        "output": ["a : O\nb : B", "Entailment", "Hello"],
        "source": ["NCBI-disease", "mednli", "some-other-set"],
    }
    folder = tmp_path / "released" / "data"
    folder.mkdir(parents=True)
    pq.write_table(pa.table(rows), folder / "train-00000-of-00001.parquet")
    pq.write_table(pa.table({k: v[:2] for k, v in rows.items()}), folder / "validation-00000-of-00001.parquet")
    assembly = assemble(DataConfig(dir=str(tmp_path), released=str(tmp_path / "released")), 0)
    train = {r["source"]: r for r in assembly.dataset["train"]}
    assert set(train) == {"NCBI-disease", "MedNLI", "some-other-set"}
    assert train["MedNLI"]["task"] == "nli" and train["some-other-set"]["task"] == "qa"
    assert assembly.dataset["validation"].num_rows == 2


def test_run_assembly_writes_everything(sample_dir: Path, tmp_path: Path) -> None:
    profile = load_profile("tiny", {"data.dir": str(sample_dir)})
    assembly = run_assembly(profile, tmp_path)
    data = tmp_path / "data"
    for name in ("dataset_dict.json", "train.jsonl", "validation.jsonl", "stats.csv", "manifest.json"):
        assert (data / name).is_file(), name
    stats = assembly.stats
    assert {"prompt_tokens", "completion_tokens", "prompt_chars", "completion_chars"} <= set(stats.columns)
    assert (stats.prompt_tokens > stats.completion_tokens).all()
    exported = [json.loads(line) for line in (data / "train.jsonl").read_text().splitlines()]
    assert exported == Run(tmp_path).dataset()["train"].to_list()
    env = json.loads((tmp_path / "env.json").read_text())
    assert env["steps"]["assemble"]["source_files"] and env["seed"] == 42 and "torch" in env["packages"]
    assert set(stats.source) == {p.name for p in sample_dir.iterdir() if p.is_dir()} - {"ChatDoctor"} | {"ChatDoctor"}
    assert set(stats[stats.split == "validation"].task) == {"ner", "re", "nli", "cls", "qa"}


def test_token_counter_encodes_each_unique_text_once_and_matches_the_tokenizer(sample_dir: Path) -> None:
    rows = assemble(DataConfig(dir=str(sample_dir)), 0).dataset["train"]
    tokenizer = build_tiny_tokenizer((training_text(r) for r in rows), 256)
    texts = [build_prompt(r["instruction"], r["input"]) for r in rows] + list(rows["output"]) * 2
    counter = TokenCounter(tokenizer, batch_size=7)
    for special in (True, False):
        expected = [len(ids) for ids in tokenizer(texts, add_special_tokens=special)["input_ids"]]
        assert counter.counts(texts, special) == expected
    assert counter.encoded == 2 * len(set(texts)) < 2 * len(texts)  # once per unique text (and special-token choice)
    assert counter.counts(texts[:3]) and counter.encoded == 2 * len(set(texts))


def test_token_counts_are_cached_with_the_dataset_and_only_for_the_same_tokenizer(
    sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile = load_profile("tiny", {"data.dir": str(sample_dir)})
    first = run_assembly(profile, tmp_path).stats
    run = Run(tmp_path)
    cached = json.loads(run.token_counts_path.read_text())
    assert len(cached["counts"]) > 100
    encoded: list[int] = []
    original = assemble_module._encoded_lengths
    monkeypatch.setattr(
        assemble_module,
        "_encoded_lengths",
        lambda tok, texts, special: encoded.append(len(texts)) or original(tok, texts, special),
    )
    again = run_assembly(profile, tmp_path).stats
    assert encoded == [] and again.equals(first)  # same data and tokenizer: every count read from the cache
    other = TokenCounter.load(build_tiny_tokenizer(["another vocabulary entirely"] * 3, 64), run.token_counts_path)
    assert other.known == {} and other.fingerprint != cached["tokenizer"]
    run.token_counts_path.write_text("{not json")
    assert TokenCounter.load(build_tiny_tokenizer(["x y"], 64), run.token_counts_path).known == {}
