r"""Weight-standardized convolutions (Qiao et al. 2019, "Weight Standardization", §3; official code
joe-siyuan-qiao/WeightStandardization).

Each conv keeps its raw ``weight`` parameter under the usual key (so DDP, deepcopy and plain-conv
checkpoints behave as for ``nn.Conv2d``) and standardizes it inside ``forward``, in the autograd graph
(standardizing outside it is the classic port bug, joe-siyuan-qiao/WeightStandardization#11). In eval
mode without gradients the standardized weight is cached until the weight changes: a change is seen
through the weight's version counter (optimizer steps, ``load_state_dict``, in-place ops under
``torch.no_grad()``) or a new tensor. In-place changes through ``weight.data`` bypass the version
counter; after one, call ``module.train(module.training)`` (or ``.eval()``) to drop the cache. A
weight standardized under ``torch.inference_mode()`` is cached for inference mode only: outside it,
where autograd may need to save the weight (saliency maps, adversarial inputs), it is recomputed.

Loading weights that carry another WS variant in their state-dict metadata warns, once per load.
Untagged weights (the official checkpoints, timm's ``StdConv2d``, mmcv's ``ConvWS2d``, a plain conv; a
``module.``-stripped copy or a safetensors file has no metadata at all) say nothing about how they were
trained, so they load silently: :func:`normcore.load_checkpoint_into` reports the WS formula a known
checkpoint layout implies.

Which conv to standardize matters: only convs whose output feeds a normalization layer (WS paper §3;
the official README: "only replace convolutional layers that are followed by normalization layers").
:func:`normcore.convert_convs` does that selection.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from normcore import functional as Fn
from normcore._validation import NotScriptable

__all__ = ["WSConv1d", "WSConv2d", "WSConv3d", "WSConvMixin"]

_META_KEY = "ws_variant"


class WSConvMixin(NotScriptable):
    """Weight standardization for any ``nn.ConvNd`` subclass: ``variant``/``eps`` attributes, the eval
    cache, and a state-dict tag recording the variant the weights were trained with."""

    variant: str
    ws_eps: float | None
    weight: nn.Parameter
    training: bool

    def _init_ws(self, variant: str, eps: float | None) -> None:
        Fn.ws_formula(variant)  # validates the name
        self.variant = variant
        self.ws_eps = eps
        self._ws_cache: tuple[tuple, torch.Tensor] | None = None
        self._register_state_dict_hook(_tag_ws_variant)  # type: ignore[attr-defined]

    @property
    def formula(self) -> Fn.WSFormula:
        return Fn.ws_formula(self.variant)

    def _cacheable(self) -> bool:
        if self.training or torch.compiler.is_compiling() or torch.jit.is_tracing():
            return False  # a traced graph must hold the standardization, not a cached constant
        return not (torch.is_grad_enabled() and self.weight.requires_grad)

    def standardized_weight(self) -> torch.Tensor:
        r"""The weight actually used by the convolution, :math:`\hat W` (see
        :func:`normcore.functional.weight_standardize`)."""
        if not self._cacheable():
            self._ws_cache = None
            return Fn.weight_standardize(self.weight, self.variant, self.ws_eps)
        w = self.weight
        inference = torch.is_inference_mode_enabled()  # an inference tensor cannot be saved for backward
        key = (w._version, w.data_ptr(), w.dtype, w.device, self.variant, self.ws_eps, inference)
        if self._ws_cache is None or self._ws_cache[0] != key:
            with torch.no_grad():
                self._ws_cache = (key, Fn.weight_standardize(w, self.variant, self.ws_eps))
        return self._ws_cache[1]

    def train(self, mode: bool = True):  # type: ignore[override]
        self._ws_cache = None
        return super().train(mode)  # type: ignore[misc]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.standardized_weight(), self.bias)  # type: ignore[attr-defined]

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected, errors):
        _warn_variant_mismatch(self, state_dict, prefix, local_metadata, errors)
        self._ws_cache = None
        super()._load_from_state_dict(  # type: ignore[misc]
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected, errors
        )

    def extra_repr(self) -> str:
        eps = "" if self.ws_eps is None else f", ws_eps={self.ws_eps:g}"
        return super().extra_repr() + f", variant={self.variant!r}{eps}"  # type: ignore[misc]


_last_warned_load: list[list] = [[]]  # the error list of the load_state_dict call that last warned


def _warn_variant_mismatch(
    conv: WSConvMixin, state_dict: dict, prefix: str, local_metadata: dict, load_errors: list
) -> None:
    """Warn, once per ``load_state_dict`` call, when the metadata saved with the weights names another
    WS variant than this conv's. Untagged weights say nothing about how they were trained: the
    official checkpoints, timm's ``StdConv2d``, mmcv's ``ConvWS2d`` and a plain ``nn.Conv2d`` all save
    the same ``{"version": 1}``, and a stripped prefix or a safetensors file drops even that, so they
    load silently (:func:`normcore.load_checkpoint_into` reports the formula a known layout implies).
    ``load_errors`` is the error list that one ``load_state_dict`` call hands to every module: it
    identifies the load (it is held, so its id cannot be reused by a later one)."""
    saved = local_metadata.get(_META_KEY)
    if prefix + "weight" not in state_dict or saved is None or saved == conv.variant:
        return
    if _last_warned_load[0] is load_errors:
        return
    _last_warned_load[0] = load_errors
    warnings.warn(
        f"{type(conv).__name__} '{prefix.rstrip('.')}' (variant {conv.variant!r}) is loading weights saved "
        f"from WS variant {saved!r} (other WS convs of this load are not listed). Standardizing weights with "
        f"another formula than the one they were trained with changes the function; build the model with "
        f"variant={saved!r} (joe-siyuan-qiao/WeightStandardization#3, #4).",
        stacklevel=4,
    )


def _tag_ws_variant(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    """Record the WS variant in the module's state-dict metadata (beside its ``version``)."""
    local_metadata[_META_KEY] = module.variant  # type: ignore[attr-defined]


