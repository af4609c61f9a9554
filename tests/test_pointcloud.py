"""ModelNet40 point-cloud classification on the engine: kNN and EdgeConv features by hand, WS on the
convs and FC layers the official code standardizes, the HDF5 reader and its errors, the augmentation,
overall and mean-class accuracy (a perfect prediction scores 100 %), and train -> evaluate -> resume end
to end on generated HDF5 files of points sampled from simple solids."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from dense_helpers import REPO, checked_row_config, run_cli, train_straight_and_resumed, user_error
from fixtures.pointcloud import SOLIDS, make_modelnet40
from torch import nn

import normcore
from reproductions.tasks.classification.data import DataError
from reproductions.tasks.pointcloud import main as pc
from reproductions.tasks.pointcloud.dgcnn import DGCNN, WSLinear, edge_features, knn
from reproductions.tasks.pointcloud.modelnet import ModelNet40, augment, read_split


@pytest.fixture(scope="module")
def modelnet(tmp_path_factory) -> Path:
    return make_modelnet40(tmp_path_factory.mktemp("mn") / "modelnet40_ply_hdf5_2048", points=128)


# ------------------------------------------------------------------------------------------------
# model
# ------------------------------------------------------------------------------------------------
def test_knn_and_edge_features_by_hand():
    x = torch.tensor([[[0.0, 1.0, 3.0, 10.0]]])  # (B=1, C=1, N=4) points on a line
    idx = knn(x, 2)
    assert idx[0].tolist() == [[0, 1], [1, 0], [2, 1], [3, 2]]  # the point itself, then its nearest
    edges = edge_features(x, idx)  # (1, 2, 4, 2): [x_i, x_j - x_i]
    assert edges[0, 0].tolist() == [[0, 0], [1, 1], [3, 3], [10, 10]]
    assert edges[0, 1].tolist() == [[0, 1], [0, -1], [0, -2], [0, -7]]
    points = torch.randn(2, 64, 200)  # under bf16 autocast the neighbours are still found in float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(knn(points, 20), knn(points.double(), 20))


def test_ws_on_every_normalized_conv_and_fc_as_the_official_code():
    model = DGCNN(40, norm="gn", norm_kwargs={"num_groups": 16}, ws=True)
    kinds = [type(m) for m in model.modules()]
    assert kinds.count(normcore.WSConv2d) == 6  # 2 in the transform net + 4 EdgeConvs
    assert kinds.count(normcore.WSConv1d) == 2  # transform conv3 and the 1024-d aggregation
    assert kinds.count(WSLinear) == 4 and kinds.count(nn.Linear) == 2  # the 3x3 map and the classifier stay plain
    assert sum(k.__name__ == "GroupNorm" for k in kinds) == 12  # 5 in the transform net, 4 EdgeConvs, 1 + 2
    assert not any(issubclass(k, nn.modules.batchnorm._BatchNorm) for k in kinds)
    layer = WSLinear(8, 3, variant="official_tf")
    w = layer.weight - layer.weight.mean(dim=1, keepdim=True)
    w = w / (w.std(dim=1, unbiased=False, keepdim=True) + 1e-5)  # tf_util.fully_connected: biased std, eps outside
    x = torch.randn(5, 8)
    assert torch.allclose(layer(x), x @ w.T + layer.bias, atol=1e-5)
    plain = DGCNN(40, norm="bn", ws=False, transform_net=False)
    assert not any(isinstance(m, (WSLinear, normcore.WSConv2d, normcore.WSConv1d)) for m in plain.modules())
    assert plain(torch.randn(2, 3, 32)).shape == (2, 40)


def test_transform_net_starts_as_the_identity():
    model = DGCNN(4, norm="gn", norm_kwargs={"num_groups": 16}, ws=True, emb_dims=32).eval()
    x = torch.randn(2, 3, 24)
    assert torch.allclose(model.transform_net(x), torch.eye(3).expand(2, 3, 3))


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------
def test_reads_the_release_format(modelnet):
    points, labels, classes = read_split(modelnet, "train")
    assert points.shape == (12, 128, 3) and points.dtype == np.float32 and classes == list(SOLIDS)
    assert labels.tolist()[:4] == [0, 1, 2, 3]
    assert np.linalg.norm(points, axis=2).max() <= 1.0 + 1e-5
    test = ModelNet40(modelnet, "test", train=False, num_points=64)
    first, _ = test[0]
    assert first.shape == (3, 64) and torch.equal(first, test[0][0])  # test shapes: first 64 points, no augmentation
    assert torch.equal(first, torch.from_numpy(read_split(modelnet, "test")[0][0, :64].T.copy()))


def test_augmentation_moves_points_within_the_official_ranges():
    rng = np.random.default_rng(0)
    points = np.random.default_rng(1).uniform(-1, 1, (256, 3)).astype(np.float32)
    out = augment(points, rng)
    assert out.shape == points.shape and out.dtype == np.float32 and not np.allclose(out, points)
    radius = np.linalg.norm(points - points.mean(0), axis=1).max()
    assert np.linalg.norm(out - out.mean(0), axis=1).max() <= 1.25 * radius + 0.1  # scale <= 1.25, jitter <= 0.05


def test_bad_data_is_named_with_the_fix(modelnet, tmp_path):
    root = tmp_path / "mn"
    shutil.copytree(modelnet, root)
    (root / "ply_data_train1.h5").unlink()
    with pytest.raises(
        DataError, match=r"ply_data_train1.h5 listed in train_files.txt is missing.*modelnet40_ply_hdf5_2048.zip"
    ):
        read_split(root, "train")
    with h5py.File(root / "ply_data_train1.h5", "w") as h5:
        h5.create_dataset("points", data=np.zeros((2, 8, 3), np.float32))
    with pytest.raises(DataError, match=r"needs the datasets 'data' and 'label', has \['points'\]"):
        read_split(root, "train")
    (root / "shape_names.txt").unlink()
    with pytest.raises(DataError, match=r"shape_names\.txt not found"):
        read_split(root, "test")
    with pytest.raises(DataError, match="does not exist"):
        read_split(tmp_path / "nowhere", "test")


# ------------------------------------------------------------------------------------------------
# metric
# ------------------------------------------------------------------------------------------------
def test_perfect_prediction_scores_100_and_mean_class_accuracy_by_hand():
    target = torch.tensor([0, 0, 0, 1, 2, 2])

    class Oracle(nn.Module):
        def forward(self, points: torch.Tensor) -> torch.Tensor:
            return nn.functional.one_hot(points[:, 0, 0].long(), 3).float()

    points = torch.zeros(6, 3, 5)
    points[:, 0, 0] = target.float()
    out = pc.evaluate_pointcloud(Oracle(), [(points, target)], torch.device("cpu"), 3)
    assert out["overall_acc"] == 100.0 and out["mean_class_acc"] == 100.0 and out["test_shapes"] == 6
    # class 0: 3 of 3 right, class 1: 0 of 1, class 2: 1 of 2 -> overall 4/6, mean class (1 + 0 + 0.5) / 3
    acc = pc.accuracy_from_counts(torch.tensor([3.0, 0.0, 1.0, 0.0]), torch.tensor([3.0, 1.0, 2.0, 0.0]))
    assert acc["overall_acc"] == pytest.approx(400 / 6) and acc["mean_class_acc"] == pytest.approx(50.0)


# ------------------------------------------------------------------------------------------------
# end to end
# ------------------------------------------------------------------------------------------------
TINY = {
    "name": "tiny",
    "model": {"k": 4, "norm": "gn", "norm_kwargs": {"num_groups": 16}, "ws": True, "emb_dims": 32},
    "data": {"num_points": 32, "batch_size": 4, "eval_batch_size": 8, "workers": 0},
    "train": {"log_every": 1},
    "optim": {"name": "adam", "lr": 0.001, "reference_batch": None, "weight_decay": 0.0},
    "schedule": {"kind": "exponential", "gamma": 0.7, "decay_every": 2, "decay_unit": "step", "milestones": []},
}


def _run(config: Path, data: Path, out: Path, *extra: str):
    return run_cli(pc.main, config, data, out, *extra)


@pytest.mark.slow
def test_train_evaluate_and_resume_exactly(modelnet, tmp_path, monkeypatch):
    monkeypatch.setenv("NORMCORE_NO_PROGRESS", "1")
    torch.set_num_threads(1)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    straight, resumed, _ = train_straight_and_resumed(
        pc.main, config, modelnet, tmp_path, monkeypatch, epochs=3, crash_after=2
    )
    assert 0.0 <= straight["overall_acc"] <= 100.0 and 0.0 <= straight["mean_class_acc"] <= 100.0
    assert resumed == straight
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["metrics"]["overall_acc"] == straight["overall_acc"] and summary["last_epoch"]["test_shapes"] == 8


def test_missing_dataset_fails_before_the_run_starts(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    message = user_error(lambda: _run(config, tmp_path / "nowhere", tmp_path / "out"), capsys)
    assert "does not exist" in message and "--data" in message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "path", sorted((REPO / "reproductions").glob("*/configs/pointcloud/[!_]*.yaml")), ids=lambda p: p.stem
)
def test_every_pointcloud_config_loads_and_names_its_published_row(path):
    cfg = checked_row_config(path, pc.POINTCLOUD_DEFAULTS)
    model = cfg["model"]
    assert model["k"] == 20 and cfg["data"]["num_points"] == 1024 and model["ws"] == path.stem.endswith("_ws")
    build = pc.build_dgcnn(model, 40)
    assert sum(isinstance(m, WSLinear) for m in build.modules()) == (4 if model["ws"] else 0)
