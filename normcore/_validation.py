"""Input checks shared by every normcore layer.

Each check raises an error that names the layer, what it got, and what to do about it, so that a
user who hits it does not need to read the source. Nothing here falls back silently.
"""

from __future__ import annotations

import math

import torch

LOW_PRECISION = (torch.float16, torch.bfloat16)


def check_float(x: torch.Tensor, layer: str) -> None:
    """Raise ``TypeError`` unless ``x`` is a floating-point tensor."""
    if not torch.is_floating_point(x):
        raise TypeError(
            f"{layer} expects a floating-point tensor, got dtype {x.dtype}. "
            f"Convert the input first, e.g. x.float() (images: x.float() / 255)."
        )


def check_rank(x: torch.Tensor, layer: str, min_dim: int, max_dim: int | None = None, layout: str = "") -> None:
    """Raise ``ValueError`` if ``x.dim()`` is outside ``[min_dim, max_dim]``."""
    if x.dim() < min_dim or (max_dim is not None and x.dim() > max_dim):
        allowed = f"{min_dim}" if max_dim == min_dim else f"at least {min_dim}"
        if max_dim is not None and max_dim != min_dim:
            allowed = f"{min_dim} to {max_dim}"
        hint = f" ({layout})" if layout else ""
        raise ValueError(
            f"{layer} expects an input with {allowed} dimensions{hint}, got shape {tuple(x.shape)}. "
            f"Channels come first: (N, C, *); add a batch dimension with x.unsqueeze(0) if needed."
        )


def check_channels(x: torch.Tensor, layer: str, num_channels: int, *, features_last: bool = False) -> None:
    """Raise ``ValueError`` if the channel dimension of ``x`` (dim 1, or the last dim for
    ``features_last`` layers) is not ``num_channels``."""
    dim = x.dim() - 1 if features_last else 1
    if x.shape[dim] == num_channels:
        return
    if features_last:
        raise ValueError(
            f"{layer} was built for {num_channels} features but got {x.shape[dim]} in the last dimension, "
            f"input shape {tuple(x.shape)}. Features come last: (N, F) or (N, T, F)."
        )
    raise ValueError(
        f"{layer} was built for {num_channels} channels but got {x.shape[dim]} at dim 1 (channels-first "
        f"layout (N, C, *)), input shape {tuple(x.shape)}. For channels-last data permute it first, "
        f"e.g. x.permute(0, 3, 1, 2) for (N, H, W, C)."
    )


def valid_group_counts(num_channels: int) -> list[int]:
    """All group counts that divide ``num_channels``."""
    return [g for g in range(1, num_channels + 1) if num_channels % g == 0]


def resolve_groups(num_channels: int, num_groups: int | None, group_size: int | None, layer: str) -> int:
    """Turn ``num_groups`` *or* ``group_size`` (channels per group) into a validated group count.

    The two keywords are distinct on purpose ("group size 8" is ambiguous in the literature); giving
    both is an error.
    """
    if num_channels < 1:
        raise ValueError(f"{layer}: num_channels must be positive, got {num_channels}")
    if num_groups is not None and group_size is not None:
        raise ValueError(
            f"{layer}: give num_groups (number of groups) or group_size (channels per group), not both "
            f"(got num_groups={num_groups}, group_size={group_size})."
        )
    if group_size is not None:
        if group_size < 1 or num_channels % group_size != 0:
            sizes = valid_group_counts(num_channels)
            raise ValueError(
                f"{layer}: group_size={group_size} does not divide num_channels={num_channels}. "
                f"Valid group sizes (channels per group): {sizes}."
            )
        return num_channels // group_size
    groups = 32 if num_groups is None else num_groups
    if groups < 1 or num_channels % groups != 0:
        raise ValueError(
            f"{layer}: num_channels={num_channels} is not divisible by num_groups={groups}. "
            f"Valid group counts for {num_channels} channels: {valid_group_counts(num_channels)}. "
            f"Or pass group_size=... (channels per group) instead."
        )
    return groups


def check_batch_stats_size(
    x: torch.Tensor, layer: str, virtual_devices: int = 1, *, values_per_channel: int | None = None, where: str = ""
) -> None:
    """Batch statistics need more than one value per channel (per virtual device).

    Raises the error PyTorch gives as "Expected more than 1 value per channel when training", with
    the fixes spelled out. An empty batch passes (its output is empty, as for ``nn.BatchNorm2d``).
    ``values_per_channel`` overrides the count taken from ``x`` (SyncBatchNorm: the whole group's),
    and ``where`` says what it was counted over.
    """
    per_channel = x.numel() // max(x.shape[1], 1) // virtual_devices
    if values_per_channel is not None:
        per_channel = values_per_channel
    elif virtual_devices > 1:
        where = f" per virtual device ({virtual_devices} devices)"
    if per_channel == 1 or (per_channel == 0 and x.numel() > 0):
        raise ValueError(
            f"{layer} in training mode got input of shape {tuple(x.shape)}: only one value per channel"
            f"{where}, so the batch variance is undefined. Fixes: use a batch of at least 2 samples "
            f"(DataLoader(..., drop_last=True) avoids a short last batch); use a batch-independent norm "
            f"(GroupNorm 'gn' or BatchChannelNorm 'bcn'); or put this layer in eval mode "
            f"(layer.eval(), or normcore.freeze_norms) so it uses its running statistics."
        )


def check_virtual_devices(x: torch.Tensor, layer: str, virtual_devices: int) -> None:
    """The batch must split into ``virtual_devices`` equal slices."""
    if x.shape[0] % virtual_devices != 0:
        raise ValueError(
            f"{layer}(virtual_devices={virtual_devices}) got a batch of {x.shape[0]} samples, which does not "
            f"split into {virtual_devices} equal slices. Use a batch size that is a multiple of "
            f"{virtual_devices} and DataLoader(..., drop_last=True)."
        )


def check_group_values(x: torch.Tensor, layer: str, num_channels: int, num_groups: int) -> None:
    """Each (sample, group) must hold more than one value, or it normalizes to 0 whatever it is."""
    if (num_channels // num_groups) * math.prod(x.shape[2:]) <= 1:
        raise ValueError(
            f"{layer} with {num_groups} groups of {num_channels // num_groups} channel(s) got input of shape "
            f"{tuple(x.shape)}: each group holds a single value, which normalizes to 0 whatever it is "
            f"(pytorch/pytorch#19250). Use fewer groups (e.g. num_groups=1, LayerNorm) for 1x1 features."
        )


class NotScriptable:
    """Mixin for normcore modules: ``torch.jit.script`` stops with an error that says what to use instead.

    The layers check their inputs in Python and dispatch on dtype, device and memory format, which
    TorchScript cannot compile; ``torch.export.export`` and ``torch.jit.trace`` record the operations
    that actually run, and both are tested on every layer (tests/test_normcore_export.py)."""

    def __prepare_scriptable__(self):  # called by torch.jit.script on every submodule
        raise RuntimeError(
            f"torch.jit.script does not compile normcore's {type(self).__name__}: its input checks and "
            f"dtype/device dispatch are Python. Export with torch.export.export(model, (example_input,)) or "
            f"torch.jit.trace(model, example_input) instead (for WS convs, normcore.fold_weight_standardization "
            f"first gives plain convolutions)."
        )
