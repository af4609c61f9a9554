"""COCO detection on the engine: the loader and its errors, the evaluator (a perfect prediction scores
AP 1.0), the Mask R-CNN's norm placement, pretrained loading, and train -> evaluate -> resume end to end
on a generated COCO dataset in the real format."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from dense_helpers import REPO, check_published, crash_after_epoch, run_cli
from fixtures.coco import make_coco_dataset
from PIL import Image
from torch import nn

import normcore
from reproductions.engine.cli import config_from_args, engine_parser
from reproductions.engine.trainer import CHECKPOINT_FORMAT
from reproductions.tasks.classification.data import DataError
from reproductions.tasks.detection import coco_data
from reproductions.tasks.detection import main as detection
from reproductions.tasks.detection.coco_data import CocoInstances, load_coco_api, validate_coco
from reproductions.tasks.detection.coco_eval import ground_truth_results, run_cocoeval
from reproductions.tasks.pretrained import load_backbone_weights


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory) -> Path:
    return make_coco_dataset(tmp_path_factory.mktemp("coco"), splits={"train": 4, "val": 3})


def _ann(root: Path, split: str = "val") -> dict:
    return json.loads((root / "annotations" / f"instances_{split}.json").read_text())


# ------------------------------------------------------------------------------------------------
# evaluator
# ------------------------------------------------------------------------------------------------
def test_perfect_prediction_scores_ap_one(coco_root):
    coco = load_coco_api(coco_root / "annotations" / "instances_val.json")
    metrics, text = run_cocoeval(coco, ground_truth_results(coco))
    for iou_type in ("bbox", "segm"):
        for stat in ("AP", "AP50", "AP75"):
            assert metrics[f"{iou_type}_{stat}"] == pytest.approx(100.0)
    assert "Average Precision" in text


def test_imperfect_predictions_score_lower(coco_root):
    coco = load_coco_api(coco_root / "annotations" / "instances_val.json")
    perfect = ground_truth_results(coco)
    shifted = copy.deepcopy(perfect)
    for r in shifted:
        x, y, w, h = r["bbox"]
        r["bbox"] = [x + 0.3 * w, y, w, h]  # IoU ~0.54: counts at .50, not at .75
    metrics, _ = run_cocoeval(coco, shifted, ["bbox"])
    assert metrics["bbox_AP50"] == pytest.approx(100.0)
    assert metrics["bbox_AP75"] == pytest.approx(0.0)
    missing_one, _ = run_cocoeval(coco, perfect[1:], ["bbox"])
    assert missing_one["bbox_AP"] < 100.0
    none, _ = run_cocoeval(coco, [], ["bbox", "segm"])
    assert none["bbox_AP"] == 0.0 and none["segm_AP"] == 0.0


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------
def test_dataset_targets_and_flip(coco_root):
    ds = CocoInstances(coco_root, "val", train=False)
    ann = _ann(coco_root)
    assert ds.num_classes == 3 and ds.label_to_cat == {1: 1, 2: 2, 3: 5}
    image, target = ds[0]
    image_id = int(target["image_id"])
    gt = [a for a in ann["annotations"] if a["image_id"] == image_id]
    assert image.shape == (3, 64, 80) and image.min() >= 0.0 and image.max() <= 1.0
    assert target["boxes"].shape == (len(gt), 4) and target["masks"].shape == (len(gt), 64, 80)
    x, y, w, h = gt[0]["bbox"]
    assert target["boxes"][0].tolist() == pytest.approx([x, y, x + w, y + h], abs=1e-4)
    assert target["labels"].tolist() == [ds.cat_to_label[a["category_id"]] for a in gt]
    # the rasterized polygon covers about the polygon's area
    assert float(target["masks"][0].sum()) == pytest.approx(gt[0]["area"], rel=0.15)

    flipping = CocoInstances(coco_root, "val", train=True, flip_prob=1.0)
    assert flipping.ids == ds.ids  # every generated image has objects
    f_image, f_target = flipping[0]
    assert torch.equal(f_image, image.flip(-1))
    assert torch.equal(f_target["masks"], target["masks"].flip(-1))
    assert f_target["boxes"][:, 0].tolist() == pytest.approx((80 - target["boxes"][:, 2]).tolist())


def _write(root: Path, data: dict) -> Path:
    target = root / "annotations" / "instances_val.json"
    target.write_text(json.dumps(data))
    return target


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (lambda d: d.pop("categories"), "missing top-level key 'categories'"),
        (lambda d: d["annotations"][0].pop("bbox"), "lacks bbox"),
        (lambda d: d["annotations"][0].update(segmentation=[[1.0, 2.0, 3.0, 4.0]]), "needs at least 3"),
        (lambda d: d["annotations"][0].update(segmentation=[[1.0, 2.0, 3.0, 4.0, 5.0]]), "odd number"),
        (lambda d: d["annotations"][0].update(category_id=99), "no category with id 99"),
        (lambda d: d["annotations"][0].update(image_id=12345), "no image with id 12345"),
        (lambda d: d["annotations"][0].update(bbox=[0, 0, -1, 3]), "bad boxes"),
        (lambda d: d["images"][0].update(file_name="absent.jpg"), "absent.jpg"),
        # issue 12: polygons outside the image, polygons without area, ids written as strings
        (lambda d: d["annotations"][0].update(segmentation=[[10, 10, 500, 10, 500, 40]]), "reaches outside"),
        (lambda d: d["annotations"][0].update(segmentation=[[1, 1, 5, 5, 9, 9]]), "encloses no area"),
        (lambda d: d["annotations"][0].update(image_id=str(d["annotations"][0]["image_id"])), "without quotes"),
        (lambda d: d["images"][0].update(id="7"), "COCO ids are integers"),
    ],
)
def test_malformed_annotations_get_clear_errors(coco_root, tmp_path, breakage, expected):
    root = tmp_path / "coco"
    shutil.copytree(coco_root, root)
    data = _ann(root)
    breakage(data)
    path = _write(root, data)
    with pytest.raises(DataError) as err:
        CocoInstances(root, "val", train=False)
    message = str(err.value)
    assert expected in message and str(path) in message
    assert "Fix" in message or "COCO instances file" in message


def test_check_command_decodes_every_image(coco_root, tmp_path, capsys):
    """Issue 12: the check reported OK for a truncated JPEG and for an image whose size differs from the
    annotation file's."""
    root = tmp_path / "coco"
    shutil.copytree(coco_root, root)
    assert coco_data.main(["check", str(root), "--split", "val"]) == 0
    files = sorted((root / "val").glob("*.jpg"))
    files[0].write_bytes(files[0].read_bytes()[:300])
    Image.new("RGB", (20, 10)).save(files[1])
    with pytest.raises(SystemExit) as exit_:
        coco_data.main(["check", str(root), "--split", "val"])
    assert exit_.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{files[0].name} (image id" in err and "cannot be decoded" in err
    assert f"{files[1].name} (image id" in err and "is 20x10 but the annotations say 80x64" in err
    assert "Traceback" not in err


def test_missing_folder_and_bad_json_name_the_fix(coco_root, tmp_path):
    with pytest.raises(DataError, match=r"instances_val2017\.json not found.*cocodataset\.org"):
        CocoInstances(coco_root, "val2017", train=False)
    root = tmp_path / "coco"
    shutil.copytree(coco_root, root)
    (root / "annotations" / "instances_val.json").write_text('{"images": [')
    with pytest.raises(DataError, match="not valid JSON"):
        CocoInstances(root, "val", train=False)


def test_validate_reports_every_problem_at_once(coco_root):
    data = _ann(coco_root)
    data["annotations"][0]["segmentation"] = [[1.0, 2.0]]
    data["annotations"][1]["category_id"] = 77
    with pytest.raises(DataError, match=r"2 kind\(s\) of problem") as err:
        validate_coco(data, "x.json")
    assert f"annotation id {data['annotations'][0]['id']}" in str(err.value)


# ------------------------------------------------------------------------------------------------
# model
# ------------------------------------------------------------------------------------------------
def _cfg(**model) -> dict:
    cfg = copy.deepcopy(detection.DETECTION_DEFAULTS["model"])
    cfg.update(model)
    return cfg


GN_WS = {
    "norm": "gn",
    "conv": "ws",
    "fpn_norm": "gn",
    "box_head": "4conv1fc",
    "box_head_norm": "gn",
    "mask_head_norm": "gn",
    "head_norm_kwargs": {"num_groups": 32},
}


def test_gn_ws_placement_follows_the_papers():
    model = detection.build_detector(_cfg(**GN_WS), num_classes=80)
    body, fpn = model.backbone.body, model.backbone.fpn
    heads = model.roi_heads
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    # every conv that feeds a GN is WS: backbone, FPN lateral/output convs, 4 box-head convs, 4 mask-head convs
    for part, n_ws in ((fpn, 8), (heads.box_head, 4), (heads.mask_head, 4)):
        assert sum(isinstance(m, normcore.WSConv2d) for m in part.modules()) == n_ws
        assert sum(isinstance(m, nn.GroupNorm) for m in part.modules()) == n_ws
    assert sum(isinstance(m, normcore.WSConv2d) for m in body.modules()) == 53
    # convs that feed no norm stay plain: RPN head, mask predictor, box predictor (linear)
    assert not any(isinstance(m, normcore.WSConv2d) for m in model.rpn.modules())
    assert type(heads.mask_predictor.mask_fcn_logits) is nn.Conv2d
    assert sum(isinstance(m, nn.Linear) for m in heads.box_head.modules()) == 1  # 4conv + 1fc
    assert heads.box_predictor.cls_score.out_features == 81


def test_bn_frozen_baseline_and_frozen_stages():
    small = {"fpn_channels": 32, "box_head_fc": 64, "head_channels": 32, "kwargs": TINY["model"]["kwargs"]}
    model = detection.build_detector(
        _cfg(backbone="resnet18", norm="frozen_bn", box_head="2fc", **small), num_classes=80, min_size=64, max_size=96
    )
    body = model.backbone.body
    assert all(type(m) is normcore.FrozenBatchNorm for m in body.modules() if normcore.is_norm(m))
    assert not any(normcore.is_norm(m) for m in model.backbone.fpn.modules())
    assert all(m.bias is not None for m in model.backbone.fpn.modules() if isinstance(m, nn.Conv2d))
    trainable = {n.split(".")[0] for n, p in body.named_parameters() if p.requires_grad}
    assert trainable == {"layer2", "layer3", "layer4"}  # trainable_layers=3: stem + res2 frozen
    frozen_before = [b.clone() for m in body.modules() if isinstance(m, normcore.FrozenBatchNorm) for b in m.buffers()]
    model.train()
    images = [torch.rand(3, 64, 80)]
    targets = [{"boxes": torch.tensor([[4.0, 5.0, 40.0, 50.0]]), "labels": torch.tensor([1]),
                "masks": torch.zeros(1, 64, 80, dtype=torch.uint8)}]  # fmt: skip
    sum(model(images, targets).values()).backward()
    after = [b for m in body.modules() if isinstance(m, normcore.FrozenBatchNorm) for b in m.buffers()]
    assert all(torch.equal(a, b) for a, b in zip(frozen_before, after, strict=True))


def test_faster_rcnn_has_no_mask_branch():
    model = detection.build_detector(_cfg(backbone="resnet18", masks=False), num_classes=3)
    assert model.roi_heads.mask_head is None


def _c4(**model) -> dict:
    small = {"backbone": "resnet18", "backbone_type": "c4", "box_head": "res5", "kwargs": TINY["model"]["kwargs"]}
    return _cfg(**{**small, **model})


def _one_image_target() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    masks = torch.zeros(1, 64, 80, dtype=torch.uint8)
    masks[0, 5:50, 4:40] = 1
    target = {"boxes": torch.tensor([[4.0, 5.0, 40.0, 50.0]]), "labels": torch.tensor([1]), "masks": masks}
    return [torch.rand(3, 64, 80)], [target]


def test_c4_mask_rcnn_follows_detectron_design():
    """GN paper Table 4's C4 model: res2-res4 backbone at stride 16 with the RPN on it (15 anchors), RoIAlign
    14x14, res5 as the box head, the mask branch sharing res5, GN in backbone and head alike."""
    model = detection.build_detector(
        _c4(norm="gn", norm_kwargs={"num_groups": 8}, trainable_layers=5), num_classes=3, min_size=64, max_size=96
    )
    backbone, heads = model.backbone, model.roi_heads
    assert list(dict(backbone.named_children())) == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3"]
    assert backbone.out_channels == 256  # ResNet-18's res4 (1024 for ResNet-50)
    assert backbone(torch.zeros(1, 3, 64, 96)).shape[-2:] == (4, 6)  # stride 16
    assert model.rpn.anchor_generator.num_anchors_per_location() == [15]
    assert heads.box_roi_pool.output_size == (14, 14) and heads.mask_roi_pool.output_size == (14, 14)
    assert isinstance(heads.box_head, detection.ResNetConv5Head) and heads.box_head.out_channels == 512
    assert heads.mask_head is heads.box_head.res5  # Detectron's v0upshare: one res5, two uses
    assert sum(isinstance(m, nn.GroupNorm) for m in heads.box_head.modules()) == 5  # 2 basic blocks + projection
    assert heads.box_predictor.cls_score.in_features == 512 and heads.box_predictor.cls_score.out_features == 4
    # training: every loss is finite and the mask loss alone reaches res5's weights
    model.train()
    images, targets = _one_image_target()
    losses = model(images, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())
    losses["loss_mask"].backward()
    # (the residual branches start at zero: the last gamma of each block is 0, GN §4.1; the projection is not)
    res5 = heads.box_head.res5
    assert res5[0].downsample[0].weight.grad.abs().sum() > 0 and res5[1].bn2.weight.grad.abs().sum() > 0
    assert heads.box_predictor.cls_score.weight.grad is None  # the box loss was not backpropagated
    model.eval()
    with torch.no_grad():
        (out,) = model(images)
    assert out["masks"].shape[1:] == (1, 64, 80) and out["boxes"].shape[1] == 4


def test_c4_rejects_fpn_only_options_with_the_fix():
    with pytest.raises(
        ValueError, match=r"model.fpn_norm='gn' applies to backbone_type: fpn.*set model.fpn_norm: null"
    ):
        detection.build_detector(_c4(fpn_norm="gn"), num_classes=3)
    with pytest.raises(
        ValueError, match=r"box_head='4conv1fc' does not fit backbone_type: c4.*res5 \(backbone_type: c4\)"
    ):
        detection.build_detector(_c4(box_head="4conv1fc"), num_classes=3)
    with pytest.raises(ValueError, match=r"box_head='res5' does not fit backbone_type: fpn"):
        detection.build_detector(_cfg(backbone="resnet18", box_head="res5"), num_classes=3)
    with pytest.raises(ValueError, match="backbone_type='c5'; choose one of fpn, c4"):
        detection.build_detector(_c4(backbone_type="c5"), num_classes=3)


def test_c4_faster_rcnn_and_resnext_backbone():
    faster = detection.build_detector(_c4(masks=False), num_classes=3)
    assert faster.roi_heads.mask_head is None and isinstance(faster.roi_heads.box_head, detection.ResNetConv5Head)
    with torch.device("meta"):
        x101 = detection.build_detector(
            _cfg(backbone="resnext101_32x4d", norm="gn", conv="ws", fpn_norm="gn"), num_classes=80
        )
    grouped = [m for m in x101.backbone.body.modules() if isinstance(m, normcore.WSConv2d) and m.groups == 32]
    assert len(grouped) == 33  # one grouped 3x3 per bottleneck


def test_pretrained_backbone_loading_reports_by_layer(tmp_path):
    source = normcore.models.resnet18(norm="bn")
    with torch.no_grad():
        source.layer2[0].conv1.weight.normal_()
        source.layer2[0].bn1.running_mean.uniform_()
    tv_file, engine_file = tmp_path / "tv.pth", tmp_path / "engine.pt"
    torch.save(source.state_dict(), tv_file)
    torch.save({"format": CHECKPOINT_FORMAT, "model": {f"module.{k}": v for k, v in source.state_dict().items()}},
               engine_file)  # fmt: skip
    for path in (tv_file, engine_file):
        model = detection.build_detector(_cfg(backbone="resnet18", pretrained=str(path)), 3, log=lambda s: None)
        body = model.backbone.body
        assert torch.equal(body.layer2[0].conv1.weight, source.layer2[0].conv1.weight)
        assert torch.equal(body.layer2[0].bn1.running_mean, source.layer2[0].bn1.running_mean)
    gn = normcore.models.resnet18(norm="gn", norm_kwargs={"num_groups": 8})
    report = load_backbone_weights(gn, tv_file)
    text = "\n".join(report.lines())
    assert "layer2.0.bn1 (running_mean, running_var, num_batches_tracked)" in text
    assert report.loaded > 0 and not report.missing
    with pytest.raises(ValueError, match="none of its"):
        torch.save({"x.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
        load_backbone_weights(gn, tmp_path / "wrong.pth")


# ------------------------------------------------------------------------------------------------
# end to end: train, evaluate with COCOeval, checkpoint, resume
# ------------------------------------------------------------------------------------------------
TINY = {
    "name": "tiny",
    "model": {
        "backbone": "resnet18",
        **GN_WS,
        "norm_kwargs": {"num_groups": 8},
        "head_norm_kwargs": {"num_groups": 8},
        "fpn_channels": 32,
        "head_channels": 32,
        "box_head_fc": 64,
        "mask_head_convs": 2,
        "trainable_layers": 5,
        "kwargs": {
            "rpn_pre_nms_top_n_train": 100,
            "rpn_post_nms_top_n_train": 50,
            "rpn_pre_nms_top_n_test": 50,
            "rpn_post_nms_top_n_test": 25,
            "box_batch_size_per_image": 32,
            "rpn_batch_size_per_image": 32,
        },
    },
    "data": {"train_split": "train", "val_split": "val", "batch_size": 2, "workers": 0, "min_size": 64, "max_size": 80},
    "train": {"log_every": 1, "eval_every": 10},
    "optim": {"lr": 0.01, "reference_batch": 2, "norm_weight_decay": 0.0},
    "schedule": {"kind": "step", "milestones": [1]},
}


def _run(config: Path, data: Path, out: Path, *extra: str):
    return run_cli(detection.main, config, data, out, *extra, paper="group_norm")


@pytest.mark.slow
def test_train_evaluate_and_resume_exactly(coco_root, tmp_path, monkeypatch):
    monkeypatch.setenv("NORMCORE_NO_PROGRESS", "1")
    torch.set_num_threads(1)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    straight = _run(config, coco_root, tmp_path / "a", "--epochs", "2")
    assert set(straight) >= {"bbox_AP", "bbox_AP50", "bbox_AP75", "segm_AP", "segm_AP50", "segm_AP75"}
    assert all(0.0 <= straight[k] <= 100.0 for k in ("bbox_AP", "segm_AP"))
    with crash_after_epoch(monkeypatch, 1):
        _run(config, coco_root, tmp_path / "b", "--epochs", "2")
    resumed = _run(config, coco_root, tmp_path / "b", "--epochs", "2", "--resume", "auto")

    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 4
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in a["history"])
    assert resumed == straight
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["metrics"]["bbox_AP"] == straight["bbox_AP"]
    assert [json.loads(line)["epoch"] for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()] == [1, 2]


@pytest.mark.parametrize(
    "path",
    sorted((REPO / "reproductions").glob("*/configs/coco/[!_]*.yaml")),
    ids=lambda p: f"{p.parent.parent.parent.name}/{p.stem}",
)
def test_every_coco_config_loads_and_names_its_published_row(path):
    paper = path.parents[2].name
    cfg = config_from_args(engine_parser("x").parse_args(["--config", str(path)]), detection.DETECTION_DEFAULTS)
    assert cfg["paper"] == paper and cfg["name"] and cfg["paper_ref"]
    check_published(cfg, paper)
    model = cfg["model"]
    assert model["backbone"] in ("resnet50", "resnet101", "resnext50_32x4d", "resnext101_32x4d")
    assert cfg["data"]["min_size"] == 800
    assert model["box_head"] in detection.BOX_HEADS[model["backbone_type"]]


@pytest.mark.slow
def test_c4_trains_and_evaluates_end_to_end(coco_root, tmp_path, monkeypatch):
    """GN Table 4's C4 model through the training script: one epoch, then COCOeval's box and mask AP."""
    monkeypatch.setenv("NORMCORE_NO_PROGRESS", "1")
    tiny = copy.deepcopy(TINY)
    tiny["model"].update(backbone_type="c4", box_head="res5", fpn_norm=None, box_head_norm=None, mask_head_norm=None)
    config = tmp_path / "tiny_c4.yaml"
    config.write_text(yaml.safe_dump(tiny))
    metrics = _run(config, coco_root, tmp_path / "c4", "--epochs", "1")
    assert all(0.0 <= metrics[k] <= 100.0 for k in ("bbox_AP", "bbox_AP50", "segm_AP", "segm_AP50"))
    saved = torch.load(tmp_path / "c4" / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert any(k.startswith("roi_heads.box_head.res5.") for k in saved["model"])
