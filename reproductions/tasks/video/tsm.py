r"""The Temporal Shift Module (Lin, Gan & Han, ICCV 2019, arXiv 1811.08383) on a normcore ResNet: the
video network of the WS paper's Something-Something experiment (arXiv 1903.10520, video recognition).

A clip of ``T`` frames (``num_segments``, 8 in the paper) runs through a 2D ResNet as ``N*T`` images.
Inside every residual block, before the block's first convolution, a fraction of the channels moves one
frame along time (TSM §3.2, "residual shift", the official ``shift_place=blockres``): with
:math:`f = \lfloor C / \text{fold\_div} \rfloor` (``fold_div=8``: 1/8 of the channels each way),

.. math:: y_{t, c} = \begin{cases} x_{t+1, c} & c < f \\ x_{t-1, c} & f \le c < 2f \\
          x_{t, c} & \text{otherwise} \end{cases}

with zeros where :math:`t \pm 1` leaves the clip; the shortcut keeps the unshifted features. The
frame scores are averaged over time (TSN's "avg" consensus), after dropout (0.5) and a new linear
classifier initialised as the official code does (normal, std 0.001; bias 0).

Norms and WS are normcore's: ``norm`` ``bn``/``gn`` and ``conv`` ``ws`` are passed to the ResNet builder
(:func:`reproductions.tasks.pretrained.backbone_from_config`), so GN+WS is ``norm: gn, conv: ws``. BN
normalizes over the ``N*T`` frames of a device's clips (the official code's BatchNorm2d does the same).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from reproductions.tasks.pretrained import backbone_from_config

__all__ = ["TSM", "TemporalShift", "build_tsm", "insert_temporal_shift", "temporal_shift"]


def temporal_shift(x: torch.Tensor, num_segments: int, fold_div: int = 8) -> torch.Tensor:
    """Shift ``1/fold_div`` of the channels of ``x`` (``(N*T, C, H, W)``, frames of a clip adjacent)
    one frame back in time, the next ``1/fold_div`` one frame forward, and keep the rest (TSM §3.1)."""
    nt, c = x.shape[:2]
    if nt % num_segments:
        raise ValueError(f"temporal_shift: {nt} frames is not a multiple of num_segments={num_segments}")
    x = x.view(nt // num_segments, num_segments, *x.shape[1:])
    fold = c // fold_div
    out = torch.zeros_like(x)
    out[:, :-1, :fold] = x[:, 1:, :fold]  # frame t sees t+1
    out[:, 1:, fold : 2 * fold] = x[:, :-1, fold : 2 * fold]  # frame t sees t-1
    out[:, :, 2 * fold :] = x[:, :, 2 * fold :]
    return out.view(nt, *x.shape[2:])


class TemporalShift(nn.Module):
    """``net(temporal_shift(x))``: the shift placed in front of a block's first convolution."""

    def __init__(self, net: nn.Module, num_segments: int, fold_div: int = 8) -> None:
        super().__init__()
        self.net = net
        self.num_segments = num_segments
        self.fold_div = fold_div

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(temporal_shift(x, self.num_segments, self.fold_div))

    def extra_repr(self) -> str:
        return f"num_segments={self.num_segments}, fold_div={self.fold_div}"


def insert_temporal_shift(resnet: nn.Module, num_segments: int, fold_div: int = 8) -> int:
    """Wrap ``conv1`` of every residual block of a torchvision-layout ResNet in :class:`TemporalShift`
    (the residual shift); returns how many blocks were changed."""
    count = 0
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        for block in getattr(resnet, stage):
            if not isinstance(block.conv1, TemporalShift):
                block.conv1 = TemporalShift(block.conv1, num_segments, fold_div)
                count += 1
    if count == 0:
        raise ValueError("insert_temporal_shift: the model has no residual blocks in layer1..layer4")
    return count


class TSM(nn.Module):
    """TSM video classifier: ``forward(clips)`` takes ``(N, T, 3, H, W)`` (one view per clip) or
    ``(N, V, T, 3, H, W)`` (V views: clips x crops, whose scores are averaged, as the official
    ``test_models.py`` does) and returns ``(N, num_classes)`` scores."""

    def __init__(
        self,
        resnet: nn.Module,
        num_classes: int,
        num_segments: int,
        *,
        fold_div: int = 8,
        dropout: float = 0.5,
        shift: bool = True,
    ) -> None:
        super().__init__()
        self.num_segments = num_segments
        if shift:
            insert_temporal_shift(resnet, num_segments, fold_div)
        features = resnet.fc.in_features
        resnet.fc = nn.Identity()
        self.backbone = resnet
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(features, num_classes)
        nn.init.normal_(self.fc.weight, 0.0, 0.001)
        nn.init.zeros_(self.fc.bias)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        views = 1
        if clips.dim() == 6:
            views = clips.shape[1]
            clips = clips.flatten(0, 1)
        elif clips.dim() != 5:
            raise ValueError(f"TSM expects (N, T, 3, H, W) or (N, V, T, 3, H, W) clips, got {tuple(clips.shape)}")
        b, t = clips.shape[:2]
        if t != self.num_segments:
            raise ValueError(f"TSM was built for {self.num_segments} frames per clip, got {t}")
        frames = self.backbone(clips.flatten(0, 1))  # (B*T, features)
        scores = self.fc(self.dropout(frames)).view(b, t, -1).mean(dim=1)  # avg consensus over time
        return scores.view(b // views, views, -1).mean(dim=1) if views > 1 else scores


def build_tsm(
    model_cfg: Mapping[str, Any],
    num_classes: int,
    *,
    sync_bn: bool = False,
    virtual_devices: int = 1,
    trusted: bool = False,
    log: Any = print,
) -> TSM:
    """The ``model`` section as a :class:`TSM`: ``backbone`` (``resnet50``), ``norm``/``norm_kwargs``,
    ``conv``/``conv_kwargs``, ``pretrained`` (ImageNet weights of the same norm), ``num_segments``,
    ``shift_div``, ``shift`` (``false``: TSN, the shift-free baseline) and ``dropout``."""
    resnet = backbone_from_config(model_cfg, sync_bn=sync_bn, virtual_devices=virtual_devices, trusted=trusted, log=log)
    return TSM(
        resnet,
        num_classes,
        int(model_cfg["num_segments"]),
        fold_div=int(model_cfg["shift_div"]),
        dropout=float(model_cfg["dropout"]),
        shift=bool(model_cfg["shift"]),
    )
