"""Every raw-format reader rejects bad input with one clear line: the file, the line (when one applies), what was expected.

Each case writes a small malformed file to `tmp_path` and reads it the way the task registry does. A few positive
cases check that ordinary variations (CRLF, a BOM, no trailing blank line, `-DOCSTART-`, a header) still load.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import Dataset, DatasetDict

from medtune_utils.records import DataFormatError
from medtune_utils.run import Run
from medtune_utils.sources import read_released
from medtune_utils.tasks.registry import get_task

Reader = Callable[[Path], Sequence[Any]]

TAB = "\t"
HOC_ZERO = ",".join(f"{k}_0" for k in range(10))
GOOD_JSONL = '{"sentence1": "No fever.", "sentence2": "Afebrile.", "gold_label": "entailment", "pairID": "p1"}'
GOOD_INSTRUCTION = '{"instruction": "Answer.", "input": "", "output": "Rest."}'
REST, LIST_OUTPUT = '"Rest."', '["Rest."]'
LABELLED_PUBMEDQA = {
    "111": {"QUESTION": "Does it work?", "CONTEXTS": ["It worked."], "final_decision": "yes"},
    "222": {"QUESTION": "Is it safe?", "CONTEXTS": ["Unclear."], "final_decision": "maybe"},
}


def _read(source: str) -> Reader:
    """The registry's reader for `source`, with the id prefix the loader would use."""
    return lambda path: get_task(source).read_file(path, f"{source}/test/")


def _read_pubmedqa_test(path: Path) -> Sequence[Any]:
    """Load the PubMedQA test split: a valid labelled file (written if absent) beside the (bad) test ground truth at `path`."""
    _write_labelled_pubmedqa(path.parent)
    return get_task("PubMedQA").load(path.parent, "test")


def _write_labelled_pubmedqa(folder: Path) -> None:
    """The valid labelled PubMedQA file that the test ground truth is checked against, unless already there."""
    if not (folder / "ori_pqal.json").exists():
        (folder / "ori_pqal.json").write_text(json.dumps(LABELLED_PUBMEDQA, indent=4), encoding="utf-8")


def _parquet(columns: dict[str, list[object]], store_schema: bool = True) -> bytes:
    """A parquet file in memory, with the given columns."""
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink, store_schema=store_schema)
    return sink.getvalue()


def _read_released(path: Path) -> Sequence[Any]:
    return read_released(path, "released/train/x/")


NER = _read("NCBI-disease")
TYPED = _read("i2b2-2012")
GAD = _read("GAD")
I2B2_2010 = _read("i2b2-2010")
HOC = _read("HoC")
MEDNLI = _read("MedNLI")
PUBMEDQA = _read("PubMedQA")
CHAT = _read("ChatDoctor")
PMC = _read("PMC-LLaMA")


@dataclass(frozen=True)
class Case:
    """One malformed file: its content, how it is read, the line at fault (None: whole file) and an expected phrase."""

    id: str
    read: Reader
    line: int | None
    expect: str
    content: str | bytes
    filename: str = "input.tsv"


JSONL, ARRAY, PARQUET = "mli_test_v1.jsonl", "GenMedGPT-5k.json", "train-00000.parquet"
PQA, PQA_TEST = "ori_pqal.json", "test_ground_truth.json"
HOC_HEAD = "labels\tsentence\tindex\n"
HOC_NINE = HOC_ZERO.rsplit(",", 1)[0]
HOC_SWAPPED = "1_0,0_0," + HOC_ZERO.split(",", 2)[2]
HOC_BAD_VALUE = HOC_ZERO.replace("3_0", "3_2")
GAD_OK = "@GENE$ in @DISEASE$\t1\n"
PQA_OK = '"111": {"QUESTION": "q", "CONTEXTS": ["c"], "final_decision": "yes"}'
PQA_NEWLINE_PMID = PQA_OK.replace("111", "1\\n2").replace("yes", "?")
PQA_BLANK_CONTEXT = PQA_OK.replace('["c"]', '[" "]')
PQA_NO_CONTEXTS = PQA_OK.replace('["c"]', "[]")
PQA_SURROGATE = PQA_OK.replace('["c"]', '["c\\udc00"]')
JSONL_SURROGATE = GOOD_JSONL.replace("Afebrile.", "Afeb\\ud800").replace("p1", "p2")
INSTRUCTION_SURROGATE = GOOD_INSTRUCTION.replace("Rest.", "Rest\\ud83d")
TYPES = "expected O or B-/I- with a type in"
INSTRUCTION_NO_OUTPUT = '{\n    "instruction": "Answer.",\n    "input": "Hi"\n  }'

