"""One verdict vocabulary and the rules that decide a claim, fixed before each run.

Two families of rules:

* per-seed rules (:func:`seed_verdict`, :func:`overall_verdict`): a comparison that holds in every seed
  and for the mean is "reproduced", for the mean only "partly reproduced";
* 2-standard-error rules on a difference ``d`` with standard error ``se``
  (:func:`reproductions.claims.statistics.contrast`): :func:`verdict_greater` (a directional claim),
  :func:`verdict_equivalent` (no difference, within a margin), :func:`verdict_not_worse` (matches or beats),
  combined by :func:`central_verdict`.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "NOT_REPRODUCED",
    "NOT_TESTABLE",
    "PARTLY",
    "REPRODUCED",
    "RULE_EQUIVALENT",
    "RULE_GREATER",
    "RULE_NOT_WORSE",
    "RULE_REVISION",
    "VERDICTS",
    "central_verdict",
    "overall_verdict",
    "seed_verdict",
    "verdict_equivalent",
    "verdict_greater",
    "verdict_not_worse",
]

REPRODUCED, NOT_REPRODUCED, PARTLY, NOT_TESTABLE = (
    "reproduced",
    "not reproduced",
    "partly reproduced",
    "not testable at this scale",
)
VERDICTS = (REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_TESTABLE)
"""Every verdict a results file may state (``results_schema.json`` lists the same)."""

RULE_GREATER = "reproduced if d > 2 se, else not reproduced"
RULE_EQUIVALENT = (
    "equivalence within a margin m: reproduced if |d| + 2 se <= m (the 2-se interval lies inside ±m); not reproduced "
    "if |d| - 2 se > m; otherwise not testable at this scale (the interval is wider than the margin)"
)
RULE_NOT_WORSE = (
    "non-inferiority within a margin m: reproduced if d + 2 se <= m; not reproduced if d - 2 se > m; otherwise "
    "not testable at this scale"
)

RULE_REVISION = (
    "Rule revision (after the first full run, before these results): claims of 'no change', 'close' or 'matches' "
    "first passed when |d| <= 2 se + margin, which holds whenever the seeds disagree enough; they now pass only "
    "when the whole 2-se interval of d lies within the margin (equivalence / non-inferiority), and an interval too "
    "wide to decide gives 'not testable at this scale'. No other rule, setting or hyper-parameter changed."
)


def seed_verdict(per_seed: Sequence[bool], mean_holds: bool) -> str:
    """The per-seed rule: a comparison that holds in every seed (and for the mean over seeds) is
    "reproduced", one that holds for the mean only "partly reproduced", anything else "not reproduced"."""
    if mean_holds and all(per_seed):
        return REPRODUCED
    return PARTLY if mean_holds else NOT_REPRODUCED


def overall_verdict(verdicts: Sequence[str]) -> str:
    """An experiment's verdict from its comparisons': "reproduced" if all are; when none is even partly
    reproduced, "not testable at this scale" if none could be decided, else "not reproduced"; otherwise
    "partly reproduced"."""
    if all(v == REPRODUCED for v in verdicts):
        return REPRODUCED
    if not any(v in (REPRODUCED, PARTLY) for v in verdicts):
        return NOT_TESTABLE if all(v == NOT_TESTABLE for v in verdicts) else NOT_REPRODUCED
    return PARTLY


def verdict_greater(d: float, se: float) -> str:
    """A directional claim "d > 0": reproduced when d exceeds twice its standard error."""
    return REPRODUCED if d > 2 * se else NOT_REPRODUCED


def verdict_equivalent(d: float, se: float, margin: float) -> str:
    """A claim "no difference": reproduced only when the whole 2-se interval of d lies within ±margin; when
    the interval is too wide to decide, "not testable at this scale" (never "reproduced" for noisy seeds)."""
    if abs(d) + 2 * se <= margin:
        return REPRODUCED
    return NOT_REPRODUCED if abs(d) - 2 * se > margin else NOT_TESTABLE


def verdict_not_worse(d: float, se: float, margin: float) -> str:
    """A claim "matches or beats" (d = ours - reference, lower is better): reproduced when the upper end of
    the 2-se interval is at most ``margin``; not reproduced when its lower end exceeds ``margin``."""
    if d + 2 * se <= margin:
        return REPRODUCED
    return NOT_REPRODUCED if d - 2 * se > margin else NOT_TESTABLE


def central_verdict(central: Sequence[str], others: Sequence[str] = ()) -> str:
    """Every claim reproduced: reproduced; some central claim reproduced (or partly): partly reproduced; no
    central claim reproduced: not testable at this scale if no central claim could be decided, else not
    reproduced (whatever the others say)."""
    if all(v == REPRODUCED for v in (*central, *others)):
        return REPRODUCED
    if any(v in (REPRODUCED, PARTLY) for v in central):
        return PARTLY
    return NOT_TESTABLE if central and all(v == NOT_TESTABLE for v in central) else NOT_REPRODUCED
