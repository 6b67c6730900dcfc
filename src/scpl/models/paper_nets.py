"""The paper's vanilla ConvNet, and the name of the plain conv stack it is not.

``vanilla-convnet`` is the network of the SCPL / Delog-SCL experiments ("vanilla ConvNet" in
Tables 2-3 and 7-8) as the authors' code defines it (``CNN`` / ``CNN_SCPL``): eight 3x3
convolutions with bias and ReLU, no BatchNorm and no pooling -- 32, 32, 32, 32 (stride 2),
64, 64, 64, 64 (stride 2) channels -- and the classifier Flatten-FC(4096, 1500)-Sigmoid-FC(1500,
C) (4096 = 64 x 8 x 8 at 32x32 inputs; 1500 = 5 x 300 "neurons"). Four stages of two convs each.

``convnet-bn`` is what ``convnet`` has always built here: one Conv-BN-ReLU-MaxPool layer per
stage with 128/256/512 channels and a linear classifier (Algorithm 2 of the appendix with BN and
pooling added). ``convnet`` stays as an alias, so recipes and results that name it still work.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from scpl.models.base import (
    StagedModel,
    check_num_stages,
    even_partition,
    register_model,
    scaled,
)
from scpl.models.vision import convnet

# (channels, stride) of the eight convolutions of the authors' CNN.
VANILLA_CONVS: tuple[tuple[int, int], ...] = (
    (32, 1),
    (32, 1),
    (32, 1),
    (32, 2),
    (64, 1),
    (64, 1),
    (64, 1),
    (64, 2),
)
VANILLA_CLASSIFIER_HIDDEN = 1500


@register_model(
    "vanilla-convnet",
    help="the paper's vanilla ConvNet: 8 conv-ReLU (32/64 ch., two stride-2), no BN, "
    "FC-sigmoid-FC(1500) classifier; 2 convs per stage",
)
def vanilla_convnet(
    input_shape: tuple[int, ...],
    num_classes: int,
    num_stages: int = 4,
    width: float = 1.0,
    partition: Sequence[int] | None = None,
    classifier_hidden: int = VANILLA_CLASSIFIER_HIDDEN,
) -> StagedModel:
    """Vanilla ConvNet of the authors' code; one unit per convolution, K=4 gives [CC] x 4.

    A stride-2 convolution on a 1-pixel-wide map keeps stride 1 (tiny inputs such as digits)."""
    units: list[nn.Module] = []
    c_in, h, w = input_shape[0], input_shape[1], input_shape[2]
    for c, stride in VANILLA_CONVS:
        c_out = scaled(c, width)
        stride = stride if min(h, w) >= 2 else 1
        units.append(nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, padding=1), nn.ReLU()))
        c_in = c_out
        h, w = (h - 1) // stride + 1, (w - 1) // stride + 1
    check_num_stages(num_stages, len(units), "vanilla-convnet")
    if partition is None:
        partition = even_partition(len(units), num_stages)
    hidden = max(16, int(round(classifier_hidden * width)))
    flat = c_in * h * w  # 4096 at 3x32x32 and width 1
    classifier = nn.Sequential(
        nn.Flatten(), nn.Linear(flat, hidden), nn.Sigmoid(), nn.Linear(hidden, num_classes)
    )
    return StagedModel(
        units, classifier, input_shape, num_classes, partition, name="vanilla-convnet"
    )


register_model(
    "convnet-bn",
    help="plain conv stack: one Conv-BN-ReLU-MaxPool layer per stage (128/256/512 ch.), "
    "linear classifier (alias: convnet)",
)(convnet)
