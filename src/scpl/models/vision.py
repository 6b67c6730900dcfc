"""Vision models from the SCPL appendix (A.1): VGG, ResNet-18 and a plain conv stack
(the paper's vanilla ConvNet is ``vanilla-convnet`` in paper_nets.py).

Each builder returns a StagedModel whose default partition is the paper's split at K=4.
Input-shape adaptation: pooling/striding stops shrinking a feature map once it is 1x1, so
1x28x28 (Fashion-MNIST), 1x8x8 (digits), 3x32x32 (CIFAR) and 3x64x64 (Tiny-ImageNet) all work.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from scpl.errors import ConfigError
from scpl.models.base import (
    StagedModel,
    check_num_stages,
    even_partition,
    register_model,
    scaled,
)


def conv_bn_relu(c_in: int, c_out: int, batch_norm: bool = True) -> nn.Sequential:
    """Conv3x3-BN-ReLU; without BN the conv gets a bias (used where micro-batches must match
    full-batch BP exactly: BN statistics depend on the micro-batch)."""
    if not batch_norm:
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU())
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()
    )


def maybe_pool(size: int) -> tuple[nn.Module, int]:
    """2x2 max-pool if the map is still at least 2 pixels wide, else identity (small inputs)."""
    if size >= 2:
        return nn.MaxPool2d(2), size // 2
    return nn.Identity(), size


def _spatial(input_shape: tuple[int, ...]) -> int:
    return min(input_shape[1], input_shape[2])


# Reference VGG (SCPL code): [128,256,M] [256,512,M] [512,M] [512,M]; classifier FC-sigmoid-FC
# with 2500 hidden units. Units are single conv layers (a pool follows the last conv of a block).
VGG_BLOCKS: tuple[tuple[int, ...], ...] = ((128, 256), (256, 512), (512,), (512,))
VGG_CLASSIFIER_HIDDEN = 2500


@register_model(
    "vgg", help="VGG (6 conv-BN-ReLU, 4 max-pools), classifier FC-sigmoid-FC; paper split"
)
def vgg(
    input_shape: tuple[int, ...],
    num_classes: int,
    num_stages: int = 4,
    width: float = 1.0,
    partition: Sequence[int] | None = None,
    classifier_hidden: int = VGG_CLASSIFIER_HIDDEN,
    batch_norm: bool = True,
) -> StagedModel:
    """VGG from the appendix; K=4 gives [CC-MP] [CC-MP] [C-MP] [C-MP]."""
    units: list[nn.Module] = []
    c_in, size = input_shape[0], _spatial(input_shape)
    for block in VGG_BLOCKS:
        for j, c in enumerate(block):
            layers: list[nn.Module] = [conv_bn_relu(c_in, scaled(c, width), batch_norm)]
            c_in = scaled(c, width)
            if j == len(block) - 1:
                pool, size = maybe_pool(size)
                layers.append(pool)
            units.append(nn.Sequential(*layers))
    check_num_stages(num_stages, len(units), "vgg")
    if partition is None:
        partition = [2, 2, 1, 1] if num_stages == 4 else even_partition(len(units), num_stages)
    flat = c_in * size * size
    hidden = max(16, int(round(classifier_hidden * width)))
    classifier = nn.Sequential(
        nn.Flatten(), nn.Linear(flat, hidden), nn.Sigmoid(), nn.Linear(hidden, num_classes)
    )
    return StagedModel(units, classifier, input_shape, num_classes, partition, name="vgg")


class BasicBlock(nn.Module):
    """ResNet BasicBlock as in the appendix: conv-BN-LeakyReLU-conv-BN + shortcut, then
    LeakyReLU. As in the authors' code the shortcut is the identity unless the block changes
    the map (stride or channels); then it is a 1x1 conv + BN."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )
        self.act = nn.LeakyReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act(out + self.shortcut(x))


RESNET_WIDTHS = (64, 128, 256, 512)


@register_model(
    "resnet18",
    help="ResNet-18 (stem + 8 BasicBlocks, LeakyReLU, identity shortcuts unless downsampling)",
)
def resnet18(
    input_shape: tuple[int, ...],
    num_classes: int,
    num_stages: int = 4,
    width: float = 1.0,
    partition: Sequence[int] | None = None,
) -> StagedModel:
    """ResNet-18; K=4 gives [stem + 2 blocks] [2 blocks] [2 blocks] [2 blocks]."""
    units: list[nn.Module] = []
    c_in, size = input_shape[0], _spatial(input_shape)
    stem_c = scaled(64, width)
    stem = conv_bn_relu(c_in, stem_c)
    c_in = stem_c
    for i, c in enumerate(RESNET_WIDTHS):
        c = scaled(c, width)
        for j in range(2):
            # Downsample at the first block of groups 2-4, unless the map is already 1x1.
            stride = 2 if (i > 0 and j == 0 and size >= 2) else 1
            if stride == 2:
                size = (size + 1) // 2
            block = BasicBlock(c_in, c, stride)
            c_in = c
            units.append(block)
    # The stem is a unit of its own (a cut point for balancing); by default it travels with the
    # first block, so the default stages are the paper's ([stem + 2 blocks] [2] [2] [2] at K=4).
    units.insert(0, stem)
    check_num_stages(num_stages, len(units), "resnet18")
    if partition is None:
        if num_stages < len(units):
            partition = even_partition(len(units) - 1, num_stages)
            partition[0] += 1
        else:
            partition = [1] * len(units)
    classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes))
    return StagedModel(units, classifier, input_shape, num_classes, partition, name="resnet18")


CONVNET_CHANNELS = (128, 256, 512)


@register_model(
    "convnet",
    help="alias of convnet-bn: one Conv-BN-ReLU-MP layer per stage (not the paper's "
    "vanilla-convnet)",
)
def convnet(
    input_shape: tuple[int, ...],
    num_classes: int,
    num_stages: int = 4,
    width: float = 1.0,
    partition: Sequence[int] | None = None,
    num_layers: int | None = None,
    pool: bool = True,
    batch_norm: bool = True,
) -> StagedModel:
    """Plain conv stack: layer i has 128*2^i channels (capped at 512), each followed by a 2x2
    max-pool (keeps the flattened head/classifier input small; ``pool=False`` is Algorithm 2).
    By default one layer per stage, so any K >= 1 fits."""
    if num_layers is None and num_stages < 1:
        # One layer per stage: any K >= 1 fits (check_num_stages would say "between 1 and 0").
        raise ConfigError(f"--stages {num_stages} does not fit convnet; choose --stages 1 or more")
    num_layers = num_layers or num_stages
    check_num_stages(num_stages, num_layers, "convnet")
    units: list[nn.Module] = []
    c_in, size = input_shape[0], _spatial(input_shape)
    for i in range(num_layers):
        c = scaled(CONVNET_CHANNELS[min(i, len(CONVNET_CHANNELS) - 1)], width)
        layers: list[nn.Module] = [conv_bn_relu(c_in, c, batch_norm)]
        if pool:
            p, size = maybe_pool(size)
            layers.append(p)
        units.append(nn.Sequential(*layers))
        c_in = c
    if partition is None:
        partition = even_partition(num_layers, num_stages)
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(c_in * size * size, num_classes))
    return StagedModel(units, classifier, input_shape, num_classes, partition, name="convnet")
