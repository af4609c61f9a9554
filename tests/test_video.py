"""Something-Something video recognition on the engine: the temporal shift, TSM's block placement and WS
placement, TSN segment sampling, the V1/V2 label files and the dataset check's errors, top-1/top-5 (a
perfect prediction scores 100 %), and train -> evaluate -> resume end to end on generated V1 frame
folders and V2 WebM videos in the real formats."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from dense_helpers import REPO, checked_row_config, run_cli, train_straight_and_resumed, user_error
from fixtures.video import CLASSES, make_something_v1, make_something_v2
from torch import nn

import normcore
from reproductions.tasks.classification.data import DataError
from reproductions.tasks.video import main as video
from reproductions.tasks.video.something import SomethingSomething, check_something, read_labels, segment_indices
from reproductions.tasks.video.tsm import TemporalShift, build_tsm, temporal_shift


@pytest.fixture(scope="module")
def v1_root(tmp_path_factory) -> Path:
    return make_something_v1(tmp_path_factory.mktemp("sth") / "v1")


@pytest.fixture(scope="module")
def v2_root(tmp_path_factory) -> Path:
    return make_something_v2(tmp_path_factory.mktemp("sth") / "v2")


# ------------------------------------------------------------------------------------------------
# model
# ------------------------------------------------------------------------------------------------
def test_temporal_shift_moves_an_eighth_of_the_channels_each_way():
    t, c = 3, 16
    x = torch.arange(t * c, dtype=torch.float32).view(t, c, 1, 1) + 1  # one clip of 3 frames
    y = temporal_shift(x, num_segments=t, fold_div=8).view(t, c)
    x = x.view(t, c)
    assert torch.equal(y[:2, :2], x[1:, :2]) and (y[2, :2] == 0).all()  # channels 0-1: frame t sees t+1
    assert torch.equal(y[1:, 2:4], x[:2, 2:4]) and (y[0, 2:4] == 0).all()  # channels 2-3: frame t sees t-1
    assert torch.equal(y[:, 4:], x[:, 4:])  # the other 3/4 stay
    with pytest.raises(ValueError, match="not a multiple of num_segments"):
        temporal_shift(torch.zeros(5, 16, 1, 1), 3)


def _model_cfg(**kw) -> dict:
    cfg = dict(video.VIDEO_DEFAULTS["model"])
    cfg.update(kw)
    return cfg


def test_tsm_shifts_every_residual_branch_and_ws_follows_the_conv_choice():
    model = build_tsm(_model_cfg(backbone="resnet50", norm="gn", norm_kwargs={"num_groups": 32}, conv="ws"), 174)
    shifts = [m for m in model.modules() if isinstance(m, TemporalShift)]
    assert len(shifts) == 16 and all(s.fold_div == 8 and s.num_segments == 8 for s in shifts)  # 3+4+6+3 blocks
    assert all(isinstance(s.net, normcore.WSConv2d) for s in shifts)  # the shifted conv is the block's first
    assert all(not isinstance(b.downsample[0], TemporalShift) for b in model.backbone.layer2[:1])  # shortcut unshifted
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert type(model.fc) is nn.Linear and model.fc.out_features == 174 and model.dropout.p == 0.5
    tsn = build_tsm(_model_cfg(backbone="resnet18", shift=False, num_segments=4), 3)
    assert not any(isinstance(m, TemporalShift) for m in tsn.modules())
    clips = torch.randn(2, 4, 3, 32, 32)
    tsn.eval()
    with torch.no_grad():  # (N, V, T, ...) averages the views' scores
        views = tsn(torch.stack([clips, clips.flip(-1)], dim=1))
        assert torch.allclose(views, (tsn(clips) + tsn(clips.flip(-1))) / 2, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------
def test_segment_sampling_is_tsn():
    rng = random.Random(0)
    (clip,) = segment_indices(40, 8, train=True, rng=rng)
    assert [i // 5 for i in clip] == list(range(8))  # one frame in each 5-frame segment
    assert segment_indices(40, 8, train=False) == [[2, 7, 12, 17, 22, 27, 32, 37]]  # segment middles
    assert segment_indices(40, 8, train=False, clips=2)[1] == [0, 5, 10, 15, 20, 25, 30, 35]  # --twice_sample
    short = segment_indices(5, 8, train=True, rng=rng)[0]
    assert len(short) == 8 and short == sorted(short) and max(short) < 5


def test_label_files_of_v1_and_v2(v1_root, v2_root):
    classes, items = read_labels(v1_root, "v1", "train")
    assert classes == list(CLASSES) and items[0] == ("1", 0) and len(items) == 6
    classes2, items2 = read_labels(v2_root, "v2", "validation")
    assert classes2 == list(CLASSES) and [label for _, label in items2] == [0, 1, 2]  # template brackets dropped
    assert check_something(v1_root, "v1") == {"train": 6, "validation": 3}


def test_clips_have_the_paper_shapes(v1_root, v2_root):
    torch.manual_seed(0)
    train = SomethingSomething(v2_root, "v2", "train", train=True, num_segments=4, crop_size=32, scale_size=36)
    clip, label = train[0]
    assert clip.shape == (4, 3, 32, 32) and label == 0
    accurate = SomethingSomething(
        v1_root, "v1", "validation", train=False, num_segments=4, crop_size=32, scale_size=36, clips=2, crops=3
    )
    clip, _ = accurate[1]
    assert clip.shape == (6, 4, 3, 36, 36)  # 2 clips x 3 full-resolution crops


def test_dataset_check_names_what_is_missing(v1_root, v2_root, tmp_path):
    root = tmp_path / "v1"
    shutil.copytree(v1_root, root)
    shutil.rmtree(root / "20bn-something-something-v1" / "2")
    with pytest.raises(DataError, match=r"1 of the 6 train videos .* missing: .*20bn-something-something-v1/2/\*\.jpg"):
        check_something(root, "v1")
    (root / "something-something-v1-validation.csv").unlink()
    with pytest.raises(DataError, match=r"something-something-v1-validation.csv not found.*pass the folder"):
        check_something(root, "v1", ["validation"])
    root2 = tmp_path / "v2"
    shutil.copytree(v2_root, root2)
    (root2 / "20bn-something-something-v2" / "8.webm").write_bytes(b"not a video")
    ds = SomethingSomething(root2, "v2", "validation", train=False, num_segments=4, crop_size=32, scale_size=36)
    with pytest.raises(DataError, match=r"8.webm: cannot decode the video"):
        ds[1]
    entries = json.loads((root2 / "something-something-v2-train.json").read_text())
    entries[0]["template"] = "Juggling [something]"
    (root2 / "something-something-v2-train.json").write_text(json.dumps(entries))
    with pytest.raises(DataError, match=r"entry 0: needs an 'id' and a 'template' listed in"):
        read_labels(root2, "v2", "train")
    with pytest.raises(DataError, match="does not exist"):
        check_something(tmp_path / "nowhere", "v2")


# ------------------------------------------------------------------------------------------------
# metric
# ------------------------------------------------------------------------------------------------
class _Oracle(nn.Module):
    """Scores the label written into each clip's first value (a perfect prediction)."""

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        labels = clips.flatten(1)[:, 0].long()
        return nn.functional.one_hot(labels, 10).float()


