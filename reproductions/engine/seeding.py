"""Seeding of every random number generator a run uses, in one place (the engine's trainer and the
CPU-scale experiments call the same function).

It lives in its own module, apart from the trainer, so that an experiment that only needs to seed its
generators does not import the trainer: the per-experiment provenance fingerprints the files an
experiment imports, and an edit to the trainer should not mark a CPU-scale result stale."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_all(seed: int) -> None:
    """Seed Python's ``random``, NumPy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
