"""Helpers shared by the dense-task tests (detection, segmentation, style transfer)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch

from reproductions.claims.published import published_value
from reproductions.engine.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]


class Killed(Exception):
    """Raised by :func:`crash_after_epoch` in place of a SIGKILL."""


@contextlib.contextmanager
def crash_after_epoch(monkeypatch: pytest.MonkeyPatch, epoch: int) -> Iterator[None]:
    """The run dies right after writing the checkpoint of ``epoch``, as a killed job would."""
    save = Trainer.save

    def save_then_die(self: Trainer, epochs_done: int) -> None:
        save(self, epochs_done)
        if epochs_done == epoch:
            raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "save", save_then_die)
        with pytest.raises(Killed):
            yield


def published_entries(cfg: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A config's ``published`` block as a list of entries (one entry, or one per metric)."""
    published = cfg.get("published") or {}
    return [published] if "id" in published else list(published.values())


def check_published(cfg: Mapping[str, Any], paper: str) -> None:
    """Every published entry of a config names an id of ``papers/<paper>/published.yaml`` with the same
    value and confidence tag."""
    entries = published_entries(cfg)
    assert entries, f"{cfg.get('name')}: no published block"
    for entry in entries:
        ref = published_value(paper, entry["id"])
        assert entry["value"] == ref["value"], (cfg.get("name"), entry["id"])
        assert entry["tag"] == ref["confidence"], (cfg.get("name"), entry["id"])


def task_config(path: Path, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """A task config file merged over the engine's and ``defaults`` as a training script would load it."""
    from reproductions.engine.cli import config_from_args, engine_parser

    return config_from_args(engine_parser("x").parse_args(["--config", str(path)]), defaults)


def run_cli(main: Any, config: Path, data: Path, out: Path, *extra: str, paper: str = "weight_standardization"):
    """A task's command line on CPU: ``main(["--config", config, "--data", data, "--out", out, "--device",
    "cpu", *extra], paper=paper)``; returns its metrics."""
    args = ["--config", str(config), "--data", str(data), "--out", str(out), "--device", "cpu", *extra]
    return main(args, paper=paper)


def train_straight_and_resumed(
    main: Any, config: Path, data: Path, out: Path, monkeypatch: pytest.MonkeyPatch, *, epochs: int, crash_after: int
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """Train ``config`` on CPU for ``epochs`` straight (``out/a``), and again killed after ``crash_after``
    epochs and resumed (``out/b``); asserts that both runs end with the same weights and losses.
    Returns the straight run's metrics, the resumed run's metrics and the straight run's history."""

    def run(folder: str, *extra: str) -> Any:
        return run_cli(main, config, data, out / folder, "--epochs", str(epochs), *extra)

    straight = run("a")
    with crash_after_epoch(monkeypatch, crash_after):
        run("b")
    resumed = run("b", "--resume", "auto")
    a = torch.load(out / "a" / "checkpoint.pt", weights_only=True)
    b = torch.load(out / "b" / "checkpoint.pt", weights_only=True)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]
    return straight, resumed, a["history"]


def checked_row_config(path: Path, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`task_config` of a paper-row config, checked to name its paper, row and published entries."""
    paper = path.parents[2].name
    cfg = task_config(path, defaults)
    assert cfg["paper"] == paper and cfg["name"] and cfg["paper_ref"]
    check_published(cfg, paper)
    return cfg


def user_error(call: Any, capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``call()``, which must fail with a user error: an exception with the message (e.g. a
    ``DataError``), or the command line's printed ``error: ...`` paragraph and ``SystemExit``. Returns
    the message with its line breaks folded."""
    with pytest.raises((Exception, SystemExit)) as info:  # either form of the same user error
        call()
    text = capsys.readouterr().err if isinstance(info.value, SystemExit) else str(info.value)
    return " ".join(text.split())
