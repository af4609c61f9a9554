r"""Feed-forward style transfer on the engine, as the IN paper trains it (Ulyanov, Vedaldi & Lempitsky
2016, §3; the official DmitryUlyanov/texture_nets ``train.lua``): a generator (the multi-scale texture
network or Johnson et al.'s residual network, with IN or BN) maps a content image to its stylization and
is trained against a frozen VGG-19 loss network,

.. math:: L(\hat y) = \lambda_c \sum_{l \in C} \frac{\lVert \phi_l(\hat y) - \phi_l(y) \rVert^2}{C_l H_l W_l}
          + \lambda_s \sum_{l \in S} \lVert G_l(\hat y) - G_l(s) \rVert_F^2 + \lambda_{tv} TV(\hat y),

with :math:`\hat y = g(y)`, :math:`G_l` the Gram matrices normalized by :math:`C_l H_l W_l` (the losses
and the loss-network wrapper are those of :mod:`reproductions.tasks.stylization.losses`, shared with the
CPU-scale experiment). The official layers: content ``relu4_2``, style ``relu1_1, relu2_1, relu3_1,
relu4_1`` (``train.lua`` defaults); the README's "these parameters work for me" set is
``configs/style/works_for_me_*.yaml``.

Commands (``reproductions/instance_norm/train_style.py`` and ``stylize.py``)::

    python -m reproductions.instance_norm.train_style \
        --config reproductions/instance_norm/configs/style/pyramid_in.yaml --data /datasets/coco/train2014 \
        --style starry_night.jpg --vgg-weights vgg19-dcbb9e9d.pth
    python -m reproductions.instance_norm.stylize --checkpoint runs/instance_norm/style_pyramid_in/checkpoint.pt \
        --input photos/ --out stylized/

VGG-19 weights are never downloaded: pass ``--vgg-weights PATH`` (a torchvision ``vgg19`` state_dict,
loaded with ``weights_only=True``), or keep the file in the torch hub cache. ``--loss-network random``
trains against the CPU-scale experiment's random-weight network instead: a fallback, not the paper's
loss, and every output then says so (file names carry ``random-loss-network``, PNG metadata and
``summary.json`` describe the network).

An "epoch" is ``data.images_per_epoch`` content images, each drawn uniformly from the folder by the
sample's seeded RNG (the official code samples images; the engine needs epochs to checkpoint and resume
exactly). Each evaluation stylizes ``data.preview_images`` fixed content images and writes a grid
(content above, stylized below) to ``samples/``.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image, PngImagePlugin
from torch import nn
from torch.utils.data import Dataset
from torchvision.models import vgg as tv_vgg
from torchvision.transforms import functional as TF
from torchvision.utils import make_grid

import normcore.models
from reproductions.engine import atomic
from reproductions.engine import checkpoint as ckpt
from reproductions.engine.distributed import get_env, print0, unwrap_model
from reproductions.engine.entry import RunContext, Task, TaskParts, last_results, run_task
from reproductions.errors import UserError, run_cli
from reproductions.tasks.classification.data import IMAGE_EXTENSIONS, DataError, _load_image
from reproductions.tasks.pretrained import read_state_dict
from reproductions.tasks.stylization.losses import (
    LossNetwork,
    content_loss,
    gram_matrix,
    random_loss_network,
    resize_short_side,
    style_loss,
    total_variation,
    vgg19_weights_path,
)

__all__ = [
    "ARCHITECTURES",
    "RANDOM_LABEL",
    "STYLIZATION",
    "STYLIZATION_DEFAULTS",
    "ContentImages",
    "LossNetworkWeightsError",
    "PerceptualLoss",
    "build_generator",
    "build_loss_network",
    "main_stylize",
    "main_train",
    "save_grid",
    "save_png",
    "vgg19_layer_indices",
]

ARCHITECTURES = {
    "texture_net": "texture_net_generator",
    "pyramid": "texture_net_generator",  # texture_nets' name for it (-model pyramid)
    "johnson": "johnson_generator",
}
RANDOM_LABEL = "random-loss-network"
"""Put in the name of every file made with the random-weight fallback loss network."""

STYLIZATION_DEFAULTS: dict[str, Any] = {
    "model": {"arch": "texture_net", "norm": "in", "norm_kwargs": {}, "kwargs": {}},
    "data": {
        "root": None,  # folder of content images (searched recursively), e.g. COCO train2014
        "style_image": None,
        "image_size": 256,  # content crops (train.lua -image_size)
        "style_size": 256,  # shorter side of the style image (train.lua -style_size)
        "batch_size": 1,  # images per GPU (train.lua -batch_size)
        "images_per_epoch": 5000,
        "preview_images": 4,
        "workers": 4,
    },
    "loss": {
        "network": "vgg19",  # vgg19 | random (the CPU-scale fallback)
        "vgg_weights": None,  # torchvision vgg19 state_dict; null = the torch hub cache
        # torchvision: RGB [0, 1] with ImageNet mean/std (torchvision's weights); caffe: BGR x 255 minus the mean
        # pixel, as texture_nets feeds its Caffe VGG-19 (needs those weights, converted, in vgg_weights)
        "vgg_input": "torchvision",
        "style_reduction": "sum",  # sum over Gram entries; mean = texture_nets' MSECriterion (C^2 times smaller)
        "content_layers": ["relu4_2"],
        "style_layers": ["relu1_1", "relu2_1", "relu3_1", "relu4_1"],
        "content_weight": 1.0,
        "style_weight": 1.0,
        "tv_weight": 0.0,
        "random_widths": [16, 32, 64, 128],
        "random_seed": 0,
    },
}

_VGG_HINT = (
    "VGG-19 weights are needed for the paper's loss and are never downloaded at run time. Pass --vgg-weights PATH "
    "to torchvision's vgg19 state_dict: on a machine with network access run\n"
    "    python -c \"import torch, torchvision; torch.save(torchvision.models.vgg19(weights='IMAGENET1K_V1')"
    ".state_dict(), 'vgg19.pth')\"\n"
    "and copy vgg19.pth here (or put vgg19-dcbb9e9d.pth in {cache}). To run without them, --loss-network random "
    "trains against a random-weight network (the CPU-scale fallback; not the paper's loss, and labelled so). "
    "The full-scale configs set loss.vgg_input: caffe (texture_nets' input) and need the Caffe VGG-19 converted to "
    "this layout; with torchvision's file add --set loss.vgg_input=torchvision."
)


# --------------------------------------------------------------------------------------------------
# loss network and loss
# --------------------------------------------------------------------------------------------------
def vgg19_layer_indices() -> dict[str, int]:
    """``{"relu1_1": 1, "relu1_2": 3, ..., "relu5_4": 35}``: the index of every named ReLU (and conv) in
    torchvision's ``vgg19().features``, named as the Caffe/Torch VGG-19 that texture_nets loads."""
    names: dict[str, int] = {}
    block, conv = 1, 0
    for index, module in enumerate(tv_vgg.make_layers(tv_vgg.cfgs["E"])):
        if isinstance(module, nn.MaxPool2d):
            block, conv = block + 1, 0
        elif isinstance(module, nn.Conv2d):
            conv += 1
            names[f"conv{block}_{conv}"] = index
        elif isinstance(module, nn.ReLU):
            names[f"relu{block}_{conv}"] = index
    return names


