"""Answer parsers: they never raise, return the gold's shape, invert the formatter, and tolerate the usual deviations.

`well_formed` means the answer (after `clean_generation` drops an echoed prompt, special tokens and a following
`###` header) is exactly what the formatter writes for the parsed value; any tolerated deviation gives False.
"""

from __future__ import annotations

import functools
import random
import string
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medtune_utils.paths import shared_data_dir
from medtune_utils.prompts import build_prompt
from medtune_utils.records import DataFormatError, MissingSourceError
from medtune_utils.sources.conll import TEMPLATE_MARKERS
from medtune_utils.tasks import TASKS, Parsed, Task, clean_generation, get_task, task_names
from medtune_utils.tasks.classification import LabelTask, MultiLabelTask
from medtune_utils.tasks.freetext import FreeTextTask
from medtune_utils.tasks.ner import NerTask
from medtune_utils.tasks.registry import HOC_CLASSES

NER_FORMATS = ("lines", "entities")
ALL_TASKS: list[Task] = [
    get_task(name, fmt) for name in task_names() for fmt in (NER_FORMATS if isinstance(TASKS[name], NerTask) else ("lines",))
]


def _task_id(task: Task) -> str:
    return f"{task.name}-{task.output_format}" if isinstance(task, NerTask) else task.name


EVAL_SPLITS = ("devel", "test")
# (task, split) for every evaluation split actually read: GAD has no devel split (it falls back to test),
# and the free-text sources hold out one share for both, so each is read once.
EVAL_CASES = [
    pytest.param(task, split, id=f"{_task_id(task)}-{task.resolve_split(split)}")
    for task in ALL_TASKS
    for split in EVAL_SPLITS
    if split == "devel" or task.resolve_split("devel") != task.resolve_split("test")
]
PUBLIC_EVAL_CASES = [case for case in EVAL_CASES if not case.values[0].credentialed]

# Strings a model (or a fuzzer) may produce that stress one parser or another.
ADVERSARIAL = [
    "",
    " ",
    "\n\n\t \n",
    "### Response:",
    "### Response:\n### Response:\n",
    "### Response:\n### Instruction:\n",
    "###",
    "</s>",
    ":" * 40,
    " : ",
    " : \n : \n : ",
    "x : ",
    " : B",
    "x : B-",
    "x : I-XYZ",
    "x : B-PROBLEM",
    "B-",
    "I-XYZ",
    "[occurrence 0]",
    "x [occurrence 0]",
    "x [occurrence 999]",
    "x [occurrence -1]",
    "x [occurrence " + "9" * 5000 + "]",
    "x (PROBLEM) [occurrence 1]",
    " (PROBLEM)",
    "None",
    "none.",
    "None\nNone",
    ",",
    ",,,,,,",
    ", , ,",
    "Yes, No, Maybe",
    "yeſ",
    "contradıction",
    "İ",
    "(PS), (GS), (PS)",
    "\n".join(HOC_CLASSES * 3),
    "Association No association Association",
    "TrIP TrWP PIP No Relations none",
    "\n".join(["x : O"] * 3000),
    "x\n" * 3000,
]


def _gold_value(task: Task, record: Any) -> Any:
    """A record's gold value in the form `parse` returns."""
    if isinstance(task, NerTask):
        return record.tags
    if isinstance(task, MultiLabelTask):
        return record.labels
    if isinstance(task, LabelTask):
        return record.label
    return record.output


def _assert_gold_shape(task: Task, parsed: Parsed, input_text: str) -> None:
    """The parsed value has the form of the task's gold values."""
    assert isinstance(parsed, Parsed)
    assert isinstance(parsed.well_formed, bool)
    value = parsed.value
    if isinstance(task, NerTask):
        if value is None:  # unreadable: no `token : TAG` line (lines) or a blank answer (entities)
            assert not parsed.well_formed
            return
        assert isinstance(value, tuple)
        assert len(value) == len(input_text.split(" "))
        assert set(value) <= set(task.label_names)
    elif isinstance(task, MultiLabelTask):
        assert value is None or isinstance(value, tuple)  # None: the answer names no label and is not `None`
        assert value is None or list(value) == [label for label in task.labels if label in value]  # in the task's order
    elif isinstance(task, LabelTask):
        assert value is None or value in task.labels
    else:
        assert isinstance(task, FreeTextTask)
        assert isinstance(value, str)


