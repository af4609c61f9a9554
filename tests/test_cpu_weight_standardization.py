"""The WS/BCN CPU experiment (reproductions/weight_standardization/cpu.py) in quick mode."""

from __future__ import annotations

import json
import math

import pytest

from reproductions.claims.results import load_results

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    from reproductions.weight_standardization import cpu

    out = tmp_path_factory.mktemp("weight_standardization")
    return out, cpu.run(quick=True, out_dir=str(out))


@pytest.mark.slow
def test_quick_run_writes_valid_results(quick_results):
    out, paths = quick_results
    assert [p.name for p in paths] == ["micro_batch.json"]
    res = load_results(paths[0])
    assert res["scale"] == "quick"
    assert res["config"]["schedule"]["effective_batch"] == 256
    assert {c.get("published_ref") for c in res["comparisons"]} >= {"ws.imagenet.r50.gn_ws.top1", "ws.ablation.r50.gn"}
    for name in res["figures"]:
        assert (out / name).read_bytes()[:8] == PNG


@pytest.mark.slow
def test_quick_run_trains_every_row(quick_results):
    out, _ = quick_results
    res = json.loads((out / "micro_batch.json").read_text())
    series = res["curves"]["train_loss"]["series"]
    assert set(series) == {
        "BN 32/dev",
        "BN 1/dev",
        "BN 2/dev",
        "GN (any b/dev)",
        "GN+WS (any b/dev)",
        "BCN+WS 1/dev",
        "BCN+WS 2/dev",
    }
    for label, s in series.items():
        assert all(math.isfinite(v) for v in s["mean"]), label
        assert s["mean"][-1] < s["mean"][0], f"{label}: training loss did not fall: {s['mean']}"


def test_rows_are_the_papers_methods():
    from reproductions.smallscale.vision import _build, _step_sizes
    from reproductions.weight_standardization import cpu

    bcn = _build(cpu.BCN_WS_1, cpu.SCHEDULE, 1, 10)
    assert type(bcn.norm1).__name__ == "BatchChannelNorm" and bcn.norm1.estimate  # micro-batch BCN (estimates)
    assert type(bcn.conv1).__name__ == "WSConv2d"
    gn_ws = _build(cpu.GN_WS, cpu.SCHEDULE, 1, 10)
    assert type(gn_ws.stage1[0].conv1).__name__ == "WSConv2d" and type(gn_ws.norm1).__name__ == "GroupNorm"
    bn = _build(cpu.BN_1, cpu.SCHEDULE, 1, 10)
    assert bn.norm1.virtual_devices == 8
    # BCN (estimated BN, updated per micro-batch) runs the micro-batches one by one; GN+WS in one pass
    micro = cpu.BCN_WS_1.images_per_device * cpu.SCHEDULE.devices
    assert _step_sizes(cpu.BCN_WS_1, cpu.SCHEDULE) == (cpu.SCHEDULE.effective_batch, micro)
    assert _step_sizes(cpu.GN_WS, cpu.SCHEDULE)[1] == cpu.SCHEDULE.effective_batch
