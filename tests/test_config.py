"""Profiles load into typed objects; overrides apply; bad keys, names and values fail with one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from medtune_utils.config import (
    TRAIN_DEFAULTS,
    TRAIN_SET_BY_CODE,
    ConfigError,
    Profile,
    available_profiles,
    load_profile,
    parse_set_args,
    save_profile,
)

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
        ({"train.on_too_long": "truncate"}, "train.on_too_long"),
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


def _child_of_tiny(tmp_path: Path, train: str) -> Path:
    path = tmp_path / "child.yaml"
    path.write_text(f"extends: tiny\nname: child\ntrain:\n{train}")
    return path


def test_any_sft_config_field_reaches_the_trainer(tmp_path: Path) -> None:
    from medtune_utils.train import sft_config

    train = "  neftune_noise_alpha: 5\n  lr_scheduler_kwargs: {min_lr: 1e-6}\n  eval_steps: 5\n  adam_beta2: 0.95\n"
    profile = load_profile(str(_child_of_tiny(tmp_path, train)), {"train.weight_decay": 0.1})
    assert profile.train.neftune_noise_alpha == 5.0 and profile.train.lr_scheduler_kwargs == {"min_lr": 1e-6}
    args = sft_config(profile, tmp_path / "out")
    assert args.neftune_noise_alpha == 5.0 and args.lr_scheduler_kwargs == {"min_lr": 1e-6}
    assert (args.eval_steps, args.adam_beta2, args.weight_decay) == (5, 0.95, 0.1)
    # Kept from tiny and from our defaults; fixed or decided by the code.
    assert (args.max_steps, args.learning_rate, args.save_total_limit, args.lr_scheduler_type) == (40, 3e-3, 1, "cosine")
    assert args.warmup_steps == 0.05 and args.get_warmup_steps(40) == 2  # warmup_ratio becomes a ratio of all steps
    assert args.completion_only_loss and not args.fp16 and args.seed == args.data_seed == profile.seed
    assert args.activation_checkpointing is False and args.bf16 is False and args.report_to == []


def test_defaults_apply_to_keys_the_profile_leaves_out() -> None:
    profile = load_profile("llama2-7b-chat")
    assert profile.train.save_total_limit == 2 and profile.train.resume is True and profile.train.optim == "adamw_torch"
    assert profile.train.max_length == 2048  # from llama2-7b through `extends`
    assert list(profile.to_dict()["train"]) == list(TRAIN_DEFAULTS)  # no SFTConfig defaults dumped
    assert isinstance(profile.train.save_steps, int)  # a whole number of steps stays an int (hashes of old runs hold)


def test_null_means_auto_only_for_the_auto_keys() -> None:
    profile = load_profile("tiny", {"train.bf16": None, "train.report_to": None, "train.gradient_checkpointing": None})
    assert profile.train.bf16 is None and profile.train.gradient_checkpointing is None
    with pytest.raises(ConfigError, match="'train.max_steps' may not be null"):
        load_profile("tiny", {"train.max_steps": None})


@pytest.mark.parametrize(
    ("text", "value"),
    [("2e-3", 0.002), ("1e5", 100000.0), ("-1.5E-4", -1.5e-4), ("1.0e5", 100000.0), ("+.5", 0.5), (".5", 0.5), ("3", 3)],
)
def test_numbers_are_read_as_written(text: str, value: float) -> None:
    parsed = parse_set_args([f"train.learning_rate={text}"])["train.learning_rate"]
    assert parsed == value and type(parsed) is type(value)
    assert load_profile("tiny", parse_set_args([f"train.learning_rate={text}"])).train.learning_rate == value
    assert load_profile("tiny", f"train: {{learning_rate: {text}}}").train.learning_rate == value


def test_numbers_in_profile_files_are_read_as_written(tmp_path: Path) -> None:
    profile = load_profile(str(_child_of_tiny(tmp_path, "  learning_rate: 2e-3\n  max_grad_norm: 1E0\n")))
    assert profile.train.learning_rate == 0.002 and profile.train.max_grad_norm == 1.0
    assert parse_set_args(["data.sources=[1e5x, v1.2.3]"]) == {"data.sources": ["1e5x", "v1.2.3"]}


def test_unknown_train_key_suggests_the_close_ones(tmp_path: Path) -> None:
    path = _child_of_tiny(tmp_path, "  learning_rat: 1.0e-4\n")
    with pytest.raises(ConfigError) as exc:
        load_profile(str(path))
    message = _one_line(exc)
    assert str(path) in message and "'train.learning_rat'" in message and "did you mean 'train.learning_rate'" in message


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"modle.base": "x"}, "unknown key 'modle'; did you mean 'model'?"),
        ({"data.source": ["HoC"]}, "did you mean 'data.sources'"),
        ({"lora.rank": 8}, "unknown key 'lora.rank' (known here: alpha, dropout"),
        ({"eval.batchsize": 8}, "did you mean 'eval.batch_size'"),
        ({"model.tiny.hidden": 8}, "did you mean 'model.tiny.hidden_size'"),
        ({"train.zzz": 1}, "known here: resume, warmup_ratio, on_too_long, global_batch_size"),
    ],
)
def test_unknown_keys_in_every_section(overrides: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_profile("tiny", overrides)
    message = _one_line(exc)
    assert message.startswith("overrides: ") and fragment in message


def test_wrong_type_names_file_key_and_expected_type(tmp_path: Path) -> None:
    path = _child_of_tiny(tmp_path, "  learning_rate: abc\n")
    with pytest.raises(ConfigError) as exc:
        load_profile(str(path))
    assert _one_line(exc) == f"{path}: 'train.learning_rate' expects float, got 'abc'"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"train.per_device_train_batch_size": "8"}, "'train.per_device_train_batch_size' expects int, got '8'"),
        ({"train.packing": 1}, "'train.packing' expects bool, got 1"),
        ({"train.eval_steps": "5"}, "'train.eval_steps' expects int | float | None, got '5'"),
        ({"train.lr_scheduler_type": 3}, "'train.lr_scheduler_type' expects SchedulerType | str, got 3"),
        ({"train.report_to": 1}, "'train.report_to' expects None | str | list[str], got 1"),
        ({"data.train_rows": {"HoC": "all"}}, "'data.train_rows' expects dict[str, int], got {'HoC': 'all'}"),
        ({"lora.dropout": "0.1"}, "'lora.dropout' expects float, got '0.1'"),
    ],
)
def test_wrong_types_in_overrides(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_profile("tiny", overrides)
    assert _one_line(exc) == f"overrides: {message}"


@pytest.mark.parametrize("key", sorted(TRAIN_SET_BY_CODE))
def test_keys_the_code_sets_are_refused(key: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_profile("tiny", {f"train.{key}": 1})
    assert f"'train.{key}' is set by medtune (" in _one_line(exc)


@pytest.mark.parametrize("name", available_profiles())
def test_saved_profile_loads_back_equal(name: str, tmp_path: Path) -> None:
    profile = load_profile(name)
    save_profile(profile, tmp_path / "config.yaml")
    assert load_profile(tmp_path / "config.yaml") == profile


def test_round_trip_keeps_extra_train_keys_and_number_like_strings(tmp_path: Path) -> None:
    overrides = {"description": "1e5", "train.lr_scheduler_kwargs": {"min_lr": 1e-6}, "train.run_name": "2e-3"}
    profile = load_profile("tiny", overrides)
    save_profile(profile, tmp_path / "config.yaml")
    again = load_profile(tmp_path / "config.yaml")
    assert again == profile and again.description == "1e5" and again.train.run_name == "2e-3"
    assert again.to_dict() == profile.to_dict()


def test_importing_config_does_not_import_trl() -> None:
    code = "import sys, medtune_utils.config; assert 'trl' not in sys.modules and 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
