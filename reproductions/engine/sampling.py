"""Data order and augmentation randomness that do not depend on the number of processes or workers.

Two pieces make a run reproducible across launches, loader workers and resumes:

* :class:`GlobalBatchSampler` cuts every optimizer step's *global* batch from one permutation of the
  dataset per epoch (seeded by ``seed + epoch``), and gives rank ``r`` the ``r``-th slice of it. With
  G processes of b images, or one process of G·b images, step t sees the same images, and slice ``r``
  of the single process's batch is rank ``r``'s batch, which is what virtual devices need
  (:class:`normcore.BatchNorm` with ``virtual_devices=G`` normalizes the same slices as G GPUs).
  Gradient accumulation takes ``accum_steps`` consecutive micro-batches of the global batch.
* :class:`SeededDataset` draws each sample's augmentation from a torch generator seeded by
  ``(seed, epoch, index)``, so a sample's crop and flip do not depend on which worker or rank loads it,
  nor on where a resumed run restarts.

The sampler yields lists of ``(index, epoch)`` keys, which :class:`SeededDataset` understands;
evaluation uses :class:`ShardSampler` (plain indices, every sample exactly once over all ranks).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

__all__ = ["GlobalBatchSampler", "SeededDataset", "ShardSampler", "sample_seed"]

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one sample in one epoch (SplitMix64 over the three numbers)."""
    h = _splitmix64(seed & _MASK64)
    h = _splitmix64(h ^ (epoch & _MASK64))
    h = _splitmix64(h ^ (index & _MASK64))
    return h >> 1


class SeededDataset(Dataset):
    """Wraps a map-style dataset whose transforms draw from torch's global RNG (torchvision's do).

    ``dataset[(index, epoch)]`` returns ``base[index]`` computed under a torch RNG seeded with
    :func:`sample_seed` (``seed, epoch, index``); the caller's RNG state is restored afterwards.
    ``dataset[index]`` (an int, as in evaluation) calls ``base[index]`` unchanged.
    """

    def __init__(self, base: Dataset, seed: int) -> None:
        self.base = base
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        if isinstance(key, tuple):
            index, epoch = key
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(sample_seed(self.seed, epoch, index))
                return self.base[index]
        return self.base[key]

    def __getattr__(self, name: str) -> Any:  # expose .classes, .samples, ... of the base dataset
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)


class GlobalBatchSampler(Sampler[list[tuple[int, int]]]):
    """This rank's micro-batches of ``(index, epoch)`` keys, cut from one global order per epoch.

    Args:
        num_samples: dataset length.
        batch_size: images per process per micro-batch (with virtual devices: per-device batch × D).
        world_size, rank: the process group.
        accum_steps: micro-batches per optimizer step.
        shuffle: a fresh permutation per epoch (``torch.randperm`` seeded with ``seed + epoch``).
        seed: base seed.

    An epoch has ``num_samples // (batch_size * world_size * accum_steps)`` optimizer steps; the
    remainder is dropped (as ``drop_last=True``), so every step has the full batch. Call
    :meth:`set_epoch` before each epoch, and :meth:`set_start_step` to resume inside one.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        *,
        world_size: int = 1,
        rank: int = 0,
        accum_steps: int = 1,
        shuffle: bool = True,
        seed: int = 0,
    ) -> None:
        if min(batch_size, world_size, accum_steps) < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad sampler setup: {batch_size=} {world_size=} {rank=} {accum_steps=}")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.world_size = world_size
        self.rank = rank
        self.accum_steps = accum_steps
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.start_step = 0
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"the dataset has {num_samples} samples, fewer than one optimizer step needs "
                f"({self.global_batch} = {batch_size} per process x {world_size} processes x {accum_steps} "
                f"accumulation steps); lower the batch size"
            )

    @property
    def global_batch(self) -> int:
        """Images per optimizer step over all ranks and accumulation steps."""
        return self.batch_size * self.world_size * self.accum_steps

    @property
    def steps_per_epoch(self) -> int:
        return self.num_samples // self.global_batch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.start_step = 0

    def set_start_step(self, step: int) -> None:
        """Skip the first ``step`` optimizer steps of the current epoch (mid-epoch resume)."""
        if not 0 <= step <= self.steps_per_epoch:
            raise ValueError(f"start step {step} outside the epoch's {self.steps_per_epoch} steps")
        self.start_step = int(step)

    def order(self) -> torch.Tensor:
        """The epoch's global order of sample indices."""
        if not self.shuffle:
            return torch.arange(self.num_samples)
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(self.num_samples, generator=gen)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = self.order().tolist()
        per_micro = self.batch_size * self.world_size
        for step in range(self.start_step, self.steps_per_epoch):
            for micro in range(self.accum_steps):
                start = (step * self.accum_steps + micro) * per_micro + self.rank * self.batch_size
                yield [(i, self.epoch) for i in order[start : start + self.batch_size]]

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start_step) * self.accum_steps


class ShardSampler(Sampler[int]):
    """Evaluation: rank ``r`` takes indices ``r, r + W, r + 2W, ...``; every sample is seen exactly once
    over all ranks (no padding, so sums of correct predictions over ranks are exact)."""

    def __init__(self, num_samples: int, *, world_size: int = 1, rank: int = 0) -> None:
        self.num_samples = num_samples
        self.world_size = world_size
        self.rank = rank

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.num_samples, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.num_samples, self.world_size))
