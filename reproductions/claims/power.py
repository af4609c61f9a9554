r"""Paired seeds and statistical power: the statistics of experiments that compare settings on the same
seeds (same initialisation seed, same data order), take their number of seeds from a pilot and a power
calculation, and check that a verdict does not hang on a single seed.

* :func:`paired_differences` pairs two settings' per-seed values by seed, :math:`d_i = a_i - b_i`;
* :func:`paired_summary`: mean, standard deviation, standard error and the Student-t interval of the
  :math:`d_i`;
* :func:`power_of` / :func:`seeds_for_power`: the power of the paired t-test and the number of seeds that
  reaches a target power (at least ``minimum``); :func:`equivalence_power_of` /
  :func:`seeds_for_equivalence` the same for a claim of "no difference within a margin";
* :func:`power_at` / :func:`seeds_needed`: the same for each claim test of
  :mod:`reproductions.claims.paired` ("greater", "equivalent", "not_worse");
* :func:`not_testable_needs`: the seeds a claim judged "not testable at this scale" would need;
* :func:`leave_one_out`: the verdict recomputed without each seed in turn; one that flips is *fragile*.

Only the paired t-test's assumptions enter: the differences are independent across seeds and roughly
normal. The power of a paired design is that of a one-sample t-test on the :math:`d_i`, with the
standardized effect :math:`d_z = \delta / \sigma_d` (the expected difference over the standard deviation
of the differences, not of either setting).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Literal

from scipy import stats

__all__ = [
    "Test",
    "equivalence_power_of",
    "leave_one_out",
    "not_testable_needs",
    "paired_differences",
    "paired_summary",
    "power_at",
    "power_of",
    "seeds_for_equivalence",
    "seeds_for_power",
    "seeds_needed",
]

MAX_SEEDS = 1_000_000
"""Where the search for a number of seeds gives up (an effect too small for any experiment)."""


def paired_differences(
    a_by_seed: Mapping[Hashable, float], b_by_seed: Mapping[Hashable, float]
) -> dict[Hashable, float]:
    r"""The per-seed differences :math:`d_s = a_s - b_s` of two settings run on the same seeds ``s``,
    ordered by seed.

    Refuses (``ValueError``) seeds that only one setting has (an unpaired comparison is not a paired one:
    rerun the missing seeds or compare independent samples instead), an empty pairing, and non-finite
    values (a diverged run: decide before the run how it counts, then pass that value)."""
    only_a = sorted(set(a_by_seed) - set(b_by_seed), key=repr)
    only_b = sorted(set(b_by_seed) - set(a_by_seed), key=repr)
    if only_a or only_b:
        parts = [f"seeds {only_a} only in the first setting"] if only_a else []
        parts += [f"seeds {only_b} only in the second"] if only_b else []
        raise ValueError(
            f"unpaired seeds: {'; '.join(parts)}. A paired comparison needs both settings on the same seeds: "
            "run the missing seeds (or drop them from both settings before the verdict rule is applied)"
        )
    if not a_by_seed:
        raise ValueError("no seeds to pair: both settings are empty")
    try:
        seeds = sorted(a_by_seed)
    except TypeError:
        seeds = sorted(a_by_seed, key=repr)
    out: dict[Hashable, float] = {}
    for s in seeds:
        a, b = float(a_by_seed[s]), float(b_by_seed[s])
        if not (math.isfinite(a) and math.isfinite(b)):
            raise ValueError(
                f"seed {s!r} has a non-finite value ({a} vs {b}): a diverged run; decide before the run how it "
                "counts (for instance the metric's worst value) and pass that"
            )
        out[s] = a - b
    return out


def _values(diffs: Mapping[Hashable, float] | Sequence[float]) -> list[float]:
    return [float(v) for v in (diffs.values() if isinstance(diffs, Mapping) else diffs)]


def paired_summary(diffs: Mapping[Hashable, float] | Sequence[float], confidence: float = 0.95) -> dict[str, Any]:
    r"""Summary of paired differences :math:`d_1..d_n` (a mapping seed -> difference or a sequence):

    .. math::
        \bar d = \frac1n \sum_i d_i, \qquad
        s_d = \sqrt{\frac{1}{n-1} \sum_i (d_i - \bar d)^2}, \qquad
        se = s_d / \sqrt n, \qquad
        \bar d \pm t_{1-(1-c)/2,\; n-1}\, se

    Returns ``mean``, ``sd``, ``se``, ``n``, ``df``, ``confidence`` ``c``, the interval bounds ``low`` and
    ``high``, the critical value ``t_crit``, the statistic ``t`` :math:`= \bar d / se` and its two-sided
    p-value ``p`` (for ``sd`` = 0: ``t`` is infinite and ``p`` 0 unless the mean is 0 too, then ``t`` 0 and
    ``p`` 1). Needs at least two differences."""
    vals = _values(diffs)
    n = len(vals)
    if n < 2:
        raise ValueError(f"a paired summary needs at least 2 seeds, got {n}")
    if not all(math.isfinite(v) for v in vals):
        raise ValueError(f"non-finite paired differences: {vals}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    mean = math.fsum(vals) / n
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / (n - 1))
    se = sd / math.sqrt(n)
    df = n - 1
    t_crit = float(stats.t.ppf(1.0 - (1.0 - confidence) / 2.0, df))
    if se > 0:
        t = mean / se
        p = float(2.0 * stats.t.sf(abs(t), df))
    else:
        t, p = (0.0, 1.0) if mean == 0 else (math.copysign(math.inf, mean), 0.0)
    return {
        "mean": mean,
        "sd": sd,
        "se": se,
        "n": n,
        "df": df,
        "confidence": confidence,
        "low": mean - t_crit * se,
        "high": mean + t_crit * se,
        "t_crit": t_crit,
        "t": t,
        "p": p,
    }


def _check(effect: float, sd: float, alpha: float, power: float | None = None) -> None:
    if not (math.isfinite(effect) and math.isfinite(sd)):
        raise ValueError(f"effect and sd must be finite, got {effect}, {sd}")
    if sd < 0:
        raise ValueError(f"sd must be non-negative, got {sd}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if power is not None and not 0.0 < power < 1.0:
        raise ValueError(f"power must lie in (0, 1), got {power}")


def _check_margin(margin: float, sd: float, alpha: float, power: float | None = None) -> None:
    """:func:`_check` for an equivalence margin, which must also be positive."""
    _check(margin, sd, alpha, power)
    if margin <= 0:
        raise ValueError(f"the equivalence margin must be positive, got {margin}")


def power_of(n: int, effect: float, sd: float, alpha: float = 0.05, two_sided: bool = True) -> float:
    r"""Power of the paired t-test with ``n`` seeds to detect a true mean difference ``effect`` when the
    differences have standard deviation ``sd``.

    With :math:`\nu = n - 1` degrees of freedom, noncentrality :math:`\lambda = \sqrt n\,|\delta| / \sigma_d`
    and :math:`T \sim t'_{\nu}(\lambda)` (noncentral t):

    .. math::
        \text{two-sided: } P(T > t_{1-\alpha/2,\nu}) + P(T < -t_{1-\alpha/2,\nu}), \qquad
        \text{one-sided (in the claimed direction): } P(T > t_{1-\alpha,\nu}).

    ``sd`` = 0 with a non-zero effect gives power 1; a zero effect gives the test's size."""
    _check(effect, sd, alpha)
    if n < 2:
        raise ValueError(f"a paired t-test needs at least 2 seeds, got {n}")
    df = n - 1
    if sd == 0:
        return 1.0 if effect != 0 else alpha
    nc = math.sqrt(n) * abs(effect) / sd
    if two_sided:
        t = stats.t.ppf(1.0 - alpha / 2.0, df)
        out = float(stats.nct.sf(t, df, nc) + stats.nct.cdf(-t, df, nc))
        fallback = stats.norm.sf(t - nc) + stats.norm.cdf(-t - nc)
    else:
        t = stats.t.ppf(1.0 - alpha, df)
        out = float(stats.nct.sf(t, df, nc))
        fallback = stats.norm.sf(t - nc)
    # scipy's noncentral t returns NaN for some very large noncentralities, where the power is 1 for all
    # purposes: the normal approximation is exact to many digits there
    return out if math.isfinite(out) else float(min(1.0, max(0.0, fallback)))


