"""Tests for lsfa.training.config: YAML files, command-line overrides and their error messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lsfa.errors import LsfaError
from lsfa.training.config import (
    NESTED_OPTIONS,
    TrainConfig,
    config_help,
    dump_config,
    flag_names,
    load_config,
    parse_overrides,
    with_overrides,
)

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def write_yaml(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_are_the_paper_lora_setting() -> None:
    config = load_config()
    assert config.finetune == "lora"
    assert (config.lora.r, config.lora.alpha, config.lora.dropout) == (32, 64, 0.05)
    assert config.attention == "full"


def test_yaml_then_flags_override_it(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "learning_rate: 5.0e-5\nlora: {r: 32, alpha: 64}\ngroup_by_length: true\n")
    overrides = parse_overrides(["--lora-r", "8", "--no-group-by-length", "--learning-rate=1e-4", "--epochs", "2"])
    assert overrides == {"lora": {"r": 8}, "group_by_length": False, "learning_rate": "1e-4", "epochs": 2}
    config = load_config(path, overrides)
    assert config.lora.r == 8
    assert config.lora.alpha == 64, "a nested override keeps the other keys of the YAML mapping"
    assert config.group_by_length is False
    assert config.learning_rate == pytest.approx(1e-4)
    assert config.epochs == 2


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--attention", "0-7,24-29"], "0-7,24-29"),
        (["--attention", "5"], "5"),
        (["--attention=5"], "5"),
        (["--attention", "010"], "010"),
        (["--attention", "groups=4:1010"], "groups=4:1010"),
        (["--attention", "causal"], "causal"),
    ],
)
def test_attention_flag_stays_text(args: list[str], expected: str) -> None:
    overrides = parse_overrides(args)
    assert overrides == {"attention": expected}
    assert load_config(None, overrides).attention == expected


def test_attention_number_in_yaml_is_a_layer(tmp_path: Path) -> None:
    assert load_config(write_yaml(tmp_path, "attention: 5\n")).attention == "5"


def test_text_flags_keep_their_text_and_null_clears_optional_ones() -> None:
    overrides = parse_overrides(["--output-dir", "2024", "--test-split", "null", "--lora-target-modules", "q_proj"])
    config = load_config(None, overrides)
    assert config.output_dir == "2024"
    assert config.test_split is None
    assert config.lora.target_modules == "q_proj"


def test_bare_boolean_flag_means_true() -> None:
    assert parse_overrides(["--label-all-subtokens", "--save-merged"]) == {
        "label_all_subtokens": True,
        "save_merged": True,
    }


def test_every_config_key_has_a_flag() -> None:
    flags = flag_names()
    assert flags["--lora-r"] == "lora.r"
    assert flags["--learning-rate"] == "learning_rate"
    assert flags["--distill-teacher"] == "distill.teacher"
    assert "--lora" not in flags and "--distill" not in flags
    keys = set(flags.values())
    assert {name for name in TrainConfig.model_fields if name not in NESTED_OPTIONS} <= keys


def test_unknown_flag_is_an_error_listing_the_options() -> None:
    with pytest.raises(LsfaError, match=r"unknown option '--learning-rat'.*--learning-rate"):
        parse_overrides(["--learning-rat", "1e-4"])


def test_invalid_value_names_the_field_and_the_file(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "batch_size: 0\n")
    with pytest.raises(LsfaError, match=r"run\.yaml: invalid training config: batch_size"):
        load_config(path)
    with pytest.raises(LsfaError, match=r"lora\.r"):
        load_config(None, parse_overrides(["--lora-r", "-1"]))


def test_unknown_yaml_key_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(LsfaError, match="learning_rat"):
        load_config(write_yaml(tmp_path, "learning_rat: 1e-4\n"))


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "model: [unclosed\n", name="broken.yaml")
    with pytest.raises(LsfaError, match=r"broken\.yaml:2:1: YAML syntax error: "):
        load_config(path)


def test_yaml_that_is_not_a_mapping_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(LsfaError, match=r"list\.yaml: a config file must be a mapping of keys to values, found a list"):
        load_config(write_yaml(tmp_path, "- a\n- b\n", name="list.yaml"))


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(LsfaError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_empty_yaml_gives_defaults(tmp_path: Path) -> None:
    assert load_config(write_yaml(tmp_path, "# nothing\n")) == TrainConfig()


def test_dumped_config_loads_back_identically(tmp_path: Path) -> None:
    config = load_config(None, parse_overrides(["--attention", "5", "--lora-r", "8", "--test-split", "null"]))
    again = load_config(write_yaml(tmp_path, dump_config(config)))
    assert again == config


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_validate(path: Path) -> None:
    config = load_config(path)
    raw = yaml.safe_load(path.read_text())
    assert config.model == raw["model"]
    assert config.attention == str(raw.get("attention", "full"))


def test_configs_folder_is_not_empty() -> None:
    assert CONFIGS, "configs/*.yaml should ship at least one example"


def test_train_help_lists_every_config_key_once_with_its_default() -> None:
    from lsfa.training.config import CONFIG_GROUPS, config_help

    grouped = [name for names in CONFIG_GROUPS.values() for name in names]
    assert sorted(grouped) == sorted(TrainConfig.model_fields) and len(grouped) == len(set(grouped))
    text = config_help()
    for name, field in TrainConfig.model_fields.items():
        if name not in NESTED_OPTIONS:
            assert f"--{name.replace('_', '-')} " in text and field.description, name
    for group, options in NESTED_OPTIONS.items():
        for name, field in options.model_fields.items():
            assert f"--{group}-{name.replace('_', '-')} " in text and field.description, (group, name)
    assert "[default: 0.0002]" in text and "[default: smollm2-135m]" in text


# --- finetune: lora|full, formerly mode: (still read) ---------------------------------------------------------


def test_an_old_config_with_mode_loads_to_the_same_config(tmp_path: Path) -> None:
    old = load_config(write_yaml(tmp_path, "mode: full\nlearning_rate: 5.0e-5\n", "old.yaml"))
    new = load_config(write_yaml(tmp_path, "finetune: full\nlearning_rate: 5.0e-5\n", "new.yaml"))
    assert old == new and new.finetune == "full"
    assert TrainConfig(mode="full") == TrainConfig(finetune="full")
    assert "finetune: full" in dump_config(old) and "\nmode:" not in dump_config(old)  # written under the new name


def test_mode_and_finetune_disagreeing_are_refused_in_one_line(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "mode: full\nfinetune: lora\n")
    expected = r"run\.yaml: invalid training config: mode: full and finetune: lora disagree"
    with pytest.raises(LsfaError, match=expected) as error:
        load_config(path)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="disagree"):
        TrainConfig(mode="full", finetune="lora")
    assert load_config(write_yaml(tmp_path, "mode: full\nfinetune: full\n", "same.yaml")).finetune == "full"


def test_mode_and_finetune_flags_and_keywords(tmp_path: Path) -> None:
    assert parse_overrides(["--mode", "full"]) == parse_overrides(["--finetune", "full"]) == {"finetune": "full"}
    old_file = write_yaml(tmp_path, "mode: full\n")
    assert load_config(old_file, parse_overrides(["--finetune", "lora"])).finetune == "lora"  # the flag wins
    assert with_overrides(load_config(), {"mode": "full"}).finetune == "full"  # lsfa.train(config, mode="full")
    assert "--finetune" in config_help() and "--mode " not in config_help()
