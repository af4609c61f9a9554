r"""The layer-normalized LSTM of the LN paper (Ba, Kiros & Hinton 2016, §3.1 and the supplementary
material's LSTM equations), a plain LSTM with the same parametrisation, and a sequential-MNIST classifier.

For input :math:`x_t`, state :math:`h_{t-1}, c_{t-1}` (gates ordered f, i, o, g as in the paper):

.. math::
    (f_t, i_t, o_t, g_t) &= \mathrm{LN}(W_h h_{t-1}; \alpha_1, \beta_1) + \mathrm{LN}(W_x x_t; \alpha_2, \beta_2) + b \\
    c_t &= \sigma(f_t) \odot c_{t-1} + \sigma(i_t) \odot \tanh(g_t) \\
    h_t &= \sigma(o_t) \odot \tanh(\mathrm{LN}(c_t; \alpha_3, \beta_3))

Each LN is :class:`normcore.FeatureLayerNorm` over its vector (4H units for the two gate paths, H for the
cell), with gains 1 and biases 0 at init (LN §6) and eps 1e-5 (official code).

Caution, constant inputs: layer-normalizing a (near-)constant vector, e.g. :math:`W_x x_t = 0` for an
all-zero input row such as the blank top rows of an MNIST digit, has a Jacobian of gain
:math:`1/\sqrt{\epsilon} \approx 316`; when the cell state is also zero over those steps the gains
compound through time (gradients of ~1e31 at init on raw [0, 1] MNIST rows). Standardize such inputs
(zero mean, unit variance over the data set), as the LN experiment does.
"""

from __future__ import annotations

import torch
from torch import nn

from normcore.layernorm import FeatureLayerNorm

__all__ = ["LSTM", "LNLSTMCell", "SequentialMNISTClassifier", "sequential_mnist_classifier"]


def _uniform_or_orthogonal_(weight: torch.Tensor, hidden_size: int) -> None:
    """Initialise each of the four ``(H, fan_in)`` gate blocks of ``weight`` as the official code's
    ``norm_weight``: orthogonal when the block is square, else uniform(-0.1, 0.1)."""
    with torch.no_grad():
        for block in weight.split(hidden_size, dim=0):
            if block.shape[0] == block.shape[1]:
                nn.init.orthogonal_(block)
            else:
                nn.init.uniform_(block, -0.1, 0.1)