def _assert_well_formed_means_exact(task: Task, parsed: Parsed, generation: str, input_text: str) -> None:
    """A well-formed answer is exactly what the formatter writes for the parsed value."""
    if parsed.well_formed and not isinstance(task, FreeTextTask):
        assert clean_generation(generation) == task.render(parsed.value, input_text)


# ---------------------------------------------------------------------------------------------------------------
# Property tests: never raise, always the gold's shape


TOKEN_TEXT = st.text(min_size=1, max_size=8).filter(lambda s: s.split() == [s])
TOKEN = st.one_of(st.sampled_from(["cancer", "IL", "-", "2", ":", "B", "O", "None", "(", ")", "###", "[occurrence"]), TOKEN_TEXT)
TOKENS = st.lists(TOKEN, min_size=1, max_size=12)


@st.composite
def _adversarial(draw: st.DrawFn, tokens: list[str]) -> str:
    """Lines built from the input's tokens, tags (valid and not), labels and the fixed adversarial strings."""
    tag = st.sampled_from(["B", "I", "O", "b", "B-", "I-XYZ", "B-PROBLEM", "I-TEST", "", "O O"])
    label = st.sampled_from([label for task in ALL_TASKS for label in task.label_names] + ["Yes.", "(PS)", "(A)"])
    token = st.sampled_from(tokens)
    piece = st.one_of(
        st.sampled_from(ADVERSARIAL[:-2]),
        st.builds(lambda t, g, sep: f"{t}{sep}{g}", token, tag, st.sampled_from([" : ", ":", " :", ": ", " : : "])),
        st.builds(lambda t, n: f"{t} [occurrence {n}]", token, st.integers(-2, 20)),
        st.builds(
            lambda ts, k: " ".join(ts) + k, st.lists(token, min_size=1, max_size=3), st.sampled_from(["", " (TEST)", " (XYZ)"])
        ),
        label,
        TOKEN_TEXT,
    )
    separator = st.sampled_from(["\n", ", ", " ", "", "\n\n"])
    return draw(separator).join(draw(st.lists(piece, max_size=25)))


def _generations(tokens: list[str]) -> st.SearchStrategy[str]:
    """Random printable text, random unicode, or adversarial lines."""
    return st.one_of(st.text(alphabet=string.printable), st.text(), _adversarial(tokens))


@pytest.mark.slow
@pytest.mark.parametrize("task", ALL_TASKS, ids=_task_id)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_parse_never_raises_and_keeps_gold_shape(task: Task, data: st.DataObject) -> None:
    """Any generation parses to a value of the gold's shape; a well-formed one is exactly the formatter's output."""
    if isinstance(task, NerTask):
        tokens = data.draw(TOKENS, label="tokens")
        input_text = " ".join(tokens)
    else:
        input_text = data.draw(st.text(max_size=60), label="input_text")
        tokens = input_text.split() or ["x"]
    generation = data.draw(_generations(tokens), label="generation")
    parsed = task.parse(generation, input_text)
    _assert_gold_shape(task, parsed, input_text)
    _assert_well_formed_means_exact(task, parsed, generation, input_text)


@pytest.mark.parametrize("task", ALL_TASKS, ids=_task_id)
def test_parse_fixed_adversarial_strings(task: Task) -> None:
    """Each fixed adversarial string, alone and after an echoed prompt, against a few inputs (repeated tokens too)."""
    for input_text in ("x", "x y x", "cancer patients with cancer", "IL - 2 : B None"):
        for generation in ADVERSARIAL:
            for text in (generation, build_prompt(task.instructions[0], input_text) + generation):
                parsed = task.parse(text, input_text)
                _assert_gold_shape(task, parsed, input_text)
                _assert_well_formed_means_exact(task, parsed, text, input_text)


