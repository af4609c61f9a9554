"""What a full-scale run is compared with: each config's expected result with its confidence, and which of
a run's numbers is "the result" under the paper's reporting protocol.

A config's ``published`` block names the published value(s) of its row by id (one entry, or one per metric
for COCO: ``bbox_AP``, ``segm_AP``). The confidence of each value is read from
``papers/<paper>/published.yaml`` (the single source; the ``tag`` copied into the config is only a
reminder and loses when the two disagree). Only values confirmed from a primary source (``paper``: stated
in the paper; ``repo``: stated in the authors' official repository) are **targets**; everything else
(``secondary``, ``unverified``, ``not_found``, or an id that published.yaml does not know) is reported as
``unverified``, beside the run's number, and decides nothing (:func:`expected_results`).

The entry point (:func:`reproductions.engine.entry.run_task`) writes these records into every run's
``summary.json`` as ``expected``.

Classification rows report one number per run (:func:`reported_top1_err`), by the protocol of the paper
that published the row's value (``eval.report``): ``median_last`` (GN paper §4.1: "the median error of the
final 5 epochs"), ``best`` (the best epoch: BN paper Fig. 3's maximum accuracy; the WS code's ``best_acc``)
or ``final`` (the last epoch).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["PRIMARY_CONFIDENCE", "REPORT_RULES", "expected_results", "reported_top1_err"]

PRIMARY_CONFIDENCE = ("paper", "repo")
"""Confidence tags (papers/schema.json) of values that may decide whether a run reproduces its row."""
REPORT_RULES = ("median_last", "best", "final")


def _entries(published: Any) -> list[tuple[str | None, Mapping[str, Any]]]:
    """``(metric key or None, entry)`` pairs of a config's ``published`` block."""
    if not isinstance(published, Mapping):
        return []
    if "id" in published or "value" in published:
        return [(None, published)]
    return [(str(k), v) for k, v in published.items() if isinstance(v, Mapping)]


def _confidence(paper: str | None, entry_id: str | None) -> str | None:
    """The confidence of ``entry_id`` in ``papers/<paper>/published.yaml``; ``None`` if it is not there."""
    if not paper or not entry_id:
        return None
    from reproductions.claims.published import published_value

    try:
        return str(published_value(paper, entry_id).get("confidence"))
    except (KeyError, FileNotFoundError):
        return None


def expected_results(cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One record per published value of the config's row: ``metric``, ``id``, ``value``, ``confidence``
    (from ``papers/<paper>/published.yaml`` when the config names its paper and the value's id; an id
    missing there gives ``"not_in_published_yaml"``; a config without paper or id: its ``tag``) and
    ``status``: ``"target"`` for a value with a primary confidence (:data:`PRIMARY_CONFIDENCE`),
    ``"unverified"`` for any other value, ``"none"`` when there is no value."""
    out = []
    for metric, entry in _entries(cfg.get("published")):
        value = entry.get("value")
        if cfg.get("paper") and entry.get("id"):
            confidence = _confidence(cfg.get("paper"), entry.get("id")) or "not_in_published_yaml"
        else:
            confidence = entry.get("tag") or "unknown"
        if value is None:
            status = "none"
        elif confidence in PRIMARY_CONFIDENCE:
            status = "target"
        else:
            status = "unverified"
        out.append(
            {
                "metric": metric or entry.get("metric"),
                "id": entry.get("id"),
                "value": value,
                "confidence": confidence,
                "status": status,
            }
        )
    return out


def reported_top1_err(metrics: Mapping[str, Any], rule: str, median_last: int) -> float | None:
    """The run's top-1 error under ``rule`` (:data:`REPORT_RULES`), from the summary ``metrics`` of a
    classification run (``top1_err_median_last<n>``, ``top1_err_best``, ``top1_err_final``)."""
    keys = {"median_last": f"top1_err_median_last{median_last}", "best": "top1_err_best", "final": "top1_err_final"}
    if rule not in keys:
        raise ValueError(f"eval.report={rule!r}; choose one of {', '.join(REPORT_RULES)}")
    return metrics.get(keys[rule])
