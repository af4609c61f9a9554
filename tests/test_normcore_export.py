"""Export (issue 11, item 10): ``torch.jit.script`` refuses every normcore layer with an error that names
the two ways that work, ``torch.export.export`` and ``torch.jit.trace``; both are tested on every layer,
in eval mode, on an input other than the example they were traced with."""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import CONV_LAYERS, NORM_LAYERS, randomize_
from torch import nn
from torch.testing import assert_close

import normcore as nc

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")

EXTRA: dict[str, nn.Module] = {
    "feature_ln": nc.FeatureLayerNorm(6),
    "normprop_relu": nc.NormPropReLU(),
    "normprop_input": nc.NormPropInputNorm(torch.zeros(8, 1, 1), torch.ones(8, 1, 1) * 2),
}


def _layers() -> dict[str, nn.Module]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        layers = {name: randomize_(f(8)) for name, f in NORM_LAYERS.items()}
    torch.manual_seed(0)
    layers.update({name: f(8, 8) for name, f in CONV_LAYERS.items()})
    layers["normprop_linear"] = nc.NormPropLinear(6, 4)
    return {**layers, **EXTRA}


LAYERS = _layers()


def _inputs(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    shape = (3, 6) if name in ("normprop_linear", "feature_ln") else (2, 8, 5, 5)
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g) * 2 + 1


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_script_says_to_export_or_trace(name):
    with pytest.raises(RuntimeError, match=r"torch\.export\.export.*torch\.jit\.trace"):
        torch.jit.script(LAYERS[name])
    with pytest.raises(RuntimeError, match="does not compile normcore"):  # also inside a model
        torch.jit.script(nn.Sequential(nn.Identity(), nn.Sequential(LAYERS[name])))


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_trace_and_export_give_the_layer(name):
    layer = LAYERS[name].eval()
    example, other = _inputs(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SyncBatchNorm's no-process-group warning, tracer warnings
        traced = torch.jit.trace(layer, example)
        exported = torch.export.export(layer, (example,)).module()
    expected = layer(other)
    assert_close(traced(other), expected)
    assert_close(exported(other), expected)


def test_a_folded_ws_model_scripts():
    """The route the error names for WS: fold into plain convs, which script."""
    model = nc.models.resnet18(norm="frozen_bn", conv="ws")
    with pytest.raises(RuntimeError, match="fold_weight_standardization"):
        torch.jit.script(model)
    folded = nc.fold_weight_standardization(
        nc.convert_norms(model.eval(), nn.BatchNorm2d, source=(nc.FrozenBatchNorm,))
    )
    scripted = torch.jit.script(folded.eval())
    x = torch.randn(1, 3, 32, 32)
    assert_close(scripted(x), model(x), atol=1e-4, rtol=1e-4)
