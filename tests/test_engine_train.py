"""End-to-end runs of the classification engine on a generated ImageFolder dataset (real JPEG loading,
real transforms, DataLoader workers): train and evaluate, kill and resume bit-identically, gradient
accumulation.

Every run uses one intra-op thread, in this process and in subprocesses alike, so that floating-point
results do not depend on the thread count and "bit-identical" is a fair demand."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from fixtures.image_folder import make_image_folder, write_config

from reproductions.tasks.classification.main import main

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "NORMCORE_NO_PROGRESS": "1", "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("data"), classes=3, train_per_class=8, val_per_class=4)


@pytest.fixture
def one_thread(monkeypatch):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("NORMCORE_NO_PROGRESS", "1")
    yield
    torch.set_num_threads(threads)


def _run(config: Path, data: Path, out: Path, *extra: str) -> dict:
    return main(["--config", str(config), "--data", str(data), "--out", str(out), *extra], paper="test")


def _tensors(path: Path, key: str = "model") -> dict[str, torch.Tensor]:
    return torch.load(path / "checkpoint.pt", weights_only=True)[key]


def test_train_two_epochs_and_evaluate(tmp_path, data, one_thread):
    config = write_config(tmp_path / "c.yaml", {"published": {"value": 1.0, "metric": "top1_err"}})
    metrics = _run(config, data, tmp_path / "run")
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2]
    assert all(r["val_images"] == 12 and 0 <= r["top1_err"] <= 100 for r in history)
    assert history[1]["step"] == 2 * 6 and history[1]["lr"] == pytest.approx(0.005)  # /10 after epoch 1
    assert history[1]["train_loss"] < history[0]["train_loss"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["metrics"] == metrics
    assert metrics["top1_err_median_last5"] == pytest.approx(statistics.median(r["top1_err"] for r in history))
    assert summary["batch"]["total"] == 4 and summary["published"]["value"] == 1.0
    assert summary["manifest"]["source_hash"] and (tmp_path / "run" / "manifest.json").is_file()
    assert "epoch 2/2 step 6/6" in (tmp_path / "run" / "log.txt").read_text()
    # --eval-only on the checkpoint gives the last epoch's numbers again
    again = _run(config, data, tmp_path / "run", "--resume", str(tmp_path / "run"), "--eval-only")
    assert again["top1_err"] == history[-1]["top1_err"]


def test_kill_and_resume_is_bit_identical(tmp_path, data, one_thread):
    config = write_config(tmp_path / "c.yaml", {"train": {"epochs": 3}, "schedule": {"milestones": [2]}})
    _run(config, data, tmp_path / "reference")
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "reproductions.group_norm.train_imagenet", "--config", str(config)]
    proc = subprocess.Popen([*cmd, "--data", str(data), "--out", str(killed)], env=ENV, cwd=REPO)
    deadline = time.time() + 300
    while not (killed / "checkpoint.pt").exists():
        assert proc.poll() is None, "the run ended before writing its first checkpoint"
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert torch.load(killed / "checkpoint.pt", weights_only=True)["epoch"] < 3  # killed mid-run
    _run(config, data, killed, "--resume", "auto")
    for key in ("model", "optimizer"):
        ref, res = _tensors(tmp_path / "reference", key), _tensors(killed, key)
        flat_ref, flat_res = _flatten(ref), _flatten(res)
        assert flat_ref.keys() == flat_res.keys()
        for name, tensor in flat_ref.items():
            assert torch.equal(tensor, flat_res[name]), f"{key}: {name} differs after resume"
    lines = [json.loads(x) for x in (killed / "metrics.jsonl").read_text().splitlines()]
    ref_lines = [json.loads(x) for x in (tmp_path / "reference" / "metrics.jsonl").read_text().splitlines()]
    timing = ("epoch_seconds", "images_per_second")
    assert [{k: v for k, v in r.items() if k not in timing} for r in lines] == [
        {k: v for k, v in r.items() if k not in timing} for r in ref_lines
    ]


def _flatten(obj, prefix: str = "") -> dict[str, torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    out: dict[str, torch.Tensor] = {}
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else []
    for key, value in items:
        out.update(_flatten(value, f"{prefix}.{key}"))
    return out


def test_gradient_accumulation_matches_the_large_batch_for_gn(tmp_path, data, one_thread):
    """GN has no batch statistics, so 2 micro-batches of 2 give the gradient of one batch of 4 (the WS
    repo's "batch 256, iteration size 1 == batch 1, iteration size 256"), up to float32 rounding of the
    different summation order: a few 1e-7 per step, here < 1e-5 after 6 steps."""
    config = write_config(tmp_path / "c.yaml", {"train": {"epochs": 1}, "optim": {"lr": 0.01}})
    _run(config, data, tmp_path / "large")
    _run(config, data, tmp_path / "accum", "--batch-size", "2", "--accum-steps", "2")
    large, accum = _tensors(tmp_path / "large"), _tensors(tmp_path / "accum")
    diff = max((large[k] - accum[k]).abs().max().item() for k in large if large[k].is_floating_point())
    assert diff < 1e-5
    assert torch.load(tmp_path / "accum" / "checkpoint.pt", weights_only=True)["global_step"] == 6