def test_perfect_prediction_scores_100_and_top5_by_hand():
    target = torch.tensor([3, 1, 4, 1])
    clips = torch.zeros(4, 2, 8, 3, 4, 4)
    clips[:, 0, 0, 0, 0, 0] = target.float()
    out = video.evaluate_video(_Oracle(), [(clips, target)], torch.device("cpu"))
    assert out["top1_acc"] == 100.0 and out["top5_acc"] == 100.0 and out["val_videos"] == 4

    class Fixed(nn.Module):
        def forward(self, clips: torch.Tensor) -> torch.Tensor:
            return torch.arange(10.0).expand(clips.shape[0], 10)  # ranks classes 9 > 8 > ... > 0

    out = video.evaluate_video(Fixed(), [(clips, torch.tensor([9, 5, 4, 0]))], torch.device("cpu"))
    assert out["top1_acc"] == 25.0 and out["top5_acc"] == 50.0  # 9 is top-1; 9 and 5 are in the top 5


# ------------------------------------------------------------------------------------------------
# end to end
# ------------------------------------------------------------------------------------------------
TINY = {
    "name": "tiny",
    "model": {
        "backbone": "resnet18",
        "norm": "gn",
        "norm_kwargs": {"num_groups": 8},
        "conv": "ws",
        "num_segments": 4,
    },
    "data": {"batch_size": 2, "eval_batch_size": 3, "workers": 0, "crop_size": 24, "scale_size": 28},
    "train": {"log_every": 1, "clip_grad_norm": 20},
    "optim": {"lr": 0.02, "reference_batch": 2, "norm_weight_decay": 0.0, "bias_weight_decay": 0.0},
    "schedule": {"kind": "step", "milestones": [2]},
}


def _run(config: Path, data: Path, out: Path, *extra: str):
    return run_cli(video.main, config, data, out, *extra)


@pytest.mark.slow
def test_train_evaluate_and_resume_exactly_on_webm(v2_root, tmp_path, monkeypatch):
    monkeypatch.setenv("NORMCORE_NO_PROGRESS", "1")
    torch.set_num_threads(1)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "data": {**TINY["data"], "version": "v2"}}))
    straight, resumed, _ = train_straight_and_resumed(
        video.main, config, v2_root, tmp_path, monkeypatch, epochs=2, crash_after=1
    )
    assert 0.0 <= straight["top1_acc"] <= 100.0 and straight["top5_acc"] == 100.0  # 3 classes: top-5 is all
    assert resumed == straight
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["metrics"]["top1_acc"] == straight["top1_acc"] and summary["batch"]["total"] == 2


@pytest.mark.slow
def test_frame_folders_train_and_evaluate_with_clips_and_crops(v1_root, tmp_path, monkeypatch):
    monkeypatch.setenv("NORMCORE_NO_PROGRESS", "1")
    torch.set_num_threads(1)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "eval": {"clips": 2, "crops": 3}}))
    metrics = _run(config, v1_root, tmp_path / "run", "--epochs", "1")
    assert 0.0 <= metrics["top1_acc"] <= 100.0
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["last_epoch"]["val_videos"] == 3


def test_missing_dataset_fails_before_the_run_starts(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    message = user_error(lambda: _run(config, tmp_path / "nowhere", tmp_path / "out"), capsys)
    assert "does not exist" in message and "--data" in message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "path", sorted((REPO / "reproductions").glob("*/configs/video/[!_]*.yaml")), ids=lambda p: p.stem
)
def test_every_video_config_loads_and_names_its_published_row(path):
    cfg = checked_row_config(path, video.VIDEO_DEFAULTS)
    model = cfg["model"]
    assert model["backbone"] == "resnet50" and model["num_segments"] == 8 and model["shift_div"] == 8
    assert cfg["optim"]["lr"] * 8 * cfg["data"]["batch_size"] / cfg["optim"]["reference_batch"] == 0.01
