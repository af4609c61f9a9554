"""Nothing lost, nothing silently wrong (issue 12), for the full-scale engine: a run folder is never
overwritten, metrics never list an epoch twice, checkpoints carry a digest and a damaged one is called
corrupt and names the last good one, a full disk is said so, config values are typed, and every user
error reaches the command line as one ``error:`` paragraph with exit status 2 and no traceback.

Each test reproduces a failure that the issue observed on the engine before these changes."""

from __future__ import annotations

import errno
import io
import json
import urllib.error
from pathlib import Path

import pytest
import torch
from fixtures.image_folder import make_image_folder, write_config

from reproductions.engine import atomic
from reproductions.engine import checkpoint as ckpt
from reproductions.engine.cli import config_from_args, engine_parser
from reproductions.engine.config import ConfigError
from reproductions.engine.logs import RunLog
from reproductions.engine.run_folder import RunFolderError, claim_run_folder
from reproductions.engine.trainer import Trainer
from reproductions.tasks.classification import data as classification_data
from reproductions.tasks.classification.main import CLASSIFICATION_DEFAULTS, main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("data"), classes=2, train_per_class=4, val_per_class=2)


@pytest.fixture
def quiet(monkeypatch):
    monkeypatch.setenv("NORMCORE_NO_PROGRESS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _run(config: Path, images: Path, out: Path, *extra: str):
    return main(["--config", str(config), "--data", str(images), "--out", str(out), *extra], paper="test")


def _user_error(capsys, config: Path, images: Path, out: Path, *extra: str) -> str:
    """Run expecting a user error: exit status 2, one ``error:`` paragraph, no traceback."""
    with pytest.raises(SystemExit) as exit_:
        _run(config, images, out, *extra)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    return " ".join(err.split())


def _epochs(out: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def _config(tmp_path: Path, epochs: int = 1) -> Path:
    return write_config(tmp_path / "c.yaml", {"train": {"epochs": epochs}, "data": {"workers": 0}})


# --------------------------------------------------------------------------------------------------
# run folders
# --------------------------------------------------------------------------------------------------
def test_a_new_run_never_overwrites_a_finished_one(tmp_path, images, quiet, capsys):
    """Issue 12, item 1: ``--epochs 2`` into a finished run's folder replaced its checkpoint and
    summary and appended to its metrics."""
    config = _config(tmp_path)
    out = tmp_path / "run"
    _run(config, images, out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.name in ("checkpoint.pt", "summary.json")}
    message = _user_error(capsys, config, images, out, "--epochs", "2")
    assert "already holds a run" in message and "--resume auto" in message and "--out" in message
    assert "--move-old-run" in message
    assert {p: (out / p).read_bytes() for p in before} == before and _epochs(out) == [1]
    # the explicit way: the earlier run moves aside, whole, and the new one starts in an empty folder
    _run(config, images, out, "--epochs", "2", "--move-old-run")
    aside = tmp_path / "run.old-1"
    assert {p: (aside / p).read_bytes() for p in before} == before and _epochs(aside) == [1]
    assert _epochs(out) == [1, 2]


def test_a_run_killed_before_its_first_checkpoint_restarts_without_duplicate_epochs(
    tmp_path, images, quiet, monkeypatch
):
    """Issue 12, item 4: killed after an epoch's metrics line but before its checkpoint, the run came
    back (``--resume auto`` found no checkpoint) and logged that epoch a second time."""
    config = _config(tmp_path, epochs=2)
    out = tmp_path / "run"

    class Killed(Exception):
        pass

    def die(self, epochs_done):
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "save", die)
        with pytest.raises(Killed):
            _run(config, images, out)
    assert _epochs(out) == [1] and not (out / "checkpoint.pt").exists()
    _run(config, images, out, "--resume", "auto")
    assert _epochs(out) == [1, 2]


def test_claiming_a_folder_removes_stale_temporaries_and_allows_continuing(tmp_path):
    """Issue 12, item 14: ``.tmp`` files of killed checkpoint writes stayed forever."""
    out = tmp_path / "run"
    out.mkdir()
    stale = out / ".checkpoint.pt.ab12cd_9.tmp"
    stale.write_bytes(b"half a checkpoint")
    (out / "notes.tmp").write_text("not ours")
    ckpt.save_checkpoint(out / "checkpoint.pt", {"epoch": 1})
    notes = claim_run_folder(out, resume=out / "checkpoint.pt")
    assert not stale.exists() and (out / "notes.tmp").exists()
    assert any("temporary" in n for n in notes)
    with pytest.raises(RunFolderError, match="already holds a run"):
        claim_run_folder(out, resume=None)
    with pytest.raises(RunFolderError, match=r"from .*other\.pt"):  # another run's checkpoint into this folder
        claim_run_folder(out, resume=tmp_path / "other.pt")
    (out / "checkpoint.pt").rename(out / "checkpoint_epoch1.pt")  # --resume auto finds no checkpoint.pt
    with pytest.raises(RunFolderError, match=r"has no checkpoint\.pt to continue from") as err:
        claim_run_folder(out, resume=None, resume_auto=True)
    assert "add --resume auto" not in str(err.value)


def test_eval_only_without_a_checkpoint_is_an_error(tmp_path, images, quiet, capsys):
    """Issue 12, item 2: ``--eval-only --resume auto`` with no checkpoint evaluated random weights and
    exited 0."""
    message = _user_error(capsys, _config(tmp_path), images, tmp_path / "empty", "--eval-only", "--resume", "auto")
    assert "--eval-only" in message and "found no checkpoint.pt" in message
    assert not (tmp_path / "empty" / "metrics.jsonl").exists()


# --------------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------------
def test_a_flipped_byte_is_corrupt_and_the_previous_checkpoint_is_named(tmp_path, images, quiet, capsys):
    """Issue 12, item 3: a byte flipped in a checkpoint's tensor data loaded without error."""
    config = _config(tmp_path, epochs=2)
    out = tmp_path / "run"
    _run(config, images, out)
    path = out / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    raw = bytearray(path.read_bytes())
    weight = next(t for t in state["model"].values() if t.numel() > 64)
    at = raw.find(weight.numpy().tobytes()[:64])
    assert at > 0
    raw[at + 10] ^= 0x40
    path.write_bytes(bytes(raw))
    torch.load(path, weights_only=True)  # torch itself does not notice
    message = _user_error(capsys, config, images, out, "--resume", "auto", "--epochs", "3")
    assert f"corrupt checkpoint {path}" in message and "SHA-256" in message
    previous = out / ckpt.PREVIOUS_NAME
    assert f"The last good checkpoint is {previous}, 1 epoch(s) done: continue with --resume {previous}" in message
    assert ckpt.load_checkpoint(previous)["epoch"] == 1


@pytest.mark.parametrize(
    "content", [b"", b"a text file, not a checkpoint\n", "truncated"], ids=["empty", "text", "truncated"]
)
def test_unreadable_files_are_called_corrupt_not_untrusted(tmp_path, content):
    """Issue 12, item 12: a truncated, empty or text checkpoint advised --trusted-checkpoint."""
    good = ckpt.save_checkpoint(tmp_path / "checkpoint.pt", {"epoch": 4, "w": torch.ones(1000)})
    bad = tmp_path / "damaged.pt"
    bad.write_bytes(good.read_bytes()[:700] if content == "truncated" else content)
    with pytest.raises(ckpt.CheckpointError) as err:
        ckpt.load_checkpoint(bad)
    message = str(err.value)
    assert message.startswith(f"corrupt checkpoint {bad}") and "--trusted-checkpoint" not in message
    assert f"The last good checkpoint is {good}, 4 epoch(s) done" in message


def test_resuming_with_another_model_names_the_differing_setting(tmp_path, images, quiet, capsys):
    """Issue 12, item 12: resuming a GN checkpoint with ``model.norm=bn`` gave raw missing-key errors."""
    config = _config(tmp_path)
    out = tmp_path / "run"
    _run(config, images, out)
    message = _user_error(
        capsys, config, images, out, "--resume", "auto", "--set", "model.norm=bn", "model.norm_kwargs={}"
    )
    assert f"{out / 'checkpoint.pt'}: cannot resume" in message and "model.norm: 'gn' -> 'bn'" in message
    assert "start a new run with a fresh --out" in message


class _DiskFull(io.RawIOBase):
    """A file that fills up after ``room`` bytes, as a full disk does."""

    def __init__(self, fh, room: int) -> None:
        self.fh, self.room = fh, room

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if self.room < len(data):
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.fh.write(data)


def test_a_full_disk_is_said_so_and_keeps_the_previous_file(tmp_path):
    """Issue 12, item 11: a full disk ended with "RuntimeError: [enforce fail at inline_container.cc]
    unexpected pos", the "No space left on device" 24 lines up."""
    path = ckpt.save_checkpoint(tmp_path / "checkpoint.pt", {"epoch": 1})
    before = path.read_bytes()
    with pytest.raises(atomic.StorageError) as err:
        atomic.atomic_write(path, lambda fh: torch.save({"w": torch.ones(10_000)}, _DiskFull(fh, 2_000)))
    message = str(err.value)
    assert f"cannot write {path}: no space left on the device" in message and "MiB free" in message
    assert "is intact" in message and "--resume auto" in message
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_a_full_disk_while_logging_is_said_so(tmp_path, monkeypatch):
    """The per-epoch metrics line and the log lines are appended, not written atomically: a full disk
    there is the same clear error."""
    log = RunLog(tmp_path)

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "open", full)
    with pytest.raises(atomic.StorageError, match=r"cannot write .*metrics\.jsonl: no space left on the device"):
        log.epoch({"epoch": 1})