def _vgg19_from_file(path: str | os.PathLike, layers: Sequence[str], input_format: str = "torchvision") -> LossNetwork:
    state = read_state_dict(path)
    features = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    body = tv_vgg.make_layers(tv_vgg.cfgs["E"])
    expected = set(body.state_dict())
    if set(features) != expected:
        missing = sorted(expected - set(features))[:4]
        raise ValueError(
            f"{path} is not a torchvision vgg19 state_dict (features.* keys missing: {missing}); "
            + _VGG_HINT.format(cache=Path(torch.hub.get_dir()) / "checkpoints")
        )
    body.load_state_dict(features)
    index = vgg19_layer_indices()
    description = {
        "name": "vgg19",
        "weights": str(path),
        "layers": list(layers),
        "input_format": input_format,
        "note": "VGG-19 weights must match input_format: torchvision's ImageNet weights take normalized RGB, the "
        "Caffe VGG-19 of texture_nets (same architecture) takes BGR x 255 minus the mean pixel",
    }
    return LossNetwork(body, {name: index[name] for name in layers}, description, input_format=input_format)


class LossNetworkWeightsError(UserError, FileNotFoundError):
    """The VGG-19 weights of the loss network are not there; the message says how to get them."""


def build_loss_network(loss_cfg: Mapping[str, Any]) -> LossNetwork:
    """The frozen loss network with the layers the config asks for: VGG-19 from ``vgg_weights`` (or the
    torch hub cache), or, with ``network: random``, the CPU-scale random-weight network."""
    layers = list(dict.fromkeys([*loss_cfg["content_layers"], *loss_cfg["style_layers"]]))
    kind = str(loss_cfg["network"]).lower()
    if kind == "random":
        net = random_loss_network(tuple(loss_cfg["random_widths"]), int(loss_cfg["random_seed"]))
        unknown = [name for name in layers if name not in net.layers]
        if unknown:
            raise ValueError(f"the random loss network has layers {sorted(net.layers)}, not {unknown}")
        net.description["label"] = f"{RANDOM_LABEL}: CPU-scale fallback, not the paper's VGG-19 loss"
        return net
    if kind != "vgg19":
        raise ValueError(f"loss.network={kind!r}; choose vgg19 or random")
    index = vgg19_layer_indices()
    unknown = [name for name in layers if name not in index]
    if unknown:
        raise ValueError(f"VGG-19 has no layer(s) {unknown}; names look like relu4_2 (block 4, conv 2)")
    path = loss_cfg.get("vgg_weights") or vgg19_weights_path()
    if path is None or not Path(path).is_file():
        where = f"{path} not found. " if path else ""
        raise LossNetworkWeightsError(where + _VGG_HINT.format(cache=Path(torch.hub.get_dir()) / "checkpoints"))
    return _vgg19_from_file(path, layers, str(loss_cfg.get("vgg_input") or "torchvision"))


