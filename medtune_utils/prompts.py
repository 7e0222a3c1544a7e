"""The one Alpaca-style prompt template: a preamble, `### Instruction:`, `### Input:`, `### Response:`.

Training and evaluation both build prompts here, and nowhere else.
"""

from __future__ import annotations

from typing import Any

TEMPLATE = "medtune"  # the template's name, recorded with every prediction
PREAMBLE_WITH_INPUT = (
    "The instruction below describes a task and the input gives the text to work on. Write the response that completes the task."
)
PREAMBLE_NO_INPUT = "The instruction below describes a task. Write the response that completes it."
RESPONSE_HEADER = "### Response:\n"


def build_prompt(instruction: str, input_text: str = "") -> str:
    """The prompt up to and including `### Response:` and its newline; the answer follows directly."""
    if input_text.strip():
        return f"{PREAMBLE_WITH_INPUT}\n\n### Instruction:\n{instruction}\n\n### Input:\n{input_text}\n\n{RESPONSE_HEADER}"
    return f"{PREAMBLE_NO_INPUT}\n\n### Instruction:\n{instruction}\n\n{RESPONSE_HEADER}"


def to_prompt_completion(row: dict[str, Any]) -> dict[str, str]:
    """Map an instruction row to TRL's prompt/completion columns (TRL appends the eos token itself)."""
    return {"prompt": build_prompt(row["instruction"], row["input"]), "completion": row["output"]}


def training_text(row: dict[str, Any]) -> str:
    """Prompt and answer as one string: the text the tiny tokenizer is trained on."""
    return build_prompt(row["instruction"], row["input"]) + row["output"]
