"""The lookahead head (``--head lookahead``): each hidden stage's projection head begins with a
trainable copy of the units that follow the stage (``--lookahead-units``, default 2: one stage
of the vanilla ConvNet at K=4), then the light ``mlp-pool`` head.

Greedy local learning is myopic: a stage trained through a shallow head keeps what that head can
use now and drops what later stages would need (``scpl probe`` shows it here: the local methods'
first stage is more separable than BP's, their later stages add little). Auxiliary networks
with the depth of what follows make the local objective look ahead: DGL (Belilovsky et al.
2020, "Decoupled Greedy Learning of CNNs") and AugLocal (Ma et al. 2024, "Scaling Supervised
Local Learning with Augmented Auxiliary Networks", which builds each auxiliary network from the
layers after the stage). Here the copy is made when the method attaches (it starts from those
units' initial weights and draws nothing from the RNG) and is then trained by this stage's local
loss only. Nothing crosses a stage boundary: unlike ``--head man`` no weights travel.

The head is defined by units, not stages, so a stage's price does not depend on how the next
stage is cut: the per-unit FLOP profile prices it exactly, and ``--partition auto`` and the
time-to-accuracy table see it.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from scpl.errors import ConfigError
from scpl.methods.base import POOL_SIZE, make_head


def units_after(model: nn.Module, index: int, count: int) -> list[nn.Module]:
    """The first ``count`` units after stage ``index`` (fewer where the network ends)."""
    units: list[nn.Module] = []
    for stage, n in zip(model.stages, model.partition, strict=True):
        units.extend([stage] if n == 1 else list(stage))
    first = sum(model.partition[: index + 1])
    return units[first : first + count]


class LookaheadHead(nn.Module):
    """Copies of the units after a stage (independent parameters), then ``mlp-pool``."""

    def __init__(
        self,
        units: list[nn.Module],
        shape: tuple[int, ...],
        out_dim: int,
        pool: int = POOL_SIZE,
    ) -> None:
        super().__init__()
        if len(shape) != 3:
            raise ConfigError(
                f"--head lookahead runs copies of the next units on this stage's map, but the "
                f"stage outputs {tuple(shape)} (conv models only); use --head mlp-pool"
            )
        self.shape = tuple(shape)
        self.body = nn.Sequential(*(copy.deepcopy(u) for u in units))
        with torch.no_grad():  # the copies' output shape, in eval mode (BatchNorm stays put)
            self.body.eval()
            probe = next(self.body.parameters(), torch.empty(0))  # wherever the units are
            out_shape = tuple(self.body(probe.new_zeros(2, *shape)).shape[1:])
            self.body.train()
        self.tail = make_head("mlp-pool", math.prod(out_shape), out_dim, shape=out_shape, pool=pool)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = self.body(feats.reshape(feats.shape[0], *self.shape))
        return self.tail(x.flatten(1))


__all__ = ["LookaheadHead", "units_after"]
