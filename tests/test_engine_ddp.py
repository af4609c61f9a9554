"""DDP on 2 gloo processes (``torch.distributed.run`` on localhost) against one process with the same
total batch.

* GN has no batch statistics: 2 processes x 2 images give the same updates as 1 process x 4 images.
  They are not bit-identical: DDP averages the two ranks' gradients (an all-reduce, then /2) where the
  single process sums over 4 images at once, so float32 rounding differs by about 1e-7 per step; after
  6 SGD steps the weights agree to better than 1e-5.
* BN normalizes each rank's 2 images separately, so DDP BN differs from single-process BN over 4 images
  *by design* (the GN paper's point); one process with ``--virtual-devices 2`` computes the same per-slice
  statistics and matches DDP to the same 1e-5 (weights and running statistics), while plain single-process
  BN is off by orders of magnitude more.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fixtures.image_folder import make_image_folder, write_config

from reproductions.tasks.classification.main import main

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-5
DRIVER = """
import sys
from reproductions.tasks.classification.main import main
from reproductions.engine.distributed import cleanup, init_distributed
data, out, gn, bn = sys.argv[1:5]
init_distributed("cpu")  # one process group for both runs (main leaves a group it did not create)
main(["--config", gn, "--data", data, "--out", out + "/gn", "--batch-size", "2"], paper="test")
main(["--config", bn, "--data", data, "--out", out + "/bn", "--batch-size", "2"], paper="test")
cleanup()
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _max_diff(a: Path, b: Path) -> float:
    sa = torch.load(a / "checkpoint.pt", weights_only=True)["model"]
    sb = torch.load(b / "checkpoint.pt", weights_only=True)["model"]
    assert sa.keys() == sb.keys()
    return max((sa[k].double() - sb[k].double()).abs().max().item() for k in sa if sa[k].is_floating_point())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One torchrun launch (2 gloo processes) training a GN and a BN model, and the single-process runs."""
    root = tmp_path_factory.mktemp("ddp")
    data = make_image_folder(root / "data", classes=3, train_per_class=8, val_per_class=4)
    overrides = {"train": {"epochs": 1}, "optim": {"lr": 0.01}, "data": {"workers": 0}}
    gn = write_config(root / "gn.yaml", overrides)
    bn = write_config(root / "bn.yaml", {**overrides, "model": {"norm": "bn", "norm_kwargs": {}}})
    (root / "driver.py").write_text(DRIVER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NORMCORE_NO_PROGRESS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1"]
    cmd += [f"--master_port={_free_port()}", str(root / "driver.py"), str(data), str(root / "ddp"), str(gn), str(bn)]
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 process(es)" in done.stdout and "BN statistics batch (BatchNorm): 2 images" in done.stdout
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, cfg, extra in [
            ("gn", gn, ["--batch-size", "4"]),
            ("bn_virtual", bn, ["--batch-size", "2", "--virtual-devices", "2"]),
            ("bn_plain", bn, ["--batch-size", "4"]),
        ]:
            main(["--config", str(cfg), "--data", str(data), "--out", str(root / name), *extra], paper="test")
    finally:
        torch.set_num_threads(threads)
    return root


def test_ddp_gn_matches_one_process_with_the_same_total_batch(runs):
    assert _max_diff(runs / "ddp" / "gn", runs / "gn") < TOLERANCE


def test_ddp_bn_matches_virtual_devices_not_plain_bn(runs):
    virtual = _max_diff(runs / "ddp" / "bn", runs / "bn_virtual")
    plain = _max_diff(runs / "ddp" / "bn", runs / "bn_plain")
    assert virtual < TOLERANCE
    assert plain > 1000 * TOLERANCE


def test_ddp_evaluation_and_logged_loss_cover_all_ranks(runs):
    import json

    for name in ("gn", "bn"):
        record = json.loads((runs / "ddp" / name / "metrics.jsonl").read_text().splitlines()[-1])
        assert record["val_images"] == 12
    ddp = json.loads((runs / "ddp" / "gn" / "metrics.jsonl").read_text())
    single = json.loads((runs / "gn" / "metrics.jsonl").read_text())
    assert ddp["top1_err"] == single["top1_err"]
    # the logged training loss is the mean over both ranks' images, as the single process's
    assert ddp["train_loss"] == pytest.approx(single["train_loss"], rel=1e-5)
