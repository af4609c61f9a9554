"""Something-Something V1 and V2 (Goyal et al., ICCV 2017): the official label files, frames read from
JPEG folders (V1) or decoded from WebM videos with PyAV (V2), TSN's segment-based sampling and the TSM
crops, and a dataset check that names what is missing.

Layouts (the files as the dataset ships them; ``--data`` points at the folder that holds them)::

    V1: something-something-v1-labels.csv        one class name per line (index = line order)
        something-something-v1-{train,validation}.csv   "<video id>;<class name>" per line
        20bn-something-something-v1/<video id>/00001.jpg ...
    V2: something-something-v2-labels.json       {"<class template>": "<index>"}
        something-something-v2-{train,validation}.json  [{"id", "label", "template", "placeholders"}]
        20bn-something-something-v2/<video id>.webm

A V2 video's class is its ``template`` with the brackets removed ("Putting [something] on a surface"
-> "Putting something on a surface"), as the official TSM label script maps it.

Sampling (TSN, Wang et al. 2016; TSM ``ops/dataset.py``): a video of ``n`` frames is cut into
``num_segments`` equal segments; training takes one frame at a random position in each, evaluation
the middle frame of each (``clips=2`` adds the first frame of each segment: the official
``--twice_sample``). Crops (TSM ``ops/transforms.py``): training crops a ``w x h`` box whose sides are
each one of ``scales`` x the frame's shorter side (the two at most one scale step apart) at one of 13
fixed positions, resized to ``crop_size``; no flip (Something-Something classes such as "left to right"
depend on direction). Evaluation resizes the shorter side to ``scale_size`` and takes the centre
``crop_size`` crop (``crops=1``, the "efficient" setting) or three ``scale_size`` squares along the
longer side (``crops=3``, the "full resolution" setting). The same box applies to every frame of a clip.
"""

from __future__ import annotations

import csv
import json
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from reproductions.tasks.classification.data import DataError
from reproductions.tasks.imagenet_stats import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "FRAME_DIRS",
    "LABEL_FILES",
    "MEAN",
    "STD",
    "SomethingSomething",
    "check_something",
    "read_labels",
    "segment_indices",
]

VERSIONS = ("v1", "v2")
SPLITS = ("train", "validation")
FRAME_DIRS = {"v1": "20bn-something-something-v1", "v2": "20bn-something-something-v2"}
LABEL_FILES = {
    "v1": {
        "labels": "something-something-v1-labels.csv",
        "train": "something-something-v1-train.csv",
        "validation": "something-something-v1-validation.csv",
    },
    "v2": {
        "labels": "something-something-v2-labels.json",
        "train": "something-something-v2-train.json",
        "validation": "something-something-v2-validation.json",
    },
}
NUM_CLASSES = 174
MEAN, STD = IMAGENET_MEAN, IMAGENET_STD  # ImageNet statistics, as TSM normalizes
TRAIN_SCALES = (1.0, 0.875, 0.75, 0.66)
_FIX_OFFSETS = ((0, 0), (4, 0), (0, 4), (4, 4), (2, 2), (0, 2), (4, 2), (2, 4), (2, 0), (1, 1), (3, 1), (1, 3), (3, 3))
"""The 13 crop positions of TSM's ``more_fix_crop``, in quarters of the free space (x, y)."""
_FIX_HINT = (
    "Download Something-Something {v} with its label files (https://www.qualcomm.com/developer/software/"
    "something-something-v-2-dataset for V2; V1 from the same publisher) and pass the folder that holds "
    "them with --data."
)


def _fix(version: str) -> str:
    return _FIX_HINT.format(v=version.upper())


def _strip_brackets(template: str) -> str:
    return template.replace("[", "").replace("]", "")