def _nct_sf(t: float, df: int, nc: float) -> float:
    """:math:`P(T > t)` for a noncentral t; the normal approximation where scipy returns NaN (very large
    noncentralities)."""
    out = float(stats.nct.sf(t, df, nc))
    return out if math.isfinite(out) else float(stats.norm.sf(t - nc))


def _smallest_n(reaches: Callable[[int], bool], what: str) -> int:
    """The smallest ``n >= 2`` with ``reaches(n)``, for ``reaches`` monotone in ``n``: doubling, then
    bisection."""
    if reaches(2):
        return 2
    lo, hi = 2, 4
    while not reaches(hi):
        lo, hi = hi, hi * 2
        if hi > MAX_SEEDS:
            raise ValueError(f"{what} needs more than {MAX_SEEDS:,} seeds: the effect is too small for its spread")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if reaches(mid) else (mid, hi)
    return hi


def seeds_for_power(
    effect: float,
    sd: float,
    power: float = 0.8,
    alpha: float = 0.05,
    two_sided: bool = True,
    minimum: int = 5,
) -> int:
    r"""The number of paired seeds for the paired t-test to detect ``effect`` (the claimed mean
    difference) with the given ``power`` at level ``alpha``, when the differences have standard deviation
    ``sd``: the smallest :math:`n` with :func:`power_of` :math:`(n) \ge` ``power``, and at least ``minimum``.

    For example :math:`|\delta|/\sigma_d` = 0.5 needs 34 seeds and 1.0 needs 10 (80 % power, alpha 0.05,
    two-sided), as in Cohen's tables and G*Power. A zero ``sd`` needs only ``minimum``; a zero ``effect``
    can never be detected (``ValueError``)."""
    _check(effect, sd, alpha, power)
    if effect == 0:
        raise ValueError("an effect of 0 cannot be detected with any number of seeds")
    if sd == 0:
        return max(2, minimum)
    n = _smallest_n(
        lambda k: power_of(k, effect, sd, alpha, two_sided) >= power,
        f"detecting {effect:g} (paired sd {sd:g}) with power {power:g}",
    )
    return max(n, minimum)