CASES = [
    # CoNLL, untyped B/I/O (the BioBERT NER sets).
    Case("conll-token-without-tab", NER, 2, "expected 2 tab-separated columns", "Aspirin\tO\ntruncated\n"),
    Case("conll-three-columns", NER, 1, "expected 2 tab-separated columns (token<TAB>tag), found 3", "Aspirin\tO\tNN\n"),
    Case("conll-unknown-tag", NER, 2, "expected one of B, I, O", "Aspirin\tO\ncancer\tB-Disease\n"),
    Case("conll-I-after-O", NER, 2, "expected IOB2", "the\tO\ncancer\tI\n"),
    Case("conll-I-at-sentence-start", NER, 4, "expected IOB2", "breast\tB\ncancer\tI\n\ntumour\tI\n"),
    Case("conll-token-with-space", NER, 2, "expected a token without whitespace", "the\tO\nbreast cancer\tB\n"),
    Case("conll-empty-token", NER, 2, "expected a token without whitespace", "the\tO\n\tB\n"),
    Case("conll-empty-file", NER, None, "expected at least one example", b""),
    Case("conll-whitespace-only", NER, None, "expected at least one example", " \n\t\n\r\n\n"),
    Case("conll-non-utf8-line-3", NER, 3, "expected UTF-8", b"the\tO\nbreast\tB\ncanc\xe9r\tI\n"),
    Case("conll-only-docstart", NER, None, "expected token<TAB>tag", "-DOCSTART-\tO\n\n"),
    Case("conll-crlf-error-line-3", NER, 3, "expected one of B, I, O", "the\tO\r\n\r\ncancer\tX\r\n"),
    Case("conll-bom-error-line-2", NER, 2, "expected 2 tab-separated columns", "\ufeffthe\tO\ncancer\n"),
    Case("conll-nul-in-token", NER, 2, "contains a NUL byte", "the\tO\nca\x00ncer\tB\n"),
    Case("conll-bom-in-token", NER, 3, "byte-order mark (U+FEFF) after the start", "the\tO\n\ncancer\ufeff\tB\n"),
    Case("conll-token-###", NER, 2, "holds '###', which the prompt template reserves", "the\tO\n###\tO\n"),
    Case("conll-token-with-###-inside", NER, 1, "holds '###'", "a###b\tB\n"),
    Case("conll-token-eos", NER, 2, "holds '</s>'", "the\tO\n</s>\tO\n"),
    Case("conll-token-eos-inside", NER, 1, "holds '<eos>'", "x<eos>\tO\n"),
    Case("conll-token-eot", NER, 1, "holds '<|eot_id|>'", "<|eot_id|>\tO\n"),
    # CoNLL, typed (i2b2 2012: PROBLEM, TEST, TREATMENT, CLINICAL_DEPT, EVIDENTIAL, OCCURRENCE).
    Case(
        "typed-I-TEST-after-B-PROBLEM",
        TYPED,
        2,
        "expected IOB2 (an entity starts with B-TEST)",
        "chest\tB-PROBLEM\nx-ray\tI-TEST\n",
    ),
    Case("typed-I-at-sentence-start", TYPED, 3, "expected IOB2", "pain\tB-PROBLEM\n\nscan\tI-TEST\n"),
    Case("typed-unknown-type", TYPED, 1, f"{TYPES} ['CLINICAL_DEPT', 'EVIDENTIAL'", "aspirin\tB-DRUG\n"),
    Case("typed-untyped-tag", TYPED, 1, TYPES, "pain\tB\n"),
    # Relation TSV (GAD: `sentence<TAB>label`, test files with a header; i2b2 2010 in the BLUE layout).
    Case("gad-one-column", GAD, 1, "expected 2 columns (sentence, label) or 3", "@GENE$ causes @DISEASE$ 1\n"),
    Case("gad-four-columns", GAD, 2, "found 4", f"{GAD_OK}0\t@GENE$ in @DISEASE$\t1\textra\n"),
    Case("gad-unknown-label", GAD, 1, "expected one of ['0', '1']", "@GENE$ in @DISEASE$\tyes\n"),
    Case("gad-missing-masks", GAD, 2, "expected at least 2 entity masks", f"{GAD_OK}BRCA1 in breast cancer\t0\n"),
    Case("gad-blank-line-in-middle", GAD, 2, "blank line; expected sentence<TAB>label", f"{GAD_OK}\n{GAD_OK}"),
    Case("gad-empty-sentence", GAD, 1, "empty sentence; expected", " \t1\n"),
    Case(
        "gad-header-then-bad-label",
        GAD,
        3,
        "expected one of ['0', '1']",
        f"index\tsentence\tlabel\n0\t{GAD_OK}1\t@GENE$ @DISEASE$\t2\n",
    ),
    Case("gad-3-column-line-among-2", GAD, 3, "3 columns, but line 1 has 2; expected one layout", f"{GAD_OK}{GAD_OK}7\t{GAD_OK}"),
    Case("gad-2-column-line-among-3", GAD, 3, "2 columns, but line 2 has 3", f"index\tsentence\tlabel\n0\t{GAD_OK}{GAD_OK}"),
    Case(
        "gad-repeated-index",
        GAD,
        4,
        "duplicate id '1' (also at line 3); expected unique ids",
        f"index\tsentence\tlabel\n0\t{GAD_OK}1\t{GAD_OK}1\t{GAD_OK.replace('1', '0')}",
    ),
    Case("gad-header-only", GAD, None, "expected sentence<TAB>label", "index\tsentence\tlabel\n"),
    Case(
        "i2b2-2010-unknown-label",
        I2B2_2010,
        2,
        "expected one of ['No Relations', 'PIP'",
        "index\tsentence\tlabel\n0\t@treatment$ for @problem$\tTrXP\n",
    ),
    # HoC (BLURB): header `labels<TAB>sentence<TAB>index`, ten `k_v` items, index `PMID_sN`.
    Case(
        "hoc-wrong-header",
        HOC,
        1,
        "expected the header labels<TAB>sentence<TAB>index",
        f"label\tsentence\tidx\n{HOC_ZERO}\tText.\t1_s0\n",
    ),
    Case(
        "hoc-nine-label-items",
        HOC,
        2,
        "expected 10 comma-separated k_v label items, found 9",
        f"{HOC_HEAD}{HOC_NINE}\tText.\t1_s0\n",
    ),
    Case("hoc-items-out-of-order", HOC, 2, "expected 0_0 or 0_1", f"{HOC_HEAD}{HOC_SWAPPED}\tText.\t1_s0\n"),
    Case(
        "hoc-item-bad-value", HOC, 3, "expected 3_0 or 3_1", f"{HOC_HEAD}{HOC_ZERO}\tText.\t1_s0\n{HOC_BAD_VALUE}\tMore.\t1_s1\n"
    ),
    Case("hoc-index-without-underscore", HOC, 2, "expected PMID_sN", f"{HOC_HEAD}{HOC_ZERO}\tText.\t22239943s0\n"),
    Case(
        "hoc-two-columns", HOC, 3, "expected 3 tab-separated columns", f"{HOC_HEAD}{HOC_ZERO}\tText.\t1_s0\n{HOC_ZERO}\tMore.\n"
    ),
    Case("hoc-empty-sentence", HOC, 2, "empty sentence; expected", f"{HOC_HEAD}{HOC_ZERO}\t \t1_s0\n"),
    Case(
        "hoc-repeated-index",
        HOC,
        4,
        "duplicate id '1_s0' (also at line 2)",
        f"{HOC_HEAD}{HOC_ZERO}\tText.\t1_s0\n{HOC_ZERO}\tMore.\t1_s1\n{HOC_ZERO}\tAgain.\t1_s0\n",
    ),
    Case("hoc-header-only", HOC, None, "expected labels<TAB>sentence<TAB>index lines", f"{HOC_HEAD}\n"),
    # MedNLI JSON Lines.
    Case(
        "mednli-invalid-json-line-2",
        MEDNLI,
        2,
        "expected one JSON object per line",
        f'{GOOD_JSONL}\n{{"sentence1": "a",\n',
        JSONL,
    ),
    Case(
        "mednli-missing-gold-label",
        MEDNLI,
        1,
        "missing field 'gold_label'; expected sentence1, sentence2, gold_label",
        '{"sentence1": "a", "sentence2": "b"}\n',
        JSONL,
    ),
    Case(
        "mednli-unknown-label",
        MEDNLI,
        3,
        "expected one of ['contradiction', 'entailment', 'neutral']",
        f"{GOOD_JSONL}\n\n{GOOD_JSONL.replace('entailment', '-')}\n",
        JSONL,
    ),
    Case(
        "mednli-non-string-field", MEDNLI, 1, "field 'sentence1' must be a string", GOOD_JSONL.replace('"No fever."', "42"), JSONL
    ),
    Case(
        "mednli-not-an-object",
        MEDNLI,
        2,
        "expected a JSON object with sentence1",
        f'{GOOD_JSONL}\n["a", "b", "entailment"]\n',
        JSONL,
    ),
    Case(
        "mednli-huge-integer",
        MEDNLI,
        2,
        "expected one JSON object per line",
        f'{GOOD_JSONL}\n{{"pairID": {"9" * 5000}}}\n',
        JSONL,
    ),
    Case("mednli-repeated-pair-id", MEDNLI, 3, "duplicate id 'p1' (also at line 1)", f"{GOOD_JSONL}\n\n{GOOD_JSONL}\n", JSONL),
    Case(
        "mednli-lone-surrogate",
        MEDNLI,
        2,
        "field 'sentence2' holds a lone UTF-16 surrogate",
        f"{GOOD_JSONL}\n{JSONL_SURROGATE}\n",
        JSONL,
    ),
    Case("mednli-deep-nesting", MEDNLI, 2, "expected one JSON object per line", f"{GOOD_JSONL}\n{'[' * 100_000}\n", JSONL),
    # PubMedQA PQA-L: the labelled file and the official test ground truth.
    Case("pubmedqa-invalid-json", PUBMEDQA, 3, "expected a JSON object {PMID: record}", f"{{\n  {PQA_OK},\n}}\n", PQA),
    Case("pubmedqa-not-an-object", PUBMEDQA, 1, "expected a non-empty JSON object {PMID: record}", '[{"QUESTION": "q"}]\n', PQA),
    Case(
        "pubmedqa-missing-contexts",
        PUBMEDQA,
        3,
        "PMID '222': missing 'CONTEXTS'; expected QUESTION, CONTEXTS, final_decision",
        f'{{\n  {PQA_OK},\n  "222": {{"QUESTION": "q", "final_decision": "no"}}\n}}\n',
        PQA,
    ),
    Case(
        "pubmedqa-bad-final-decision",
        PUBMEDQA,
        2,
        "expected yes, no or maybe",
        f"{{\n  {PQA_OK.replace('yes', 'Yes')}\n}}\n",
        PQA,
    ),
    Case(
        "pubmedqa-repeated-pmid",
        PUBMEDQA,
        3,
        "duplicate key '111' (the last copy would win)",
        f"{{\n  {PQA_OK},\n  {PQA_OK.replace('yes', 'no')}\n}}\n",
        PQA,
    ),
    Case(
        "pubmedqa-blank-context",
        PUBMEDQA,
        2,
        "PMID '111': CONTEXTS must be a non-empty list of non-empty strings",
        f"{{\n  {PQA_BLANK_CONTEXT}\n}}\n",
        PQA,
    ),
    Case(
        "pubmedqa-empty-contexts-list",
        PUBMEDQA,
        2,
        "CONTEXTS must be a non-empty list",
        f"{{\n  {PQA_NO_CONTEXTS}\n}}\n",
        PQA,
    ),
    Case(
        "pubmedqa-lone-surrogate",
        PUBMEDQA,
        2,
        "lone UTF-16 surrogate",
        f"{{\n  {PQA_SURROGATE}\n}}\n",
        PQA,
    ),
    Case("pubmedqa-pmid-with-newline", PUBMEDQA, 1, "expected yes, no or maybe", f"{{{PQA_NEWLINE_PMID}}}\n", PQA),
    Case(
        "pubmedqa-test-pmid-not-labelled",
        _read_pubmedqa_test,
        3,
        "PMID '333' is not in the labelled questions file; expected",
        '{\n    "111": "yes",\n    "333": "no"\n}\n',
        PQA_TEST,
    ),
    Case(
        "pubmedqa-test-label-disagrees",
        _read_pubmedqa_test,
        3,
        "disagrees with final_decision 'maybe'",
        '{\n    "111": "yes",\n    "222": "no"\n}\n',
        PQA_TEST,
    ),
    Case(
        "pubmedqa-test-invalid-json",
        _read_pubmedqa_test,
        3,
        "expected a JSON object {PMID: answer}",
        '{\n    "111": "yes"\n    "222": "maybe"\n}\n',
        PQA_TEST,
    ),
    # Instruction JSON: ChatDoctor arrays, PMC-LLaMA JSON Lines.
    Case(
        "chat-truncated-mid-element", CHAT, 3, "expected a JSON array of objects", f'[\n  {GOOD_INSTRUCTION},\n  {{"instr', ARRAY
    ),
    Case("chat-truncated-after-element", CHAT, 3, "expected , or ]", f"[\n  {GOOD_INSTRUCTION},\n  {GOOD_INSTRUCTION}\n", ARRAY),
    Case(
        "chat-missing-output",
        CHAT,
        3,
        "missing field 'output'; expected instruction, input, output",
        f"[\n  {GOOD_INSTRUCTION},\n  {INSTRUCTION_NO_OUTPUT}\n]\n",
        ARRAY,
    ),
    Case(
        "chat-element-not-object",
        CHAT,
        3,
        "expected a JSON object with instruction",
        f'[\n  {GOOD_INSTRUCTION},\n  "text"\n]\n',
        ARRAY,
    ),
    Case(
        "chat-non-string-field",
        CHAT,
        1,
        "field 'output' must be a string, found list",
        f"[{GOOD_INSTRUCTION.replace(REST, LIST_OUTPUT)}]",
        ARRAY,
    ),
    Case("chat-empty-output", CHAT, 2, "expected a non-empty string", f"[\n{GOOD_INSTRUCTION.replace('Rest.', ' ')}\n]", ARRAY),
    Case(
        "chat-lone-surrogate",
        CHAT,
        3,
        "field 'output' holds a lone UTF-16 surrogate",
        f"[\n  {GOOD_INSTRUCTION},\n  {INSTRUCTION_SURROGATE}\n]\n",
        ARRAY,
    ),
    Case("chat-top-level-object", CHAT, 1, "expected a JSON array of objects", GOOD_INSTRUCTION, ARRAY),
    Case("chat-text-after-array", CHAT, 3, "expected the end of file", f"[{GOOD_INSTRUCTION}]\n\n]\n", ARRAY),
    Case("chat-empty-array", CHAT, None, "expected objects with instruction, input, output", "[ ]\n", ARRAY),
    Case(
        "chat-huge-integer",
        CHAT,
        3,
        "expected a JSON array of objects",
        f'[\n  {GOOD_INSTRUCTION},\n  {{"output": {"9" * 5000}}}\n]',
        ARRAY,
    ),
    Case(
        "pmc-jsonl-bad-line",
        PMC,
        2,
        "expected one JSON object per line",
        f"{GOOD_INSTRUCTION}\n{GOOD_INSTRUCTION[:-1]}\n",
        "pmc.jsonl",
    ),
    Case(
        "pmc-jsonl-missing-instruction",
        PMC,
        3,
        "expected instruction, input, output",
        f'{GOOD_INSTRUCTION}\n{GOOD_INSTRUCTION}\n{{"input": "", "output": "x"}}\n',
        "pmc.jsonl",
    ),
    # The released parquet.
    Case(
        "released-missing-column",
        _read_released,
        None,
        "missing columns ['source']; expected instruction, input, output",
        _parquet({"instruction": ["Tag."], "input": ["x"], "output": ["y"]}),
        PARQUET,
    ),
    Case(
        "released-not-parquet",
        _read_released,
        None,
        "expected parquet with columns instruction, input, output, source",
        b"instruction,input,output,source\nTag.,x,y,NER\n",
        PARQUET,
    ),
    Case(
        "released-null-value",
        _read_released,
        None,
        "row 0: every column must be a string; expected",
        _parquet({"instruction": ["Tag."], "input": ["x"], "output": [None], "source": ["NER"]}),
        PARQUET,
    ),
    Case(
        "released-non-utf8-column-name",
        _read_released,
        None,
        "column names are not valid UTF-8",
        _parquet({c: ["x"] for c in ("instruction", "input", "output", "source", "zzqq")}, store_schema=False).replace(
            b"zzqq", b"\xff\xfeqq"
        ),
        PARQUET,
    ),
    Case(
        "released-empty-output",
        _read_released,
        None,
        "row 1: empty instruction or output; expected",
        _parquet({"instruction": ["a", "b"], "input": ["x", "y"], "output": ["z", " "], "source": ["NER", "NER"]}),
        PARQUET,
    ),
]


