"""One verdict vocabulary, and how an experiment's verdict follows from its claims' verdicts.

Each claim is decided by the paired rules of :mod:`reproductions.claims.paired` (``RULES``, fixed before the
runs); :func:`overall_verdict` and :func:`central_verdict` combine the claims of one experiment.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "NOT_REPRODUCED",
    "NOT_TESTABLE",
    "PARTLY",
    "REPRODUCED",
    "VERDICTS",
    "central_verdict",
    "overall_verdict",
]

REPRODUCED, NOT_REPRODUCED, PARTLY, NOT_TESTABLE = (
    "reproduced",
    "not reproduced",
    "partly reproduced",
    "not testable at this scale",
)
VERDICTS = (REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_TESTABLE)
"""Every verdict a results file may state (``results_schema.json`` lists the same)."""


def overall_verdict(verdicts: Sequence[str]) -> str:
    """An experiment's verdict from its comparisons': "reproduced" if all are; when none is even partly
    reproduced, "not testable at this scale" if none could be decided, else "not reproduced"; otherwise
    "partly reproduced"."""
    if all(v == REPRODUCED for v in verdicts):
        return REPRODUCED
    if not any(v in (REPRODUCED, PARTLY) for v in verdicts):
        return NOT_TESTABLE if all(v == NOT_TESTABLE for v in verdicts) else NOT_REPRODUCED
    return PARTLY


def central_verdict(central: Sequence[str], others: Sequence[str] = ()) -> str:
    """Every claim reproduced: reproduced; some central claim reproduced (or partly): partly reproduced; no
    central claim reproduced: not testable at this scale if no central claim could be decided, else not
    reproduced (whatever the others say)."""
    if all(v == REPRODUCED for v in (*central, *others)):
        return REPRODUCED
    if any(v in (REPRODUCED, PARTLY) for v in central):
        return PARTLY
    return NOT_TESTABLE if central and all(v == NOT_TESTABLE for v in central) else NOT_REPRODUCED