def equivalence_power_of(n: int, margin: float, sd: float, alpha: float = 0.05, true_difference: float = 0.0) -> float:
    r"""Power of the paired equivalence test "the :math:`1-\alpha` t-interval of the mean difference lies
    within :math:`\pm m`" (two one-sided tests, each at :math:`\alpha/2`; with alpha 0.05 the 95 % interval,
    the interval of the "equivalent" rule of :data:`reproductions.claims.paired.RULES`) when the true difference
    is ``true_difference`` :math:`\Delta`. The usual noncentral-t approximation:

    .. math::
        \text{power} \approx \max\bigl(0,\;
        P(T_1 > t_{1-\alpha/2,\nu}) + P(T_2 > t_{1-\alpha/2,\nu}) - 1\bigr), \qquad
        T_{1,2} \sim t'_\nu\bigl(\sqrt n\,(m \pm \Delta)/\sigma_d\bigr),\ \nu = n - 1,

    which is exact where the two one-sided tests cannot both fail (and a slight underestimate otherwise)."""
    _check_margin(margin, sd, alpha)
    if n < 2:
        raise ValueError(f"a paired t-test needs at least 2 seeds, got {n}")
    if abs(true_difference) >= margin:
        return 0.0
    if sd == 0:
        return 1.0
    df = n - 1
    t = stats.t.ppf(1.0 - alpha / 2.0, df)
    lower = _nct_sf(t, df, math.sqrt(n) * (margin + true_difference) / sd)
    upper = _nct_sf(t, df, math.sqrt(n) * (margin - true_difference) / sd)
    return float(max(0.0, lower + upper - 1.0))


def seeds_for_equivalence(
    margin: float,
    sd: float,
    power: float = 0.8,
    alpha: float = 0.05,
    true_difference: float = 0.0,
    minimum: int = 5,
) -> int:
    """The number of paired seeds for the equivalence test of :func:`equivalence_power_of` to show
    ``|difference| < margin`` with the given ``power`` (at least ``minimum``). A true difference at or
    beyond the margin can never be shown equivalent (``ValueError``)."""
    _check_margin(margin, sd, alpha, power)
    if abs(true_difference) >= margin:
        raise ValueError(f"a true difference of {true_difference:g} is never shown within a margin of {margin:g}")
    if sd == 0:
        return max(2, minimum)
    n = _smallest_n(
        lambda k: equivalence_power_of(k, margin, sd, alpha, true_difference) >= power,
        f"showing equivalence within {margin:g} (paired sd {sd:g}) with power {power:g}",
    )
    return max(n, minimum)


Test = Literal["greater", "equivalent", "not_worse"]
"""The three claim tests of :mod:`reproductions.claims.paired` (its ``RULES`` give their verdict rules)."""

