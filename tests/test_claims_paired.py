"""The paired verdict rules (reproductions/claims/paired.py): each test's three outcomes on hand-made
differences, the pilot plan, leave-one-out fragility, and the results-file record."""

from __future__ import annotations

import pytest

from reproductions.claims import paired
from reproductions.claims.power import paired_summary
from reproductions.claims.verdicts import NOT_REPRODUCED, NOT_TESTABLE, REPRODUCED


def _by_seed(values):
    return dict(enumerate(values))


def _verdict(d, test, effect):
    return paired.paired_verdict(paired_summary(d), test, effect)


@pytest.mark.parametrize(
    ("d", "test", "effect", "expected"),
    [
        ([2.0, 2.2, 1.8, 2.1, 1.9], "greater", 1.0, REPRODUCED),  # interval well above 0
        ([-0.1, 0.1, 0.05, -0.05, 0.0], "greater", 1.0, NOT_REPRODUCED),  # excludes an effect of 1
        ([-3.0, 4.0, -2.0, 5.0, 0.5], "greater", 1.0, NOT_TESTABLE),  # too wide to say
        ([0.1, -0.1, 0.05, -0.05, 0.0], "equivalent", 0.5, REPRODUCED),
        ([3.0, 3.1, 2.9, 3.05, 2.95], "equivalent", 0.5, NOT_REPRODUCED),
        ([-3.0, 4.0, -2.0, 5.0, 0.5], "equivalent", 0.5, NOT_TESTABLE),
        ([0.1, -0.1, 0.05, -0.05, 0.0], "not_worse", 0.5, REPRODUCED),
        ([3.0, 3.1, 2.9, 3.05, 2.95], "not_worse", 0.5, NOT_REPRODUCED),
        ([-3.0, 4.0, -2.0, 5.0, 0.5], "not_worse", 0.5, NOT_TESTABLE),
    ],
)
def test_each_rule_gives_each_outcome(d, test, effect, expected):
    assert _verdict(d, test, effect) == expected


def test_a_significant_difference_in_the_wrong_direction_is_not_reproduced():
    assert _verdict([-2.0, -2.2, -1.8, -2.1, -1.9], "greater", 1.0) == NOT_REPRODUCED


def test_bad_test_or_effect_is_refused():
    with pytest.raises(ValueError, match="unknown test"):
        paired.paired_verdict(paired_summary([1.0, 2.0]), "bigger", 1.0)
    with pytest.raises(ValueError, match="positive"):
        paired.paired_verdict(paired_summary([1.0, 2.0]), "greater", 0.0)


def test_comparison_record_pairs_by_seed_and_names_what_decides():
    a = {0: 10.0, 1: 11.0, 2: 12.0, 3: 10.5, 4: 11.5}
    b = {4: 9.0, 3: 8.0, 2: 10.0, 1: 9.2, 0: 8.1}  # another order: pairing is by seed
    c = paired.paired_comparison(
        "a beats b", a, b, test="greater", effect=1.0, labels=("A", "B"), unit="points", n_eval=10_000
    )
    assert c["paired"]["seeds"] == [0, 1, 2, 3, 4]
    assert c["paired"]["d"] == pytest.approx([1.9, 1.8, 2.0, 2.5, 2.5])
    assert c["verdict"] == REPRODUCED and c["needs"] is None
    assert c["effect_images"] == 100.0  # 1 point of 10,000 test images
    assert c["ours"]["low"] < c["ours"]["mean_difference"] < c["ours"]["high"]
    assert 0.0 < c["power"]["at_n"] <= 1.0 and c["rule"] == paired.RULES["greater"]
    assert c["fragile"] is False and len(c["leave_one_out"]["per_left_out"]) == 5


def test_not_testable_says_how_many_seeds_it_needs():
    d = [-3.0, 4.0, -2.0, 5.0, 0.5]
    c = paired.paired_comparison(
        "x", _by_seed(d), _by_seed([0.0] * 5), test="greater", effect=1.0, labels=("A", "B"), unit="points"
    )
    assert c["verdict"] == NOT_TESTABLE
    assert c["needs"]["seeds"] > 5 and "paired seeds" in c["needs"]["text"]


