"""The task registry: one entry per source dataset.

Adding a dataset means adding one entry here (`python -m medtune_utils.new_source NAME --like GAD` writes one),
plus a reader function named by the entry's `reader` when the file layout is new; README "Add a dataset".
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from ..prompts import TEMPLATE, get_template
from . import instructions as ins
from .base import Task
from .classification import MultiLabelTask, NliTask, PubMedQaTask, RelationTask
from .freetext import FreeTextTask
from .ner import NerTask

BIOBERT_NER = (
    "Public: BioBERT's pre-processed NER data (token<TAB>B/I/O files train.tsv, devel.tsv, test.tsv); "
    "`python -m medtune_utils.download` fetches it (see data/README.md)."
)
NER_SPLITS = {"train": "train.tsv", "devel": "devel.tsv", "test": "test.tsv"}
I2B2_2012_TYPES = ("PROBLEM", "TEST", "TREATMENT", "CLINICAL_DEPT", "EVIDENTIAL", "OCCURRENCE")
HOC_CLASSES = tuple(ins.HOC_LEGEND.split("\n"))
HOC_CODES = ("PS", "GS", "CD", "RI", "A", "IM", "GI", "TPI", "CE", "ID")
# How the authors' HoC outputs spell the hallmarks that they name differently (preprocessing-datasets/preprocess_hoc.py).
HOC_AUTHORS_SPELLING = {
    "Activating invasion and metastasis (IM)": "Activating invasion & metastasis (IM)",
    "Genomic instability and mutation (GI)": "Genome instability & mutation (GI)",
}
I2B2_2010_LABELS = ("TrIP", "TrWP", "TrCP", "TrAP", "TrNAP", "TeRP", "TeCP", "PIP", "No Relations")


def _ner(name: str, entity: str, entities: str, aliases: tuple[str, ...] = ()) -> NerTask:
    return NerTask(
        name=name,
        family="ner",
        description=f"{entity} mentions, untyped IOB2",
        instructions=tuple(t.format(entity=entity, entities=entities) for t in ins.NER_LINES),
        entity_instructions=tuple(t.format(entity=entity, entities=entities) for t in ins.NER_ENTITIES),
        dirnames=(name,),
        split_files=NER_SPLITS,
        obtain=BIOBERT_NER,
        aliases=aliases,
    )


def _i2b2_2012() -> NerTask:
    fields = {
        "entity": "clinical concept or event",
        "entities": "clinical concepts and events",
        "types": ", ".join(I2B2_2012_TYPES),
    }
    return NerTask(
        name="i2b2-2012",
        family="ner",
        description="i2b2 2012 temporal relations corpus: clinical events, typed IOB2",
        instructions=tuple(t.format(**fields) for t in ins.NER_LINES_TYPED),
        entity_instructions=tuple(t.format(**fields) for t in ins.NER_ENTITIES_TYPED),
        entity_types=I2B2_2012_TYPES,
        dirnames=("i2b2-2012",),
        split_files=NER_SPLITS,
        credentialed=True,
        obtain=(
            "Credentialed: request the 2012 i2b2 Temporal Relations data from the n2c2 portal (DBMI Data Portal, "
            "Harvard) under its data-use agreement, convert it to CoNLL files i2b2-2012/{train,devel,test}.tsv with "
            "token<TAB>B-TYPE/I-TYPE/O lines (types " + ", ".join(I2B2_2012_TYPES) + "), and point "
            "data.credentialed_dir at the folder that holds i2b2-2012/ (see data/README.md)."
        ),
    )


def _build() -> dict[str, Task]:
    tasks: list[Task] = [
        _ner("NCBI-disease", "disease", "diseases", aliases=("ncbi",)),
        _ner("BC5CDR-disease", "disease", "diseases", aliases=("bc5cdr disease", "bc5cdrdisease")),
        _ner("BC5CDR-chem", "chemical", "chemicals", aliases=("bc5cdr chemical", "bc5cdrchemical")),
        _ner("BC2GM", "gene or gene product", "genes and gene products", aliases=("bc2", "gene mention")),
        _ner(
            "JNLPBA",
            "bio-entity (protein, DNA, RNA, cell line or cell type)",
            "bio-entities (proteins, DNA, RNA, cell lines and cell types)",
        ),
        _i2b2_2012(),
        RelationTask(
            name="GAD",
            family="re",
            description="gene-disease association, binary (label 1 = association)",
            instructions=ins.GAD,
            labels=("Association", "No association"),
            raw_labels={"1": "Association", "0": "No association"},
            positive_label="Association",
            surface_forms={
                "Association": ("associated", "positive", "yes"),
                "No association": ("not associated", "negative", "no"),
            },
            masks=("@GENE$", "@DISEASE$"),
            dirnames=("GAD",),
            split_files={"train": "train.tsv", "test": "test.tsv"},
            obtain=(
                "Public: BioBERT's pre-processed RE data, GAD fold 1 (GAD/train.tsv without header, "
                "GAD/test.tsv with header index, sentence, label); see data/README.md."
            ),
        ),
        RelationTask(
            name="i2b2-2010",
            family="re",
            description="i2b2 2010 relations between problems, tests and treatments (8 types + No Relations)",
            instructions=ins.I2B2_2010,
            labels=I2B2_2010_LABELS,
            raw_labels={**{label: label for label in I2B2_2010_LABELS}, "false": "No Relations"},
            negative_labels=("No Relations",),
            surface_forms={
                label: (line.split(": ", 1)[1],)
                for label, line in zip(I2B2_2010_LABELS, ins.I2B2_2010_LEGEND.split("\n"))
                if label != "No Relations"
            }
            | {"No Relations": ("no relation", "none")},
            masks=("@problem$", "@test$", "@treatment$"),
            dirnames=("i2b2-2010",),
            split_files={"train": "train.tsv", "devel": "dev.tsv", "test": "test.tsv"},
            credentialed=True,
            obtain=(
                "Credentialed: request the 2010 i2b2/VA relations data from the n2c2 portal under its data-use "
                "agreement, convert it to the BLUE layout i2b2-2010/{train,dev,test}.tsv (header index, sentence, "
                "label; concepts masked as @problem$, @test$, @treatment$; labels "
                + ", ".join(I2B2_2010_LABELS[:-1])
                + " or false) and point data.credentialed_dir at the folder that holds i2b2-2010/ (see data/README.md)."
            ),
        ),
        NliTask(
            name="MedNLI",
            family="nli",
            description="natural language inference on clinical notes",
            instructions=ins.MEDNLI,
            labels=("Entailment", "Contradiction", "Neutral"),
            raw_labels={"entailment": "Entailment", "contradiction": "Contradiction", "neutral": "Neutral"},
            surface_forms={"Entailment": ("entails",), "Contradiction": ("contradicts",)},
            dirnames=("MedNLI", "mednli"),
            split_files={"train": "mli_train_v1.jsonl", "devel": "mli_dev_v1.jsonl", "test": "mli_test_v1.jsonl"},
            credentialed=True,
            obtain=(
                "Credentialed: download MedNLI from PhysioNet (https://physionet.org/content/mednli/) after signing its "
                "data-use agreement, and place mli_{train,dev,test}_v1.jsonl in MedNLI/ under data.credentialed_dir "
                "(see data/README.md)."
            ),
        ),
        MultiLabelTask(
            name="HoC",
            family="cls",
            description="hallmarks of cancer, multi-label sentence classification",
            instructions=ins.HOC,
            labels=HOC_CLASSES,
            surface_forms={label: (f"({code})", label.rsplit(" (", 1)[0]) for label, code in zip(HOC_CLASSES, HOC_CODES)},
            authors_spelling=HOC_AUTHORS_SPELLING,
            dirnames=("HoC",),
            split_files={"train": "train.tsv", "devel": "dev.tsv", "test": "test.tsv"},
            obtain=(
                "Public: the BLURB HoC split (HoC/{train,dev,test}.tsv with header labels, sentence, index); see data/README.md."
            ),
            aliases=("hallmarks of cancer", "hoc"),
        ),
        PubMedQaTask(
            name="PubMedQA",
            family="qa",
            description="PubMedQA PQA-L yes/no/maybe",
            instructions=ins.PUBMEDQA,
            labels=("yes", "no", "maybe"),
            dirnames=("PubMedQA",),
            split_files={"train": "ori_pqal.json", "devel": "ori_pqal.json", "test": "test_ground_truth.json"},
            obtain=(
                "Public: ori_pqal.json and test_ground_truth.json from github.com/pubmedqa/pubmedqa (data/); see data/README.md."
            ),
        ),
        FreeTextTask(
            name="ChatDoctor",
            family="qa",
            description="patient questions answered by doctors (HealthCareMagic-100k or GenMedGPT-5k)",
            instructions=ins.CHATDOCTOR,
            dirnames=("ChatDoctor", "ChatDoctor-GenMedGPT-5k", "ChatDoctor-HealthCareMagic-100k"),
            obtain=(
                "Public: HealthCareMagic-100k.json or GenMedGPT-5k.json from github.com/Kent0n-Li/ChatDoctor, "
                "in a ChatDoctor/ folder; "
                "see data/README.md."
            ),
            aliases=("chatdoctor", "healthcaremagic", "genmedgpt"),
        ),
        FreeTextTask(
            name="PMC-LLaMA",
            family="qa",
            description="PMC-LLaMA instructions (UMLS, MedMCQA, PubMedQA PQA-A); own instructions kept",
            instructions=ins.PMC_LLAMA,
            keep_source_instruction=True,
            dirnames=("PMC-LLaMA", "pmc_llama_instructions"),
            obtain=(
                "Public (hub only): export the HF dataset axiong/pmc_llama_instructions to JSON Lines "
                "(instruction, input, output) in a PMC-LLaMA/ folder; see data/README.md."
            ),
            aliases=("pmc llama", "pmcllama", "pmc_llama_instructions"),
        ),
    ]
    return {task.name: task for task in tasks}


TASKS: dict[str, Task] = _build()


def get_task(name: str, ner_format: str = "lines", template: str = TEMPLATE) -> Task:
    """The registry entry for `name`, with NER tasks set to `ner_format` and inputs and labels in `template`'s layout."""
    if name not in TASKS:
        raise KeyError(f"unknown source {name!r}; known sources: {', '.join(TASKS)}")
    task = TASKS[name]
    task = task.with_format(ner_format) if isinstance(task, NerTask) else task
    return task.with_layout(get_template(template).layout)


@contextmanager
def registered(task: Task) -> Iterator[Task]:
    """`task` in the registry for the duration of a `with` block (tests; trying an entry before writing it)."""
    if task.name in TASKS:
        raise ValueError(f"source {task.name!r} is already registered")
    TASKS[task.name] = task
    try:
        yield task
    finally:
        del TASKS[task.name]


def task_names() -> list[str]:
    """All registered source names, in registry order."""
    return list(TASKS)


def match_source(label: str) -> str | None:
    """Map a free-form source label (as in the released dataset) to a registered name, or None."""
    key = _key(label)
    for task in TASKS.values():
        if key == _key(task.name) or key in {_key(a) for a in task.aliases}:
            return task.name
    return None


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())