def _write(folder: Path, name: str, content: str | bytes) -> Path:
    """Write `content` byte for byte (no newline translation) and return the path."""
    path = folder / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every entry under `folder` with its bytes (None for what is not a regular file), to show nothing changed."""
    return {str(p): p.read_bytes() if p.is_file() and not p.is_fifo() else None for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_malformed_input_is_one_clear_line(case: Case, tmp_path: Path) -> None:
    path = _write(tmp_path, case.filename, case.content)
    if case.read is _read_pubmedqa_test:
        _write_labelled_pubmedqa(tmp_path)
    before = _snapshot(tmp_path)
    with pytest.raises(DataFormatError) as info:
        case.read(path)
    assert _snapshot(tmp_path) == before
    err = info.value
    message = str(err)
    assert "\n" not in message and "\r" not in message, message
    assert err.path == str(path)
    assert err.line == case.line, message
    where = f"{path}:{case.line}: " if case.line is not None else f"{path}: "
    assert message.startswith(where), message
    assert case.expect in message, message


def test_cases_are_distinct() -> None:
    assert len(CASES) >= 24
    assert len({c.id for c in CASES}) == len(CASES)
    assert len({(c.read, c.content) for c in CASES}) == len(CASES)


# Files that are not regular, readable files: refused up front by every reader, naming the file.

FILE_READERS = {
    "conll": (NER, "train.tsv"),
    "relation": (GAD, "train.tsv"),
    "hoc": (HOC, "train.tsv"),
    "jsonl": (MEDNLI, JSONL),
    "pubmedqa": (PUBMEDQA, PQA),
    "json-array": (CHAT, ARRAY),
    "parquet": (_read_released, PARQUET),
}


def _directory(path: Path) -> None:
    path.mkdir()
    (path / "part.tsv").write_text("x\tO\n")


def _symlink_loop(path: Path) -> None:
    path.symlink_to(path.name)


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _dangling_symlink(path: Path) -> None:
    path.symlink_to("missing-target")


BAD_ENTRIES = {
    "directory": (_directory, "is a directory; expected a regular data file"),
    "symlink-loop": (_symlink_loop, "a symbolic link loop"),
    "fifo": (_fifo, "is not a regular file (a FIFO, socket or device)"),
    "dangling-symlink": (_dangling_symlink, "file not found"),
}


@pytest.mark.parametrize("reader_name", FILE_READERS)
@pytest.mark.parametrize("entry", BAD_ENTRIES)
def test_split_path_that_is_not_a_regular_file(entry: str, reader_name: str, tmp_path: Path) -> None:
    """A directory named like a split file, a symlink loop, a FIFO (which would block forever), a dangling link."""
    make, expect = BAD_ENTRIES[entry]
    read, filename = FILE_READERS[reader_name]
    path = tmp_path / filename
    make(path)
    before = _snapshot(tmp_path)
    with pytest.raises(DataFormatError) as info:
        read(path)
    assert _snapshot(tmp_path) == before
    assert str(info.value).startswith(f"{path}: ") and expect in str(info.value), str(info.value)
    assert info.value.line is None and "\n" not in str(info.value)


@pytest.mark.parametrize("reader_name", FILE_READERS)
def test_unreadable_file_simulated(reader_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file the user may not read (simulated: tests run as root, where chmod 000 does not stop reading)."""
    read, filename = FILE_READERS[reader_name]
    path = _write(tmp_path, filename, b"content")

    def refuse(self: Path, *args: object, **kwargs: object) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    monkeypatch.setattr(pq, "read_table", lambda source, *a, **k: refuse(Path(source)))
    with pytest.raises(DataFormatError) as info:
        read(path)
    assert str(info.value).startswith(f"{path}: ") and "Permission denied" in str(info.value), str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file anyway; test_unreadable_file_simulated covers it")
