"""The NormProp CPU-scale experiment (reproductions/normprop/cpu.py): NIN with NormProp, BN or no norm
on MNIST images; batch size 1; epoch timing; per-layer pre-activation statistics."""

from __future__ import annotations

import math

import pytest
import torch

from reproductions.claims.results import VERDICTS, load_results
from reproductions.normprop import cpu as np_cpu

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_quick_run_trains_and_writes_a_valid_results_file(tmp_path):
    paths = np_cpu.run(quick=True, out_dir=str(tmp_path))
    res = load_results(paths[0])  # validates against the schema
    assert res["scale"] == "quick" and res["seeds"] == [0] and res["experiment"] == "nin_mnist"
    bs = np_cpu.QUICK_CONFIG.batch_size
    for norm in np_cpu.NORMS:
        loss = res["curves"]["train_loss"]["series"][f"{norm} batch {bs}"]["mean"]
        assert loss[-1] < loss[1], f"{norm}: training loss did not fall ({loss})"
    m = res["metrics"]
    assert {"test_accuracy_normprop_batch1", "test_accuracy_bn_batch1", "epoch_time_ratio_normprop_to_bn"} <= set(m)
    assert len(m["epoch_seconds_bn"]["values"]) == np_cpu.QUICK_CONFIG.timing_repeats
    assert m["epoch_time_ratio_normprop_to_bn"]["mean"] > 0
    assert [c["published_ref"] for c in res["comparisons"]] == [
        "normprop.paper_table",
        "method.statistics",
        "normprop.speedup_vs_bn",
        "normprop.fig.hidden_input_stability",
    ]
    assert all(c["verdict"] in VERDICTS and c["rule"] for c in res["comparisons"])
    assert (tmp_path / res["figures"][0]).read_bytes()[:8] == PNG_MAGIC


def _stats(norm: str) -> dict[str, tuple[float, float]]:
    torch.manual_seed(0)
    x = torch.rand(128, 1, 28, 28)
    return np_cpu.preactivation_stats(np_cpu.build(norm, np_cpu.NormPropConfig(width=16), x), x)


def test_normprop_starts_with_normalized_pre_activations_in_its_first_block():
    stats = _stats("NormProp")
    assert list(stats) == ["conv1", "cccp1", "cccp2", "conv2", "cccp3", "cccp4", "conv3", "cccp5"]  # no class maps
    for layer in ("conv1", "cccp1", "cccp2"):  # before the first max pool, NormProp's closed forms hold
        mean, std = stats[layer]
        assert abs(mean) < 0.05 and 0.85 < std < 1.05, (layer, mean, std)
    assert np_cpu.deviation(stats) < np_cpu.deviation(_stats("none"))


def test_bn_pre_activations_are_normalized_by_batch_statistics_and_running_stats_do_not_move():
    torch.manual_seed(0)
    x = torch.rand(64, 1, 28, 28)
    model = np_cpu.build("BN", np_cpu.NormPropConfig(width=8), x)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stats = np_cpu.preactivation_stats(model, x)
    for mean, std in stats.values():
        assert abs(mean) < 1e-4 and std == pytest.approx(1.0, abs=1e-3)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed"


def test_deviation_from_the_standard_normal():
    assert np_cpu.deviation({"a": (0.0, 1.0), "b": (0.0, 1.0)}) == 0.0
    assert np_cpu.deviation({"a": (0.5, math.e), "b": (-0.5, 1 / math.e)}) == pytest.approx(1.5)


def test_learning_rate_scales_linearly_with_the_batch():
    cfg = np_cpu.NormPropConfig(base_lr=0.1, reference_batch=256)
    assert cfg.lr(256) == pytest.approx(0.1)
    assert cfg.lr(64) == pytest.approx(0.025)
    assert cfg.lr(1) == pytest.approx(0.1 / 256)


def test_normprop_input_norm_is_fitted_on_the_training_images():
    x = torch.rand(32, 1, 28, 28) * 0.5 + 0.25
    model = np_cpu.build("NormProp", np_cpu.NormPropConfig(width=4), x)
    norm = model.features.input_norm
    assert float(norm.mean) == pytest.approx(float(x.mean()), abs=1e-6)
    assert float(norm.std) == pytest.approx(float(x.std(unbiased=False)), rel=1e-5)
