"""Helpers shared by the dense-task tests (detection, segmentation, style transfer)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

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
