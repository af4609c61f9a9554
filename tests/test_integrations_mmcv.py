"""normcore layers built by mmcv's own builders (the path mmdetection/mmsegmentation configs take).

Skipped unless ``mmengine`` and ``mmcv-lite`` are installed (the optional ``mmcv`` extra)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip(
    "mmengine", reason="optional: mmengine + mmcv-lite are not installed (pip install mmengine mmcv-lite)"
)
mmcv_cnn = pytest.importorskip("mmcv.cnn", reason="optional: mmcv-lite is not installed (pip install mmcv-lite)")

import normcore  # noqa: E402
from normcore.integrations.mmcv import MMCV_NAMES, register_mmcv  # noqa: E402


def test_every_norm_builds_through_build_norm_layer():
    names = register_mmcv()
    assert set(names) == {f"NC{n}" for n in MMCV_NAMES}
    assert register_mmcv() == names  # idempotent
    for name, cls in names.items():
        if issubclass(cls, torch.nn.modules.conv._ConvNd):
            continue
        cfg = {"type": name}
        if name in ("NCGN", "NCBCN"):
            cfg["num_groups"] = 8
        abbr, layer = mmcv_cnn.build_norm_layer(cfg, 32, postfix=1)
        assert type(layer) is cls and abbr.endswith("1")


def test_gn_and_ws_match_mmcv_numerically():
    register_mmcv()
    torch.manual_seed(0)
    x = torch.randn(2, 16, 9, 9)
    _, ours = mmcv_cnn.build_norm_layer({"type": "NCGN", "num_groups": 4}, 16)
    _, theirs = mmcv_cnn.build_norm_layer({"type": "GN", "num_groups": 4}, 16)
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-6)
    ws = mmcv_cnn.build_conv_layer({"type": "NCWS"}, 16, 8, 3, padding=1)
    ref = mmcv_cnn.build_conv_layer({"type": "ConvWS"}, 16, 8, 3, padding=1)
    assert isinstance(ws, normcore.WSConv2d) and ws.variant == "official"
    ref.load_state_dict(ws.state_dict())
    torch.testing.assert_close(ws(x), ref(x), rtol=1e-5, atol=1e-6)


def test_conv_module_with_normcore_norm_and_conv():
    register_mmcv()
    block = mmcv_cnn.ConvModule(
        8, 16, 3, padding=1, conv_cfg={"type": "NCWS"}, norm_cfg={"type": "NCGN", "num_groups": 4}
    )
    assert isinstance(block.conv, normcore.WSConv2d) and isinstance(block.norm, normcore.GroupNorm)
    assert block.conv.bias is None  # ConvModule(bias="auto") drops the bias before a norm
    out = block(torch.randn(2, 8, 6, 6))
    assert out.shape == (2, 16, 6, 6) and (out >= 0).all()
