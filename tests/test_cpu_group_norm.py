"""The Group Normalization CPU experiment (reproductions/group_norm/cpu.py) in quick mode, and the shared
training loop of reproductions/smallscale/vision.py and the statistics of reproductions/claims/ it stands on."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from reproductions.claims.results import load_results
from reproductions.claims.statistics import contrast, mean_difference
from reproductions.smallscale.data import image_dataset
from reproductions.smallscale.parallel import one_thread
from reproductions.smallscale.vision import ClassifierSchedule, ClassifierSetup, _build, _step_sizes, train_classifier

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    from reproductions.group_norm import cpu

    out = tmp_path_factory.mktemp("group_norm")
    paths = cpu.run(quick=True, out_dir=str(out))
    return out, paths


@pytest.mark.slow
def test_quick_run_writes_valid_results_and_figures(quick_results):
    out, paths = quick_results
    assert sorted(p.name for p in paths) == ["table1_norms.json", "table2_batch_size.json", "table3_groups.json"]
    for path in paths:
        res = load_results(path)  # validates against the schema
        assert res["scale"] == "quick"
        assert res["verdict"]["status"] in ("reproduced", "partly reproduced", "not reproduced")
        assert all("rule" in c and c["verdict"] for c in res["comparisons"])
        for name in res["figures"]:
            assert (out / name).read_bytes()[:8] == PNG
        assert res["manifest"]["source_files"]


@pytest.mark.slow
def test_quick_run_trains(quick_results):
    """The training loss falls for every setting (3 quick epochs), and nothing diverges."""
    out, _ = quick_results
    res = json.loads((out / "table2_batch_size.json").read_text())
    series = res["curves"]["train_loss"]["series"]
    assert set(series) == {f"{n} {b}/dev" for n in ("BN", "GN") for b in (32, 16, 8, 4, 2)}
    for label, s in series.items():
        assert all(math.isfinite(v) for v in s["mean"]), label
        assert s["mean"][-1] < s["mean"][0], f"{label}: training loss did not fall: {s['mean']}"
    # Errors are percentages over the test set, and every setting is in the metrics.
    for key, m in res["metrics"].items():
        assert key.startswith("test_error.") and 0.0 <= m["mean"] <= 100.0


def test_same_seed_same_numbers():
    data = image_dataset(train_images=128)
    setup = ClassifierSetup("BN 2/dev", "bn", 2)
    schedule = ClassifierSchedule(epochs=1, base_lr=0.4)
    a = train_classifier(setup, schedule, data, seed=3)
    b = train_classifier(setup, schedule, data, seed=3)
    c = train_classifier(setup, schedule, data, seed=4)
    assert a.train_loss == b.train_loss and a.test_errors == b.test_errors
    assert a.train_loss != c.train_loss
    assert a.steps == 128 // 16 and a.lr == pytest.approx(0.4 * 16 / 256)  # linear LR scaling


def test_batch_statistics_are_per_device():
    model = _build(ClassifierSetup("BN", "bn", 2), ClassifierSchedule(epochs=1), 1, 10)
    assert model.norm1.virtual_devices == 8
    gn = _build(ClassifierSetup("GN", "gn", 2, {"num_groups": 8}), ClassifierSchedule(epochs=1), 1, 10)
    assert gn.norm1.num_groups == 8


def test_accumulation_collapses_only_batch_independent_norms():
    """With gradient accumulation, GN(+WS) runs the step in one forward pass (the same gradient), while BN
    and BCN run micro-batches of devices x images_per_device."""
    schedule = ClassifierSchedule(epochs=1, effective_batch=64)
    assert _step_sizes(ClassifierSetup("GN", "gn", 1, {"num_groups": 8}, "ws"), schedule) == (64, 64)
    assert _step_sizes(ClassifierSetup("BN", "bn", 1), schedule) == (64, 8)
    assert _step_sizes(ClassifierSetup("BCN", "bcn", 2, {"num_groups": 8, "estimate": True}, "ws"), schedule) == (
        64,
        16,
    )
    with pytest.raises(ValueError, match="not a multiple"):
        _step_sizes(ClassifierSetup("BN", "bn", 3), schedule)
    # The collapse is exact for GN+WS: one forward of 64 images = 8 weighted micro-batches of 8.
    torch.manual_seed(0)
    model = _build(ClassifierSetup("GN", "gn", 1, {"num_groups": 8}, "ws"), schedule, 1, 10)
    x, y = torch.randn(64, 1, 8, 8), torch.randint(0, 10, (64,))
    with one_thread():
        full = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))
        parts = sum(F.cross_entropy(model(x[i : i + 8]), y[i : i + 8]) * (8 / 64) for i in range(0, 64, 8))
        micro = torch.autograd.grad(parts, list(model.parameters()))
    for g_full, g_micro in zip(full, micro):
        torch.testing.assert_close(g_full, g_micro, rtol=1e-4, atol=1e-6)


def test_contrast_standard_error():
    d, se = mean_difference([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    assert d == pytest.approx(2.0) and se == pytest.approx(math.sqrt(1.0 / 3))
    # (a - b) - (c - d): variances add with squared coefficients.
    v, se4 = contrast([(1, [1.0, 3.0]), (-1, [0.0, 0.0]), (-1, [0.0, 2.0]), (1, [1.0, 1.0])])
    assert v == pytest.approx(2.0 - 0.0 - 1.0 + 1.0) and se4 == pytest.approx(math.sqrt(2.0 / 2 + 2.0 / 2))
    assert contrast([(1, [5.0])]) == (5.0, 0.0)
    with pytest.raises(ValueError):
        contrast([(1, [])])


def test_bad_batch_is_explained():
    data = image_dataset(train_images=64)
    with pytest.raises(ValueError, match="fewer images per device"):
        train_classifier(ClassifierSetup("BN", "bn", 32), ClassifierSchedule(epochs=1), data, 0)
