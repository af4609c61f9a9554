"""normcore.models: the papers' architectures, each taking a norm and a conv choice from the registry.

(Module list completed below as the architectures land.)
"""

from normcore.models.common import apply_conv_choice, zero_init_last_gamma
from normcore.models.resnet import resnet18, resnet34, resnet50, resnet101, small_resnet

__all__ = [
    "apply_conv_choice",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "small_resnet",
    "zero_init_last_gamma",
]
