"""normcore.load_checkpoint_into on state dicts built from the official key layouts (issue 11).

The fixtures are written here from the layouts' facts (module names and tensor shapes), not from the
official code: the BCN repository's ImageNet ResNet (``imagenet/models/imagenet/resnet.py``: ``GN``
layers named ``bn1``... with a per-group ``weight``/``bias`` of shape ``(1, 32, 1)`` and the batch stage
``pbn``; checkpoints saved as ``{"epoch", "state_dict", "acc", "best_acc", "optimizer"}`` from a
``DataParallel`` model, so every key starts with ``module.``), its DeepLabV3 ``PBCNorm`` (same layer,
``aspp.*`` modules), the WS paper's released models (torchvision ResNet keys under the same wrapper),
Caffe2/Detectron ``.pkl`` blobs (``conv1_w``, ``res_conv1_bn_s``, ``res2_0_branch2a_w``, ``_bn_s`` /
``_bn_b`` for the frozen BN's scale and shift, ``res2_0_branch1`` for the shortcut, ``fc1000``) and
detectron2's names for the same model (``stem.conv1.norm``, ``res2.0.conv1.norm``, ``shortcut``).
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import torch
import torchvision
from torch import nn
from torch.testing import assert_close

import normcore as nc

BOTTLENECK_STAGES = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


def _resnet_layout(depth: int = 50, groups: int = 32) -> list[tuple[str, str, tuple[int, ...]]]:
    """(module name, kind, shape) of an ImageNet bottleneck ResNet: kind is "conv" (weight shape) or
    "norm" (channels), "fc" last."""
    out: list[tuple[str, str, tuple[int, ...]]] = [("conv1", "conv", (64, 3, 7, 7)), ("bn1", "norm", (64,))]
    inplanes = 64
    for stage, blocks in enumerate(BOTTLENECK_STAGES[depth]):
        planes = 64 * 2**stage
        for b in range(blocks):
            p = f"layer{stage + 1}.{b}"
            out += [(f"{p}.conv1", "conv", (planes, inplanes, 1, 1)), (f"{p}.bn1", "norm", (planes,))]
            out += [(f"{p}.conv2", "conv", (planes, planes, 3, 3)), (f"{p}.bn2", "norm", (planes,))]
            out += [(f"{p}.conv3", "conv", (planes * 4, planes, 1, 1)), (f"{p}.bn3", "norm", (planes * 4,))]
            if b == 0:
                out += [(f"{p}.downsample.0", "conv", (planes * 4, inplanes, 1, 1))]
                out += [(f"{p}.downsample.1", "norm", (planes * 4,))]
            inplanes = planes * 4
    return [*out, ("fc", "fc", (1000, 2048))]


def _rand(shape, gen, positive=False):
    t = torch.randn(shape, generator=gen)
    return t.abs() + 0.5 if positive else t


def official_bcn_checkpoint(depth: int = 50, groups: int = 32) -> dict:
    """An official BCN ImageNet checkpoint (rn50_bcn_ws.pth layout), random values."""
    gen = torch.Generator().manual_seed(0)
    state = {}
    for name, kind, shape in _resnet_layout(depth, groups):
        if kind == "conv":
            state[f"{name}.weight"] = _rand(shape, gen) * 0.1
        elif kind == "norm":
            state[f"{name}.weight"] = _rand((1, groups, 1), gen) * 0.1 + 1
            state[f"{name}.bias"] = _rand((1, groups, 1), gen) * 0.1
            for key, value in _bn_state(shape[0], gen).items():
                state[f"{name}.pbn.{key}"] = value
        else:
            state["fc.weight"], state["fc.bias"] = _rand(shape, gen) * 0.01, _rand(shape[:1], gen) * 0.01
    wrapped = {f"module.{k}": v for k, v in state.items()}
    return {"epoch": 90, "state_dict": wrapped, "acc": 76.0, "best_acc": 76.1, "optimizer": {"state": {}}}


def _bn_state(c: int, gen) -> dict[str, torch.Tensor]:
    return {
        "weight": _rand((c,), gen) * 0.1 + 1,
        "bias": _rand((c,), gen) * 0.1,
        "running_mean": _rand((c,), gen) * 0.1,
        "running_var": _rand((c,), gen, positive=True),
        "num_batches_tracked": torch.tensor(1000),
    }


def _bcn_resnet(depth: int = 50, variant: str = "bcn") -> nn.Module:
    build = {50: nc.models.resnet50, 101: nc.models.resnet101}[depth]
    return build(norm="bcn", conv={"name": "ws", "variant": variant}).eval()


# --------------------------------------------------------------------------------------------------
# official BCN: ImageNet and DeepLab
# --------------------------------------------------------------------------------------------------
def test_official_bcn_imagenet_resnet50_loads():
    """Was: 265 missing and 265 unexpected keys (the batch stage under ``pbn``)."""
    ckpt = official_bcn_checkpoint()
    assert sum(".pbn." in k for k in ckpt["state_dict"]) == 265
    model = _bcn_resnet()
    report = nc.load_checkpoint_into(model, ckpt)
    assert report.ok and report.layout == "bcn_imagenet" and not report.notes
    assert report.unwrapped == ["state_dict"] and report.stripped_prefix == "module."
    assert len(report.renamed) == 265 and report.skipped == ["epoch", "acc", "best_acc", "optimizer"]
    state = model.state_dict()
    for key, value in ckpt["state_dict"].items():
        assert torch.equal(state[key.removeprefix("module.").replace(".pbn.", ".bn.")], value)
    # the layer itself reads pbn too: a plain strict load_state_dict of the unwrapped keys works
    plain = _bcn_resnet()
    plain.load_state_dict({k.removeprefix("module."): v for k, v in ckpt["state_dict"].items()})
    x = torch.randn(2, 3, 32, 32)
    assert_close(plain(x), model(x))


def test_official_bcn_with_another_ws_formula_is_reported():
    """The official ImageNet convs compute sqrt(var_unbiased + 1e-5) (the ``bcn`` variant): a model
    built with the default ``official`` WS loads the weights, and the report says the function differs."""
    report = nc.load_checkpoint_into(_bcn_resnet(variant="official"), official_bcn_checkpoint())
    assert report.ok
    assert len(report.notes) == 1 and "'variant': 'bcn'" in report.notes[0] and "53 WS conv" in report.notes[0]


class _DeepLabHead(nn.Module):
    """The ASPP names of the BCN repository's DeepLabV3 (``aspp.aspp1``, ``aspp.aspp1_bn``, ...)."""

    def __init__(self) -> None:
        super().__init__()
        self.aspp = nn.Module()
        self.aspp.aspp1 = nc.WSConv2d(64, 32, 1, bias=False)
        self.aspp.aspp1_bn = nc.BatchChannelNorm(32, 32)
        self.aspp.conv3 = nn.Conv2d(32, 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.aspp.conv3(self.aspp.aspp1_bn(self.aspp.aspp1(x)))


def test_official_deeplab_pbcnorm_loads():
    gen = torch.Generator().manual_seed(1)
    state = {"aspp.aspp1.weight": _rand((32, 64, 1, 1), gen), "aspp.conv3.weight": _rand((5, 32, 1, 1), gen)}
    state["aspp.conv3.bias"] = _rand((5,), gen)
    state["aspp.aspp1_bn.weight"], state["aspp.aspp1_bn.bias"] = _rand((1, 32, 1), gen), _rand((1, 32, 1), gen)
    state.update({f"aspp.aspp1_bn.pbn.{k}": v for k, v in _bn_state(32, gen).items()})
    model = _DeepLabHead()
    report = nc.load_checkpoint_into(model, {f"module.{k}": v for k, v in state.items()})
    assert report.ok and report.layout == "bcn_deeplab" and not report.notes  # PBCNorm's convs: std + eps
    assert torch.equal(model.aspp.aspp1_bn.bn.running_var, state["aspp.aspp1_bn.pbn.running_var"])


# --------------------------------------------------------------------------------------------------
# official WS, torchvision, files
# --------------------------------------------------------------------------------------------------
def test_official_ws_checkpoint_and_the_formula_check():
    source = nc.models.resnet18(norm="gn", norm_kwargs={"num_groups": 32}, conv="ws")
    ckpt = {"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}, "epoch": 100}
    target = nc.models.resnet18(norm="gn", norm_kwargs={"num_groups": 32}, conv="ws")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no per-conv WS warnings (issue 11, item 8)
        report = nc.load_checkpoint_into(target, ckpt, layout="ws_official")
    assert report.ok and report.stripped_prefix == "module." and not report.notes and not report.renamed
    other = nc.models.resnet18(norm="gn", norm_kwargs={"num_groups": 32}, conv={"name": "ws", "variant": "biased"})
    assert "trained with WS variant 'official'" in nc.load_checkpoint_into(other, ckpt, layout="ws_official").notes[0]


def test_torchvision_weights_and_files(tmp_path):
    tv = torchvision.models.resnet18()
    with torch.no_grad():
        tv(torch.randn(4, 3, 32, 32))  # running statistics other than the initial ones
    ours = nc.models.resnet18(norm="bn")
    path = tmp_path / "resnet18.pth"
    torch.save(tv.state_dict(), path)
    report = nc.load_checkpoint_into(ours, path)
    assert report.ok and report.layout == "normcore" and report.source == str(path)
    x = torch.randn(2, 3, 32, 32)
    assert_close(ours.eval()(x), tv.eval()(x))
    safetensors = pytest.importorskip("safetensors.torch")
    safetensors.save_file(tv.state_dict(), tmp_path / "resnet18.safetensors")
    assert nc.load_checkpoint_into(nc.models.resnet18(norm="bn"), tmp_path / "resnet18.safetensors").ok


def test_strict_failures_raise_with_the_report_and_bad_layouts_are_named():
    model = nc.models.resnet18(norm="bn")
    state = dict(model.state_dict())
    state.pop("fc.bias")
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(RuntimeError, match=r"missing \(kept their initial values\): fc\.bias"):
        nc.load_checkpoint_into(model, state)
    report = nc.load_checkpoint_into(model, state, strict=False)
    assert report.missing == ["fc.bias"] and report.unexpected == ["extra.weight"] and not report.ok
    assert "unexpected (not loaded): extra.weight" in str(report)
    with pytest.raises(ValueError, match="unknown checkpoint layout 'mmdet'"):
        nc.load_checkpoint_into(model, state, layout="mmdet")
    with pytest.raises(TypeError, match="found no tensors"):
        nc.load_checkpoint_into(model, {"state_dict": [1, 2]})


# --------------------------------------------------------------------------------------------------
# Caffe2 / detectron2 frozen BN
# --------------------------------------------------------------------------------------------------
def _caffe2_blobs(depth: int = 50) -> dict[str, np.ndarray]:
    """A Caffe2/Detectron ImageNet ResNet (R-50.pkl): frozen BN as scale ``_bn_s`` and shift ``_bn_b``."""
    gen = np.random.default_rng(0)
    blobs = {}
    for name, kind, shape in _resnet_layout(depth):
        c2 = name.replace("conv1", "conv1") if name in ("conv1", "bn1") else None
        if name == "bn1":
            c2 = "res_conv1_bn"
        elif name != "conv1" and name != "fc":
            stage, block, part = name.split(".", 2)
            s = int(stage.removeprefix("layer")) + 1
            branch = {"conv1": "branch2a", "conv2": "branch2b", "conv3": "branch2c", "bn1": "branch2a_bn"}
            branch |= {"bn2": "branch2b_bn", "bn3": "branch2c_bn", "downsample.0": "branch1"}
            branch |= {"downsample.1": "branch1_bn"}
            c2 = f"res{s}_{block}_{branch[part]}"
        if kind == "conv":
            blobs[f"{c2}_w"] = gen.standard_normal(shape).astype(np.float32) * 0.05
        elif kind == "norm":
            blobs[f"{c2}_s"] = gen.uniform(0.5, 1.5, shape).astype(np.float32)
            blobs[f"{c2}_b"] = gen.standard_normal(shape).astype(np.float32) * 0.1
        else:
            blobs["fc1000_w"] = gen.standard_normal(shape).astype(np.float32) * 0.01
            blobs["fc1000_b"] = np.zeros(shape[:1], np.float32)
    return blobs


def test_caffe2_pkl_with_affine_only_frozen_bn(tmp_path):
    blobs = _caffe2_blobs()
    assert "res2_0_branch2a_bn_s" in blobs and "res5_2_branch2c_w" in blobs and "res4_0_branch1_w" in blobs
    path = tmp_path / "R-50.pkl"
    with open(path, "wb") as f:
        pickle.dump({"blobs": blobs, "__author__": "Caffe2"}, f)
    model = nc.models.resnet50(norm="frozen_bn").eval()
    report = nc.load_checkpoint_into(model, path)
    assert report.ok and report.layout == "caffe2" and report.unwrapped == ["blobs"]
    assert len(report.filled) == 2 * 53 and report.skipped == ["__author__"]
    assert report.renamed["res3_1_branch2b_bn_s"] == "layer2.1.bn2.weight"
    assert report.renamed["res4_0_branch1_bn_b"] == "layer3.0.downsample.1.bias"
    assert report.renamed["res_conv1_bn_s"] == "bn1.weight" and report.renamed["fc1000_w"] == "fc.weight"
    bn = model.layer2[1].bn2  # Caffe2's AffineChannel: y = s * x + b
    x = torch.randn(2, bn.num_features, 4, 4)
    scale, shift = torch.from_numpy(blobs["res3_1_branch2b_bn_s"]), torch.from_numpy(blobs["res3_1_branch2b_bn_b"])
    assert_close(bn(x), x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1), atol=1e-6, rtol=1e-6)


def test_detectron2_names_load_into_a_torchvision_layout_resnet():
    """detectron2's names for the same model (as its c2 converter writes them, with a full model's
    ``backbone.bottom_up.`` prefix and running statistics); FPN/head keys stay unexpected."""
    tv_names = {k: v for k, v in nc.models.resnet50(norm="frozen_bn").state_dict().items() if not k.startswith("fc.")}
    d2 = {}
    for key, value in tv_names.items():
        name = key.replace("conv1.", "stem.conv1.", 1) if key.startswith("conv1.") else key
        name = name.replace("bn1.", "stem.conv1.norm.", 1) if key.startswith("bn1.") else name
        for s in range(1, 5):
            name = name.replace(f"layer{s}.", f"res{s + 1}.", 1) if name.startswith(f"layer{s}.") else name
        for k in (1, 2, 3):
            name = name.replace(f".bn{k}.", f".conv{k}.norm.")
        name = name.replace(".downsample.0.", ".shortcut.").replace(".downsample.1.", ".shortcut.norm.")
        d2[f"backbone.bottom_up.{name}"] = value + 1
    d2["backbone.fpn_lateral2.weight"] = torch.zeros(256, 256, 1, 1)
    model = nc.models.resnet50(norm="frozen_bn")
    report = nc.load_checkpoint_into(model, {"model": d2, "__author__": "detectron2"}, strict=False)
    assert report.layout == "detectron2" and report.skipped == ["__author__"]
    assert report.missing == ["fc.weight", "fc.bias"] and report.unexpected == ["backbone.fpn_lateral2.weight"]
    assert torch.equal(model.layer4[2].bn3.running_var, d2["backbone.bottom_up.res5.2.conv3.norm.running_var"])
    assert torch.equal(model.layer1[0].downsample[1].bias, d2["backbone.bottom_up.res2.0.shortcut.norm.bias"])
