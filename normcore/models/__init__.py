"""normcore.models: the six papers' architectures, each taking its normalization (and, for conv nets, its
convolution) from the normcore registry: ``norm`` is a registered name, a config dict, a callable
``num_channels -> Module`` or ``None``; ``conv`` is ``"conv"``, ``"ws"`` or a config dict, applied with
:func:`normcore.convert_convs` to the convolutions that feed a norm.

======================================  ==========================================================  =========
builder                                 architecture (paper, section)                               module
======================================  ==========================================================  =========
``resnet18/34/50/101``                  ImageNet ResNets, torchvision-built (He et al. 2016 Table 1;  resnet
                                        GN paper §4.1 init: last gamma of each block 0; WS paper §6)
``small_resnet``                        CIFAR ResNet, 6n+2 layers (He et al. 2016 §4.2), CPU scale  resnet
``mnist_mlp``                           BN paper §4.1 / Fig. 1: 3x100 sigmoid MLP on MNIST           mlp
``mlp``                                 general MLP; LN paper §6.6: 784-1000-1000-10, LN on hidden  mlp
``bn_inception``                        BN paper §4.2 and appendix table: BN-Inception               inception
``nin``                                 Network in Network (Lin et al. 2014), NormProp paper §5      nin
                                        (NormProp conv + ReLU, or BN, or no norm)
``johnson_generator``                   IN paper §3: Johnson et al. residual generator               stylization
                                        (texture_nets ``models/johnson.lua``)
``texture_net_generator``               IN paper §3: Ulyanov et al. multi-scale generator            stylization
                                        (texture_nets ``models/pyramid.lua``)
``LNLSTMCell``, ``LSTM``                LN paper §3.1 + supplementary LSTM equations: LN-LSTM        lstm
``sequential_mnist_classifier``         row-by-row MNIST with an (LN-)LSTM, CPU-scale LN check       lstm
======================================  ==========================================================  =========

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
    SmallResNet,
    residual_last_norms,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
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
    "sequential_mnist_classifier",
    "small_resnet",
    "texture_net_generator",
    "zero_init_last_gamma",
]
