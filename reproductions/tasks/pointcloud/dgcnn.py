r"""Dynamic Graph CNN (Wang et al., "Dynamic Graph CNN for Learning on Point Clouds", arXiv 1801.07829)
with any normcore norm and Weight Standardization, laid out as the WS paper's point-cloud code
(csrhddlam/dgcnn, TensorFlow 1.12, a fork of WangYueFt/dgcnn's ``tensorflow/models/dgcnn.py``).

EdgeConv (DGCNN §3.1): for every point :math:`x_i` and each of its ``k`` nearest neighbours
:math:`x_j` (k = 20, the point itself included, recomputed in each layer's feature space),

.. math:: x'_i = \max_{j \in \mathcal{N}_k(i)} \; \mathrm{ReLU}\big(\mathrm{Norm}(\Theta \cdot
          [x_i, \; x_j - x_i] + b)\big),

a 1x1 convolution over the edge features followed by the norm, ReLU and a max over the neighbours.
The classification network: an input transform net (edge conv 64, conv 128, max over neighbours,
conv 1024, max over points, FC 512, FC 256, a linear map to a 3x3 matrix initialised to the
identity), four EdgeConvs (64, 64, 64, 128), a 1x1 conv to 1024 over their concatenation, a global max
pool, FC 512 and FC 256 (each with norm, ReLU, dropout 0.5) and a plain FC to the classes.

Norm and WS placement follow the official ``tf_util``: every conv and FC layer except the last two
(the transform's 3x3 map and the classifier) has a bias, the norm and ReLU, and with ``ws`` its
weights standardized (official ``ws and norm``: WS only where a norm follows); the FC layers' WS is
:class:`WSLinear`, the convs' ``normcore.WSConv2d``/``WSConv1d``. The official TF formula is
``official_tf`` (biased std, eps 1e-5 outside the root). Weights start Xavier-uniform, biases zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import normcore
from normcore.functional import weight_standardize

__all__ = ["DGCNN", "EdgeConv", "WSLinear", "build_dgcnn", "edge_features", "knn"]


class WSLinear(nn.Linear):
    """``nn.Linear`` whose weight is standardized per output unit over its inputs (WS paper §3 applied
    to a fully connected layer, as the official point-cloud code's ``fully_connected`` does);
    ``variant``/``eps`` as :func:`normcore.functional.weight_standardize`."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        variant: str = "official",
        eps: float | None = None,
    ) -> None:
        super().__init__(in_features, out_features, bias)
        self.variant, self.eps = variant, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, weight_standardize(self.weight, self.variant, self.eps), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, variant={self.variant!r}"


def knn(x: torch.Tensor, k: int) -> torch.Tensor:
    """Indices ``(B, N, k)`` of the ``k`` nearest points (squared Euclidean distance in the feature
    space of ``x``: ``(B, C, N)``), the point itself first. Computed in float32 (under autocast too),
    so that reduced precision does not reorder the neighbours."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.float()
        inner = torch.einsum("bcn,bcm->bnm", x, x)
        sq = x.pow(2).sum(dim=1)
        dist = sq.unsqueeze(2) - 2 * inner + sq.unsqueeze(1)
        return dist.topk(k, dim=-1, largest=False).indices


def edge_features(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``(B, 2C, N, k)`` edge features :math:`[x_i, x_j - x_i]` for the neighbours ``idx`` ``(B, N, k)``."""
    b, c, n = x.shape
    k = idx.shape[-1]
    points = x.transpose(1, 2)  # (B, N, C)
    neighbours = points.gather(1, idx.reshape(b, n * k, 1).expand(-1, -1, c)).view(b, n, k, c)
    central = points.unsqueeze(2).expand(-1, -1, k, -1)
    return torch.cat([central, neighbours - central], dim=-1).permute(0, 3, 1, 2).contiguous()


class _Layer(nn.Sequential):
    """conv/linear (+ WS) -> norm -> ReLU, the official ``tf_util.conv2d``/``fully_connected``."""

    def __init__(self, kind: str, cin: int, cout: int, spec: Mapping[str, Any]) -> None:
        ws = dict(variant=spec["ws_variant"]) if spec["ws"] else None
        if kind == "linear":
            layer: nn.Module = WSLinear(cin, cout, **ws) if ws else nn.Linear(cin, cout)
        else:
            dim = 2 if kind == "conv2d" else 1
            layer = normcore.build_conv("ws" if ws else "conv", cin, cout, 1, dim=dim, **(ws or {}))
        nn.init.xavier_uniform_(layer.weight)
        nn.init.zeros_(layer.bias)
        super().__init__(layer, normcore.build_norm(spec["norm"], cout, **spec["norm_kwargs"]), nn.ReLU(inplace=True))


