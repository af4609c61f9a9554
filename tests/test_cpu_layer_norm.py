"""The LN paper's CPU-scale experiments (reproductions/layer_norm/cpu.py): Figure 6 (BN vs LN at batch 128 and 4)
and the LN-LSTM against the LSTM on 112-step pixel sequences, on generated data in Fashion-MNIST's format."""

from __future__ import annotations

import math

import pytest
import torch

from normcore import BatchNorm, FeatureLayerNorm
from reproductions.claims.published import published_setting
from reproductions.claims.results import VERDICTS, load_results
from reproductions.layer_norm import cpu as ln_cpu
from reproductions.smallscale.training import minibatches, seed_everything

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_quick_run_pilots_trains_and_writes_valid_results(tmp_path, fashion_mnist_dir):
    paths = ln_cpu.run(quick=True, out_dir=str(tmp_path), data=str(fashion_mnist_dir))
    fig6, lstm = load_results(paths[0]), load_results(paths[2])  # both validate against the schema
    assert (fig6["experiment"], lstm["experiment"]) == ("pi_mnist_fig6", "lstm_sequential_mnist")
    for res in (fig6, lstm):
        assert res["scale"] == "quick" and res["seeds"] == [0, 1]
        assert res["pilot"]["pilot_seeds"] == list(ln_cpu.QUICK_PILOT_SEEDS) and res["pilot"]["seeds"] == [0, 1]
        assert res["disclosures"] == []
        assert res["verdict"]["status"] in VERDICTS
        for c in res["comparisons"]:
            assert c["verdict"] in VERDICTS and c["test"] == "greater" and c["rule"]
            assert c["paired"]["seeds"] == [0, 1] and len(c["paired"]["d"]) == 2
        assert (tmp_path / res["figures"][0]).read_bytes()[:8] == PNG_MAGIC
    assert [c["effect"] for c in fig6["comparisons"]] == [ln_cpu.CONVERGENCE_EFFECT] * 2 + [ln_cpu.ROBUSTNESS_EFFECT]
    assert fig6["comparisons"][2]["n_eval"] == 400  # the generated test set
    for bs in ln_cpu.QUICK_MLP_CONFIG.batch_sizes:
        for norm in ln_cpu.MLP_NORMS:
            series = fig6["curves"][f"train_nll_batch{bs}"]["series"][norm]
            assert len(series["per_seed"]) == 2
            assert series["mean"][-1] < series["mean"][0], f"{norm} at batch {bs}: training NLL did not fall"
    assert set(lstm["curves"]["train_nll"]["series"]) == set(ln_cpu.LSTM_NETS)
    assert fig6["config"]["bn_unbiased_variance_batch_sizes"] == [4]


def test_protocol_follows_the_papers_text():
    cfg = ln_cpu.MLP_CONFIG
    assert cfg.batch_sizes == tuple(published_setting("layer_norm", "pi_mnist.batch_sizes")["value"])  # (128, 4)
    assert cfg.optimizer == published_setting("layer_norm", "pi_mnist.optimizer")["value"] == "Adam"
    # "All the models were trained using 55000 training data points" (§6.6)
    n_train = 60_000 - round(ln_cpu.VALIDATION_FRACTION * 60_000)
    assert n_train == published_setting("layer_norm", "pi_mnist.train_size")["value"] == 55_000
    # same epochs at both batch sizes (Figure 6's x-axis), the same Adam learning rate for every setting
    assert len(cfg.hidden) == 2 and cfg.lr == ln_cpu.LSTM_CONFIG.lr == 1e-3
    lcfg = ln_cpu.LSTM_CONFIG
    assert 784 // lcfg.pixels_per_step == 112  # the long sequence of the issue: 112 steps of 7 pixels
    assert lcfg.batch_size == published_setting("layer_norm", "handwriting.training")["value"]["batch_size"] == 8
    assert ln_cpu.PILOT_SEEDS and min(ln_cpu.PILOT_SEEDS) > ln_cpu.MAX_SEEDS  # the pilot's seeds are never reused


def test_norm_placement_ln_hidden_only_bn_all_layers_unbiased_at_batch_4():
    cfg = ln_cpu.MLPConfig(hidden=(8, 8))
    ln = ln_cpu.build_mlp("LN", 4, cfg)
    assert sum(isinstance(m, FeatureLayerNorm) for m in ln.modules()) == 2  # not on the softmax layer
    assert not any(isinstance(m, BatchNorm) for m in ln.modules())
    for bs, correction in ((4, 1), (128, 0)):
        bns = [m for m in ln_cpu.build_mlp("BN", bs, cfg).modules() if isinstance(m, BatchNorm)]
        assert len(bns) == 3 and bns[-1].num_features == 10  # hidden layers and the logits ("all layers")
        assert {m.correction for m in bns} == {correction}


def _weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for name, p in model.named_parameters() if "weight" in name and p.dim() == 2]


