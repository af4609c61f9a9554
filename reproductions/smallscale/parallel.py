"""Independent runs on the cores of this machine: thread control and :func:`parallel_map`, which runs
jobs in worker processes with one progress bar."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from reproductions.engine.logs import progress

__all__ = ["default_workers", "one_thread", "parallel_map", "set_threads", "threads"]


def default_workers() -> int:
    """Worker processes (and torch threads) by default: one per core, at most 2 (the reference machine)."""
    return min(2, os.cpu_count() or 1)


def set_threads(n: int | None = None) -> int:
    """Fix the number of intra-op threads (default :func:`default_workers`), so that results are
    deterministic for a given machine and thread count."""
    if n is not None and n < 1:
        raise ValueError(f"the number of threads must be at least 1, got {n}")
    n = n or default_workers()
    torch.set_num_threads(n)
    return n


@contextmanager
def threads(n: int) -> Iterator[None]:
    """Run the ``with`` block on ``n`` torch threads, then restore the thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def one_thread():
    """``threads(1)``: a run gives the same numbers in any worker process."""
    return threads(1)


_WORKER_QUEUE: Any = None


def _init_worker(queue: Any, threads: int) -> None:
    global _WORKER_QUEUE
    _WORKER_QUEUE = queue
    torch.set_num_threads(threads)
    os.environ["NORMCORE_NO_PROGRESS"] = "1"  # the parent draws the one progress bar


def _worker_tick(n: int) -> None:
    _WORKER_QUEUE.put(n)


def _call_in_worker(fn: Callable[..., Any], job: Any) -> Any:
    return fn(job, _worker_tick)


def parallel_map(
    fn: Callable[[Any, Callable[[int], Any]], Any],
    jobs: Sequence[Any],
    *,
    workers: int | None = None,
    threads_per_job: int = 1,
    desc: str = "",
    total: int | None = None,
) -> list[Any]:
    """``[fn(job, tick) for job in jobs]``, run in ``workers`` processes (default: one per core, at
    most 2) with ``threads_per_job`` torch threads each, with one progress bar of ``total`` units
    that ``fn`` advances by calling ``tick(n)``.

    Every job runs with the same thread count whether it runs in a worker or in this process
    (``workers=1``), so a job's numbers do not depend on how the jobs were spread. ``fn`` must be a
    module-level function and jobs and results picklable (processes are spawned, not forked, as a
    forked OpenMP runtime can deadlock). Small models train faster as several one-thread processes
    than as one process with several threads, which is why the experiments use this.
    """
    workers = min(workers or default_workers(), len(jobs)) or 1
    bar = progress(total=total, desc=desc)
    try:
        if workers == 1:
            with threads(threads_per_job):
                return [fn(job, bar.update) for job in jobs]
        import multiprocessing as mp
        import queue as queue_mod
        from functools import partial

        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        with ctx.Pool(workers, initializer=_init_worker, initargs=(q, threads_per_job)) as pool:
            pending = pool.map_async(partial(_call_in_worker, fn), jobs, chunksize=1)
            while not pending.ready():
                try:
                    bar.update(q.get(timeout=0.2))
                except queue_mod.Empty:
                    continue
            results = pending.get()
            while not q.empty():
                bar.update(q.get_nowait())
        return results
    finally:
        bar.close()