class PerceptualLoss(nn.Module):
    """The loss of the module docstring for one style image; the style Gram matrices are computed once."""

    def __init__(self, network: LossNetwork, style: torch.Tensor, loss_cfg: Mapping[str, Any]) -> None:
        super().__init__()
        self.network = network
        self.content_layers = list(loss_cfg["content_layers"])
        self.style_layers = list(loss_cfg["style_layers"])
        self.weights = {k: float(loss_cfg[f"{k}_weight"]) for k in ("content", "style", "tv")}
        self.style_reduction = str(loss_cfg.get("style_reduction") or "sum")
        with torch.no_grad():
            feats = network(style[None])
            for name in self.style_layers:
                self.register_buffer(f"gram_{name}", gram_matrix(feats[name].float()))

    def grams(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, f"gram_{name}") for name in self.style_layers}

    def forward(self, output: torch.Tensor, content: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with torch.no_grad():
            target = self.network(content)
        feats = self.network(output)
        feats = {k: v.float() for k, v in feats.items()}
        parts = {
            "content": content_loss(feats, {k: v.float() for k, v in target.items()}, self.content_layers),
            "style": style_loss(feats, self.grams(), self.style_layers, reduction=self.style_reduction),
            "tv": total_variation(output.float()),
        }
        total = sum(self.weights[k] * v for k, v in parts.items())
        return total, {f"loss_{k}": v.detach() for k, v in parts.items()}


# --------------------------------------------------------------------------------------------------
# data and model
# --------------------------------------------------------------------------------------------------
def _image_files(root: str | os.PathLike | None) -> list[Path]:
    if not root:
        raise DataError("no content images given: pass --data FOLDER (e.g. COCO train2014)")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"content folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise DataError(f"{root} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return files


class ContentImages(Dataset):
    """``length`` training samples, each a content image drawn uniformly from ``files`` with torch's RNG
    (seeded per sample by :class:`~reproductions.engine.sampling.SeededDataset`), resized so its shorter
    side is ``size`` and cropped to ``size x size`` at a random position."""

    def __init__(self, files: Sequence[Path], size: int, length: int) -> None:
        self.files = list(files)
        self.size = size
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        path = self.files[int(torch.randint(len(self.files), ()))]
        image = resize_short_side(TF.pil_to_tensor(_load_image(str(path))).float().div_(255.0), self.size)
        h, w = image.shape[-2:]
        top, left = int(torch.randint(h - self.size + 1, ())), int(torch.randint(w - self.size + 1, ()))
        return image[:, top : top + self.size, left : left + self.size]


def load_image(path: str | os.PathLike, short_side: int | None = None, multiple: int = 1) -> torch.Tensor:
    """An RGB image in [0, 1], optionally resized to a shorter side of ``short_side``, cropped at the bottom
    and right to a multiple of ``multiple`` (the generators need sizes divisible by 4 or 32)."""
    image = TF.pil_to_tensor(_load_image(str(path))).float().div_(255.0)
    if short_side:
        image = resize_short_side(image, short_side)
    h, w = (s - s % multiple for s in image.shape[-2:])
    if min(h, w) < multiple:
        raise DataError(f"{path} is too small for the generator (needs at least {multiple}x{multiple} pixels)")
    return image[:, :h, :w]


def build_generator(model_cfg: Mapping[str, Any]) -> nn.Module:
    """``johnson`` (Johnson et al.'s residual generator) or ``texture_net``/``pyramid`` (the multi-scale
    generator), from :mod:`normcore.models`, with ``norm`` (``in`` or ``bn``)."""
    arch = str(model_cfg["arch"])
    if arch not in ARCHITECTURES:
        raise ValueError(f"model.arch={arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    factory = getattr(normcore.models, ARCHITECTURES[arch])
    return factory(norm=model_cfg["norm"], norm_kwargs=model_cfg.get("norm_kwargs") or None,
                   **dict(model_cfg.get("kwargs") or {}))  # fmt: skip


def _size_multiple(model: nn.Module) -> int:
    scales = getattr(unwrap_model(model), "scales", None)
    return 2 ** (scales - 1) if scales else 4


def _is_random(description: Mapping[str, Any]) -> bool:
    return description.get("name") != "vgg19"


def save_png(path: Path, image: torch.Tensor, description: Mapping[str, Any]) -> Path:
    """A ``(3, H, W)`` image in [0, 1] as a PNG whose metadata (text chunk ``normcore-stylization``)
    records ``description`` (the loss network and the style); written atomically."""
    pixels = Image.fromarray(image.clamp(0, 1).float().cpu().mul(255).round().byte().permute(1, 2, 0).numpy())
    info = PngImagePlugin.PngInfo()
    info.add_text("normcore-stylization", json.dumps(dict(description)))
    return atomic.atomic_write(path, lambda fh: pixels.save(fh, format="PNG", pnginfo=info))


def save_grid(path: Path, top: torch.Tensor, bottom: torch.Tensor, description: Mapping[str, Any]) -> Path:
    """A PNG grid: the ``top`` images (e.g. content) above the ``bottom`` ones (their stylizations)."""
    grid = make_grid(torch.cat([top, bottom]).clamp(0, 1).float().cpu(), nrow=len(top), padding=2)
    return save_png(path, grid, description)


# --------------------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------------------
def _add_style_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--style", help="the style image (sets data.style_image)")
    parser.add_argument("--vgg-weights", help="torchvision vgg19 state_dict file (sets loss.vgg_weights)")
    parser.add_argument(
        "--loss-network", choices=("vgg19", "random"), help="random = the CPU-scale fallback (labelled in outputs)"
    )


def main_train(argv: Sequence[str] | None = None, *, paper: str = "instance_norm", description: str = ""):
    """``train``: fit a generator to one style; returns the final metrics on rank 0."""
    return run_task(STYLIZATION, argv, paper=paper, description=description)


def _prepare(ctx: RunContext) -> None:
    """Find the content images, check the style image, load the loss network (and name a run trained
    with the random fallback as such) before the session starts."""
    cfg = ctx.cfg
    data = cfg["data"]
    ctx.prepared["files"] = _image_files(data["root"])
    if not data.get("style_image") or not Path(data["style_image"]).is_file():
        raise DataError(f"style image not found: {data.get('style_image')!r}; pass --style PATH")
    network = build_loss_network(cfg["loss"])
    if _is_random(network.description):
        cfg["name"] = f"{cfg.get('name') or 'style'}_{RANDOM_LABEL}"
    ctx.prepared["network"] = network


def _build(ctx: RunContext) -> TaskParts:
    cfg, run = ctx.cfg, ctx.run
    assert run is not None
    data = cfg["data"]
    files: list[Path] = ctx.prepared["files"]
    network: LossNetwork = ctx.prepared["network"]
    device = run.env.device
    generator = build_generator(cfg["model"])
    multiple = _size_multiple(generator)
    size = int(data["image_size"])
    if size % multiple:
        raise ValueError(
            f"data.image_size={size} must be divisible by {multiple} for model.arch={cfg['model']['arch']}"
        )
    style = load_image(data["style_image"], int(data["style_size"]))
    criterion = PerceptualLoss(network, style, cfg["loss"]).to(device)
    random_net = _is_random(network.description)
    print0(
        f"data: {len(files)} content images, {data['images_per_epoch']} per epoch; style {data['style_image']}; "
        f"loss network: {network.description['name']}"
        + (f" ({RANDOM_LABEL}: the CPU-scale fallback, NOT the paper's VGG-19 loss)" if random_net else "")
    )
    # the first images of the folder, center-free crops of size x size: the same every epoch
    previews = torch.stack([load_image(p, size)[:, :size, :size] for p in files[: int(data["preview_images"])]])
    suffix = f"_{RANDOM_LABEL}" if random_net else ""
    samples = run.out_dir / "samples"

    def loss_fn(m: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return criterion(m(batch), batch)

    def evaluate(m: nn.Module) -> dict[str, float]:
        net = unwrap_model(m)
        net.eval()
        out = net(previews.to(device))
        loss, parts = criterion(out.float(), previews.to(device))
        assert ctx.trainer is not None
        epoch = len(ctx.trainer.history) + 1  # the epoch being evaluated
        if get_env().is_main:
            save_grid(samples / f"epoch{epoch:03d}{suffix}.png", previews, out.float(), network.description)
        return {"preview_loss": float(loss), **{f"preview_{k}": float(v) for k, v in parts.items()}}

    return TaskParts(
        model=generator,
        train_set=ContentImages(files, size, int(data["images_per_epoch"])),
        loss_fn=loss_fn,
        evaluate=evaluate,
        summarize=lambda history: last_results(history, lambda k: k.startswith(("preview_", "train_loss"))),
        extra_metrics=lambda: {"loss_network": dict(network.description)},
        report=lambda _: (
            f"samples in {samples}" + (f" (trained with the {RANDOM_LABEL} fallback)" if random_net else "")
        ),
    )


STYLIZATION = Task(
    name="stylization",
    defaults=STYLIZATION_DEFAULTS,
    build=_build,
    prepare=_prepare,
    add_arguments=_add_style_flags,
    flag_keys={"style": "data.style_image", "vgg_weights": "loss.vgg_weights", "loss_network": "loss.network"},
    description="IN paper: train a feed-forward stylization generator",
    eval_only=False,
)
"""Feed-forward stylization training as :func:`~reproductions.engine.entry.run_task` runs it."""


# --------------------------------------------------------------------------------------------------
# stylize
# --------------------------------------------------------------------------------------------------
def main_stylize(argv: Sequence[str] | None = None) -> list[Path]:
    """``stylize``: apply a trained generator to an image or a folder; writes one PNG per input and a grid
    (inputs above, outputs below). Returns the written paths. A user error (a missing checkpoint or input)
    is one ``error:`` paragraph and exit status 2 (``--debug``: the traceback)."""
    return run_cli(_stylize, argv)


def _stylize(argv: Sequence[str]) -> list[Path]:
    parser = argparse.ArgumentParser(description="Stylize images with a generator trained by train_style")
    parser.add_argument("--checkpoint", required=True, help="checkpoint.pt of a train_style run (or its folder)")
    parser.add_argument("--input", required=True, help="an image or a folder of images")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--size", type=int, help="resize inputs to this shorter side (default: as they are)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--trusted-checkpoint", action="store_true", help="load a full pickle (weights_only=False)")
    args = parser.parse_args(argv)
    path = ckpt.resolve_resume(args.checkpoint, Path(args.checkpoint).parent, flag="--checkpoint")
    state = ckpt.load_checkpoint(path, trusted=args.trusted_checkpoint)
    cfg = state.get("config") or {}
    if "model" not in cfg or "loss" not in cfg:
        raise ckpt.CheckpointError(
            f"{path} is not a train_style checkpoint (its config has no model/loss section); pass --checkpoint "
            f"with the checkpoint.pt (or the run folder) of a train_style run"
        )
    generator = build_generator(cfg["model"])
    generator.load_state_dict(state["model"])
    device = torch.device(args.device)
    generator.to(device).eval()
    multiple = _size_multiple(generator)
    label = f"_{RANDOM_LABEL}" if str(cfg["loss"]["network"]).lower() == "random" else ""
    description = {"checkpoint": str(path), "loss_network": cfg["loss"]["network"], "style": cfg["data"]["style_image"]}
    inputs = [Path(args.input)] if Path(args.input).is_file() else _image_files(args.input)
    out_dir = Path(args.out)
    written, pairs = [], []
    with torch.no_grad():
        for source in inputs:
            image = load_image(source, args.size, multiple)
            output = generator(image[None].to(device))[0].float().clamp(0, 1).cpu()
            target = out_dir / f"{source.stem}_stylized{label}.png"
            written.append(save_png(target, output, description))
            pairs.append((image, output))
    if pairs:
        h = min(i.shape[-2] for i, _ in pairs)
        w = min(i.shape[-1] for i, _ in pairs)
        top = torch.stack([F.interpolate(i[None], size=(h, w), mode="area")[0] for i, _ in pairs])
        bottom = torch.stack([F.interpolate(o[None], size=(h, w), mode="area")[0] for _, o in pairs])
        written.append(save_grid(out_dir / f"grid{label}.png", top, bottom, description))
    for p in written:
        print(p)
    return written