def read_labels(root: str | os.PathLike, version: str, split: str) -> tuple[list[str], list[tuple[str, int]]]:
    """The class names and ``(video id, class index)`` pairs of ``split`` from the official label
    files. Raises :class:`DataError` naming the file and line that is missing or malformed."""
    if version not in VERSIONS or split not in SPLITS:
        raise ValueError(f"version must be one of {VERSIONS} and split one of {SPLITS}, got {version!r}, {split!r}")
    root = Path(root)
    files = LABEL_FILES[version]
    for key in ("labels", split):
        if not (root / files[key]).is_file():
            raise DataError(
                f"{root / files[key]} not found: the official {key} file of Something-Something "
                f"{version.upper()} must sit in --data. {_fix(version)}"
            )
    if version == "v1":
        classes = [line.strip() for line in (root / files["labels"]).read_text().splitlines() if line.strip()]
        index = {name: i for i, name in enumerate(classes)}
        items = []
        with open(root / files[split], newline="") as fh:
            for lineno, row in enumerate(csv.reader(fh, delimiter=";"), 1):
                if len(row) != 2 or row[1] not in index:
                    raise DataError(
                        f"{root / files[split]} line {lineno}: expected '<video id>;<class name from "
                        f"{files['labels']}>', got {';'.join(row)!r}"
                    )
                items.append((row[0], index[row[1]]))
        return classes, items
    mapping = json.loads((root / files["labels"]).read_text())
    classes = [name for name, _ in sorted(mapping.items(), key=lambda kv: int(kv[1]))]
    items = []
    for n, entry in enumerate(json.loads((root / files[split]).read_text())):
        template = _strip_brackets(str(entry.get("template", "")))
        if "id" not in entry or template not in mapping:
            raise DataError(
                f"{root / files[split]} entry {n}: needs an 'id' and a 'template' listed in "
                f"{files['labels']}, got {entry!r}"
            )
        items.append((str(entry["id"]), int(mapping[template])))
    return classes, items


def _video_path(root: Path, version: str, video_id: str) -> Path:
    folder = root / FRAME_DIRS[version]
    return folder / video_id if version == "v1" else folder / f"{video_id}.webm"


def check_something(root: str | os.PathLike, version: str, splits: Sequence[str] = SPLITS) -> dict[str, int]:
    """Check a Something-Something folder before training: the label files parse and every listed
    video's frame folder (V1, with at least one JPEG) or ``.webm`` file (V2) exists. Returns the number
    of videos per split; raises :class:`DataError` naming the missing files (the first five) and the fix."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"Something-Something folder {root} does not exist. {_fix(version)}")
    if not (root / FRAME_DIRS[version]).is_dir():
        raise DataError(
            f"{root / FRAME_DIRS[version]} not found: Something-Something {version.upper()} keeps its "
            f"{'frame folders' if version == 'v1' else 'WebM videos'} there. {_fix(version)}"
        )
    counts = {}
    for split in splits:
        _, items = read_labels(root, version, split)
        missing = []
        for video_id, _ in items:
            path = _video_path(root, version, video_id)
            ok = any(path.glob("*.jpg")) if version == "v1" else path.is_file()
            if not ok:
                missing.append(str(path) + ("/*.jpg" if version == "v1" else ""))
        if missing:
            raise DataError(
                f"{len(missing)} of the {len(items)} {split} videos listed in "
                f"{LABEL_FILES[version][split]} are missing: {', '.join(missing[:5])}"
                f"{' ...' if len(missing) > 5 else ''}. {_fix(version)}"
            )
        counts[split] = len(items)
    return counts


def segment_indices(
    num_frames: int, num_segments: int, *, train: bool, rng: random.Random | None = None, clips: int = 1
) -> list[list[int]]:
    """Frame indices (0-based) of each clip: TSN segment sampling (module docstring). Training returns
    one clip with a random frame per segment; evaluation ``clips`` (1 or 2) clips of segment middles
    (and starts). A video shorter than ``num_segments`` repeats frames."""
    if num_frames < 1:
        raise ValueError("segment_indices: the video has no frames")
    tick = num_frames / num_segments
    if train:
        rng = rng or random.Random()
        span = num_frames // num_segments
        if span > 0:
            return [[i * span + rng.randrange(span) for i in range(num_segments)]]
        return [sorted(rng.randrange(num_frames) for _ in range(num_segments))]
    if clips not in (1, 2):
        raise ValueError(f"clips must be 1 or 2 (the official --twice_sample), got {clips}")
    middles = [int(tick / 2.0 + tick * i) for i in range(num_segments)]
    starts = [int(tick * i) for i in range(num_segments)]
    return [middles, starts][:clips]


class _LazyFrames:
    """A video's frames by index: V1 opens only the JPEGs asked for; V2 decodes the WebM once (PyAV)."""

    def __init__(self, path: Path, version: str) -> None:
        self.path, self.version = path, version
        if version == "v1":
            self.files = sorted(path.glob("*.jpg"))
            if not self.files:
                raise DataError(f"{path} holds no JPEG frames")
            self.decoded: list[Image.Image] = []
            return
        import av

        try:
            with av.open(str(path)) as container:
                self.decoded = [frame.to_image() for frame in container.decode(video=0)]
        except (av.FFmpegError, OSError) as err:
            raise DataError(f"{path}: cannot decode the video ({err}); re-download it") from err
        if not self.decoded:
            raise DataError(f"{path}: the video has no frames; re-download it")

    def __len__(self) -> int:
        return len(self.files) if self.version == "v1" else len(self.decoded)

    def __getitem__(self, i: int) -> Image.Image:
        if self.version == "v1":
            with Image.open(self.files[i]) as image:
                return image.convert("RGB")
        return self.decoded[i]