def test_unreadable_file_chmod(tmp_path: Path) -> None:
    path = _write(tmp_path, "train.tsv", "x\tO\n")
    path.chmod(0)
    with pytest.raises(DataFormatError, match="Permission denied") as info:
        NER(path)
    assert str(info.value).startswith(f"{path}: ")


@pytest.mark.parametrize("entry", ["symlink-loop", "dangling-symlink"])
def test_source_folder_that_is_a_broken_link_is_an_error_not_a_skip(entry: str, tmp_path: Path) -> None:
    """A source folder that is a symlink loop is an error naming it, not "not found" (which assembly skips)."""
    folder = tmp_path / "GAD"
    BAD_ENTRIES[entry][0](folder)
    with pytest.raises(DataFormatError) as info:
        get_task("GAD").find_folder(tmp_path)
    assert str(info.value).startswith(f"{folder}: ") and "expected the source's folder" in str(info.value)


def test_source_folder_that_is_a_file(tmp_path: Path) -> None:
    _write(tmp_path, "GAD", GAD_OK)
    with pytest.raises(DataFormatError, match="is a file; expected the source's folder"):
        get_task("GAD").find_folder(tmp_path)


def test_truncated_arrow_file_names_it_and_how_to_rebuild(tmp_path: Path) -> None:
    run = Run(tmp_path / "run")
    rows = [{"instruction": "i", "input": f"x{k}", "output": "y", "source": "GAD"} for k in range(40)]
    run.save_data(DatasetDict({"train": Dataset.from_list(rows), "validation": Dataset.from_list(rows[:4])}), pd.DataFrame(), {})
    arrow = next((run.data_dir / "train").glob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[:-200])
    before = _snapshot(run.dir)
    with pytest.raises(DataFormatError) as info:
        run.dataset()
    assert _snapshot(run.dir) == before
    message = str(info.value)
    assert message.startswith(f"{arrow}: unreadable Arrow data") and "rerun notebooks/01_assemble_instructions.ipynb" in message


