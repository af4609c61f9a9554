"""normcore.models: the six papers' architectures, each taking its normalization (and, for conv nets, its
convolution) from the normcore registry: ``norm`` is a registered name, a config dict, a callable
``num_channels -> Module`` or ``None``; ``conv`` is ``"conv"``, ``"ws"`` or a config dict, applied with
:func:`normcore.convert_convs` to the convolutions that feed a norm.

Builders (module in brackets):

* ``resnet18``, ``resnet34``, ``resnet50``, ``resnet101`` [resnet]: ImageNet ResNets as torchvision builds
  them (He et al. 2016, Table 1), with the GN paper's init (§4.1: last gamma of each block 0); the GN and
  WS papers' ImageNet models.
* ``resnext50_32x4d``, ``resnext101_32x4d`` [resnet]: ResNeXt 32x4d (Xie et al. 2017, Table 1) from the same
  torchvision constructor; the WS paper's X-50/X-101.
* ``small_resnet`` [resnet]: the CIFAR ResNet, 6n+2 layers (He et al. 2016, §4.2), for CPU-scale runs.
* ``mnist_mlp`` [mlp]: the BN paper's MNIST network (§4.1, Figure 1): 3 x 100 sigmoid units.
* ``mlp`` [mlp]: general MLP; the LN paper's permutation-invariant MNIST net (§6.6, 784-1000-1000-10).
* ``bn_inception`` [inception]: BN-Inception (BN paper §4.2 and its appendix table).
* ``nin`` [nin]: Network in Network (Lin et al. 2014), the family of the NormProp paper's experiments,
  with NormProp conv + ReLU, a registry norm, or no norm.
* ``johnson_generator`` [stylization]: the IN paper's Johnson et al. residual generator (§3; texture_nets
  ``models/johnson.lua``).
* ``texture_net_generator`` [stylization]: the IN paper's Ulyanov et al. multi-scale generator (§3;
  texture_nets ``models/pyramid.lua``).
* ``LNLSTMCell``, ``LSTM`` [lstm]: the LN-LSTM (LN paper §3.1 and the supplementary LSTM equations) and
  the plain LSTM with the same parametrisation.
* ``sequential_mnist_classifier`` [lstm]: row-by-row MNIST with an (LN-)LSTM, a CPU-scale LN check.

Shared pieces (:mod:`normcore.models.common`): :func:`zero_init_last_gamma` (what "gamma" means for each
norm, BCN and FrozenBN included) and :func:`apply_conv_choice`. Each builder's docstring states how it
differs from its paper.
"""

from normcore.models.common import ConvNormAct, apply_conv_choice, zero_init_last_gamma
from normcore.models.inception import BNInception, bn_inception
from normcore.models.lstm import LSTM, LNLSTMCell, SequentialMNISTClassifier, sequential_mnist_classifier
from normcore.models.mlp import MLP, mlp, mnist_mlp
from normcore.models.nin import NIN, nin
from normcore.models.resnet import (
    TORCHVISION_RESNETS,
    SmallResNet,
    residual_last_norms,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnext50_32x4d,
    resnext101_32x4d,
    small_resnet,
)
from normcore.models.stylization import (
    JohnsonGenerator,
    TextureNetGenerator,
    johnson_generator,
    texture_net_generator,
)

__all__ = [
    "LSTM",
    "MLP",
    "NIN",
    "TORCHVISION_RESNETS",
    "BNInception",
    "ConvNormAct",
    "JohnsonGenerator",
    "LNLSTMCell",
    "SequentialMNISTClassifier",
    "SmallResNet",
    "TextureNetGenerator",
    "apply_conv_choice",
    "bn_inception",
    "johnson_generator",
    "mlp",
    "mnist_mlp",
    "nin",
    "residual_last_norms",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnext50_32x4d",
    "resnext101_32x4d",
    "sequential_mnist_classifier",
    "small_resnet",
    "texture_net_generator",
    "zero_init_last_gamma",
]
