"""The IN CPU experiment (reproductions/instance_norm/cpu.py) in quick mode, its protocol and pairing, the
stylization losses of reproductions/tasks/stylization/losses.py, and its photographs
(reproductions/smallscale/photographs.py)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from reproductions.claims.results import load_results
from reproductions.errors import UserError
from reproductions.instance_norm import cpu
from reproductions.smallscale import photographs as ph
from reproductions.tasks.stylization import losses as st

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("instance_norm")
    return out, cpu.run(quick=True, out_dir=str(out))


@pytest.mark.slow
def test_quick_run_writes_valid_results_with_a_pilot(quick_results):
    out, paths = quick_results
    res = load_results(paths[0])
    assert res["scale"] == "quick" and res["experiment"] == "stylization"
    assert res["config"]["loss_network"]["name"] in ("vgg19", "random_vgg_like")
    assert any(res["config"]["loss_network"]["name"] in note for note in res["notes"])  # says which was used
    assert sorted(res["figures"]) == ["fig2_contrast.png", "fig5_stylization_grid.png", "training_loss.png"]
    for name in res["figures"]:
        assert (out / name).read_bytes()[:8] == PNG
    pilot = res["pilot"]
    assert pilot["pilot_seeds"] == list(cpu.QUICK_PILOT_SEEDS) and pilot["n"] == cpu.QUICK_SEEDS
    assert res["seeds"] == pilot["seeds"] and not set(res["seeds"]) & set(pilot["pilot_seeds"])
    net = res["config"]["loss_network"]["name"]
    assert [c["claim"] for c in pilot["claims"]] == [cpu.claim_text(c, net) for c in cpu.CLAIMS]
    assert all(net in c["claim"] for c in res["comparisons"] if c["measure"] in cpu.LOSS_MEASURES)
    assert res["disclosures"] == cpu.DISCLOSURES
    assert res["dataset"]["n_test"] == len(cpu.HELD_OUT_IMAGES) >= 8


@pytest.mark.slow
def test_quick_run_compares_paired_seeds(quick_results):
    out, _ = quick_results
    res = json.loads((out / "stylization.json").read_text())
    comps = {c["measure"]: c for c in res["comparisons"]}
    assert list(comps) == [c.key for c in cpu.CLAIMS]  # the content term is descriptive, not a claim
    for claim in cpu.CLAIMS:
        c = comps[claim.key]
        assert (c["test"], c["effect"], c["labels"], c["central"]) == (
            "greater",
            claim.effect,
            ["BN", "IN"],
            claim.central,
        )
        assert c["paired"]["seeds"] == res["seeds"]
        assert c["paired"]["a"] == res["metrics"][f"{claim.key}.bn"]["values"]
        d = [a - b for a, b in zip(c["paired"]["a"], c["paired"]["b"])]
        assert c["paired"]["d"] == pytest.approx(d)
    assert "content_loss.bn" in res["metrics"]
    for norm, s in res["curves"]["train_loss"]["series"].items():
        assert len(s["per_seed"]) == len(res["seeds"]), norm
        assert all(math.isfinite(v) for v in s["mean"]), norm
        assert s["mean"][-1] < s["mean"][0], f"{norm}: training loss did not fall: {s['mean']}"
    # IN removes an affine contrast change after the first (reflection-padded) conv, up to its eps; BN
    # (running statistics) passes it on.
    m = res["metrics"]
    assert m["contrast_transfer.in"]["mean"] < 0.1 * m["contrast_transfer.bn"]["mean"]
    assert m["contrast_deviation.in"]["mean"] < 1e-2


@pytest.mark.slow
def test_given_seeds_skip_the_pilot(tmp_path):
    res = load_results(cpu.run(quick=True, seeds=[5, 6], out_dir=str(tmp_path))[0])
    assert res["pilot"] == {"skipped": "--seeds given"} and res["seeds"] == [5, 6]


def test_data_flag_is_refused():
    with pytest.raises(UserError, match=r"skimage\.data"):
        cpu.run(quick=True, data="/somewhere")


def test_protocol_follows_the_official_code():
    s = cpu.SCHEDULE
    # texture_nets train.lua: Adam, LR 1e-3, TV weight 0; its README's Johnson recipe: batch 4
    assert (s.lr, s.tv_weight, s.batch) == (1e-3, 0.0, 4)
    # johnson.lua: 5 residual blocks, widths 32/64/128 (here a quarter of them)
    assert s.num_residual == 5 and s.width_mult == 0.25
    model, _ = cpu.build_generator("in", 0, s)
    convs = [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[:3] == [8, 16, 32] and convs[-1] == 3
    assert st.STYLE_LAYERS == ("relu1_1", "relu2_1", "relu3_1", "relu4_1") and st.CONTENT_LAYERS == ("relu4_2",)


def test_held_out_photographs_are_never_trained_on():
    train, held = set(cpu.TRAIN_IMAGES), set(cpu.HELD_OUT_IMAGES)
    assert len(held) >= 8 and not train & held and cpu.STYLE_IMAGE not in train | held
    assert ph.alternate_split(ph.NATURAL_PHOTOGRAPHS) == (cpu.TRAIN_IMAGES, cpu.HELD_OUT_IMAGES)
    assert ph.alternate_split(["d", "b", "a", "c"]) == (("a", "c"), ("b", "d"))


def test_seeds_and_effects_fixed_up_front():
    assert cpu.MAX_SEEDS >= 5 and all(c.effect > 0 for c in cpu.CLAIMS)
    run_seeds = range(cpu.FIRST_SEED, cpu.FIRST_SEED + cpu.MAX_SEEDS)
    assert not set(cpu.PILOT_SEEDS) & set(run_seeds) and len(cpu.PILOT_SEEDS) >= 3
    assert sorted(c.key for c in cpu.CLAIMS if c.central) == ["contrast_transfer", "total_loss"]


def test_same_seed_gives_bn_and_in_the_same_weights_and_crops():
    data = cpu.load_data()
    (bn, g_bn), (inn, g_in) = (cpu.build_generator(n, 3, cpu.SCHEDULE) for n in cpu.NORMS)
    params_bn, params_in = dict(bn.named_parameters()), dict(inn.named_parameters())
    assert params_bn.keys() == params_in.keys()
    assert all(torch.equal(params_bn[k], params_in[k]) for k in params_bn)
    assert torch.equal(ph.random_crops(data.train, 64, 4, g_bn), ph.random_crops(data.train, 64, 4, g_in))
    _, g_other = cpu.build_generator("bn", 4, cpu.SCHEDULE)
    assert not torch.equal(ph.random_crops(data.train, 64, 4, g_other), ph.random_crops(data.train, 64, 4, g_bn))


def test_contrast_measures_of_the_identity():
    x = torch.rand(3, 3, 16, 16)
    m = cpu.contrast_measures(torch.nn.Identity(), x)  # the output is the input: all of its change passes
    assert m["contrast_transfer"] == pytest.approx(1.0) and m["contrast_ratio"] == pytest.approx(0.5)
    assert m["contrast_deviation"] == pytest.approx(0.5)


def test_plan_takes_fresh_seeds_within_the_budget():
    def runs(norm, values):
        return [cpu.StylizationRun(norm, s, v, v, 0.0, v, v, 1.0, [], None, 0.0, 0.0) for s, v in values.items()]

    pilot = {"bn": runs("bn", {1000: 1.0, 1001: 0.5, 1002: 0.9}), "in": runs("in", {1000: 0.2, 1001: 0.4, 1002: 0.1})}
    plan = cpu.plan(pilot, quick=False, loss_network="random_vgg_like")
    assert 5 <= plan["n"] <= cpu.MAX_SEEDS and plan["seeds"][0] == cpu.FIRST_SEED
    assert plan["values"]["total_loss"]["BN"] == [1.0, 0.5, 0.9]


def test_gram_matrix_and_losses():
    f = torch.tensor([[1.0, 2.0], [0.0, 1.0]]).view(1, 2, 1, 2)  # C=2, H=1, W=2
    g = st.gram_matrix(f)
    torch.testing.assert_close(g, torch.tensor([[[5.0, 2.0], [2.0, 1.0]]]) / 4)
    feats = {"a": f}
    assert float(st.style_loss(feats, {"a": g}, layers=("a",))) == 0.0
    assert float(st.style_loss(feats, {"a": torch.zeros(1, 2, 2)}, layers=("a",))) == pytest.approx(
        float(g.square().sum())
    )
    assert float(st.content_loss(feats, {"a": f + 1}, layers=("a",))) == pytest.approx(1.0)
    x = torch.zeros(1, 1, 3, 3)
    x[..., 1, 1] = 1.0
    # vertical: 2 nonzero differences of 6; horizontal: same.
    assert float(st.total_variation(x)) == pytest.approx(2 / 6 + 2 / 6)
    with pytest.raises(ValueError, match="N, C, H, W"):
        st.gram_matrix(torch.zeros(2, 3))


def test_random_loss_network_is_fixed_and_named_like_vgg():
    a, b = st.random_loss_network(seed=0), st.random_loss_network(seed=0)
    x = torch.rand(2, 3, 32, 32)
    fa, fb = a(x), b(x)
    assert set(fa) == set(st.STYLE_LAYERS) | set(st.CONTENT_LAYERS)
    assert all(torch.equal(fa[k], fb[k]) for k in fa)
    assert [fa[k].shape[-1] for k in st.STYLE_LAYERS] == [32, 16, 8, 4]  # four scales
    assert not any(p.requires_grad for p in a.parameters())
    a.train()
    assert not a.training  # stays frozen


def test_loss_network_never_downloads(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert st.vgg19_weights_path() is None
    with pytest.raises(FileNotFoundError, match="Nothing is downloaded"):
        st.vgg19_loss_network()
    net = st.loss_network()
    assert net.description["name"] == "random_vgg_like" and "not found" in net.description["why"]


def test_photographs_and_crops():
    cam = ph.load_photograph("camera")  # grayscale -> RGB
    assert cam.image.shape[0] == 3 and torch.equal(cam.image[0], cam.image[1])
    small = st.resize_short_side(cam.image, 64)
    assert min(small.shape[-2:]) == 64 and float(small.min()) >= 0.0 and float(small.max()) <= 1.0
    crops = ph.random_crops([small], 32, 5, torch.Generator().manual_seed(0))
    assert crops.shape == (5, 3, 32, 32)
    with pytest.raises(ValueError, match="no image"):
        ph.load_photograph("not_an_image")
    for name in ph.NATURAL_PHOTOGRAPHS:  # every one loads without a download and crops at the eval size
        assert ph.center_crop(cpu._prepared(name), cpu.EVAL_SIZE).shape == (3, cpu.EVAL_SIZE, cpu.EVAL_SIZE)
