"""Normalization Propagation (Arpit et al., ICML 2016): NIN-style networks on CIFAR-10, CIFAR-100 and
SVHN, NormProp against BN.

One config per row in ``reproductions/normprop/configs/``. The paper's experimental settings were not
found (see the README); the configs use documented defaults and say so::

    python -m reproductions.normprop.train_cifar --config reproductions/normprop/configs/cifar10_normprop.yaml \\
        --data /datasets/cifar10            # the folder holding cifar-10-batches-py
    # add --download to let torchvision fetch the dataset into --data (network needed)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reproductions.tasks.classification.main import main as classification_main


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    return classification_main(argv, paper="normprop", description=__doc__)


if __name__ == "__main__":
    main()
