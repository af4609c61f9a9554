r"""Paired claims: the one rule set every CPU-scale experiment uses to decide a claim from settings run on
the same seeds (same data order and, where shapes allow, the same initial weights).

A claim compares two settings ``a`` and ``b`` through their per-seed values; the experiment orients the
difference :math:`d_s = a_s - b_s` so that the paper's claim reads as one of three tests, each with a
number ``effect`` fixed *before* the run (the published effect or a smallest effect of interest):

* ``"greater"`` — the claim "a exceeds b" (:math:`d > 0`); ``effect`` is the smallest difference of
  interest;
* ``"equivalent"`` — "a and b do not differ" (:math:`|d| < m`); ``effect`` is the margin :math:`m`;
* ``"not_worse"`` — "a is not worse than b" (:math:`d \le m`, :math:`d` oriented so that positive is
  worse); ``effect`` is the margin :math:`m`.

The verdict comes from the 95 % Student-t interval :math:`[\ell, h]` of the mean paired difference
(:func:`reproductions.claims.power.paired_summary`), see :data:`RULES`. An interval too wide to decide gives
"not testable at this scale" together with the number of seeds that would decide it
(:func:`reproductions.claims.power.not_testable_needs`, the same power calculation :func:`plan_seeds` uses);
every verdict is recomputed with each seed left out (:func:`reproductions.claims.power.leave_one_out`) and is
labelled *fragile* when one of those flips it.

:func:`plan_seeds` turns a pilot (its own seeds, never reused) into the number of seeds of the run: the
smallest that gives 80 % power for every planned claim, at least 5, at most what the time budget allows
(and it says so when capped).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from reproductions.claims.power import (
    Test,
    leave_one_out,
    not_testable_needs,
    paired_differences,
    paired_summary,
    power_at,
    seeds_needed,
)
from reproductions.claims.verdicts import NOT_REPRODUCED, NOT_TESTABLE, REPRODUCED

__all__ = ["MINIMUM_SEEDS", "RULES", "Test", "paired_comparison", "paired_verdict", "plan_seeds", "seeds_needed"]

MINIMUM_SEEDS = 5
"""The fewest seeds of any claim test, whatever the pilot says."""

RULES: dict[str, str] = {
    "greater": (
        "paired 95% t-interval [l, h] of d = a - b: reproduced if l > 0; not reproduced if h < effect (the data "
        "exclude a difference as large as the smallest effect of interest); otherwise not testable at this scale"
    ),
    "equivalent": (
        "paired 95% t-interval [l, h] of d = a - b: reproduced if -m <= l and h <= m; not reproduced if l > m or "
        "h < -m; otherwise not testable at this scale"
    ),
    "not_worse": (
        "paired 95% t-interval [l, h] of d = a - b (positive = a worse): reproduced if h <= m; not reproduced if "
        "l > m; otherwise not testable at this scale"
    ),
}
"""The verdict rule of each test, as written into every comparison (fixed before the runs)."""


def _check_test(test: str, effect: float) -> None:
    if test not in RULES:
        raise ValueError(f"unknown test {test!r}; one of {sorted(RULES)}")
    if not (math.isfinite(effect) and effect > 0):
        raise ValueError(f"the effect (or margin) must be a positive number fixed before the run, got {effect}")


def paired_verdict(summary: Mapping[str, float], test: Test, effect: float) -> str:
    """The verdict of :data:`RULES` from a :func:`~reproductions.claims.power.paired_summary`."""
    _check_test(test, effect)
    low, high = summary["low"], summary["high"]
    if test == "greater":
        if low > 0:
            return REPRODUCED
        return NOT_REPRODUCED if high < effect else NOT_TESTABLE
    if test == "equivalent":
        if -effect <= low and high <= effect:
            return REPRODUCED
        return NOT_REPRODUCED if (low > effect or high < -effect) else NOT_TESTABLE
    if high <= effect:
        return REPRODUCED
    return NOT_REPRODUCED if low > effect else NOT_TESTABLE


def paired_comparison(
    claim: str,
    a: Mapping[int, float],
    b: Mapping[int, float],
    *,
    test: Test,
    effect: float,
    labels: tuple[str, str],
    unit: str,
    n_eval: int | None = None,
    diverged_value: float | None = None,
    published_ref: str | None = None,
    published: float | str | None = None,
    power: float = 0.8,
) -> dict[str, Any]:
    r"""A results-file comparison for one claim, from the per-seed values ``a`` and ``b`` (seed -> value) of
    two settings run on the same seeds, :math:`d_s = a_s - b_s` oriented as ``test`` expects.

    ``effect``: the smallest effect of interest ("greater") or the margin, in ``unit``, fixed before the
    run; with ``unit`` "points" (percentage points of an error or accuracy) and ``n_eval`` evaluation images,
    the margin is also given in images. ``diverged_value``: the value a diverged (non-finite) run counts as,
    fixed before the run (for instance 90 % error); without it a diverged run is an error.

    The comparison holds ``verdict`` (:func:`paired_verdict`), ``rule``, ``ours`` (the mean difference and
    its interval), ``paired`` (per-seed values and differences, the summary), ``power`` (at the run's seeds
    and the observed spread), ``needs`` (the seeds a "not testable" claim would need), ``leave_one_out`` and
    ``fragile``. With fewer than 2 seeds (quick mode) the claim is "not testable at this scale"."""
    _check_test(test, effect)
    diverged: list[int] = []

    def finite(values: Mapping[int, float]) -> dict[int, float]:
        out = {}
        for s, v in values.items():
            v = float(v)
            if not math.isfinite(v) and diverged_value is not None:
                diverged.append(int(s))
                v = float(diverged_value)
            out[int(s)] = v
        return out

    av, bv = finite(a), finite(b)
    diffs = paired_differences(av, bv)
    n = len(diffs)
    out: dict[str, Any] = {
        "claim": claim,
        "published": published,
        "test": test,
        "effect": effect,
        "unit": unit,
        "rule": RULES[test],
        "labels": list(labels),
        "paired": {
            "seeds": [int(s) for s in diffs],
            "a": [av[s] for s in diffs],
            "b": [bv[s] for s in diffs],
            "d": list(diffs.values()),
        },
    }
    if published_ref is not None:
        out["published_ref"] = published_ref
    if n_eval and unit == "points":
        out["effect_images"] = effect * n_eval / 100.0
        out["n_eval"] = n_eval
    if diverged:
        out["diverged_seeds"] = sorted(set(diverged))
        out["diverged_value"] = diverged_value
    if n < 2:
        out.update(
            ours={"mean_difference": next(iter(diffs.values())), "low": None, "high": None, "n": n},
            gap=None,
            verdict=NOT_TESTABLE,
            needs=None,
            power=None,
            leave_one_out=None,
            fragile=None,
        )
        return out
    summary = paired_summary(diffs)
    verdict = paired_verdict(summary, test, effect)
    # JSON has no infinity: t is infinite when every seed gives the same difference (sd 0)
    out["paired"]["summary"] = {
        k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in summary.items()
    }
    out["ours"] = {"mean_difference": summary["mean"], "low": summary["low"], "high": summary["high"], "n": n}
    out["gap"] = None
    out["verdict"] = verdict
    out["power"] = {"n": n, "sd": summary["sd"], "at_n": power_at(test, n, effect, summary["sd"]), "target": power}
    if verdict == NOT_TESTABLE:
        out["needs"] = not_testable_needs(test, effect, summary["sd"], power=power, minimum=MINIMUM_SEEDS)
    else:
        out["needs"] = None
    if n >= 3:
        loo = leave_one_out(lambda ds: paired_verdict(paired_summary(ds), test, effect), diffs)
        out["leave_one_out"] = {"per_left_out": loo["per_left_out"], "flips": loo["flips"]}
        out["fragile"] = loo["fragile"]
    else:
        out["leave_one_out"], out["fragile"] = None, None
    return out


def plan_seeds(
    pilot: Sequence[Mapping[str, Any]],
    *,
    maximum: int,
    first_seed: int,
    minimum: int = MINIMUM_SEEDS,
    power: float = 0.8,
) -> dict[str, Any]:
    """The run's seeds from a pilot. ``pilot``: one entry per planned claim with ``claim``, ``test``,
    ``effect`` and ``a``/``b`` (the pilot's per-seed values, seed -> value). Each claim needs
    :func:`seeds_needed` seeds at the pilot's paired spread; the run uses the largest, at least ``minimum``
    and at most ``maximum`` (the time budget; ``capped`` says when it bound), as fresh seeds from
    ``first_seed`` (never a pilot seed). Returns ``pilot_seeds``, ``claims`` (each with ``sd``, ``needed``
    and the power at the chosen number), ``needed``, ``n``, ``capped`` and ``seeds``."""
    if maximum < minimum:
        raise ValueError(f"maximum ({maximum}) must be at least minimum ({minimum})")
    pilot_seeds: set[int] = set()
    claims = []
    for entry in pilot:
        _check_test(entry["test"], entry["effect"])
        diffs = paired_differences(
            {int(k): float(v) for k, v in entry["a"].items()}, {int(k): float(v) for k, v in entry["b"].items()}
        )
        pilot_seeds |= set(diffs)
        summary = paired_summary(diffs)
        needed = seeds_needed(entry["test"], entry["effect"], summary["sd"], power=power, minimum=minimum)
        claims.append(
            {
                "claim": entry["claim"],
                "test": entry["test"],
                "effect": entry["effect"],
                "sd": summary["sd"],
                "mean": summary["mean"],
                "needed": needed,
            }
        )
    needed_all = [c["needed"] for c in claims]
    needed = None if None in needed_all else max(needed_all, default=minimum)
    capped = needed is None or needed > maximum
    n = maximum if capped else max(minimum, needed)
    seeds = list(range(first_seed, first_seed + n))
    if pilot_seeds & set(seeds):
        raise ValueError(f"the run's seeds {seeds} reuse pilot seeds {sorted(pilot_seeds & set(seeds))}")
    for c in claims:
        c["power_at_n"] = power_at(c["test"], n, c["effect"], c["sd"]) if n >= 2 else None
    return {
        "pilot_seeds": sorted(pilot_seeds),
        "claims": claims,
        "needed": needed,
        "n": n,
        "maximum": maximum,
        "capped": capped,
        "seeds": seeds,
        "power": power,
        "rule": (
            f"n = the most seeds any planned claim needs for {power:.0%} power at the pilot's paired spread "
            f"(seeds_needed), at least {minimum}, at most {maximum} (the time budget)"
        ),
    }
