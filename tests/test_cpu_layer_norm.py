"""The LN paper's CPU-scale experiments (reproductions/layer_norm/cpu.py): Figure 6 (BN vs LN at batch
128 and 4) and the LN-LSTM against the LSTM on row-sequential MNIST."""

from __future__ import annotations

import pytest
import torch

from normcore import BatchNorm
from normcore.models import sequential_mnist_classifier
from reproductions.claims.results import VERDICTS, load_results
from reproductions.layer_norm import cpu as ln_cpu
from reproductions.smallscale.data import Dataset

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_quick_run_trains_and_writes_valid_results_files(tmp_path):
    paths = ln_cpu.run(quick=True, out_dir=str(tmp_path))
    fig6, lstm = load_results(paths[0]), load_results(paths[2])  # both validate against the schema
    assert (fig6["experiment"], lstm["experiment"]) == ("pi_mnist_fig6", "lstm_sequential_mnist")
    for res in (fig6, lstm):
        assert res["scale"] == "quick" and res["seeds"] == [0]
        assert res["verdict"]["status"] in VERDICTS
        assert all(c["verdict"] in VERDICTS and c["rule"] for c in res["comparisons"])
        assert (tmp_path / res["figures"][0]).read_bytes()[:8] == PNG_MAGIC
    for norm in ln_cpu.MLP_NORMS:
        nll = fig6["curves"]["train_nll_batch4"]["series"][norm]["mean"]
        assert nll[-1] < nll[0], f"{norm} at batch 4: training NLL did not fall ({nll})"
    for net in ln_cpu.LSTM_NETS:
        nll = lstm["curves"]["train_nll"]["series"][net]["mean"]
        assert nll[-1] < nll[0], f"{net}: training NLL did not fall ({nll})"
    assert fig6["config"]["bn_unbiased_variance_batch_sizes"] == [4]
    speedup = next(c for c in lstm["comparisons"] if c["published_ref"] == "ln.draw.convergence_speedup")
    assert speedup["published"] == 2  # read from papers/layer_norm/published.yaml


def test_build_mlp_uses_the_unbiased_bn_only_at_the_small_batch():
    cfg = ln_cpu.MLPConfig(hidden=(8, 8))
    kinds = {
        (norm, bs): {(type(m), getattr(m, "correction", None)) for m in ln_cpu.build_mlp(norm, bs, cfg).norms}
        for norm in ln_cpu.MLP_NORMS
        for bs in cfg.batch_sizes
    }
    assert kinds["BN", 4] == {(BatchNorm, 1)}
    assert kinds["BN", 128] == {(BatchNorm, 0)}
    assert len(kinds["LN", 4]) == 1 and kinds["LN", 4] == kinds["LN", 128]
    assert BatchNorm not in {cls for cls, _ in kinds["LN", 4]}


# --------------------------------------------------------------------------------------------------
# the recurrent part
# --------------------------------------------------------------------------------------------------
def _tiny_mnist() -> Dataset:
    x = torch.zeros(8, 784)
    x[:, 300:500] = torch.rand(8, 200)  # blank top rows, as in real digits
    y = torch.arange(8) % 10
    return Dataset(x, y, x[:4].clone(), y[:4].clone(), "toy", "test", "none")


def _max_grad(x: torch.Tensor) -> float:
    torch.manual_seed(0)
    model = sequential_mnist_classifier(hidden_size=16, layer_norm=True)
    torch.nn.functional.cross_entropy(model(x), torch.arange(x.shape[0]) % 10).backward()
    return max(float(p.grad.abs().max()) for p in model.parameters())


def test_standardized_rows_keep_the_ln_lstm_gradient_finite():
    ds = _tiny_mnist()
    x_train, x_test = ln_cpu.standardized_rows(ds)
    assert x_train.shape == (8, 28, 28) and x_test.shape == (4, 28, 28)
    assert float(x_train.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(x_train.std()) == pytest.approx(1.0, abs=1e-5)
    # why: blank rows give LN a constant input, whose Jacobian gain 1/sqrt(eps) compounds through time
    assert not _max_grad(ds.x_train.view(-1, 28, 28)) < 1e6  # huge, or overflowed to inf/NaN
    assert _max_grad(x_train) < 1e3


FAST_NLL = [2.3, 1.0, 0.6, 0.4, 0.3]
SLOW_NLL = [2.3, 1.5, 1.0, 0.7, 0.5]


def _lstm_runs(ln_nll: list[float], plain_nll: list[float]) -> list[dict]:
    steps = [0, 10, 20, 30, 40]
    runs = []
    for seed in (0, 1, 2):
        for net, nll in (("LSTM", plain_nll), ("LN-LSTM", ln_nll)):
            runs.append(
                {"kind": "lstm", "net": net, "seed": seed, "steps": steps, "seconds": [0.0, 1, 2, 3, 4],
                 "train_seconds": 4.0, "train_nll": nll, "test_error": [0.9, 0.5, 0.3, 0.2, 0.1]}
            )  # fmt: skip
    return runs


def test_compare_lstm_speedup_rules():
    cfg = ln_cpu.LSTMConfig(steps=40, eval_every=10)
    faster = ln_cpu.compare_lstm(_lstm_runs(FAST_NLL, SLOW_NLL), [0, 1, 2], cfg)
    steps_cmp, time_cmp = faster["comparisons"]
    assert steps_cmp["verdict"] == time_cmp["verdict"] == "reproduced"
    # the LSTM ends at 0.5; the LN-LSTM is at 0.4 by its 4th evaluation (step 30, 3 s)
    assert faster["metrics"]["steps_ln_lstm_reaches_lstm_final_nll"]["values"] == [30.0] * 3
    assert faster["metrics"]["seconds_ln_lstm_reaches_lstm_final_nll"]["values"] == [3.0] * 3
    assert steps_cmp["ours"]["mean"] == pytest.approx(40 / 30)
    slower = ln_cpu.compare_lstm(_lstm_runs(SLOW_NLL, FAST_NLL), [0, 1, 2], cfg)
    assert [c["verdict"] for c in slower["comparisons"]] == ["not reproduced"] * 2
    assert slower["verdict"]["status"] == "not reproduced"
    assert "never" in slower["verdict"]["summary"]
