"""Weight Standardization / Batch-Channel Normalization (Qiao et al., arXiv 1903.10520): ImageNet
classification with ResNet-50/101: BN, BN+WS, GN, GN+WS and BCN+WS.

One config per row in ``reproductions/weight_standardization/configs/`` (the README maps each to its
source and published number)::

    torchrun --nproc_per_node=4 -m reproductions.weight_standardization.train_imagenet \\
        --config reproductions/weight_standardization/configs/r50_gn_ws.yaml --data /datasets/imagenet

GN+WS uses no batch statistics, so, as the official repository remarks, "batch size 256, iteration size
1" equals "batch size 1, iteration size 256": the GN+WS configs train at 64 images/GPU, and
``--batch-size 1 --accum-steps 64`` runs the literal micro-batch version.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reproductions.tasks.classification.main import main as classification_main


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    return classification_main(argv, paper="weight_standardization", description=__doc__)


if __name__ == "__main__":
    main()
