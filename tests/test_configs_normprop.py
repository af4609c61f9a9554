"""NormProp configs, and how every full-scale config's expected result is reported. The NormProp paper's
experimental section was not found in a readable copy (arXiv 1603.01431; no official code), so no setting
can be checked against its text: its configs must say so, and its targets, like any value not confirmed
from a primary source, are reported as "unverified" and decide nothing
(:mod:`reproductions.claims.targets`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reproductions.claims.published import published_value
from reproductions.claims.targets import PRIMARY_CONFIDENCE, expected_results, reported_top1_err
from reproductions.engine.cli import config_from_args, engine_parser
from reproductions.tasks.classification.main import CLASSIFICATION_DEFAULTS
from reproductions.tasks.detection.main import DETECTION_DEFAULTS
from reproductions.tasks.segmentation.main import SEGMENTATION_DEFAULTS

REPO = Path(__file__).resolve().parents[1]
NORMPROP = sorted(p for p in (REPO / "reproductions/normprop/configs").glob("*.yaml") if not p.name.startswith("_"))
ALL = [
    *((p, CLASSIFICATION_DEFAULTS) for p in REPO.glob("reproductions/*/configs/[!_]*.yaml")),
    *((p, DETECTION_DEFAULTS) for p in REPO.glob("reproductions/*/configs/coco/[!_]*.yaml")),
    *((p, SEGMENTATION_DEFAULTS) for p in REPO.glob("reproductions/*/configs/voc/[!_]*.yaml")),
]


def _load(path: Path, defaults: dict) -> dict:
    return config_from_args(engine_parser("t").parse_args(["--config", str(path)]), defaults)


def test_normprop_base_says_its_settings_are_not_from_the_paper():
    text = (REPO / "reproductions/normprop/configs/_base.yaml").read_text()
    assert "NOT found" in text and "[unverified]" in text


@pytest.mark.parametrize("path", NORMPROP, ids=lambda p: p.stem)
def test_normprop_rows_report_the_last_epoch(path):
    cfg = _load(path, CLASSIFICATION_DEFAULTS)
    assert cfg["eval"]["report"] == "final"


@pytest.mark.parametrize("path,defaults", ALL, ids=lambda p: getattr(p, "stem", ""))
def test_only_primary_values_are_targets(path, defaults):
    cfg = _load(path, defaults)
    records = expected_results(cfg)
    assert records, f"{path.name} states no expected result"
    for record in records:
        confidence = published_value(cfg["paper"], record["id"])["confidence"]
        assert record["confidence"] == confidence  # read from published.yaml, not from the config's copy
        if record["value"] is None:
            assert record["status"] == "none"
        else:
            assert (record["status"] == "target") is (confidence in PRIMARY_CONFIDENCE)


def test_recalled_and_third_party_values_never_become_targets():
    recalled = {"paper": "normprop", "published": {"id": "no.such.id", "value": 9.41, "tag": "paper"}}
    assert expected_results(recalled)[0]["status"] == "unverified"  # an id published.yaml does not know
    secondary = {"published": {"bbox_AP": {"value": 40.0, "tag": "secondary"}, "segm_AP": {"value": None}}}
    assert [r["status"] for r in expected_results(secondary)] == ["unverified", "none"]
    primary = {"published": {"value": 24.1, "tag": "paper", "metric": "top1_err"}}
    assert expected_results(primary)[0]["status"] == "target"


def test_reported_top1_err_follows_the_rule():
    metrics = {"top1_err_median_last5": 24.0, "top1_err_best": 23.5, "top1_err_final": 24.2}
    assert reported_top1_err(metrics, "median_last", 5) == 24.0
    assert reported_top1_err(metrics, "best", 5) == 23.5
    assert reported_top1_err(metrics, "final", 5) == 24.2
    with pytest.raises(ValueError, match=r"eval\.report"):
        reported_top1_err(metrics, "mean", 5)