# Positive cases: ordinary variations that must load.


def test_conll_crlf_line_endings(tmp_path: Path) -> None:
    path = _write(tmp_path, "train.tsv", "breast\tB\r\ncancer\tI\r\n\r\n\r\nfine\tO\r\n")
    records = NER(path)
    assert [(r.tokens, r.tags) for r in records] == [(("breast", "cancer"), ("B", "I")), (("fine",), ("O",))]


def test_conll_utf8_bom(tmp_path: Path) -> None:
    path = _write(tmp_path, "train.tsv", "\ufeffbreast\tB\ncancer\tI\n")
    (record,) = NER(path)
    assert record.tokens == ("breast", "cancer")


def test_conll_final_sentence_without_trailing_blank_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "test.tsv", "a\tO\n\nlast\tB\nsentence\tI")
    records = NER(path)
    assert [r.tokens for r in records] == [("a",), ("last", "sentence")]
    assert [r.id for r in records] == ["NCBI-disease/test/0", "NCBI-disease/test/1"]


def test_conll_docstart_lines_skipped(tmp_path: Path) -> None:
    path = _write(tmp_path, "train.tsv", "-DOCSTART-\tO\n\nthe\tO\ntumour\tB\n\n-DOCSTART-\tO\n\nfine\tO\n")
    records = NER(path)
    assert [r.tokens for r in records] == [("the", "tumour"), ("fine",)]
    assert all("-DOCSTART-" not in r.tokens for r in records)


