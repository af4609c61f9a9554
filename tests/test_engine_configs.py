"""Every full-scale config in the repository parses, names its paper-table row and published value
(matching papers/<paper>/published.yaml), builds its model, and is listed in its paper's README."""

from __future__ import annotations

import functools
import importlib
import json
from pathlib import Path

import pytest
import torch
import yaml

from reproductions.engine.cli import config_from_args, engine_parser
from reproductions.tasks.classification.main import CLASSIFICATION_DEFAULTS, build_from_config

REPO = Path(__file__).resolve().parents[1]
# Classification configs sit directly in configs/; task subfolders (configs/coco/, configs/voc/, ...) belong to
# the detection/segmentation scripts and are checked by their own tests.
CONFIGS = sorted(p for p in REPO.glob("reproductions/*/configs/*.yaml") if not p.name.startswith("_"))
SCRIPTS = {"normprop": "train_cifar"}
# torchvision's parameter counts; every norm with a per-channel affine has as many parameters as BN.
PARAMS = {"resnet50": 25_557_032, "resnet101": 44_549_160}
PER_CHANNEL_AFFINE = ("bn", "gn", "ln", "in")


def _load(path: Path) -> dict:
    return config_from_args(engine_parser("test").parse_args(["--config", str(path)]), CLASSIFICATION_DEFAULTS)


@functools.cache
def _published_entries(paper: str) -> dict[str, dict]:
    path = REPO / "papers" / paper / "published.yaml"
    if not path.is_file():
        return {}
    return {e["id"]: e for e in yaml.safe_load(path.read_text()).get("entries", [])}


def test_there_are_configs_for_every_paper():
    papers = {p.parts[-3] for p in CONFIGS}
    assert {"group_norm", "weight_standardization", "batch_norm", "normprop"} <= papers
    assert len(CONFIGS) >= 55


def test_config_names_are_unique():
    names = [_load(p)["name"] for p in CONFIGS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parts[-3]}/{p.stem}")
def test_config_parses_names_its_row_and_builds(path):
    paper = path.parts[-3]
    cfg = _load(path)
    assert cfg["paper"] == paper
    assert cfg["paper_ref"] and cfg["name"]
    published = cfg["published"]
    assert set(published) >= {"id", "value", "metric", "source", "tag"}
    entries = _published_entries(paper)
    if entries:
        assert published["id"] in entries, f"{published['id']} is not in papers/{paper}/published.yaml"
        assert published["value"] == entries[published["id"]]["value"]
    if published["value"] is None:
        assert published["tag"] == "not_found"
    num_classes = {"cifar100": 100, "cifar10": 10, "svhn": 10}.get(cfg["data"]["dataset"], 1000)
    key = json.dumps([cfg["model"], cfg["train"], num_classes, cfg["data"]["crop_size"]])
    out_shape, n_params = _build_and_run(key)
    assert out_shape == (2, num_classes)
    arch, norm = cfg["model"]["arch"], cfg["model"]["norm"]
    if arch in PARAMS and norm in PER_CHANNEL_AFFINE:
        assert n_params == PARAMS[arch]


@functools.cache
def _build_and_run(key: str) -> tuple[tuple[int, ...], int]:
    """Build a config's model and run a batch of 2 through it (many rows share a model: built once).
    ImageNet models on the meta device (shapes only: fast); the small CIFAR nets for real."""
    model_cfg, train_cfg, num_classes, crop = json.loads(key)
    with torch.device("meta" if num_classes == 1000 else "cpu"):
        model = build_from_config({"model": model_cfg, "train": train_cfg}, num_classes)
        out = model.eval()(torch.zeros(2, 3, crop, crop))
    return tuple(out.shape), sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("paper", sorted({p.parts[-3] for p in CONFIGS}))
def test_script_and_readme_cover_every_config(paper):
    script = SCRIPTS.get(paper, "train_imagenet")
    module = importlib.import_module(f"reproductions.{paper}.{script}")
    assert callable(module.main)
    readme = (REPO / "reproductions" / paper / "README.md").read_text()
    for path in CONFIGS:
        if path.parts[-3] == paper:
            assert path.name in readme, f"reproductions/{paper}/README.md does not list {path.name}"