def _ws_class(base: type[nn.Module], dim: int) -> type[nn.Module]:
    class WSConv(WSConvMixin, base):  # type: ignore[misc, valid-type]
        def __init__(
            self,
            in_channels: int,
            out_channels: int,
            kernel_size: Any,
            stride: Any = 1,
            padding: Any = 0,
            dilation: Any = 1,
            groups: int = 1,
            bias: bool = True,
            padding_mode: str = "zeros",
            *,
            variant: str = "official",
            eps: float | None = None,
            device: Any = None,
            dtype: Any = None,
        ) -> None:
            super().__init__(
                in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode,
                device=device, dtype=dtype,
            )  # fmt: skip
            self._init_ws(variant, eps)

    WSConv.__name__ = WSConv.__qualname__ = f"WSConv{dim}d"
    WSConv.__doc__ = rf"""``nn.Conv{dim}d`` with weight standardization (WS paper §3), same arguments plus ``variant``
        and ``eps``:

        .. math:: \hat W_i = \frac{{W_i - \mu_{{W_i}}}}{{\sigma_{{W_i}} + \epsilon}}, \qquad y = \hat W * x + b

        over the :math:`C_{{in}}/\text{{groups}} \cdot \prod k` weights of each output filter i.
        ``variant`` names the formula (:data:`normcore.functional.WS_VARIANTS`): ``"official"`` (default;
        the paper's PyTorch code: unbiased std, eps=1e-5 outside the root), ``"official_tf"`` (biased
        std, eps outside), ``"bcn"`` (unbiased variance, eps inside the root), ``"biased"`` (biased
        variance, eps inside: timm/BiT). ``eps`` overrides the variant's 1e-5. Reference formula:
        :func:`normcore.reference.weight_standardize`.
        """
    return WSConv


WSConv1d = _ws_class(nn.Conv1d, 1)
WSConv2d = _ws_class(nn.Conv2d, 2)
WSConv3d = _ws_class(nn.Conv3d, 3)
