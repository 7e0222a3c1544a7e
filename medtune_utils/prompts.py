"""Prompt templates as named objects: training and evaluation both build prompts here, and nowhere else.

- `medtune` (ours): an Alpaca-style preamble, `### Instruction:`, `### Input:`, `### Response:`; the answer follows.
- `authors`: the layout the released Llama2-MedTuned models were trained on (the authors' `Finetuning/training.py`):
  `### Instruction: {instruction}\\n ### Input: {input}\\n ### Output: {output} \\n` then eos. Its evaluation prompt is
  that text up to and including `### Output:`, so the answer's leading space belongs to the completion.
- `authors-inference`: the prompt of the authors' `deepspeed-inference.py` (`### Output:` then a newline); evaluation only.
- `authors-base`: the prompt of the authors' `evaluation.py`, used on base models (blank-line separated sections);
  evaluation only.

A profile picks one with `data.template`; an evaluated model may use another (`eval.models` entries with `template`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

TEMPLATE = "medtune"  # the default template's name
PREAMBLE_WITH_INPUT = (
    "The instruction below describes a task and the input gives the text to work on. Write the response that completes the task."
)
PREAMBLE_NO_INPUT = "The instruction below describes a task. Write the response that completes it."
RESPONSE_HEADER = "### Response:\n"
ANSWER_HEADERS = ("### Response:", "### Output:")  # where an echoed prompt ends, in any template


@dataclass(frozen=True)
class Template:
    """How an instruction row becomes a prompt and a completion.

    `with_input` and `without_input` are format strings over `{instruction}` and `{input}` that end exactly where
    the answer begins; `answer` formats `{output}` into the completion (TRL appends the eos token after it).
    A template that is not `trainable` is for querying models trained on another layout only. `layout` names the
    input layouts and label spellings that go with it (`medtune` or `authors`; see `Task.layout`).
    """

    name: str
    description: str
    with_input: str
    without_input: str
    answer: str = "{output}"
    trainable: bool = True
    layout: str = "medtune"

    def prompt(self, instruction: str, input_text: str = "") -> str:
        """The text a model continues: everything before the answer."""
        layout = self.with_input if input_text.strip() else self.without_input
        return layout.format(instruction=instruction, input=input_text)

    def completion(self, output: str) -> str:
        """The training target that follows the prompt (without eos)."""
        return self.answer.format(output=output)

    def text(self, row: Mapping[str, Any]) -> str:
        """Prompt and completion as one string."""
        return self.prompt(row["instruction"], row["input"]) + self.completion(row["output"])

    def few_shot_prompt(self, demonstrations: Sequence[Mapping[str, Any]], instruction: str, input_text: str) -> str:
        """`demonstrations` written out in full, one after the other, then the prompt for the query."""
        return "".join(self.text(row) for row in demonstrations) + self.prompt(instruction, input_text)


_AUTHORS = "### Instruction: {instruction}\n ### Input: {input}\n ### Output:"
_AUTHORS_BASE = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Output:\n"

TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        Template(
            name="medtune",
            description="ours: preamble, `### Instruction:`, `### Input:`, `### Response:` on their own lines",
            with_input=f"{PREAMBLE_WITH_INPUT}\n\n### Instruction:\n{{instruction}}\n\n### Input:\n{{input}}\n\n"
            + RESPONSE_HEADER,
            without_input=f"{PREAMBLE_NO_INPUT}\n\n### Instruction:\n{{instruction}}\n\n{RESPONSE_HEADER}",
        ),
        Template(
            name="authors",
            description="the released Llama2-MedTuned models' training layout; prompt ends at `### Output:`",
            with_input=_AUTHORS,
            without_input=_AUTHORS,
            answer=" {output} \n",
            layout="authors",
        ),
        Template(
            name="authors-inference",
            description="the authors' deepspeed-inference.py prompt: the training layout with a newline after `### Output:`",
            with_input=_AUTHORS + "\n",
            without_input=_AUTHORS + "\n",
            answer="{output} \n",
            trainable=False,
            layout="authors",
        ),
        Template(
            name="authors-base",
            description="the authors' evaluation.py prompt for base models: sections on their own lines",
            with_input=_AUTHORS_BASE,
            without_input=_AUTHORS_BASE,
            answer="{output}\n\n",
            trainable=False,
            layout="authors",
        ),
    )
}


def get_template(name: str) -> Template:
    """The template called `name`, or an error listing the known ones."""
    if name not in TEMPLATES:
        raise KeyError(f"unknown prompt template {name!r}; known templates: {', '.join(TEMPLATES)}")
    return TEMPLATES[name]


def trainable_templates() -> list[str]:
    """Names of the templates a model can be trained on."""
    return [name for name, t in TEMPLATES.items() if t.trainable]


def build_prompt(instruction: str, input_text: str = "", template: str = TEMPLATE) -> str:
    """The prompt of `template` up to where the answer begins."""
    return get_template(template).prompt(instruction, input_text)


def to_prompt_completion(row: dict[str, Any], template: str = TEMPLATE) -> dict[str, str]:
    """Map an instruction row to TRL's prompt/completion columns (TRL appends the eos token itself)."""
    chosen = get_template(template)
    return {"prompt": chosen.prompt(row["instruction"], row["input"]), "completion": chosen.completion(row["output"])}


def training_text(row: dict[str, Any], template: str = TEMPLATE) -> str:
    """Prompt and answer as one string: the text the tiny tokenizer is trained on."""
    return get_template(template).text(row)


@dataclass(frozen=True)
class ModelEntry:
    """One `eval.models` entry: which model, and how to prompt it (`template` None: the profile's own; `shots` demonstrations)."""

    name: str
    template: str | None = None
    shots: int = 0


MODEL_ENTRY_KEYS = ("name", "template", "shots")


def model_entry(item: str | Mapping[str, Any]) -> ModelEntry:
    """Read an `eval.models` entry: a name, or a mapping with `name` and optionally `template` and `shots`."""
    if isinstance(item, str):
        if not item.strip():
            raise ValueError("an empty model name")
        return ModelEntry(item)
    if not isinstance(item, Mapping):
        raise ValueError(f"expected a name or a mapping with keys {', '.join(MODEL_ENTRY_KEYS)}, got {item!r}")
    unknown = sorted(set(item) - set(MODEL_ENTRY_KEYS))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {dict(item)!r}; expected {', '.join(MODEL_ENTRY_KEYS)}")
    name, template, shots = item.get("name"), item.get("template"), item.get("shots", 0)
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{dict(item)!r} needs a `name` (base, tuned, a folder or a hub id)")
    if template is not None and template not in TEMPLATES:
        raise ValueError(f"{name}: unknown template {template!r}; known templates: {', '.join(TEMPLATES)}")
    if not isinstance(shots, int) or isinstance(shots, bool) or shots < 0:
        raise ValueError(f"{name}: shots must be a whole number >= 0, got {shots!r}")
    return ModelEntry(name, template, shots)