# --------------------------------------------------------------------------------------------------
# configs and the error path
# --------------------------------------------------------------------------------------------------
def _load(path: Path, *argv: str) -> dict:
    return config_from_args(engine_parser("t").parse_args(["--config", str(path), *argv]), CLASSIFICATION_DEFAULTS)


def test_config_values_are_typed_and_every_error_names_key_value_and_source(tmp_path):
    """Issue 12, item 10: ``batch_size: two`` gave ``invalid literal for int()``, ``lr: fast`` failed only
    after data loading, ``epochs: [1, 2]`` a TypeError."""
    (tmp_path / "base.yaml").write_text("data:\n  batch_size: two\noptim:\n  lr: fast\n")
    (tmp_path / "row.yaml").write_text("_base_: base.yaml\ntrain:\n  epochs: [1, 2]\n")
    with pytest.raises(ConfigError) as err:
        _load(tmp_path / "row.yaml", "--set", "optim.momentum=1.5", "train.amp=fp8")
    lines = str(err.value).splitlines()
    assert lines[0].startswith("5 config value(s)")
    base, row = tmp_path / "base.yaml", tmp_path / "row.yaml"
    expected = [
        f"data.batch_size: expected an integer >= 1, got 'two' (str) [from {base}]",
        f"optim.lr: expected a number > 0, got 'fast' (str) [from {base}]",
        f"train.epochs: expected an integer >= 1, got [1, 2] (list) [from {row}]",
        "optim.momentum: expected a number in [0, 1], got 1.5 (float) [from --set optim.momentum=1.5]",
        "train.amp: expected one of 'none', 'bf16', 'fp16', got 'fp8' (str) [from --set train.amp=fp8]",
    ]
    for line in expected:
        assert any(line in got for got in lines), line