class LNLSTMCell(nn.Module):
    r"""One step of the LN-LSTM (module docstring equations); ``layer_norm=False`` is the plain LSTM
    :math:`(f, i, o, g) = W_h h_{t-1} + W_x x_t + b`, :math:`h_t = \sigma(o) \odot \tanh(c_t)`, with the
    same parameters and step (for fair comparisons).

    Parameters: ``weight_ih`` (4H, I) and ``weight_hh`` (4H, H) without biases, one ``bias`` (4H), and with
    layer_norm ``ln_ih``, ``ln_hh`` (4H) and ``ln_cell`` (H). Gate rows are ordered f, i, o, g.

    Init (as the official code, ryankiros/layer-norm ``layers.py`` ``param_init_lnlstm`` with the
    ``norm_weight``/``ortho_weight`` helpers of the code bases it patches): every (H, H) gate block of
    ``weight_hh`` orthogonal; ``weight_ih`` gate blocks orthogonal if I == H, else uniform(-0.1, 0.1);
    ``bias`` 0; LN gains 1 and biases 0.

    Differences from the official Theano ``lnlstm_layer``, which follow the paper's equations instead:

    * the official code computes the input path as ``LN(W_x x_t + b)`` and then adds ``b`` again after the
      sum; here ``b`` is added once, after the two LNs, as in the equations;
    * the official gate order is i, f, o, c (here f, i, o, g, the paper's); the order only names rows of
      the weights, so it matters only when loading official weights.
    """

    def __init__(self, input_size: int, hidden_size: int, *, layer_norm: bool = True, eps: float = 1e-5) -> None:
        super().__init__()
        if input_size < 1 or hidden_size < 1:
            raise ValueError(f"LNLSTMCell: sizes must be positive, got input {input_size}, hidden {hidden_size}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.layer_norm = layer_norm
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.zeros(4 * hidden_size))
        if layer_norm:
            self.ln_ih = FeatureLayerNorm(4 * hidden_size, eps=eps)
            self.ln_hh = FeatureLayerNorm(4 * hidden_size, eps=eps)
            self.ln_cell = FeatureLayerNorm(hidden_size, eps=eps)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _uniform_or_orthogonal_(self.weight_ih, self.hidden_size)
        _uniform_or_orthogonal_(self.weight_hh, self.hidden_size)
        nn.init.zeros_(self.bias)
        for name in ("ln_ih", "ln_hh", "ln_cell"):
            ln = getattr(self, name, None)
            if ln is not None:
                nn.init.ones_(ln.weight)
                nn.init.zeros_(ln.bias)

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x``: (N, I); ``state``: ``(h, c)``, each (N, H), zeros if ``None``. Returns ``(h_t, c_t)``."""
        if x.dim() != 2 or x.shape[1] != self.input_size:
            raise ValueError(
                f"LNLSTMCell expects input of shape (N, {self.input_size}), got {tuple(x.shape)}; "
                f"for a sequence (N, T, {self.input_size}) use normcore.models.LSTM"
            )
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_size)
            state = (zeros, zeros)
        h, c = state
        from_input = x @ self.weight_ih.T
        from_hidden = h @ self.weight_hh.T
        if self.layer_norm:
            from_input, from_hidden = self.ln_ih(from_input), self.ln_hh(from_hidden)
        f, i, o, g = (from_hidden + from_input + self.bias).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        cell_out = self.ln_cell(c) if self.layer_norm else c
        h = torch.sigmoid(o) * torch.tanh(cell_out)
        return h, c

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, layer_norm={self.layer_norm}"


class LSTM(nn.Module):
    """A stack of :class:`LNLSTMCell` run over a sequence (a Python loop over time steps; no cuDNN
    kernel, which has no LN). ``forward(x, state=None) -> (output, (h_n, c_n))`` as ``torch.nn.LSTM``:
    ``x`` is (N, T, I) with ``batch_first`` (default) or (T, N, I); ``output`` holds the last layer's
    h_t for every t; ``h_n``, ``c_n`` are (num_layers, N, H)."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        num_layers: int = 1,
        layer_norm: bool = False,
        batch_first: bool = True,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"LSTM: num_layers must be >= 1, got {num_layers}")
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.batch_first = batch_first
        self.cells = nn.ModuleList(
            LNLSTMCell(input_size if k == 0 else hidden_size, hidden_size, layer_norm=layer_norm, eps=eps)
            for k in range(num_layers)
        )

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        if x.dim() != 3:
            layout = "(N, T, I)" if self.batch_first else "(T, N, I)"
            raise ValueError(f"LSTM expects a sequence {layout}, got shape {tuple(x.shape)}")
        steps = x.unbind(1 if self.batch_first else 0)
        if not steps:
            raise ValueError("LSTM got a sequence of length 0; it needs at least one time step")
        final_h, final_c = [], []
        for k, cell in enumerate(self.cells):
            layer_state = None if state is None else (state[0][k], state[1][k])
            outputs = []
            for x_t in steps:
                layer_state = cell(x_t, layer_state)
                outputs.append(layer_state[0])
            final_h.append(layer_state[0])  # type: ignore[index]
            final_c.append(layer_state[1])  # type: ignore[index]
            steps = outputs
        output = torch.stack(steps, dim=1 if self.batch_first else 0)
        return output, (torch.stack(final_h), torch.stack(final_c))


class SequentialMNISTClassifier(nn.Module):
    """Rows of a 28x28 image as a 28-step sequence of 28 features -> :class:`LSTM` -> a linear head on
    the last hidden state. Build it with :func:`sequential_mnist_classifier`."""

    def __init__(self, lstm: LSTM, num_classes: int, image_size: int = 28) -> None:
        super().__init__()
        self.image_size = image_size
        self.lstm = lstm
        self.head = nn.Linear(lstm.hidden_size, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() == 4 and images.shape[1] == 1:
            images = images.squeeze(1)
        if images.dim() != 3 or images.shape[1:] != (self.image_size, self.image_size):
            raise ValueError(
                f"expected images (N, {self.image_size}, {self.image_size}) or (N, 1, {self.image_size}, "
                f"{self.image_size}), got {tuple(images.shape)}; reshape flat MNIST rows with "
                f"x.view(-1, {self.image_size}, {self.image_size})"
            )
        output, _ = self.lstm(images)
        return self.head(output[:, -1])


def sequential_mnist_classifier(
    *, hidden_size: int = 128, layer_norm: bool, num_layers: int = 1, num_classes: int = 10
) -> SequentialMNISTClassifier:
    """Row-by-row MNIST (28 steps of 28 pixels) with an LSTM or LN-LSTM (``layer_norm``), for a CPU-scale
    check of the LN paper's recurrent claim (LN §6: faster convergence of LN-LSTMs). The LN paper has no
    sequential-MNIST experiment; this is a small stand-in for its RNN tasks."""
    return SequentialMNISTClassifier(
        LSTM(28, hidden_size, num_layers=num_layers, layer_norm=layer_norm), num_classes, image_size=28
    )
