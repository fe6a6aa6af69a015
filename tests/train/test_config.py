"""Training settings: defaults, the YAML file, command-line overrides, and saving them."""

from __future__ import annotations

from pathlib import Path

import pytest

from lensloop.errors import ConfigError
from lensloop.train.config import (
    DEFAULT_BACKBONE,
    TrainConfig,
    load_train_config,
    save_train_config,
)


def test_defaults() -> None:
    config = load_train_config(None, {})
    assert config == TrainConfig()
    assert config.method == "probe"
    assert config.head == "logistic"
    assert config.backbone == DEFAULT_BACKBONE
    assert config.depth is None
    assert config.c == 100.0
    assert config.hidden == 256
    assert config.max_iter == 1000
    assert config.class_weight == "balanced"
    assert config.cv is None
    assert config.seed == 0


def test_file_values_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text("head: mlp\nhidden: 32\nc: 5\nseed: 7\ncv: 3\n", encoding="utf-8")
    from_file = load_train_config(path, {})
    assert (from_file.head, from_file.hidden, from_file.c, from_file.seed, from_file.cv) == (
        "mlp",
        32,
        5.0,
        7,
        3,
    )
    assert from_file.max_iter == 1000  # unset in the file: the default
    overridden = load_train_config(path, {"hidden": 64, "backbone": "fake-mean", "seed": None})
    assert overridden.hidden == 64  # the command line beats the file
    assert overridden.backbone == "fake-mean"
    assert overridden.seed == 7  # None means "not given": the file's value stays
    assert overridden.head == "mlp"
    # None overrides fall back to defaults without a file too
    assert load_train_config(None, {"cv": None, "depth": None}) == TrainConfig()


def test_empty_file_is_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    assert load_train_config(path, {}) == TrainConfig()


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"bogus": 1}, "bogus"),
        ({"head": "svm"}, "head"),
        ({"c": 0}, "c"),
        ({"cv": 1}, "cv"),
        ({"depth": 0}, "depth"),
        ({"max_iter": "lots"}, "max_iter"),
        ({"class_weight": "auto"}, "class_weight"),
    ],
)
def test_invalid_override_names_the_key(overrides: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"invalid training settings: {key}: "):
        load_train_config(None, overrides)


def test_invalid_file_value_names_key_and_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("hidden: 0\nunknown_setting: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_train_config(path, {})
    message = str(info.value)
    assert str(path) in message
    assert "hidden:" in message
    assert "unknown_setting:" in message
    # a valid override fixes the invalid file value but not the unknown key
    with pytest.raises(ConfigError, match="unknown_setting") as again:
        load_train_config(path, {"hidden": 4})
    assert "hidden:" not in str(again.value)


def test_non_mapping_yaml(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- head\n- mlp\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"must be a mapping of settings.*not a list"):
        load_train_config(path, {})


def test_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("c: [1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_train_config(path, {})


def test_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError, match=r"cannot read training config .*missing\.yaml"):
        load_train_config(missing, {})
    with pytest.raises(ConfigError, match="cannot read training config"):
        load_train_config(tmp_path, {})  # a directory


def test_save_then_load_round_trips(tmp_path: Path) -> None:
    config = TrainConfig(
        head="mlp",
        backbone="fake-mean",
        depth=2,
        c=0.25,
        hidden=17,
        max_iter=33,
        class_weight="none",
        cv=4,
        seed=11,
    )
    path = tmp_path / "config.yaml"
    save_train_config(config, path)
    loaded = load_train_config(path, {})
    assert loaded == config
    assert loaded.model_dump() == config.model_dump()
    # the defaults round-trip too (None values included)
    save_train_config(TrainConfig(), path)
    assert load_train_config(path, {}) == TrainConfig()


def test_non_utf8_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_train_config(path, {})


def test_non_text_setting_name_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text("1: 2\n")
    with pytest.raises(ConfigError, match="setting names must be text, not 1"):
        load_train_config(path, {})