class EdgeConv(nn.Module):
    """One EdgeConv: kNN in the input's feature space, edge features, 1x1 conv + norm + ReLU, max over
    the ``k`` neighbours. ``(B, C, N) -> (B, C', N)``."""

    def __init__(self, cin: int, cout: int, k: int, spec: Mapping[str, Any]) -> None:
        super().__init__()
        self.k = k
        self.layer = _Layer("conv2d", 2 * cin, cout, spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(edge_features(x, knn(x, self.k))).amax(dim=-1)


class _TransformNet(nn.Module):
    """The input transform net of the official code (a spatial transformer on the xyz edge features)."""

    def __init__(self, k: int, spec: Mapping[str, Any]) -> None:
        super().__init__()
        self.k = k
        self.conv1 = _Layer("conv2d", 6, 64, spec)
        self.conv2 = _Layer("conv2d", 64, 128, spec)
        self.conv3 = _Layer("conv1d", 128, 1024, spec)
        self.fc1 = _Layer("linear", 1024, 512, spec)
        self.fc2 = _Layer("linear", 512, 256, spec)
        self.transform = nn.Linear(256, 9)
        nn.init.zeros_(self.transform.weight)
        with torch.no_grad():
            self.transform.bias.copy_(torch.eye(3).flatten())

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        x = self.conv2(self.conv1(edge_features(xyz, knn(xyz, self.k)))).amax(dim=-1)
        x = self.conv3(x).amax(dim=-1)
        return self.transform(self.fc2(self.fc1(x))).view(-1, 3, 3)


class DGCNN(nn.Module):
    """DGCNN classifier (module docstring): ``(B, 3, N)`` points -> ``(B, num_classes)`` scores."""

    def __init__(
        self,
        num_classes: int = 40,
        *,
        k: int = 20,
        norm: Any = "bn",
        norm_kwargs: Mapping[str, Any] | None = None,
        ws: bool = False,
        ws_variant: str = "official_tf",
        emb_dims: int = 1024,
        dropout: float = 0.5,
        transform_net: bool = True,
    ) -> None:
        super().__init__()
        spec = {"norm": norm, "norm_kwargs": dict(norm_kwargs or {}), "ws": ws, "ws_variant": ws_variant}
        self.transform_net = _TransformNet(k, spec) if transform_net else None
        widths = (64, 64, 64, 128)
        self.edge_convs = nn.ModuleList(EdgeConv(cin, cout, k, spec) for cin, cout in zip((3, *widths[:-1]), widths))
        self.aggregate = _Layer("conv1d", sum(widths), emb_dims, spec)
        self.head = nn.Sequential(
            _Layer("linear", emb_dims, 512, spec),
            nn.Dropout(dropout),
            _Layer("linear", 512, 256, spec),
            nn.Dropout(dropout),
            nn.Linear(256, num_classes),
        )
        nn.init.xavier_uniform_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        if points.dim() != 3 or points.shape[1] != 3:
            raise ValueError(f"DGCNN expects (B, 3, N) points, got {tuple(points.shape)}")
        x = points
        if self.transform_net is not None:
            x = torch.bmm(self.transform_net(points).transpose(1, 2), x)  # official: points (B, N, 3) @ T
        features = []
        for conv in self.edge_convs:
            x = conv(x)
            features.append(x)
        x = self.aggregate(torch.cat(features, dim=1)).amax(dim=-1)
        return self.head(x)


def build_dgcnn(model_cfg: Mapping[str, Any], num_classes: int) -> DGCNN:
    """The ``model`` section (``k``, ``norm``, ``norm_kwargs``, ``ws``, ``ws_variant``, ``emb_dims``,
    ``dropout``, ``transform_net``) as a :class:`DGCNN`."""
    keys = ("k", "norm", "norm_kwargs", "ws", "ws_variant", "emb_dims", "dropout", "transform_net")
    return DGCNN(num_classes, **{key: model_cfg[key] for key in keys})
