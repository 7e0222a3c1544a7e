"""Profiles load into typed objects; overrides apply; bad keys, names and values fail with one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from medtune_utils.config import ConfigError, Profile, available_profiles, load_profile, parse_set_args

PAPER_PROFILES = ("llama2-7b", "llama2-13b", "llama2-7b-chat", "llama2-7b-lora", "llama2-13b-qlora")


def test_every_committed_profile_loads() -> None:
    names = available_profiles()
    assert {"tiny", *PAPER_PROFILES} <= set(names)
    for name in names:
        profile = load_profile(name)
        assert isinstance(profile, Profile)
        assert profile.name == name


def test_tiny_is_a_cpu_profile() -> None:
    tiny = load_profile("tiny")
    assert tiny.model.base == "tiny"
    assert tiny.train.bf16 is False and tiny.train.gradient_checkpointing is False
    assert tiny.data.dir == "data/sample"
    assert tiny.eval.models == ["base", "tuned"]


def test_paper_recipe_values() -> None:
    seven = load_profile("llama2-7b")
    assert seven.model.base == "meta-llama/Llama-2-7b-hf"
    assert seven.train.num_train_epochs == 3.0
    assert seven.data.eval_split == "devel"
    assert seven.data.train_rows == {"ChatDoctor": 50000, "PMC-LLaMA": 50000}
    assert "GAD" not in seven.data.sources  # dropped from the released mix
    thirteen = load_profile("llama2-13b")
    assert thirteen.model.base == "meta-llama/Llama-2-13b-hf"
    assert thirteen.data == seven.data  # inherited through `extends`
    qlora = load_profile("llama2-13b-qlora")
    assert qlora.lora.enabled and qlora.lora.load_in_4bit
    assert load_profile("llama2-7b-lora").lora.enabled and not load_profile("llama2-7b-lora").lora.load_in_4bit


def test_dotted_and_nested_overrides() -> None:
    profile = load_profile("tiny", {"train.max_steps": 3, "eval": {"rows_per_source": 2}, "data.eval_split": "test"})
    assert profile.train.max_steps == 3
    assert profile.eval.rows_per_source == 2
    assert profile.data.eval_split == "test"
    assert profile.train.learning_rate == load_profile("tiny").train.learning_rate


def test_overrides_as_yaml_text_and_set_args() -> None:
    assert load_profile("tiny", "train: {max_steps: 7}").train.max_steps == 7
    assert parse_set_args(["train.max_steps=5", "data.sources=[GAD, HoC]"]) == {
        "train.max_steps": 5,
        "data.sources": ["GAD", "HoC"],
    }
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_set_args(["train.max_steps"])


def _one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_unknown_key_in_file_names_key_and_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\ntrain:\n  max_stepz: 3\n")
    with pytest.raises(ConfigError) as exc:
        load_profile(str(path))
    message = _one_line(exc)
    assert "train.max_stepz" in message and str(path) in message


def test_unknown_key_in_overrides_is_named() -> None:
    with pytest.raises(ConfigError) as exc:
        load_profile("tiny", {"model.bogus": 1})
    message = _one_line(exc)
    assert "model.bogus" in message and "overrides" in message


def test_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as exc:
        load_profile("llama5-900b")
    message = _one_line(exc)
    assert "llama5-900b" in message and "tiny" in message


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"train.max_steps": "ten"}, "train.max_steps"),
        ({"train.learning_rate": True}, "train.learning_rate"),
        ({"data.eval_split": "validation"}, "data.eval_split"),
        ({"data.ner_format": "json"}, "data.ner_format"),
        ({"data.leakage": "ignore"}, "data.leakage"),
        ({"train.warmup_ratio": 1.5}, "warmup_ratio"),
        ({"lora.load_in_4bit": True}, "lora.enabled"),
        ({"train": 3}, "must be a mapping"),
        ({"seed": None}, "may not be null"),
    ],
)
def test_bad_values_fail_with_the_key(overrides: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_profile("tiny", overrides)
    assert fragment in _one_line(exc)


def test_extends_cycle_is_reported(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(f"extends: {tmp_path / 'b.yaml'}\n")
    (tmp_path / "b.yaml").write_text(f"extends: {tmp_path / 'a.yaml'}\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_profile(str(tmp_path / "a.yaml"))


def test_int_is_accepted_for_float_fields() -> None:
    profile = load_profile("tiny", {"train.learning_rate": 1})
    assert isinstance(profile.train.learning_rate, float)