def _crop_box_train(width: int, height: int, rng: random.Random, scales: Sequence[float]) -> tuple[int, int, int, int]:
    base = min(width, height)
    sizes = [int(base * s) for s in scales]
    pairs = [(w, h) for i, h in enumerate(sizes) for j, w in enumerate(sizes) if abs(i - j) <= 1]
    cw, ch = rng.choice(pairs)
    ox, oy = rng.choice(_FIX_OFFSETS)
    x, y = (width - cw) * ox // 4, (height - ch) * oy // 4
    return x, y, x + cw, y + ch


def _eval_boxes(width: int, height: int, crop: int, crops: int) -> list[tuple[int, int, int, int]]:
    if crops == 1:
        x, y = (width - crop) // 2, (height - crop) // 2
        return [(x, y, x + crop, y + crop)]
    side = min(width, height)  # full resolution: three squares along the longer side
    if width >= height:
        return [(x, 0, x + side, side) for x in (0, (width - side) // 2, width - side)]
    return [(0, y, side, y + side) for y in (0, (height - side) // 2, height - side)]


def _to_tensor(frames: Sequence[Image.Image]) -> torch.Tensor:
    array = np.stack([np.asarray(f, dtype=np.uint8) for f in frames])  # (T, H, W, 3)
    x = torch.from_numpy(array).permute(0, 3, 1, 2).float().div_(255.0)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


def _resize_short(image: Image.Image, size: int) -> Image.Image:
    w, h = image.size
    if min(w, h) == size:
        return image
    scale = size / min(w, h)
    return image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)


class SomethingSomething(Dataset):
    """One split of Something-Something V1 or V2 (module docstring). Items are ``(clip, label)``:
    training clips are ``(T, 3, crop, crop)``; evaluation clips ``(V, T, 3, S, S)`` with ``V = clips x
    crops`` views (``S`` = ``crop_size`` for one crop, ``scale_size`` for three)."""

    def __init__(
        self,
        root: str | os.PathLike,
        version: str,
        split: str,
        *,
        train: bool,
        num_segments: int = 8,
        crop_size: int = 224,
        scale_size: int = 256,
        scales: Sequence[float] = TRAIN_SCALES,
        clips: int = 1,
        crops: int = 1,
        max_videos: int | None = None,
        check: bool = True,
    ) -> None:
        if crops not in (1, 3):
            raise ValueError(f"crops must be 1 (centre crop) or 3 (full resolution), got {crops}")
        self.root, self.version, self.split, self.train = Path(root), version, split, train
        if check:
            check_something(self.root, version, [split])
        self.classes, items = read_labels(self.root, version, split)
        self.items = items[:max_videos] if max_videos else items
        self.num_segments, self.crop_size, self.scale_size = num_segments, crop_size, scale_size
        self.scales, self.clips, self.crops = tuple(scales), clips, crops

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        video_id, label = self.items[index]
        frames = _LazyFrames(_video_path(self.root, self.version, video_id), self.version)
        # training draws from torch's RNG, which the engine's SeededDataset seeds per (seed, epoch, index)
        rng = random.Random(int(torch.randint(0, 2**62, (1,)).item())) if self.train else None
        clips = segment_indices(len(frames), self.num_segments, train=self.train, rng=rng, clips=self.clips)
        if self.train:
            chosen = [frames[i] for i in clips[0]]
            assert rng is not None
            box = _crop_box_train(*chosen[0].size, rng, self.scales)
            size = (self.crop_size, self.crop_size)
            return _to_tensor([f.crop(box).resize(size, Image.BILINEAR) for f in chosen]), label
        views = []
        for indices in clips:
            chosen = [_resize_short(frames[i], self.scale_size) for i in indices]
            for box in _eval_boxes(*chosen[0].size, self.crop_size, self.crops):
                views.append(_to_tensor([f.crop(box) for f in chosen]))
        return torch.stack(views), label

    def describe(self) -> dict[str, Any]:
        return {"version": self.version, "split": self.split, "videos": len(self), "classes": self.num_classes}