def test_a_verdict_that_hangs_on_one_seed_is_fragile():
    # four seeds near 0.6 and one at 3: with it the interval clears 0, without it the others alone decide
    d = [0.5, 0.7, 0.6, 0.55, 3.0]
    c = paired.paired_comparison(
        "x", _by_seed(d), _by_seed([0.0] * 5), test="equivalent", effect=1.0, labels=("A", "B"), unit="points"
    )
    assert c["fragile"] is True and 4 in c["leave_one_out"]["flips"]


def test_diverged_runs_count_as_the_value_fixed_before_the_run():
    a = {0: 10.0, 1: float("nan"), 2: 11.0}
    b = {0: 5.0, 1: 5.0, 2: 6.0}
    with pytest.raises(ValueError, match="non-finite"):
        paired.paired_comparison("x", a, b, test="greater", effect=1.0, labels=("A", "B"), unit="points")
    c = paired.paired_comparison(
        "x", a, b, test="greater", effect=1.0, labels=("A", "B"), unit="points", diverged_value=90.0
    )
    assert c["diverged_seeds"] == [1] and c["paired"]["a"][1] == 90.0


def test_one_seed_is_not_testable():
    c = paired.paired_comparison("x", {0: 1.0}, {0: 0.0}, test="greater", effect=1.0, labels=("A", "B"), unit="points")
    assert c["verdict"] == NOT_TESTABLE and c["ours"]["low"] is None and c["fragile"] is None


def _pilot(sd_scale: float) -> list[dict]:
    a = {1000: 1.0 + sd_scale, 1001: 1.0 - sd_scale, 1002: 1.0}
    return [{"claim": "c", "test": "greater", "effect": 1.0, "a": a, "b": {k: 0.0 for k in a}}]


def test_plan_takes_at_least_five_fresh_seeds_and_more_for_a_noisy_pilot():
    quiet = paired.plan_seeds(_pilot(0.1), maximum=20, first_seed=0)
    assert quiet["n"] == 5 and quiet["seeds"] == [0, 1, 2, 3, 4] and not quiet["capped"]
    noisy = paired.plan_seeds(_pilot(1.0), maximum=40, first_seed=0)
    assert noisy["n"] == noisy["needed"] > 5 and noisy["claims"][0]["power_at_n"] >= 0.8
    capped = paired.plan_seeds(_pilot(3.0), maximum=8, first_seed=0)
    assert capped["n"] == 8 and capped["capped"] and capped["claims"][0]["power_at_n"] < 0.8
    assert capped["pilot_seeds"] == [1000, 1001, 1002]


def test_plan_never_reuses_a_pilot_seed():
    with pytest.raises(ValueError, match="reuse pilot seeds"):
        paired.plan_seeds(_pilot(0.1), maximum=10, first_seed=998)


def test_experiment_verdicts_call_undecided_claims_not_testable():
    from reproductions.claims.verdicts import central_verdict, overall_verdict

    assert overall_verdict([NOT_TESTABLE, NOT_TESTABLE]) == NOT_TESTABLE
    assert overall_verdict([NOT_TESTABLE, NOT_REPRODUCED]) == NOT_REPRODUCED
    assert overall_verdict([NOT_TESTABLE, REPRODUCED]) == "partly reproduced"
    assert central_verdict([NOT_TESTABLE], [REPRODUCED]) == NOT_TESTABLE
    assert central_verdict([NOT_TESTABLE, NOT_REPRODUCED]) == NOT_REPRODUCED
    assert central_verdict([REPRODUCED], [NOT_REPRODUCED]) == "partly reproduced"


def test_identical_differences_write_valid_json(tmp_path):
    """Every seed giving the same difference makes t infinite; the record stays valid JSON."""
    import json

    c = paired.paired_comparison(
        "x", _by_seed([2.0] * 5), _by_seed([1.0] * 5), test="greater", effect=0.5, labels=("A", "B"), unit="x"
    )
    assert c["verdict"] == REPRODUCED and c["paired"]["summary"]["t"] is None
    json.loads(json.dumps(c, allow_nan=False))
