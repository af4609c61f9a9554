"""The IN CPU experiment (reproductions/instance_norm/cpu.py) in quick mode, and the stylization losses of
reproductions/tasks/stylization/losses.py, and its photographs (reproductions/smallscale/photographs.py)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from reproductions.claims.results import load_results
from reproductions.smallscale import photographs as ph
from reproductions.tasks.stylization import losses as st

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    from reproductions.instance_norm import cpu

    out = tmp_path_factory.mktemp("instance_norm")
    return out, cpu.run(quick=True, out_dir=str(out))


@pytest.mark.slow
def test_quick_run_writes_valid_results(quick_results):
    out, paths = quick_results
    res = load_results(paths[0])
    assert res["scale"] == "quick" and res["experiment"] == "stylization"
    assert res["config"]["loss_network"]["name"] in ("vgg19", "random_vgg_like")
    assert any(res["config"]["loss_network"]["name"] in note for note in res["notes"])  # says which was used
    assert sorted(res["figures"]) == ["fig2_contrast.png", "fig5_stylization_grid.png", "training_loss.png"]
    for name in res["figures"]:
        assert (out / name).read_bytes()[:8] == PNG


@pytest.mark.slow
def test_quick_run_trains_and_in_is_contrast_invariant(quick_results):
    out, _ = quick_results
    res = json.loads((out / "stylization.json").read_text())
    for norm, s in res["curves"]["train_loss"]["series"].items():
        assert all(math.isfinite(v) for v in s["mean"]), norm
        assert s["mean"][-1] < s["mean"][0], f"{norm}: training loss did not fall: {s['mean']}"
    # IN removes an affine contrast change after the first (reflection-padded) conv: the two outputs agree up
    # to eps; BN (running statistics) does not remove it.
    m = res["metrics"]
    assert m["contrast_distance.in"]["mean"] < 1e-3 < m["contrast_distance.bn"]["mean"]


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