_TEST_POWER = {
    "greater": "paired t-test, two-sided, alpha 0.05",
    "equivalent": "two one-sided tests at alpha 0.025 each, true difference 0",
    "not_worse": "one-sided test at alpha 0.025, true difference 0",
}
"""How :func:`power_at` computes each test's power, as the sentences of :func:`not_testable_needs` say it."""


def _check_kind(test: str) -> None:
    if test not in _TEST_POWER:
        raise ValueError(f"unknown test {test!r}; one of {sorted(_TEST_POWER)}")


def power_at(test: Test, n: int, effect: float, sd: float) -> float:
    """The power of a claim ``test`` with ``n`` paired seeds at a paired standard deviation ``sd``:
    :func:`power_of` of ``effect`` (two-sided, alpha 0.05) for "greater"; :func:`equivalence_power_of` within
    the margin ``effect`` for "equivalent"; the one-sided test at alpha 0.025 (the high end of the 95 %
    interval below the margin) for "not_worse"; the last two at a true difference of 0."""
    _check_kind(test)
    if test == "greater":
        return power_of(n, effect, sd)
    if test == "equivalent":
        return equivalence_power_of(n, effect, sd)
    return power_of(n, effect, sd, alpha=0.025, two_sided=False)


def seeds_needed(test: Test, effect: float, sd: float, *, power: float = 0.8, minimum: int = 5) -> int | None:
    """The paired seeds at which :func:`power_at` reaches ``power`` (at least ``minimum``); ``None`` when no
    number of seeds would (a zero effect or margin, or more than :data:`MAX_SEEDS`)."""
    _check_kind(test)
    _check(effect, sd, 0.05, power)
    try:
        if test == "greater":
            return seeds_for_power(effect, sd, power, 0.05, True, minimum)
        if test == "equivalent":
            return seeds_for_equivalence(effect, sd, power, 0.05, minimum=minimum)
        return seeds_for_power(effect, sd, power, 0.025, False, minimum)
    except ValueError:
        return None


def not_testable_needs(test: Test, effect: float, sd: float, *, power: float = 0.8, minimum: int = 5) -> dict[str, Any]:
    """What a claim judged "not testable at this scale" would need: ``seeds``, :func:`seeds_needed` for
    its own ``test`` at the observed spread ``sd`` of the paired differences (so the number a plan would
    take and the number a report states are one number), and ``text``, the same in one sentence for a
    results file. ``effect`` is the smallest effect of interest ("greater") or the margin."""
    seeds = seeds_needed(test, effect, sd, power=power, minimum=minimum)
    shows = {
        "greater": f"a difference of {effect:g}",
        "equivalent": f"equivalence within ±{effect:g}",
        "not_worse": f"non-inferiority within a margin of {effect:g}",
    }[test]
    if seeds is None:
        text = f"no number of seeds shows {shows} at a paired sd of {sd:g}"
    else:
        text = (
            f"about {seeds} paired seeds would show {shows} with {power:.0%} power "
            f"({_TEST_POWER[test]}; paired sd {sd:g})"
        )
    return {"seeds": seeds, "effect": effect, "sd": sd, "power": power, "test": test, "text": text}


def leave_one_out(
    verdict_fn: Callable[[Mapping[Hashable, float]], str],
    diffs: Mapping[Hashable, float] | Sequence[float],
) -> dict[str, Any]:
    """The verdict on all paired differences and on each set with one seed left out.

    ``verdict_fn`` maps a mapping seed -> difference to a verdict (a sequence ``diffs`` is keyed by
    position). Returns ``verdict`` (on all seeds), ``fragile`` (true when any leave-one-out verdict
    differs from it), ``per_left_out`` (``{"seed", "verdict"}`` for each seed left out, in order) and
    ``flips`` (the seeds whose removal changes the verdict). Needs at least 3 seeds (so that two remain)."""
    data = dict(diffs) if isinstance(diffs, Mapping) else dict(enumerate(diffs))
    if len(data) < 3:
        raise ValueError(f"leave-one-out needs at least 3 seeds, got {len(data)}")
    verdict = verdict_fn(dict(data))
    per = [{"seed": s, "verdict": verdict_fn({k: v for k, v in data.items() if k != s})} for s in data]
    flips = [p["seed"] for p in per if p["verdict"] != verdict]
    return {"verdict": verdict, "fragile": bool(flips), "per_left_out": per, "flips": flips}
