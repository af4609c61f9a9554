"""Group Normalization (Wu & He, ECCV 2018): ImageNet classification, Tables 1-3 and the ResNet-101 rows.

One config per table row in ``reproductions/group_norm/configs/`` (the README maps each to its row and
published number)::

    torchrun --nproc_per_node=8 -m reproductions.group_norm.train_imagenet \\
        --config reproductions/group_norm/configs/table2_gn_2img.yaml --data /datasets/imagenet
    # the paper's 8 GPUs simulated on one (BN statistics per virtual device):
    python -m reproductions.group_norm.train_imagenet \\
        --config reproductions/group_norm/configs/table2_bn_2img.yaml --data /datasets/imagenet --virtual-devices 8

See ``python -m reproductions.group_norm.train_imagenet --help`` for the engine flags.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reproductions.tasks.classification.main import main as classification_main


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    return classification_main(argv, paper="group_norm", description=__doc__)


if __name__ == "__main__":
    main()
