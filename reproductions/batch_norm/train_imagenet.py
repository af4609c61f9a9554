"""Batch Normalization (Ioffe & Szegedy, ICML 2015): BN-Inception on ImageNet, the Figure 3 rows
(Inception, BN-Baseline, BN-x5, BN-x30, BN-x5-Sigmoid).

One config per row in ``reproductions/batch_norm/configs/``::

    torchrun --nproc_per_node=8 -m reproductions.batch_norm.train_imagenet \\
        --config reproductions/batch_norm/configs/bn_x30.yaml --data /datasets/imagenet

The summary reports the maximum accuracy (100 - best top-1 error) and the first step at which the
top-1 accuracy reaches 72.2% (Figure 3's "steps to 72.2%"), measured once per epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reproductions.tasks.classification.main import main as classification_main


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    return classification_main(argv, paper="batch_norm", description=__doc__)


if __name__ == "__main__":
    main()