def test_conll_typed_i2b2_2012(tmp_path: Path) -> None:
    path = _write(tmp_path, "train.tsv", "chest\tB-TEST\nx-ray\tI-TEST\nshowed\tO\npneumonia\tB-PROBLEM\n")
    (record,) = TYPED(path)
    assert record.tags == ("B-TEST", "I-TEST", "O", "B-PROBLEM")


def test_gad_test_style_header(tmp_path: Path) -> None:
    text = f"index{TAB}sentence{TAB}label\n7{TAB}@GENE$ in @DISEASE$.{TAB}1\n8{TAB}@GENE$ not in @DISEASE$.{TAB}0\n"
    records = GAD(_write(tmp_path, "test.tsv", text))
    assert [(r.id, r.label) for r in records] == [("GAD/test/7", "Association"), ("GAD/test/8", "No association")]


def test_gad_header_after_bom_and_crlf(tmp_path: Path) -> None:
    text = f"\ufeffindex{TAB}sentence{TAB}label\r\n0{TAB}@GENE$ in @DISEASE$.{TAB}1\r\n\r\n"
    (record,) = GAD(_write(tmp_path, "test.tsv", text))
    assert record.sentence == "@GENE$ in @DISEASE$."


def test_hoc_crlf(tmp_path: Path) -> None:
    labels = HOC_ZERO.replace("9_0", "9_1")
    (record,) = HOC(_write(tmp_path, "test.tsv", f"labels\tsentence\tindex\r\n{labels}\tText.\t123_s4\r\n"))
    assert record.group == "123" and len(record.labels) == 1


def test_jsonl_and_json_with_bom(tmp_path: Path) -> None:
    lines = f"\ufeff{GOOD_JSONL}\r\n\r\n{GOOD_JSONL.replace('p1', 'p2')}\r\n"
    assert len(MEDNLI(_write(tmp_path, "mli_test_v1.jsonl", lines))) == 2
    array = f"\ufeff[\r\n {GOOD_INSTRUCTION},\r\n {GOOD_INSTRUCTION}\r\n]\r\n"
    assert len(CHAT(_write(tmp_path, "GenMedGPT-5k.json", array))) == 2


def test_pubmedqa_test_split(tmp_path: Path) -> None:
    records = _read_pubmedqa_test(_write(tmp_path, "test_ground_truth.json", '{"222": "maybe"}'))
    assert [(r.id, r.label) for r in records] == [("PubMedQA/test/222", "maybe")]


def test_released_parquet(tmp_path: Path) -> None:
    table = {"instruction": ["Tag."], "input": [""], "output": ["x : O"], "source": ["NCBI-disease"]}
    (record,) = _read_released(_write(tmp_path, "train-00000.parquet", _parquet(table)))
    assert record.source == "NCBI-disease"
