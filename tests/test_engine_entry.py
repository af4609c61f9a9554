"""The one entry point of the full-scale tasks (:func:`reproductions.engine.entry.run_task`): every task
(classification, detection, segmentation, stylization) goes through it, the session ends exactly once,
and a process group that the caller created survives the run, whether it succeeds or fails."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import yaml
from fixtures.coco import make_coco_dataset
from fixtures.image_folder import make_image_folder, write_config
from fixtures.voc import make_voc_dataset
from PIL import Image

from reproductions.engine import entry

REPO = Path(__file__).resolve().parents[1]


class Stop(Exception):
    """Raised in place of training, after the session started."""


@pytest.fixture
def caller_group():
    """A process group created by the caller (as a driver that runs several configs in one launch)."""
    assert not dist.is_initialized()
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, list[str]]:
    """Per task: the module, its entry function and the arguments of a run on generated data."""
    root = tmp_path_factory.mktemp("entry")
    config = root / "c.yaml"
    config.write_text(yaml.safe_dump({"name": "t"}))
    images = make_image_folder(root / "imgs", classes=2, train_per_class=2, val_per_class=1)
    coco = make_coco_dataset(root / "coco", splits={"train": 2, "val": 1})
    voc = make_voc_dataset(root / "voc" / "VOCdevkit", train=2, val=1, extra_sbd=0)
    style = root / "style.png"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(style)
    common = ["--config", str(config), "--device", "cpu", "--workers", "0"]
    return {
        "classification": [*common, "--data", str(images), "--set", "data.dataset=imagefolder"],
        "detection": [*common, "--data", str(coco), "--set", "data.train_split=train", "data.val_split=val"],
        "segmentation": [*common, "--data", str(voc)],
        "stylization": [*common, "--data", str(images), "--style", str(style), "--loss-network", "random"],
    }


MAINS = {
    "classification": ("reproductions.tasks.classification.main", "main"),
    "detection": ("reproductions.tasks.detection.main", "main"),
    "segmentation": ("reproductions.tasks.segmentation.main", "main"),
    "stylization": ("reproductions.tasks.stylization.main", "main_train"),
}


@pytest.mark.parametrize("task", sorted(MAINS))
def test_every_task_runs_through_the_entry_point_and_leaves_the_callers_group(
    task, datasets, caller_group, tmp_path, monkeypatch
):
    """Each task's main goes through run_task (prepare, session, build): the session ends once, the
    caller's process group survives, and the run folder has its manifest."""
    module, name = MAINS[task]
    main = getattr(importlib.import_module(module), name)
    seen: list[str] = []
    ended: list[object] = []

    def fake_run(task_obj: entry.Task, ctx: entry.RunContext):
        seen.append(task_obj.name)
        assert ctx.run is not None and ctx.run.owns_process_group is False
        raise Stop

    end_session = entry.end_session
    monkeypatch.setattr(entry, "_run", fake_run)
    monkeypatch.setattr(entry, "end_session", lambda run: (ended.append(run), end_session(run)))
    with pytest.raises(Stop):
        main([*datasets[task], "--out", str(tmp_path / "run")], paper="test")
    assert seen == [task] and len(ended) == 1
    assert dist.is_initialized(), f"{task} destroyed a process group it did not create"
    assert (tmp_path / "run" / "manifest.json").is_file()


def test_a_full_run_keeps_the_callers_group(caller_group, tmp_path, monkeypatch):
    monkeypatch.setenv("NORMCORE_NO_PROGRESS", "1")
    from reproductions.tasks.classification.main import main

    data = make_image_folder(tmp_path / "data", classes=2, train_per_class=4, val_per_class=2)
    config = write_config(tmp_path / "c.yaml", {"train": {"epochs": 1}, "data": {"workers": 0}})
    metrics = main(["--config", str(config), "--data", str(data), "--out", str(tmp_path / "run")], paper="test")
    assert dist.is_initialized()
    assert metrics is not None and 0.0 <= metrics["top1_err_final"] <= 100.0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["metrics"] == metrics