@st.composite
def _iob2_sentence(
    draw: st.DrawFn, entity_types: tuple[str, ...], token_lists: st.SearchStrategy[list[str]] | None = None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Tokens (default: from a small vocabulary, so mentions repeat) with valid IOB2 tags."""
    vocabulary = ["cancer", "breast", "IL", "-", "2", "of", "the", ":", "B", "O", ".", "None", "none.", "p53", "(", "x"]
    default = st.lists(st.sampled_from(vocabulary), min_size=1, max_size=15)
    tokens = draw(token_lists if token_lists is not None else default)
    tags: list[str] = []
    for _ in tokens:
        previous = tags[-1] if tags else "O"
        prefix = draw(st.sampled_from(["O", "B", "I"] if previous != "O" else ["O", "B"]))
        if prefix == "O":
            tags.append("O")
        elif not entity_types:
            tags.append(prefix)
        else:
            kind = previous.partition("-")[2] if prefix == "I" else draw(st.sampled_from(entity_types))
            tags.append(f"{prefix}-{kind}")
    return tuple(tokens), tuple(tags)


NER_TASKS = [task for task in ALL_TASKS if isinstance(task, NerTask)]


@pytest.mark.slow
@pytest.mark.parametrize("task", [t for t in NER_TASKS if t.name in {"NCBI-disease", "i2b2-2012"}], ids=_task_id)
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_ner_round_trip_on_random_sentences(task: NerTask, data: st.DataObject) -> None:
    """`parse(format(tags)) == tags`, well formed, for valid IOB2 tags over repeated tokens (untyped and typed)."""
    tokens, tags = data.draw(_iob2_sentence(task.entity_types))
    input_text = " ".join(tokens)
    assert task.parse(task.format_tags(tokens, tags), input_text) == Parsed(tags, True)


ADVERSARIAL_TOKENS = [
    "###",
    "###Response:",
    "Response:",
    "a###b",
    "</s>",
    "x</s>",
    "<eos>",
    "<|endoftext|>",
    "<|eot_id|>",
    "\ufeffx",
    "x\x00",
] + ["[occurrence", "1]", "2]", "0]", "None", "none.", "NONE", ":", "O", "B", "I", "(", ")", "(PROBLEM)", "(TEST)", "x"]
REAL_FALLBACK = ["breast", "cancer", "IL", "-", "2", "of", "the", "p53", ".", ",", "BRCA1", "(", ")"]


@functools.cache
def _real_tokens() -> list[str]:
    """Distinct tokens of the NCBI-disease devel set in ../shared/data (a small fallback vocabulary when absent)."""
    folder = shared_data_dir() / "NCBI-disease"
    if not folder.is_dir():
        return REAL_FALLBACK
    return sorted({token for record in get_task("NCBI-disease").load(folder, "devel") for token in record.tokens})


@pytest.mark.slow
@pytest.mark.parametrize("task", [t for t in NER_TASKS if t.name in {"NCBI-disease", "i2b2-2012"}], ids=_task_id)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_ner_reader_and_formatter_round_trip_real_and_adversarial_tokens(task: NerTask, data: st.DataObject) -> None:
    """Each token sequence the reader accepts formats and parses back to its tags; the reader refuses only template markers.

    Tokens come from the real NCBI-disease devel set plus tokens that collide with the answer format or the prompt
    template (`###`, `</s>`, `<eos>`, a mention ending like `[occurrence N]`, `None`, type suffixes, a BOM, a NUL).
    """
    token = st.one_of(st.sampled_from(_real_tokens()), st.sampled_from(ADVERSARIAL_TOKENS))
    tokens, tags = data.draw(_iob2_sentence(task.entity_types, st.lists(token, min_size=1, max_size=15)))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "test.tsv"
        lines = "".join(f"{tok}\t{tag}\n" for tok, tag in zip(tokens, tags))
        path.write_text(f"-DOCSTART-\tO\n\n{lines}", encoding="utf-8")  # a leading BOM would be the file's own
        try:
            (record,) = task.read_file(path, "x/")
        except DataFormatError as err:
            assert err.path == str(path) and err.line is not None, str(err)
            assert any(marker in tokens[err.line - 3] for marker in (*TEMPLATE_MARKERS, "\ufeff", "\x00")), str(err)
            return
    assert (record.tokens, record.tags) == (tokens, tags)
    input_text, output = task.to_example(record)
    assert task.parse(output, input_text) == Parsed(tags, True), output


@pytest.mark.parametrize("fmt", NER_FORMATS)
def test_junk_answer_against_a_long_input_parses_in_linear_time(fmt: str) -> None:
    """A 100 KB answer of junk lines against a 16,700-token input (took 55 s and 200 s with quadratic parsing)."""
    rng = random.Random(0)
    words = [f"w{k}" for k in range(3000)] + ["the", "of", "cancer", "-", "IL", "2"] * 200
    input_text = " ".join(rng.choice(words) for _ in range(16_700))
    if fmt == "lines":
        answer = "\n".join(f"{rng.choice(words)} : {rng.choice('BIO')}" for _ in range(12_000))
    else:
        answer = "\n".join(rng.choice(words) + ("" if k % 2 else "-absent") for k in range(20_000))
    task = get_task("NCBI-disease", fmt)
    started = time.perf_counter()
    parsed = task.parse(answer[:100_000], input_text)
    assert time.perf_counter() - started < 3.0
    assert len(parsed.value) == 16_700 and not parsed.well_formed


@pytest.mark.parametrize("typed", [False, True])
def test_mention_that_ends_like_an_occurrence_marker_gets_an_explicit_one(typed: bool) -> None:
    task = get_task("i2b2-2012" if typed else "NCBI-disease", "entities")
    tokens = ("x", "and", "x", "[occurrence", "2]")
    tags = ("O", "O") + (("B-TEST", "I-TEST", "I-TEST") if typed else ("B", "I", "I"))
    output = task.format_tags(tokens, tags)
    assert output == ("x [occurrence 2] (TEST)" if typed else "x [occurrence 2] [occurrence 1]")
    assert task.parse(output, " ".join(tokens)) == Parsed(tags, True)


# ---------------------------------------------------------------------------------------------------------------
# Round trip on real data: every evaluation record of every public source in ../shared/data, and data/sample


def _assert_round_trip(task: Task, folder: Path, split: str) -> None:
    records = task.load(folder, split)
    assert records, f"{task.name}/{split}: no records"
    failures = []
    for record in records:
        input_text, output = task.to_example(record)
        gold = _gold_value(task, record)
        parsed = task.parse(output, input_text)
        if parsed != Parsed(gold, True):
            failures.append((record.id, output[:200], parsed))
    assert not failures, f"{len(failures)} of {len(records)} records do not round-trip; first: {failures[:3]}"


@pytest.mark.slow
@pytest.mark.parametrize(("task", "split"), PUBLIC_EVAL_CASES)
def test_round_trip_shared_data(task: Task, split: str, shared_data: Path) -> None:
    """Every devel/test record of each public source in ../shared/data parses back to its gold, well formed."""
    try:
        folder = task.find_folder(shared_data)
    except MissingSourceError:
        pytest.skip(f"{task.name} is not in {shared_data}")
    _assert_round_trip(task, folder, split)


@pytest.mark.parametrize(("task", "split"), EVAL_CASES)
def test_round_trip_sample(task: Task, split: str, sample_dir: Path) -> None:
    """The same on data/sample, which has every source (synthetic MedNLI and i2b2 files included)."""
    _assert_round_trip(task, task.find_folder(sample_dir), split)


# ---------------------------------------------------------------------------------------------------------------
# Tolerance: exact predictions for the deviations a model makes

NER_INPUT = "Germline mutations cause breast cancer ."
NER_GOLD = ("O", "O", "O", "B", "I", "O")
NER_LINES = "Germline : O\nmutations : O\ncause : O\nbreast : B\ncancer : I\n. : O"
NEXT_INSTRUCTION = "\n\n### Instruction:\nTag every disease mention in the sentence."

PS = "Sustaining proliferative signaling (PS)"
GS = "Evading growth suppressors (GS)"
A = "Inducing angiogenesis (A)"
HOC_GI = "Genomic instability and mutation (GI)"


def _echo(task_name: str, input_text: str, answer: str) -> str:
    """The whole prompt echoed before the answer, as a model without a chat template may do."""
    return build_prompt(get_task(task_name).instructions[0], input_text) + answer


TOLERANCE_CASES = [
    # NER, `lines` format: one `token : TAG` line per input token.
    ("lines-exact", "NCBI-disease", "lines", NER_INPUT, NER_LINES, NER_GOLD, True),
    ("lines-echoed-prompt", "NCBI-disease", "lines", NER_INPUT, _echo("NCBI-disease", NER_INPUT, NER_LINES), NER_GOLD, True),
    ("lines-next-header", "NCBI-disease", "lines", NER_INPUT, NER_LINES + NEXT_INSTRUCTION, NER_GOLD, True),
    ("lines-eos-token", "NCBI-disease", "lines", NER_INPUT, NER_LINES + "</s>", NER_GOLD, True),
    ("lines-extra-text", "NCBI-disease", "lines", NER_INPUT, NER_LINES + "\nThat is all.", NER_GOLD, False),
    ("lines-tight-colon", "NCBI-disease", "lines", NER_INPUT, NER_LINES.replace(" : ", ": "), NER_GOLD, False),
    ("lines-lower-tag", "NCBI-disease", "lines", NER_INPUT, NER_LINES.replace(": B", ": b"), NER_GOLD, False),
    ("lines-upper-tokens", "NCBI-disease", "lines", NER_INPUT, NER_LINES.upper(), NER_GOLD, False),
    # By position (the headline reading): the i-th line tags token i, so a missing line shifts the later tags.
    (
        "lines-missing-O-line",
        "NCBI-disease",
        "lines",
        NER_INPUT,
        NER_LINES.replace("mutations : O\n", ""),
        ("O", "O", "B", "I", "O", "O"),
        False,
    ),
    (
        "lines-missing-B-line",
        "NCBI-disease",
        "lines",
        NER_INPUT,
        NER_LINES.replace("breast : B\n", ""),
        ("O", "O", "O", "I", "O", "O"),
        False,
    ),
    (
        "lines-extra-line",
        "NCBI-disease",
        "lines",
        NER_INPUT,
        NER_LINES.replace("cause : O\n", "cause : O\nof : O\n"),
        ("O", "O", "O", "O", "B", "I"),
        False,
    ),
    (
        "lines-invalid-tag",
        "NCBI-disease",
        "lines",
        NER_INPUT,
        NER_LINES.replace(": I", ": I-XYZ"),
        ("O",) * 3 + ("B", "O", "O"),
        False,
    ),
    (
        "lines-typed",
        "i2b2-2012",
        "lines",
        "CT showed pneumonia",
        "CT : B-TEST\nshowed : O\npneumonia : B-PROBLEM",
        ("B-TEST", "O", "B-PROBLEM"),
        True,
    ),
    # NER, `entities` format: one mention per line, `None` when there is none.
    ("entities-exact", "NCBI-disease", "entities", NER_INPUT, "breast cancer", NER_GOLD, True),
    (
        "entities-echoed-prompt",
        "NCBI-disease",
        "entities",
        NER_INPUT,
        _echo("NCBI-disease", NER_INPUT, "breast cancer"),
        NER_GOLD,
        True,
    ),
    ("entities-next-header", "NCBI-disease", "entities", NER_INPUT, "breast cancer" + NEXT_INSTRUCTION, NER_GOLD, True),
    ("entities-extra-text", "NCBI-disease", "entities", NER_INPUT, "breast cancer\nThese are all diseases.", NER_GOLD, False),
    ("entities-case", "NCBI-disease", "entities", NER_INPUT, "Breast Cancer", NER_GOLD, False),
    ("entities-spacing", "NCBI-disease", "entities", NER_INPUT, "  breast   cancer ", NER_GOLD, False),
    ("entities-none", "NCBI-disease", "entities", "No disease here", "None", ("O", "O", "O"), True),
    ("entities-none-lower", "NCBI-disease", "entities", "No disease here", "none.", ("O", "O", "O"), False),
    ("entities-joined-hyphen", "BC2GM", "entities", "IL - 2 levels rose", "IL-2", ("B", "I", "I", "O", "O"), False),
    ("entities-unknown-mention", "NCBI-disease", "entities", NER_INPUT, "lung cancer", ("O",) * 6, False),
    (
        "entities-typed",
        "i2b2-2012",
        "entities",
        "CT showed pneumonia",
        "CT (TEST)\npneumonia (PROBLEM)",
        ("B-TEST", "O", "B-PROBLEM"),
        True,
    ),
    (
        "entities-typed-missing-type",
        "i2b2-2012",
        "entities",
        "CT showed pneumonia",
        "CT\npneumonia (PROBLEM)",
        ("O", "O", "B-PROBLEM"),
        False,
    ),
    # Single-label tasks.
    ("nli-exact", "MedNLI", "lines", "", "Contradiction", "Contradiction", True),
    ("nli-echoed-prompt", "MedNLI", "lines", "", _echo("MedNLI", "Premise: a\nHypothesis: b", "Neutral"), "Neutral", True),
    ("nli-next-header", "MedNLI", "lines", "", "Entailment" + NEXT_INSTRUCTION, "Entailment", True),
    ("nli-in-sentence", "MedNLI", "lines", "", "The answer is Contradiction.", "Contradiction", False),
    ("nli-lower-case", "MedNLI", "lines", "", "contradiction", "Contradiction", False),
    ("nli-extra-text", "MedNLI", "lines", "", "Neutral\nThe premise does not mention entailment.", "Neutral", False),
    ("nli-verb-form", "MedNLI", "lines", "", "The premise contradicts the hypothesis.", "Contradiction", False),
    ("nli-no-label", "MedNLI", "lines", "", "I cannot tell.", None, False),
    ("gad-exact-short", "GAD", "lines", "", "Association", "Association", True),
    ("gad-exact-long", "GAD", "lines", "", "No association", "No association", True),
    # The longer label contains the shorter one: the longer match wins.
    ("gad-long-in-sentence", "GAD", "lines", "", "There is no association here.", "No association", False),
    ("gad-short-in-sentence", "GAD", "lines", "", "There is an association here.", "Association", False),
    ("gad-lower-case", "GAD", "lines", "", "no association", "No association", False),
    ("gad-not-associated", "GAD", "lines", "", "The gene is not associated with the disease.", "No association", False),
    ("pubmedqa-exact", "PubMedQA", "lines", "", "yes", "yes", True),
    ("pubmedqa-capital-full-stop", "PubMedQA", "lines", "", "Yes.", "yes", False),
    ("pubmedqa-maybe-in-sentence", "PubMedQA", "lines", "", "The answer is maybe.", "maybe", False),
    ("i2b2-2010-code", "i2b2-2010", "lines", "", "TrAP", "TrAP", True),
    ("i2b2-2010-description", "i2b2-2010", "lines", "", "The treatment is given for the problem.", "TrAP", False),
    ("i2b2-2010-negative", "i2b2-2010", "lines", "", "No Relations", "No Relations", True),
    # HoC: labels in the task's order, comma separated, `None` for the empty set.
    ("hoc-exact", "HoC", "lines", "", f"{PS}, {GS}", (PS, GS), True),
    ("hoc-reversed-order", "HoC", "lines", "", f"{GS}, {PS}", (PS, GS), False),
    ("hoc-tight-commas", "HoC", "lines", "", f"{PS},{GS}", (PS, GS), False),
    ("hoc-codes", "HoC", "lines", "", "(PS), (GS)", (PS, GS), False),
    ("hoc-code-A", "HoC", "lines", "", "(A)", (A,), False),
    # The article `a` is not the code `A` of "Inducing angiogenesis (A)".
    ("hoc-article-a", "HoC", "lines", "", "This is a sentence about sustaining proliferative signaling.", (PS,), False),
    ("hoc-none", "HoC", "lines", "", "None", (), True),
    ("hoc-none-lower", "HoC", "lines", "", "none.", (), False),
    ("hoc-echoed-prompt", "HoC", "lines", "", _echo("HoC", "Tumour cells grow.", A), (A,), True),
    ("hoc-next-header", "HoC", "lines", "", A + NEXT_INSTRUCTION, (A,), True),
    ("hoc-nothing-known", "HoC", "lines", "", "Cells grow.", None, False),
    ("hoc-blank", "HoC", "lines", "", "", None, False),
    ("hoc-authors-spelling", "HoC", "lines", "", "Genome instability & mutation (GI)", (HOC_GI,), False),
    # Free text: the answer part, as written.
    (
        "text-echoed-prompt",
        "ChatDoctor",
        "lines",
        "",
        _echo("ChatDoctor", "I have a cough.", "Rest and fluids."),
        "Rest and fluids.",
        True,
    ),
    ("text-next-header", "ChatDoctor", "lines", "", "Rest and fluids.\n### Instruction:\nMore", "Rest and fluids.", True),
    ("text-empty", "PMC-LLaMA", "lines", "", "  </s>", "", False),
]


@pytest.mark.parametrize(
    ("source", "fmt", "input_text", "generation", "expected", "well_formed"),
    [pytest.param(*case[1:], id=case[0]) for case in TOLERANCE_CASES],
)
def test_tolerated_deviations(source: str, fmt: str, input_text: str, generation: str, expected: Any, well_formed: bool) -> None:
    """Each deviation gives the stated prediction, and is flagged unless the answer is exactly in the format."""
    assert get_task(source, fmt).parse(generation, input_text) == Parsed(expected, well_formed)


# ---------------------------------------------------------------------------------------------------------------
# Repeated tokens: tags go to positions, not to the first token with the same text

REPEATED_INPUT = "cancer patients with cancer"
REPEATED_GOLD = ("O", "O", "O", "B")


@pytest.mark.parametrize("fmt", NER_FORMATS)
def test_repeated_token_round_trip_tags_by_position(fmt: str) -> None:
    """Only the second `cancer` is an entity: the formatter says which, and the parser tags that one."""
    task = get_task("NCBI-disease", fmt)
    output = task.format_tags(tuple(REPEATED_INPUT.split(" ")), REPEATED_GOLD)
    expected_output = "cancer : O\npatients : O\nwith : O\ncancer : B" if fmt == "lines" else "cancer [occurrence 2]"
    assert output == expected_output
    assert task.parse(output, REPEATED_INPUT) == Parsed(REPEATED_GOLD, True)


@pytest.mark.parametrize(
    ("fmt", "generation", "expected", "well_formed"),
    [
        # A missing first line: by position the B lands on `with` (the aligned reading puts it on the last `cancer`).
        ("lines", "patients : O\nwith : O\ncancer : B", ("O", "O", "B", "O"), False),
        ("lines", "cancer : B\npatients : O\nwith : O\ncancer : O", ("B", "O", "O", "O"), True),
        # Without an occurrence number a mention is the first one after the previous mention.
        ("entities", "cancer", ("B", "O", "O", "O"), True),
        ("entities", "cancer [occurrence 1]", ("B", "O", "O", "O"), False),
        ("entities", "cancer\ncancer", ("B", "O", "O", "B"), True),
        # An occurrence that does not exist: the first after the cursor, flagged.
        ("entities", "cancer [occurrence 3]", ("B", "O", "O", "O"), False),
    ],
)
def test_repeated_token_generations(fmt: str, generation: str, expected: tuple[str, ...], well_formed: bool) -> None:
    """Generations for the repeated-token sentence tag the token the model pointed at."""
    assert get_task("NCBI-disease", fmt).parse(generation, REPEATED_INPUT) == Parsed(expected, well_formed)