def test_same_seed_gives_every_setting_the_same_initial_weights_and_data_order():
    mcfg = ln_cpu.MLPConfig(hidden=(16, 16))
    nets = {}
    for norm in ln_cpu.MLP_NORMS:
        for bs in (4, 128):
            seed_everything(3)
            nets[norm, bs] = _weights(ln_cpu.build_mlp(norm, bs, mcfg))
    first = nets["BN", 4]
    assert len(first) == 3 and all(all(torch.equal(a, b) for a, b in zip(first, w)) for w in nets.values())
    lcfg = ln_cpu.LSTMConfig(hidden_size=8)
    lstm = []
    for net in ln_cpu.LSTM_NETS:
        seed_everything(3)
        lstm.append(_weights(ln_cpu.build_lstm(net, lcfg)))
    assert all(torch.equal(a, b) for a, b in zip(*lstm))
    x, y = torch.arange(40.0).view(20, 2), torch.arange(20)
    orders = [torch.cat([yb for _, yb in minibatches(x, y, 4, 10, seed_everything(3))]) for _ in range(2)]
    assert torch.equal(*orders)
    jobs = ln_cpu._jobs([0, 1], None, mcfg, lcfg)
    assert {j["seed"] for j in jobs} == {0, 1} and len(jobs) == 2 * (2 * 2 + 2)


def test_pixel_sequences_are_112_standardized_steps_and_keep_the_ln_lstm_gradient_finite():
    x = torch.zeros(8, 784)
    x[:, 300:500] = torch.rand(8, 200)  # blank chunks, as the background of the images
    mean, std = float(x.mean()), float(x.std())
    seq = ln_cpu.pixel_sequences(x, mean, std, 7)
    assert seq.shape == (8, 112, 7)
    assert float(seq.mean()) == pytest.approx(0.0, abs=1e-5) and float(seq.std()) == pytest.approx(1.0, abs=1e-4)
    torch.manual_seed(0)
    model = ln_cpu.build_lstm("LN-LSTM", ln_cpu.LSTMConfig(hidden_size=16))
    torch.nn.functional.cross_entropy(model(seq), torch.arange(8) % 10).backward()
    assert max(float(p.grad.abs().max()) for p in model.parameters()) < 1e3
    with pytest.raises(ValueError, match="steps of 5"):
        ln_cpu.pixel_sequences(x, mean, std, 5)


def test_log_curve_area_is_the_mean_log_and_nan_when_diverged():
    assert ln_cpu.log_curve_area([1.0, math.e, math.e**2]) == pytest.approx(1.0)
    assert math.isnan(ln_cpu.log_curve_area([1.0, float("nan")]))


def _runs(ln_scale: float, bn_batch4_error: float) -> list[dict]:
    runs = []
    for seed in (0, 1, 2):
        wobble = 0.01 * seed
        for bs in (128, 4):
            for norm in ("BN", "LN"):
                scale = ln_scale if norm == "LN" else 1.0
                err = bn_batch4_error if (norm, bs) == ("BN", 4) else 10.0
                runs.append({"kind": "mlp", "net": norm, "seed": seed, "batch_size": bs,
                             "train_nll": [2.3] + [v * scale + wobble for v in (1.0, 0.5, 0.25)],
                             "test_error": [90.0] + [err + wobble] * 3})  # fmt: skip
        for net in ("LSTM", "LN-LSTM"):
            scale = ln_scale if net == "LN-LSTM" else 1.0
            runs.append({"kind": "lstm", "net": net, "seed": seed, "train_nll": [v * scale for v in (2.0, 1.0)]})
    return runs


def test_claim_values_point_each_difference_the_claims_way():
    cfg = ln_cpu.MLPConfig()
    faster = ln_cpu.claim_values(_runs(0.5, 12.0), [0, 1, 2], cfg)
    for key in ("converge_batch128", "converge_batch4", "lstm_converge"):
        a, b = faster[key]
        assert all(a[s] - b[s] > ln_cpu.CONVERGENCE_EFFECT for s in (0, 1, 2)), key
    bn_rise, ln_rise = faster["robust_batch_size"]
    assert [bn_rise[s] - ln_rise[s] for s in (0, 1, 2)] == pytest.approx([2.0] * 3)
    comps = ln_cpu.comparisons(_runs(0.5, 12.0), [0, 1, 2], cfg, n_test=10_000)
    assert comps["robust_batch_size"]["verdict"] == "reproduced"
    assert comps["robust_batch_size"]["effect_images"] == pytest.approx(50.0)
    slower = ln_cpu.comparisons(_runs(2.0, 10.0), [0, 1, 2], cfg, n_test=10_000)
    assert {slower[k]["verdict"] for k in ("converge_batch4", "lstm_converge")} == {"not reproduced"}


def test_a_diverged_run_counts_as_chance():
    runs = _runs(0.5, 12.0)
    runs[-1]["train_nll"] = [2.0, float("nan")]  # seed 2's LN-LSTM diverged
    comps = ln_cpu.comparisons(runs, [0, 1, 2], ln_cpu.MLPConfig(), n_test=10_000)
    assert comps["lstm_converge"]["diverged_seeds"] == [2]
    assert comps["lstm_converge"]["paired"]["b"][2] == pytest.approx(math.log(math.log(10.0)))


def test_experiment_verdict_is_central_and_not_testable_only_when_every_claim_is():
    nt, rep, no = "not testable at this scale", "reproduced", "not reproduced"
    assert ln_cpu.experiment_verdict([{"verdict": nt}] * 3) == nt
    assert ln_cpu.experiment_verdict([{"verdict": v} for v in (rep, nt, no)]) == "partly reproduced"
    assert ln_cpu.experiment_verdict([{"verdict": v} for v in (nt, no, no)]) == no
    assert ln_cpu.experiment_verdict([{"verdict": no}]) == no
