"""VOC segmentation on the engine: the dataset check and its errors, train_aug, augmentation, mIoU (a
perfect prediction scores 1.0), DeepLabv3's norm placement and output-stride switch, and train ->
evaluate -> resume end to end on a generated VOC tree in the real format."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from dense_helpers import REPO, check_published, crash_after_epoch, run_cli
from fixtures.voc import make_voc_dataset
from PIL import Image
from torch import nn

import normcore
from reproductions.engine.cli import config_from_args, engine_parser
from reproductions.tasks.classification.data import DataError
from reproductions.tasks.segmentation import main as seg
from reproductions.tasks.segmentation import voc_data
from reproductions.tasks.segmentation.voc_data import IGNORE_INDEX, VOCSegmentation, read_mask, voc_palette


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory) -> Path:
    return make_voc_dataset(tmp_path_factory.mktemp("voc") / "VOCdevkit", train=4, val=3, extra_sbd=2)


# ------------------------------------------------------------------------------------------------
# metric
# ------------------------------------------------------------------------------------------------
def test_perfect_prediction_scores_miou_one(voc_root):
    val = VOCSegmentation(voc_root, "val", train=False)
    conf = torch.zeros(21, 21, dtype=torch.int64)
    for _, label in val:
        conf += seg.confusion_matrix(label.clamp(max=20), label, 21)  # the prediction is the ground truth
    miou, per_class = seg.iou_from_confusion(conf)
    assert miou == pytest.approx(100.0)
    present = [c for c, v in enumerate(per_class) if v is not None]
    assert 0 in present and len(present) >= 2


def test_miou_by_hand():
    target = torch.tensor([[0, 0, 1, 1], [0, 0, 1, IGNORE_INDEX]])
    pred = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 0]])
    conf = seg.confusion_matrix(pred, target, 3)
    assert conf.tolist() == [[3, 1, 0], [0, 3, 0], [0, 0, 0]]  # the ignored pixel is not counted
    miou, per_class = seg.iou_from_confusion(conf)
    assert per_class[:2] == pytest.approx([75.0, 75.0]) and per_class[2] is None  # class 2 absent: left out
    assert miou == pytest.approx(75.0)


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------
def test_train_aug_is_sbd_minus_val_and_masks_are_indices(voc_root):
    train_aug = VOCSegmentation(voc_root, "train_aug", train=False)
    val = VOCSegmentation(voc_root, "val", train=False)
    assert len(train_aug) == 4 + 2 and not set(train_aug.names) & set(val.names)
    listed = voc_root / "VOC2012" / "ImageSets" / "Segmentation" / "train_aug.txt"
    listed.write_text("/JPEGImages/2012_train0001.jpg /SegmentationClassAug/2012_train0001.png\n")
    try:  # an explicit list wins; chenxi116-style "image mask" pairs are accepted
        assert VOCSegmentation(voc_root, "train_aug", train=False).names == ["2012_train0001"]
    finally:
        listed.unlink()
    _, label = val[0]
    assert set(label.unique().tolist()) <= {0, 1, 7, 15, IGNORE_INDEX} and (label == IGNORE_INDEX).any()
    with Image.open(voc_root / "VOC2012" / "SegmentationClass" / f"{val.names[0]}.png") as png:
        assert png.mode == "P" and png.getpalette()[: 3 * 3] == voc_palette()[: 3 * 3] == [
            0,
            0,
            0,
            128,
            0,
            0,
            0,
            128,
            0,
        ]


def test_training_augmentation_crops_and_pads(voc_root):
    ds = VOCSegmentation(voc_root, "train", train=True, crop_size=80, scale_range=(0.5, 0.5))
    torch.manual_seed(0)
    image, label = ds[0]
    assert image.shape == (3, 80, 80) and label.shape == (80, 80)
    # the scaled image is 24x32: everything beyond it is padding, labelled 'ignore' and zero after normalization
    assert (label[24:, :] == IGNORE_INDEX).all() and (label[:, 32:] == IGNORE_INDEX).all()
    assert image[:, 30:, 40:].abs().max() < 1e-5
    assert (label[:24, :32] != IGNORE_INDEX).any()


def test_missing_sbd_names_what_is_missing(voc_root, tmp_path):
    root = tmp_path / "VOCdevkit"
    shutil.copytree(voc_root, root)
    shutil.rmtree(root / "VOC2012" / "SegmentationClassAug")
    with pytest.raises(DataError, match=r"SegmentationClassAug not found.*10,582-image train_aug set needs the SBD"):
        VOCSegmentation(root, "train_aug", train=True)
    assert len(VOCSegmentation(root, "train", train=True)) == 4  # the VOC-only fallback the message names


def test_bad_masks_and_paths_get_clear_errors(voc_root, tmp_path):
    bad = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(bad)
    with pytest.raises(DataError, match="RGB image; VOC masks are single-channel"):
        read_mask(bad)
    Image.fromarray(np.full((4, 4), 42, dtype=np.uint8)).save(bad)
    with pytest.raises(DataError, match=r"values \[42\] outside 0..20"):
        read_mask(bad)
    with pytest.raises(DataError, match="holds no JPEGImages"):
        VOCSegmentation(tmp_path, "val", train=False)
    root = tmp_path / "VOCdevkit"
    shutil.copytree(voc_root, root)
    (root / "VOC2012" / "SegmentationClass" / "2012_val0000.png").unlink()
    with pytest.raises(DataError, match=r"2012_val0000 \(mask\)"):
        VOCSegmentation(root, "val", train=False)


def test_a_training_image_without_its_sbd_mask_is_reported_not_dropped(voc_root, tmp_path):
    """Issue 12: train_aug (built from the SegmentationClassAug masks) used to leave out, silently, a VOC
    training image whose SBD mask was missing."""
    root = tmp_path / "VOCdevkit"
    shutil.copytree(voc_root, root)
    assert len(VOCSegmentation(root, "train_aug", train=False)) == 6  # 4 VOC train + 2 SBD-only
    (root / "VOC2012" / "SegmentationClassAug" / "2012_train0001.png").unlink()
    with pytest.raises(DataError, match=r"2012_train0001 \(mask\)"):
        VOCSegmentation(root, "train_aug", train=False)


def test_check_command_decodes_images_and_masks(voc_root, tmp_path, capsys):
    """Issue 12: the check reported OK for truncated JPEGs, colour masks and masks of the wrong size."""
    root = tmp_path / "VOCdevkit"
    shutil.copytree(voc_root, root)
    assert voc_data.main(["check", str(root)]) == 0
    voc = root / "VOC2012"
    jpeg = voc / "JPEGImages" / "2012_val0001.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[:400])
    Image.fromarray(np.zeros((48, 64, 3), dtype=np.uint8)).save(voc / "SegmentationClass" / "2012_val0002.png")
    Image.fromarray(np.zeros((10, 12), dtype=np.uint8)).save(voc / "SegmentationClassAug" / "2012_train0003.png")
    with pytest.raises(SystemExit) as exit_:
        voc_data.main(["check", str(root)])
    assert exit_.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "2012_val0001.jpg" in err and "cannot be decoded" in err
    assert "2012_val0002.png" in err and "is a RGB image" in err
    assert "2012_train0003.png" in err and "is 12x10 but the annotations say 64x48" in err
    assert "Traceback" not in err


# ------------------------------------------------------------------------------------------------
# model
# ------------------------------------------------------------------------------------------------
def _model_cfg(**kw) -> dict:
    cfg = dict(seg.SEGMENTATION_DEFAULTS["model"])
    cfg.update(kw)
    return cfg


def test_gn_ws_deeplabv3_norms_and_ws_placement():
    model = seg.build_deeplabv3(
        _model_cfg(backbone="resnet50", norm="gn", norm_kwargs={"num_groups": 32}, conv="ws"), 21
    )
    head = model.classifier
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert sum(isinstance(m, nn.GroupNorm) for m in head.modules()) == 6  # 5 ASPP branches + projection
    assert sum(isinstance(m, normcore.WSConv2d) for m in head.modules()) == 6
    assert type(head[-1]) is nn.Conv2d and head[-1].out_channels == 21  # the classifier feeds no norm
    assert head[0].project[-1].p == 0.0
    bcn = seg.build_deeplabv3(_model_cfg(backbone="resnet18", norm="bcn", norm_kwargs={"num_groups": 8}), 21)
    assert sum(isinstance(m, normcore.BatchChannelNorm) for m in bcn.classifier.modules()) == 6


def test_output_stride_switch_keeps_weights():
    model = seg.build_deeplabv3(_model_cfg(backbone="resnet50", norm="gn", norm_kwargs={"num_groups": 32}), 21).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        os16 = model.backbone(x)["out"]
        before = model(x)["out"]
        seg.set_output_stride(model, 8)
        assert model.backbone(x)["out"].shape[-1] == 8 and os16.shape[-1] == 4
        assert model.classifier[0].convs[1][0].dilation == (12, 12)  # ASPP rate 6 doubled
        assert model.backbone.layer4[1].conv2.dilation == (4, 4) and model.backbone.layer4[0].conv2.dilation == (2, 2)
        seg.set_output_stride(model, 16)
        assert torch.equal(model(x)["out"], before)
    grid = seg.build_deeplabv3(_model_cfg(backbone="resnet50", norm="gn", multi_grid=[1, 2, 4]), 21)
    assert [b.conv2.dilation[0] for b in grid.backbone.layer4] == [2, 4, 8]  # DeepLabv3 §3.2: rate x (1, 2, 4)


# ------------------------------------------------------------------------------------------------
# end to end
# ------------------------------------------------------------------------------------------------
TINY = {
    "name": "tiny",
    "model": {
        "backbone": "resnet18",
        "norm": "gn",
        "norm_kwargs": {"num_groups": 8},
        "conv": "ws",
        "aspp_channels": 16,
        "aspp_rates": [1, 2, 3],
    },
    "data": {"batch_size": 2, "workers": 0, "crop_size": 32, "eval_batch_size": 2},
    "train": {"log_every": 1, "eval_every": 10},
    "optim": {"lr": 0.02, "reference_batch": 2},
    "schedule": {"kind": "poly", "milestones": []},
    "eval": {"output_stride": 8},
}


def _run(config: Path, data: Path, out: Path, *extra: str):
    return run_cli(seg.main, config, data, out, *extra)


@pytest.mark.slow
def test_train_evaluate_and_resume_exactly(voc_root, tmp_path, monkeypatch):
    monkeypatch.setenv("NORMCORE_NO_PROGRESS", "1")
    torch.set_num_threads(1)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    straight = _run(config, voc_root, tmp_path / "a", "--epochs", "3")
    assert 0.0 < straight["mIoU"] <= 100.0 and straight["IoU_background"] is not None
    with crash_after_epoch(monkeypatch, 2):
        _run(config, voc_root, tmp_path / "b", "--epochs", "3")
    resumed = _run(config, voc_root, tmp_path / "b", "--epochs", "3", "--resume", "auto")
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    losses = [r["train_loss"] for r in a["history"]]
    assert losses == [r["train_loss"] for r in b["history"]]
    assert losses[-1] < losses[0]  # it learns something in 9 steps
    assert resumed == straight
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["metrics"]["mIoU"] == straight["mIoU"] and summary["batch"]["total"] == 2


@pytest.mark.parametrize(
    "path", sorted((REPO / "reproductions").glob("*/configs/voc/[!_]*.yaml")), ids=lambda p: p.stem
)
def test_every_voc_config_loads_and_names_its_published_row(path):
    paper = path.parents[2].name
    cfg = config_from_args(engine_parser("x").parse_args(["--config", str(path)]), seg.SEGMENTATION_DEFAULTS)
    assert cfg["paper"] == paper and cfg["name"] and cfg["paper_ref"]
    check_published(cfg, paper)
    assert cfg["model"]["backbone"] == "resnet101" and cfg["data"]["crop_size"] == 513