def test_a_task_defined_outside_the_engine_runs(tmp_path, monkeypatch):
    """What engineer V's video / point-cloud tasks do: a Task with its own flag, build and report."""
    monkeypatch.setenv("NORMCORE_NO_PROGRESS", "1")
    calls: list[str] = []

    def add_arguments(parser):
        parser.add_argument("--width", type=int)

    def prepare(ctx):
        calls.append(f"prepare width={ctx.cfg['model']['width']}")

    def build(ctx):
        calls.append("build")
        torch.manual_seed(0)
        xs = torch.randn(8, 3)
        data = [(x, (x.sum() > 0).long()) for x in xs]
        model = torch.nn.Linear(3, 2)

        def loss_fn(m, batch):
            x, y = batch
            return torch.nn.functional.cross_entropy(m(x), y), {}

        return entry.TaskParts(
            model=model,
            train_set=data,
            loss_fn=loss_fn,
            evaluate=lambda m: {"val_loss": float(loss_fn(m, (xs, (xs.sum(1) > 0).long()))[0])},
            report=lambda metrics: f"val loss {entry.fmt(metrics.get('val_loss'), '.3f')}",
        )

    toy = entry.Task(
        name="toy",
        defaults={"model": {"width": 1}, "data": {"batch_size": 4, "workers": 0}},
        build=build,
        prepare=prepare,
        add_arguments=add_arguments,
        flag_keys={"width": "model.width"},
    )
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"name": "toy", "train": {"epochs": 2, "device": "cpu"}}))
    metrics = entry.run_task(toy, ["--config", str(config), "--out", str(tmp_path / "run"), "--width", "7"], paper="p")
    assert calls == ["prepare width=7", "build"]
    assert set(metrics) == {"train_loss", "val_loss"}
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]


def test_a_bad_setting_found_while_preparing_is_a_user_error(tmp_path, capsys):
    """A task's prepare step reads the config (e.g. loss-network layer names): a ValueError there is the
    user's to fix, so it is one error: paragraph and exit status 2, and no run folder is made."""

    def prepare(ctx):
        raise ValueError(f"model.width={ctx.cfg['model']['width']} must be even")

    toy = entry.Task(name="toy", defaults={"model": {"width": 1}}, build=lambda ctx: None, prepare=prepare)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"name": "toy", "model": {"width": 3}}))
    with pytest.raises(SystemExit) as exit_:
        entry.run_task(toy, ["--config", str(config), "--out", str(tmp_path / "run")], paper="p")
    err = " ".join(capsys.readouterr().err.split())
    assert exit_.value.code == 2 and "Traceback" not in err
    assert err.startswith("error: the toy inputs cannot be prepared from this config: model.width=3 must be even")
    assert not (tmp_path / "run").exists()


def test_published_text_reads_one_value_or_one_per_metric():
    assert entry.published_text({"published": {"value": 24.1}, "paper_ref": "Table 2"}) == "24.1 (Table 2)"
    many = {"published": {"bbox_AP": {"value": 40.8}, "segm_AP": {"value": 36.1}}}
    assert entry.published_text(many) == "bbox_AP 40.8, segm_AP 36.1"
    assert entry.published_text({}) == ""


@pytest.mark.parametrize(
    "script",
    sorted([*REPO.glob("reproductions/*/train_*.py"), *REPO.glob("reproductions/*/stylize.py")]),
    ids=lambda p: f"{p.parent.name}/{p.stem}",
)
def test_help_examples_keep_one_command_line_per_line(script):
    """A lone backslash at the end of a docstring line joins it with the next in ``--help``."""
    module = importlib.import_module(f"reproductions.{script.parent.name}.{script.stem}")
    source = script.read_text()
    continued = [line for line in source.splitlines() if line.rstrip().endswith("\\")]
    for line in continued:
        shown = line.rstrip()[:-2].rstrip() if line.rstrip().endswith("\\\\") else line.rstrip()[:-1].rstrip()
        assert any(
            doc_line.rstrip().endswith("\\") and doc_line.rstrip()[:-1].rstrip() == shown.strip()
            for doc_line in (ln.strip() for ln in module.__doc__.splitlines())
        ), f"{script.name}: '{line.strip()}' does not end its own line in --help"


def test_imagenet_statistics_are_defined_once():
    from reproductions.tasks.classification import data
    from reproductions.tasks.imagenet_stats import IMAGENET_MEAN, IMAGENET_STD
    from reproductions.tasks.stylization import losses

    assert data.IMAGENET_MEAN is losses.IMAGENET_MEAN is IMAGENET_MEAN
    assert data.IMAGENET_STD is losses.IMAGENET_STD is IMAGENET_STD
    hits = [
        p.relative_to(REPO)
        for p in (REPO / "reproductions").rglob("*.py")
        if "0.485" in p.read_text() and p.name != "imagenet_stats.py"
    ]
    assert hits == []
