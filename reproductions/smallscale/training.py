"""The small training loop of the CPU-scale experiments: in-memory tensors (no DataLoader, whose
per-batch cost would dominate for small models), a fresh permutation per epoch, evaluation at fixed
steps, and the seeding that makes a run repeatable."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from reproductions.engine.seeding import seed_all

__all__ = [
    "Timer",
    "TrainLog",
    "batch_indices",
    "count_correct",
    "evaluate_classifier",
    "first_step_reaching",
    "minibatches",
    "seed_everything",
    "test_error",
    "train_steps",
]


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch (:func:`reproductions.engine.trainer.seed_all`); return a torch
    Generator seeded the same (for data order)."""
    seed_all(seed)
    return torch.Generator().manual_seed(seed)


class Timer:
    """``with Timer() as t: ...; t.seconds``."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def _epoch_orders(n: int, batch_size: int, steps: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Per epoch, the sample order of its full batches (``per_epoch * batch_size`` indices of a fresh
    permutation), the last epoch cut to the steps that remain."""
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be between 1 and the number of samples ({n}), got {batch_size}")
    per_epoch = n // batch_size
    done = 0
    while done < steps:
        take = min(per_epoch, steps - done)
        yield torch.randperm(n, generator=generator)[: take * batch_size]
        done += take


def batch_indices(n: int, batch_size: int, steps: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """``steps`` mini-batches of indices into ``n`` samples: a fresh random permutation every epoch,
    the last incomplete batch of each epoch dropped, so every batch holds exactly ``batch_size``."""
    for order in _epoch_orders(n, batch_size, steps, generator):
        yield from order.view(-1, batch_size)


def minibatches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, steps: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The batches of :func:`batch_indices` (same generator, same samples in the same order), as
    slices of one shuffled copy of ``(x, y)`` per epoch: one gather per epoch instead of two per
    step, which matters when a step takes a millisecond."""
    for order in _epoch_orders(x.shape[0], batch_size, steps, generator):
        xs, ys = x[order], y[order]
        for start in range(0, order.numel(), batch_size):
            yield xs[start : start + batch_size], ys[start : start + batch_size]


@torch.no_grad()
def count_correct(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, *, nll: bool = False
) -> tuple[int, float]:
    """The number of samples of ``(x, y)`` that ``model`` classifies right and (with ``nll``) the summed
    cross-entropy, over forward passes of ``batch_size`` samples in eval mode (BN uses its population
    statistics); the model's train/eval mode is restored after."""
    was_training = model.training
    model.eval()
    total_nll, correct = 0.0, 0
    for start in range(0, x.shape[0], batch_size):
        logits = model(x[start : start + batch_size])
        target = y[start : start + batch_size]
        if nll:
            total_nll += torch.nn.functional.cross_entropy(logits, target, reduction="sum").item()
        correct += int((logits.argmax(1) == target).sum())
    model.train(was_training)
    return correct, total_nll


def evaluate_classifier(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000
) -> tuple[float, float]:
    """Mean negative log-likelihood (cross-entropy) and accuracy of ``model`` on ``(x, y)``
    (:func:`count_correct`)."""
    correct, nll = count_correct(model, x, y, batch_size, nll=True)
    return nll / x.shape[0], correct / x.shape[0]


def test_error(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Test error in % of ``model`` on ``(x, y)`` (:func:`count_correct`)."""
    correct, _ = count_correct(model, x, y, batch_size)
    return 100.0 * (x.shape[0] - correct) / x.shape[0]


test_error.__test__ = False  # not a pytest test


@dataclass
class TrainLog:
    """What :func:`train_steps` records: at each evaluation step (0 included), the mean training loss
    over the steps since the previous evaluation (NaN at step 0), the wall-clock seconds of training
    so far (evaluation excluded), and whatever the ``evaluate`` callback returned."""

    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)

    def column(self, key: str) -> list[Any]:
        """One key of every evaluation, e.g. ``log.column("test_accuracy")``."""
        return [e[key] for e in self.evals]


def train_steps(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int,
    batch_size: int,
    generator: torch.Generator,
    eval_every: int,
    evaluate: Callable[[int], dict[str, Any]] | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = torch.nn.functional.cross_entropy,
    tick: Callable[[int], Any] | None = None,
) -> TrainLog:
    """Train ``model`` for ``steps`` mini-batch steps on in-memory tensors (batches from
    :func:`minibatches`), calling ``evaluate(step)`` at step 0 and every ``eval_every`` steps (and
    at the last step). ``tick(n)`` is told of progress (a progress bar's ``update``). A non-finite
    loss stops training early: the remaining evaluations are recorded as NaN."""
    log = TrainLog()
    eval_steps = sorted({0, *range(eval_every, steps + 1, eval_every), steps})

    def record(step: int, loss_sum: float, count: int, seconds: float) -> None:
        log.steps.append(step)
        log.train_loss.append(loss_sum / count if count else float("nan"))
        log.seconds.append(seconds)
        log.evals.append(evaluate(step) if evaluate is not None else {})

    model.train()
    record(0, 0.0, 0, 0.0)
    loss_sum, count, trained_seconds, next_eval = 0.0, 0, 0.0, 1
    start = time.perf_counter()
    for step, (xb, yb) in enumerate(minibatches(x, y, batch_size, steps, generator), start=1):
        loss = loss_fn(model(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.item()
        count += 1
        if step == eval_steps[next_eval]:
            trained_seconds += time.perf_counter() - start
            if tick is not None:
                tick(step - log.steps[-1])
            diverged = not math.isfinite(loss_sum)
            record(step, loss_sum, count, trained_seconds)
            loss_sum, count, next_eval = 0.0, 0, next_eval + 1
            if diverged:
                break
            start = time.perf_counter()
    for step in eval_steps[len(log.steps) :]:  # after a divergence
        log.steps.append(step)
        log.train_loss.append(float("nan"))
        log.seconds.append(float("nan"))
        log.evals.append({k: float("nan") for k in log.evals[-1]} if log.evals else {})
    return log


def first_step_reaching(
    steps: Sequence[int], values: Sequence[float], target: float, higher_is_better: bool = True
) -> int | None:
    """The first step at which ``values`` reaches ``target`` (>= when higher is better, else <=), or
    None if it never does."""
    for step, value in zip(steps, values):
        if math.isfinite(value) and (value >= target if higher_is_better else value <= target):
            return step
    return None
