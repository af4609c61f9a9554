r"""Learning-rate schedules, in optimizer steps, and the linear scaling rule.

The schedule is a multiplicative factor of the base LR, evaluated at every optimizer step ``t``
(0-based) and applied through :class:`torch.optim.lr_scheduler.LambdaLR`, whose state dict (plain
numbers) goes into the checkpoint:

* ``step``: :math:`\gamma^{k(t)}`, with :math:`k(t)` the number of milestones :math:`\le t`
  (GN paper §4.1: ÷10 at epochs 30, 60, 90; milestones are given in epochs and converted with the
  number of steps per epoch, so the LR changes exactly at an epoch boundary);
* ``exponential``: :math:`\gamma^{\lfloor t / s \rfloor}`, decayed every ``decay_every`` (GoogLeNet:
  ×0.96 every 8 epochs; the BN paper, §4.2.1, decays 6 times faster);
* ``cosine``: :math:`\tfrac12(1 + \cos(\pi t / T))`; ``poly``: :math:`(1 - t/T)^p` (DeepLab, p = 0.9);
  ``constant``: 1;
* linear warmup over the first ``warmup_steps``: the factor rises from ``warmup_start_factor`` to the
  schedule's value (Goyal et al. 2017, "Accurate, Large Minibatch SGD", §2.2, with start factor
  1/k; Detectron's "linear" warmup).

Linear scaling (Goyal et al. §2.1, used by the GN paper: "0.1 for 32 images/GPU", i.e. 0.1 per 256):
:math:`\eta = \eta_{ref} \cdot B / B_{ref}` for a total batch of B images per optimizer step.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

__all__ = ["KINDS", "LRSchedule", "build_scheduler", "epochs_to_steps", "scaled_lr"]

KINDS = ("step", "exponential", "cosine", "poly", "constant")


def scaled_lr(base_lr: float, total_batch: int, reference_batch: int | None) -> float:
    """Linear scaling rule: ``base_lr * total_batch / reference_batch`` (``reference_batch=None``: no
    scaling, ``base_lr`` is used as given)."""
    if reference_batch is None:
        return base_lr
    if reference_batch <= 0 or total_batch <= 0:
        raise ValueError(f"linear LR scaling needs positive batch sizes, got {total_batch=} {reference_batch=}")
    return base_lr * total_batch / reference_batch


def epochs_to_steps(epochs: float, steps_per_epoch: int) -> int:
    """Optimizer steps in ``epochs`` (rounded to the nearest step)."""
    return round(epochs * steps_per_epoch)


@dataclass
class LRSchedule:
    """The LR factor at optimizer step ``t``; a picklable callable for ``LambdaLR`` whose fields are
    plain numbers (so ``LambdaLR.state_dict()`` stores them and ``weights_only`` loading works)."""

    kind: str = "step"
    total_steps: int = 0
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    power: float = 0.9
    warmup_steps: int = 0
    warmup_start_factor: float = 0.1
    decay_steps: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown LR schedule {self.kind!r}; choose one of {', '.join(KINDS)}")
        if self.kind in ("cosine", "poly") and self.total_steps <= 0:
            raise ValueError(f"the {self.kind!r} schedule needs total_steps > 0")
        if self.kind == "exponential" and self.decay_steps <= 0:
            raise ValueError("the 'exponential' schedule needs decay_every > 0")
        if list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"LR milestones must be increasing, got {self.milestones}")
        self.milestones = [int(m) for m in self.milestones]

    def base_factor(self, t: int) -> float:
        if self.kind == "step":
            return self.gamma ** bisect.bisect_right(self.milestones, t)
        if self.kind == "exponential":
            return self.gamma ** (t // self.decay_steps)
        if self.kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(t, self.total_steps) / self.total_steps))
        if self.kind == "poly":
            return max(0.0, 1.0 - t / self.total_steps) ** self.power
        return 1.0

    def __call__(self, t: int) -> float:
        factor = self.base_factor(t)
        if t < self.warmup_steps:
            alpha = t / self.warmup_steps
            factor *= self.warmup_start_factor * (1.0 - alpha) + alpha
        return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    kind: str = "step",
    steps_per_epoch: int,
    epochs: float | None = None,
    total_steps: int | None = None,
    milestones: Sequence[float] = (),
    milestones_unit: str = "epoch",
    gamma: float = 0.1,
    power: float = 0.9,
    warmup: float = 0.0,
    warmup_unit: str = "epoch",
    warmup_start_factor: float = 0.1,
    decay_every: float = 0.0,
    decay_unit: str = "epoch",
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step ``LambdaLR``; milestones, warmup and the exponential decay period in epochs
    (``unit="epoch"``) or steps (``"step"``, as detection schedules give them). Call
    ``scheduler.step()`` after every optimizer step."""
    if steps_per_epoch <= 0:
        raise ValueError(f"steps_per_epoch must be positive, got {steps_per_epoch}")

    def to_steps(value: float, unit: str) -> int:
        if unit not in ("epoch", "step"):
            raise ValueError(f"schedule unit must be 'epoch' or 'step', got {unit!r}")
        return epochs_to_steps(value, steps_per_epoch) if unit == "epoch" else int(value)

    if total_steps is None:
        total_steps = epochs_to_steps(epochs, steps_per_epoch) if epochs is not None else 0
    schedule = LRSchedule(
        kind=kind,
        total_steps=total_steps,
        milestones=[to_steps(m, milestones_unit) for m in milestones],
        gamma=gamma,
        power=power,
        warmup_steps=to_steps(warmup, warmup_unit),
        warmup_start_factor=warmup_start_factor,
        decay_steps=to_steps(decay_every, decay_unit) if decay_every else 0,
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
