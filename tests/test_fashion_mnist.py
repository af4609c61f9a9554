"""The Fashion-MNIST loader on tiny IDX files written in the release's format (gzipped and decompressed) in
temporary folders: loading, the stratified validation split, the checks that name a wrong or truncated
file, the missing-data message, and the installer (apt-get mocked). None needs the Debian package."""

from __future__ import annotations

import gzip
import hashlib
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import reproductions.smallscale.fashion_mnist as fm
from reproductions.errors import UserError

N_TRAIN, N_TEST, SIDE = 40, 20, 4


def _idx_bytes(arr: np.ndarray) -> bytes:
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    return struct.pack(">I", (0x08 << 8) | arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes()


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (N_TRAIN, SIDE, SIDE), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(N_TRAIN, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (N_TEST, SIDE, SIDE), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(N_TEST, dtype=np.uint8) * 3) % 10,
    }


def _write(folder: Path, gz: bool = True) -> tuple[dict[str, fm.IdxFile], dict[str, np.ndarray]]:
    """The four files in ``folder`` and the manifest that records them as :data:`fm.RELEASE` records the
    real ones (gzip with a fixed mtime, so the hashes are reproducible)."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays, spec = _arrays(), {}
    for stem, arr in arrays.items():
        raw = _idx_bytes(arr)
        packed = gzip.compress(raw, mtime=0)
        (folder / (f"{stem}.gz" if gz else stem)).write_bytes(packed if gz else raw)
        spec[stem] = fm.IdxFile(
            stem, arr.shape, len(packed), hashlib.sha256(packed).hexdigest(), hashlib.sha256(raw).hexdigest()
        )
    return spec, arrays


@pytest.mark.parametrize("gz", [True, False])
def test_loads_the_four_files(tmp_path, gz):
    spec, arrays = _write(tmp_path, gz)
    ds = fm.fashion_mnist(tmp_path, files=spec)
    assert isinstance(ds, fm.Dataset)
    assert ds.x_train.shape == (N_TRAIN, SIDE * SIDE) and ds.x_train.dtype == torch.float32
    assert ds.x_test.shape == (N_TEST, SIDE * SIDE)
    expected = torch.from_numpy(arrays["train-images-idx3-ubyte"].reshape(N_TRAIN, -1).astype(np.float32) / 255)
    assert torch.equal(ds.x_train, expected)
    assert ds.y_train.dtype == torch.int64 and ds.y_train.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert ds.y_test.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    assert float(ds.x_train.min()) >= 0.0 and float(ds.x_train.max()) <= 1.0
    assert ds.x_val is None
    assert ds.describe() == {
        "name": "Fashion-MNIST",
        "source": str(tmp_path),
        "n_train": N_TRAIN,
        "n_test": N_TEST,
        "split": "official 60k/10k",
        "n_val": 0,
    }
    images = fm.fashion_mnist(tmp_path, files=spec, flat=False)
    assert images.x_train.shape == (N_TRAIN, 1, SIDE, SIDE)


def test_torchvision_layout_is_found(tmp_path):
    spec, _ = _write(tmp_path / "FashionMNIST" / "raw")
    assert fm.fashion_mnist(tmp_path, files=spec).x_train.shape[0] == N_TRAIN


def test_validation_split_is_stratified_fixed_and_disjoint(tmp_path):
    spec, arrays = _write(tmp_path)
    ds = fm.fashion_mnist(tmp_path, validation=10, files=spec)
    assert ds.x_val.shape == (10, SIDE * SIDE) and ds.x_train.shape == (N_TRAIN - 10, SIDE * SIDE)
    assert sorted(ds.y_val.tolist()) == list(range(10))  # one per class
    assert ds.describe()["n_val"] == 10 and "split seed" in ds.split
    # train + validation are exactly the release's training images, each once
    rows = {tuple(r) for r in torch.cat([ds.x_train, ds.x_val]).mul(255).round().to(torch.uint8).tolist()}
    assert rows == {tuple(r) for r in arrays["train-images-idx3-ubyte"].reshape(N_TRAIN, -1).tolist()}
    again = fm.fashion_mnist(tmp_path, validation=10, files=spec)
    assert torch.equal(again.x_val, ds.x_val) and torch.equal(again.y_train, ds.y_train)
    other = fm.fashion_mnist(tmp_path, validation=10, files=spec, split_seed=1)
    assert not torch.equal(other.x_val, ds.x_val)
    fraction = fm.fashion_mnist(tmp_path, validation=0.25, files=spec)
    assert fraction.x_val.shape[0] == 10 and torch.equal(fraction.x_val, ds.x_val)
    odd = fm.fashion_mnist(tmp_path, validation=13, files=spec)  # not a multiple of 10 classes: exact total
    assert odd.x_val.shape[0] == 13 and max(torch.bincount(odd.y_val).tolist()) == 2
    with pytest.raises(ValueError, match="validation"):
        fm.fashion_mnist(tmp_path, validation=N_TRAIN, files=spec)


def _error(tmp_path, spec) -> str:
    with pytest.raises(fm.DataError) as info:
        fm.fashion_mnist(tmp_path, files=spec)
    assert isinstance(info.value, UserError)
    return str(info.value)


def test_wrong_size_gz_is_named(tmp_path):
    spec, _ = _write(tmp_path)
    bad = tmp_path / "train-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:-10])
    msg = _error(tmp_path, spec)
    assert str(bad) in msg and "truncated" in msg and "apt-get install --reinstall dataset-fashion-mnist" in msg


def test_wrong_hash_gz_is_named(tmp_path):
    spec, _ = _write(tmp_path)
    bad = tmp_path / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(bad.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes
    bad.write_bytes(bytes(data))
    msg = _error(tmp_path, spec)
    assert str(bad) in msg and "sha256" in msg and spec["t10k-labels-idx1-ubyte"].gz_sha256 in msg


def test_truncated_and_wrong_raw_files_are_named(tmp_path):
    spec, arrays = _write(tmp_path, gz=False)
    bad = tmp_path / "train-labels-idx1-ubyte"
    bad.write_bytes(bad.read_bytes()[:-5])
    msg = _error(tmp_path, spec)
    assert str(bad) in msg and "truncated" in msg
    # same length, other shape in the header
    bad.write_bytes(_idx_bytes(arrays["train-labels-idx1-ubyte"]))
    images = tmp_path / "train-images-idx3-ubyte"
    images.write_bytes(_idx_bytes(arrays["train-images-idx3-ubyte"].reshape(N_TRAIN // 2, 2 * SIDE, SIDE)))
    msg = _error(tmp_path, spec)
    assert str(images) in msg and "shape" in msg
    # right size and shape, other content (e.g. MNIST instead of Fashion-MNIST): caught by the sha256
    images.write_bytes(_idx_bytes(255 - arrays["train-images-idx3-ubyte"]))
    msg = _error(tmp_path, spec)
    assert str(images) in msg and "sha256" in msg
    # without a recorded hash the decompressed file is checked by magic, shape and length only
    unhashed = {
        **spec,
        "train-images-idx3-ubyte": fm.IdxFile("train-images-idx3-ubyte", (N_TRAIN, SIDE, SIDE), 0, None),
    }
    assert fm.fashion_mnist(tmp_path, files=unhashed).x_train.shape[0] == N_TRAIN
    images.write_bytes(b"\x00\x00\x0d\x03" + images.read_bytes()[4:])  # float data, not unsigned bytes
    msg = _error(tmp_path, unhashed)
    assert str(images) in msg and "magic" in msg


def test_missing_data_names_the_three_ways_to_get_it(tmp_path):
    msg = _error(tmp_path / "nowhere", None)
    for part in (
        "sudo apt-get install dataset-fashion-mnist",
        "--data DIR",
        "FashionMNIST('DIR', download=True)",
        "train-images-idx3-ubyte",
    ):
        assert part in msg
    spec, _ = _write(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    msg = _error(tmp_path, spec)
    assert "holds no t10k-images-idx3-ubyte" in msg and "train-images" not in msg.split("Fix:")[0]


def test_cli_reports_missing_data_as_a_user_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        fm.main(["--data", str(tmp_path / "nowhere")])
    assert info.value.code == 2
    assert "dataset-fashion-mnist" in capsys.readouterr().err


def test_release_manifest_is_the_zalando_release():
    got = {s: (f.gz_size, f.gz_sha256, f.shape) for s, f in fm.RELEASE.items()}
    assert got == {
        "t10k-images-idx3-ubyte": (
            4422079,
            "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
            (10000, 28, 28),
        ),
        "t10k-labels-idx1-ubyte": (5125, "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05", (10000,)),
        "train-images-idx3-ubyte": (
            26421856,
            "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
            (60000, 28, 28),
        ),
        "train-labels-idx1-ubyte": (
            29491,
            "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
            (60000,),
        ),
    }
    assert all(f.magic == (0x0800 | len(f.shape)) for f in fm.RELEASE.values())
    assert fm.RELEASE["train-images-idx3-ubyte"].raw_size == 47040016


# --- ensure_fashion_mnist: apt-get is always mocked -------------------------------------------------------


class FakeApt:
    """Stands in for subprocess.run: records the commands; an install that 'succeeds' writes the files."""

    def __init__(self, target: Path, results: list[int], writes: bool = True):
        self.target, self.results, self.writes, self.calls = target, list(results), writes, []

    def __call__(self, cmd, **kwargs):
        self.calls.append(list(cmd))
        rc = 0 if "update" in cmd else self.results.pop(0)
        if rc == 0 and "install" in cmd and self.writes:
            _write(self.target)
        return subprocess.CompletedProcess(cmd, rc)


@pytest.fixture
def system(tmp_path, monkeypatch):
    target = tmp_path / "usr-share-datasets-fashion-mnist"
    spec, _ = _write(tmp_path / "reference")  # the manifest of the files an install writes
    monkeypatch.setattr(fm, "DEFAULT_DIR", target)
    monkeypatch.setattr(fm.shutil, "which", lambda name: "/usr/bin/apt-get" if name == "apt-get" else None)
    monkeypatch.setattr(fm, "_needs_sudo", lambda: False)  # root

    def fake(results, writes=True):
        apt = FakeApt(target, results, writes)
        monkeypatch.setattr(fm.subprocess, "run", apt)
        return apt

    return target, spec, fake


def test_ensure_installs_when_missing_and_root(system):
    target, spec, fake = system
    apt = fake([0])
    assert fm.ensure_fashion_mnist(True, files=spec) == target
    assert apt.calls == [["/usr/bin/apt-get", "install", "-y", "--no-install-recommends", "dataset-fashion-mnist"]]
    assert fm.fashion_mnist(files=spec).x_train.shape[0] == N_TRAIN
    assert fm.ensure_fashion_mnist(True, files=spec) == target and len(apt.calls) == 1  # present: no second call


def test_ensure_updates_once_after_a_failed_install(system):
    target, spec, fake = system
    apt = fake([100, 0])
    assert fm.ensure_fashion_mnist(True, files=spec) == target
    assert [c[1] for c in apt.calls] == ["install", "update", "install"]


def test_ensure_reports_a_failed_install(system):
    _, spec, fake = system
    apt = fake([100, 100])
    with pytest.raises(fm.DataError, match="status 100"):
        fm.ensure_fashion_mnist(True, files=spec)
    apt = fake([0], writes=False)
    with pytest.raises(fm.DataError, match="still lacks files"):
        fm.ensure_fashion_mnist(True, files=spec)
    assert len(apt.calls) == 1


def test_ensure_never_installs_without_leave(system, monkeypatch, tmp_path):
    _, spec, fake = system
    apt = fake([])
    with pytest.raises(fm.DataError, match="sudo apt-get install dataset-fashion-mnist"):
        fm.ensure_fashion_mnist(False, files=spec)
    monkeypatch.setattr(fm, "_needs_sudo", lambda: True)
    with pytest.raises(fm.DataError, match="needs root"):
        fm.ensure_fashion_mnist(True, files=spec)
    monkeypatch.setattr(fm, "_needs_sudo", lambda: False)
    monkeypatch.setattr(fm.shutil, "which", lambda name: None)
    with pytest.raises(fm.DataError, match="no apt-get"):
        fm.ensure_fashion_mnist(True, files=spec)
    given = tmp_path / "given"
    with pytest.raises(fm.DataError, match="--data DIR"):  # an explicit folder is never installed into
        fm.ensure_fashion_mnist(True, given, files=spec)
    _write(given)
    assert fm.ensure_fashion_mnist(True, given, files=spec) == given
    assert apt.calls == []


@pytest.mark.skipif(not fm.DEFAULT_DIR.is_dir(), reason="dataset-fashion-mnist not installed (not needed)")
def test_installed_release_files_match_the_manifest():
    """Where the package is installed, its gzipped files are the ones the manifest records (hashing only,
    no decoding: a fraction of a second)."""
    paths = fm.find_files()
    for stem, spec in fm.RELEASE.items():
        if paths[stem].suffix == ".gz":
            assert paths[stem].stat().st_size == spec.gz_size
            assert fm._sha256(paths[stem]) == spec.gz_sha256


def test_gz_without_a_recorded_hash_is_still_decoded_and_checked(tmp_path):
    spec, arrays = _write(tmp_path)
    loose = {s: fm.IdxFile(s, f.shape, None, None) for s, f in spec.items()}  # e.g. a re-compressed mirror
    assert fm.fashion_mnist(tmp_path, files=loose).x_test.shape[0] == N_TEST
    bad = tmp_path / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:-20])
    msg = _error(tmp_path, loose)
    assert str(bad) in msg and "does not" in msg
    labels = arrays["train-labels-idx1-ubyte"].copy()
    labels[0] = 10
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(arrays["t10k-images-idx3-ubyte"])))
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(labels)))
    msg = _error(tmp_path, loose)
    assert "train-labels-idx1-ubyte.gz holds label 10" in msg
