"""The WS/BCN CPU experiment (reproductions/weight_standardization/cpu.py) in quick mode on generated
Fashion-MNIST-format data, and its rows and protocol against the WS paper and the official README."""

from __future__ import annotations

import json
import math

import pytest
import torch

from reproductions.claims.results import load_results
from reproductions.smallscale.vision import _build, _step_sizes, build_paired

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory, fashion_mnist_dir):
    from reproductions.weight_standardization import cpu

    out = tmp_path_factory.mktemp("weight_standardization")
    return out, cpu.run(quick=True, data=str(fashion_mnist_dir), out_dir=str(out))


@pytest.mark.slow
def test_quick_run_writes_valid_results(quick_results):
    from reproductions.weight_standardization import cpu

    out, paths = quick_results
    assert [p.name for p in paths] == ["micro_batch.json"]
    res = load_results(paths[0])
    assert res["scale"] == "quick" and res["disclosures"] == cpu.DISCLOSURES
    assert res["config"]["schedule"]["effective_batch"] == 256
    assert res["pilot"]["pilot_seeds"] == list(cpu.QUICK_PILOT_SEEDS) and res["seeds"] == res["pilot"]["seeds"]
    assert {c.get("published_ref") for c in res["comparisons"]} >= {"ws.imagenet.r50.gn_ws.top1", "ws.ablation.r50.gn"}
    assert [c["test"] for c in res["comparisons"]] == ["not_worse", "not_worse", "greater", "greater"]
    for name in res["figures"]:
        assert (out / name).read_bytes()[:8] == PNG


@pytest.mark.slow
def test_quick_run_records_loss_curves_and_final_loss(quick_results):
    out, _ = quick_results
    res = json.loads((out / "micro_batch.json").read_text())
    series = res["curves"]["train_loss"]["series"]
    assert set(series) == {"BN 32/dev", "GN 1/dev", "GN+WS 1/dev", "BCN+WS 1/dev"}
    for label, s in series.items():
        assert len(s["per_seed"]) == len(res["seeds"]), label
        assert all(math.isfinite(v) for curve in s["per_seed"] for v in curve), label
        final = res["metrics"][f"final_train_loss.{label}"]["values"]
        assert final == pytest.approx([curve[-1] for curve in s["per_seed"]])


def test_rows_are_the_papers_methods():
    """1 image per device for GN, GN+WS and BCN+WS (micro-batch BCN: estimated batch statistics, per-group
    affine) beside BN at 32 per device; every step accumulates 256 images (the official README's 'batch size 1
    and iteration size 256' equivalence), and the LR is the GN paper's 0.1 per 256."""
    from reproductions.weight_standardization import cpu

    assert cpu.SCHEDULE.effective_batch == 256 and cpu.SCHEDULE.base_lr == 0.1
    assert [s.images_per_device for s in cpu.SETTINGS] == [32, 1, 1, 1]
    bcn = _build(cpu.BCN_WS, cpu.SCHEDULE, 1, 10)
    assert type(bcn.norm1).__name__ == "BatchChannelNorm" and bcn.norm1.estimate
    assert type(bcn.conv1).__name__ == "WSConv2d"
    gn_ws = _build(cpu.GN_WS, cpu.SCHEDULE, 1, 10)
    assert type(gn_ws.stage1[0].conv1).__name__ == "WSConv2d" and type(gn_ws.norm1).__name__ == "GroupNorm"
    assert _build(cpu.BN_LARGE, cpu.SCHEDULE, 1, 10).norm1.virtual_devices == 8
    # BCN (estimated BN, updated per micro-batch) runs the 32 micro-batches of 8 images one by one; GN+WS in one pass
    assert _step_sizes(cpu.BCN_WS, cpu.SCHEDULE) == (256, 8)
    assert _step_sizes(cpu.GN_WS, cpu.SCHEDULE) == (256, 256)


def test_rows_share_the_initial_weights():
    """A seed gives every row the same raw conv weights (WS standardizes them in the forward pass)."""
    from reproductions.weight_standardization import cpu

    models = [build_paired(s, cpu.SCHEDULE, 1, 10, seed=5) for s in cpu.SETTINGS]
    convs = [[p for n, p in m.named_parameters() if "conv" in n and p.dim() == 4] for m in models]
    assert convs[0] and all(torch.equal(a, b) for other in convs[1:] for a, b in zip(convs[0], other))
