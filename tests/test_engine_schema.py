"""Normalization-layer arguments in a config (``model.norm_kwargs`` and every other ``*norm_kwargs``) are
free-form keyword arguments, yet the ones the layers share are typed before anything loads: a fractional
group count, a negative eps or a momentum outside [0, 1] is a config error naming the key, the value and
where it was set, for every task."""

from __future__ import annotations

import pytest
import yaml

from reproductions.engine.cli import config_from_args, engine_parser
from reproductions.engine.config import ConfigError
from reproductions.errors import UserError
from reproductions.tasks.classification.main import CLASSIFICATION_DEFAULTS
from reproductions.tasks.detection.main import DETECTION_DEFAULTS
from reproductions.tasks.segmentation.main import SEGMENTATION_DEFAULTS
from reproductions.tasks.stylization.main import STYLIZATION_DEFAULTS


def _load(tmp_path, defaults, body: dict, *sets: str) -> dict:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"name": "t", **body}))
    argv = ["--config", str(path), *(["--set", *sets] if sets else [])]
    return config_from_args(engine_parser("x").parse_args(argv), defaults)


def test_norm_arguments_are_typed_with_key_value_and_source(tmp_path):
    body = {"model": {"norm": "gn", "norm_kwargs": {"num_groups": 2.5, "eps": -1e-5}}}
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, CLASSIFICATION_DEFAULTS, body, "model.norm_kwargs.momentum=1.5")
    text = str(err.value)
    assert isinstance(err.value, UserError)
    assert "model.norm_kwargs.num_groups: expected an integer >= 1" in text and "got 2.5" in text
    assert "model.norm_kwargs.eps: expected a number > 0" in text and str(tmp_path / "c.yaml") in text
    assert "model.norm_kwargs.momentum: expected a number in [0, 1]" in text
    assert "[from --set model.norm_kwargs.momentum=1.5]" in text


@pytest.mark.parametrize(
    ("defaults", "key"),
    [
        (DETECTION_DEFAULTS, "head_norm_kwargs"),
        (SEGMENTATION_DEFAULTS, "head_norm_kwargs"),
        (STYLIZATION_DEFAULTS, "norm_kwargs"),
    ],
    ids=["detection", "segmentation", "stylization"],
)
def test_every_tasks_norm_arguments_are_checked(tmp_path, defaults, key):
    with pytest.raises(ConfigError, match=rf"model\.{key}\.num_groups: expected an integer"):
        _load(tmp_path, defaults, {"model": {key: {"num_groups": "eight"}}})


def test_valid_and_unknown_norm_arguments_pass(tmp_path):
    cfg = _load(
        tmp_path,
        CLASSIFICATION_DEFAULTS,
        {"model": {"norm": "bn", "norm_kwargs": {"momentum": None, "eps": 1e-3, "virtual_running_stats": "first"}}},
    )
    assert cfg["model"]["norm_kwargs"] == {"momentum": None, "eps": 1e-3, "virtual_running_stats": "first"}


def test_a_null_keyword_mapping_takes_set_overrides(tmp_path):
    """``head_norm_kwargs`` defaults to null (= the backbone's); ``--set model.head_norm_kwargs.num_groups=16``
    used to fail with "'head_norm_kwargs' is not a section"."""
    cfg = _load(tmp_path, SEGMENTATION_DEFAULTS, {}, "model.head_norm_kwargs.num_groups=16")
    assert cfg["model"]["head_norm_kwargs"] == {"num_groups": 16}
    with pytest.raises(ConfigError, match=r"model\.head_norm_kwargs\.num_groups: expected an integer"):
        _load(tmp_path, SEGMENTATION_DEFAULTS, {}, "model.head_norm_kwargs.num_groups=1.5")
    with pytest.raises(ConfigError, match="'lr' is not a section"):
        _load(tmp_path, SEGMENTATION_DEFAULTS, {}, "optim.lr.x=1")