def test_an_empty_config_and_zero_epochs_are_clear_errors(tmp_path):
    """Issue 12, items 8 and 10: ``--epochs 0`` crashed on formatting None; an empty config trained with
    silent defaults."""
    (tmp_path / "empty.yaml").write_text("# nothing here\n")
    with pytest.raises(ConfigError, match=r"empty\.yaml is empty"):
        _load(tmp_path / "empty.yaml")
    (tmp_path / "row.yaml").write_text("name: row\n")
    with pytest.raises(
        ConfigError, match=r"train\.epochs: expected an integer >= 1, got 0 .*from --epochs 0.*--eval-only"
    ):
        _load(tmp_path / "row.yaml", "--epochs", "0")


def test_user_errors_reach_the_command_line_as_one_paragraph(tmp_path, images, capsys):
    """Issue 12, item 9: every user error arrived at the bottom of a 10-74 line traceback; ``--debug``
    shows it."""
    config = tmp_path / "bad.yaml"
    config.write_text("name: bad\noptim:\n  lr: fast\n")
    message = _user_error(capsys, config, images, tmp_path / "run")
    assert "optim.lr: expected a number > 0, got 'fast'" in message and "--debug" in message
    assert not (tmp_path / "run").exists()  # refused before anything was built or written
    with pytest.raises(ConfigError):
        _run(config, images, tmp_path / "run", "--debug")
    message = _user_error(capsys, _config(tmp_path), tmp_path / "nowhere", tmp_path / "run")
    assert "nowhere" in message
    # a setting the model cannot be built with (BN takes no group count) is the config's error too
    message = _user_error(capsys, _config(tmp_path), images, tmp_path / "run2", "--set", "model.norm=bn")
    assert "cannot be built from this config" in message and "num_groups" in message


def test_download_without_network_says_what_to_do(tmp_path, monkeypatch):
    """Issue 12, item 14: ``--download`` without network printed a raw URLError."""

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(classification_data.tvd, "CIFAR10", offline)
    with pytest.raises(classification_data.DataError) as err:
        classification_data._torchvision_dataset("cifar10", tmp_path, train=True, download=True)
    message = str(err.value)
    assert "could not download cifar10" in message and "no network" in message
    assert str(tmp_path / "cifar-10-batches-py") in message and "without --download" in message
