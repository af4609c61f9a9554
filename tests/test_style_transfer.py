"""Style transfer on the engine: the VGG-19 loss network (layer names, loading a torchvision state_dict,
the error when it is absent), the random-weight fallback and its labels, train -> preview grids ->
resume, and the stylize command, on a small generated folder of content images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from dense_helpers import REPO, check_published, crash_after_epoch
from PIL import Image
from torchvision.models import vgg as tv_vgg

from reproductions.engine.cli import config_from_args, engine_parser
from reproductions.tasks.classification.data import DataError
from reproductions.tasks.stylization import main as sty
from reproductions.tasks.stylization.losses import VGG19_LAYERS


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> tuple[Path, Path]:
    """A folder of 5 content images (in a sub-folder, as COCO's are not) and a striped style image."""
    root = tmp_path_factory.mktemp("style")
    rng = np.random.default_rng(0)
    (root / "content" / "sub").mkdir(parents=True)
    for i in range(5):
        pixels = (rng.random((40, 52, 3)) * 255).astype(np.uint8)
        pixels[:, : 10 * (i + 1)] = (200, 40 * i, 40)
        Image.fromarray(pixels).save(root / "content" / ("sub" if i % 2 else "") / f"c{i}.jpg")
    style = np.zeros((48, 48, 3), np.uint8)
    style[::4] = (250, 220, 40)
    Image.fromarray(style).save(root / "style.png")
    return root / "content", root / "style.png"


def test_vgg19_layer_names_follow_caffe_vgg():
    index = sty.vgg19_layer_indices()
    for name, i in VGG19_LAYERS.items():  # agrees with the CPU-scale experiment's table
        assert index[name] == i
    assert index["relu1_2"] == 3 and index["relu3_2"] == 13 and index["relu5_4"] == 35
    body = tv_vgg.make_layers(tv_vgg.cfgs["E"])
    assert all(isinstance(body[i], torch.nn.ReLU) for n, i in index.items() if n.startswith("relu"))


def test_missing_vgg_weights_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setattr(sty, "vgg19_weights_path", lambda: None)
    loss = dict(sty.STYLIZATION_DEFAULTS["loss"])
    with pytest.raises(FileNotFoundError, match=r"(?s)--vgg-weights PATH.*IMAGENET1K_V1.*--loss-network random") as err:
        sty.build_loss_network(loss)
    assert "never downloaded" in str(err.value)
    loss["vgg_weights"] = str(tmp_path / "absent.pth")
    with pytest.raises(FileNotFoundError, match=r"absent\.pth not found"):
        sty.build_loss_network(loss)
    torch.save({"classifier.0.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    loss["vgg_weights"] = str(tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="not a torchvision vgg19 state_dict"):
        sty.build_loss_network(loss)


@pytest.mark.slow
def test_vgg19_loads_from_a_torchvision_state_dict(tmp_path):
    body = tv_vgg.make_layers(tv_vgg.cfgs["E"])
    torch.save({f"features.{k}": v for k, v in body.state_dict().items()}, tmp_path / "vgg19.pth")
    loss = dict(sty.STYLIZATION_DEFAULTS["loss"], vgg_weights=str(tmp_path / "vgg19.pth"))
    loss["style_layers"] = ["relu1_2", "relu2_2", "relu3_2", "relu4_2"]  # the README "works for me" set
    net = sty.build_loss_network(loss)
    assert net.description["name"] == "vgg19"
    assert torch.equal(net.body[0].weight, body[0].weight)
    x = torch.rand(1, 3, 32, 32)
    feats = net(x)
    assert set(feats) == {"relu4_2", "relu1_2", "relu2_2", "relu3_2"}
    assert torch.allclose(feats["relu1_2"], body[:4]((x - net.mean) / net.std))


def test_random_network_is_labelled_and_rejects_layers_it_lacks():
    loss = dict(sty.STYLIZATION_DEFAULTS["loss"], network="random")
    net = sty.build_loss_network(loss)
    assert sty.RANDOM_LABEL in net.description["label"] and "not the paper" in net.description["label"]
    loss["style_layers"] = ["relu1_2"]
    with pytest.raises(ValueError, match="random loss network has layers"):
        sty.build_loss_network(loss)


def test_content_images_are_drawn_and_cropped(images, tmp_path):
    files = sty._image_files(images[0])
    assert len(files) == 5  # found recursively
    ds = sty.ContentImages(files, 32, length=7)
    torch.manual_seed(0)
    assert len(ds) == 7 and ds[3].shape == (3, 32, 32)
    with pytest.raises(DataError, match="holds no images"):
        sty._image_files(tmp_path)


TINY = {
    "_base_": str(REPO / "reproductions/instance_norm/configs/style/johnson_in.yaml"),
    "model": {"kwargs": {"width_mult": 0.25, "num_residual": 1}},
    "data": {
        "image_size": 32,
        "style_size": 32,
        "batch_size": 2,
        "images_per_epoch": 4,
        "preview_images": 2,
        "workers": 0,
    },
    "loss": {"random_widths": [8, 8, 16, 16], "style_weight": 5.0},
    "train": {"log_every": 1},
    "optim": {"lr": 0.01},
}


@pytest.mark.slow
def test_train_preview_resume_and_stylize(images, tmp_path, monkeypatch):
    monkeypatch.setenv("NORMCORE_NO_PROGRESS", "1")
    torch.set_num_threads(1)
    content, style = images
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))

    def run(out: str, *extra: str):
        args = ["--config", str(config), "--data", str(content), "--style", str(style), "--out", str(tmp_path / out)]
        return sty.main_train([*args, "--loss-network", "random", "--device", "cpu", "--epochs", "3", *extra])

    straight = run("a")
    with crash_after_epoch(monkeypatch, 2):
        run("b")
    resumed = run("b", "--resume", "auto")
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert resumed == straight
    losses = [r["train_loss"] for r in a["history"]]
    assert losses[-1] < losses[0]  # the generator learns the style in 6 steps
    # every output says that the fallback loss network was used
    grids = sorted((tmp_path / "a" / "samples").glob("*.png"))
    assert [g.name for g in grids] == [f"epoch00{i}_{sty.RANDOM_LABEL}.png" for i in (1, 2, 3)]
    with Image.open(grids[-1]) as png:
        assert json.loads(png.text["normcore-stylization"])["name"] == "random_vgg_like"
        assert png.size == (2 * 32 + 3 * 2, 2 * 32 + 3 * 2)  # 2 previews x (content, stylized), padding 2
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["metrics"]["loss_network"]["name"] == "random_vgg_like"
    assert summary["name"].endswith(sty.RANDOM_LABEL)

    written = sty.main_stylize(
        ["--checkpoint", str(tmp_path / "a"), "--input", str(content), "--out", str(tmp_path / "o")]
    )
    assert len(written) == 6 and all(sty.RANDOM_LABEL in p.name for p in written)
    with Image.open(tmp_path / "o" / f"c0_stylized_{sty.RANDOM_LABEL}.png") as png:
        assert png.size == (52, 40)  # the generator keeps the size (cropped to a multiple of 4: 40x52)


def test_style_configs_load_and_follow_texture_nets():
    paths = sorted((REPO / "reproductions/instance_norm/configs/style").glob("[!_]*.yaml"))
    assert {p.stem for p in paths} >= {
        "pyramid_in",
        "pyramid_bn",
        "johnson_in",
        "johnson_bn",
        "works_for_me_johnson_in",
    }
    for path in paths:
        cfg = config_from_args(engine_parser("x").parse_args(["--config", str(path)]), sty.STYLIZATION_DEFAULTS)
        check_published(cfg, "instance_norm")
        assert cfg["loss"]["content_layers"] == ["relu4_2"]
        if path.stem.startswith("works_for_me"):
            assert cfg["loss"]["style_layers"] == ["relu1_2", "relu2_2", "relu3_2", "relu4_2"]
            assert (cfg["data"]["image_size"], cfg["data"]["style_size"], cfg["data"]["batch_size"]) == (512, 600, 4)
            assert cfg["optim"]["lr"] == 0.01 and cfg["loss"]["style_weight"] == 10.0
        else:
            assert cfg["loss"]["style_layers"] == ["relu1_1", "relu2_1", "relu3_1", "relu4_1"]
            assert cfg["optim"]["name"] == "adam" and cfg["optim"]["lr"] == 0.001 and cfg["data"]["batch_size"] == 1
        sty.build_generator(cfg["model"])  # every arch/norm builds


def test_stylize_with_a_missing_checkpoint_names_its_own_flag(tmp_path, capsys):
    """Issue 12: the error named --resume, a flag that stylize does not have, under a traceback."""
    (tmp_path / "run").mkdir()  # a run folder without its checkpoint
    with pytest.raises(SystemExit) as exit_:
        sty.main_stylize(["--checkpoint", str(tmp_path / "run"), "--input", str(tmp_path), "--out", str(tmp_path)])
    err = " ".join(capsys.readouterr().err.split())
    assert exit_.value.code == 2 and err.startswith("error: --checkpoint ") and "Traceback" not in err
    assert "--resume" not in err and str(tmp_path / "run" / "checkpoint.pt") in err


def test_missing_vgg_weights_are_a_user_error_of_train_style(images, tmp_path, capsys, monkeypatch):
    """Issue 12, item 9: the most likely first error of train_style (no VGG-19 file) was a traceback."""
    monkeypatch.setattr(sty, "vgg19_weights_path", lambda: None)
    content, style = images
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"name": "t", "data": {"workers": 0}}))
    argv = ["--config", str(config), "--data", str(content), "--style", str(style), "--out", str(tmp_path / "r")]
    with pytest.raises(SystemExit) as exit_:
        sty.main_train([*argv, "--device", "cpu"])
    err = " ".join(capsys.readouterr().err.split())
    assert exit_.value.code == 2 and err.startswith("error: ") and "Traceback" not in err
    assert "--vgg-weights PATH" in err and "--loss-network random" in err
    assert not (tmp_path / "r").exists()  # refused before the run folder was made
