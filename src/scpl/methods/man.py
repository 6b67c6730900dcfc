"""The momentum auxiliary head (MAN; Su et al., ECCV 2024, "Momentum Auxiliary Network for
Supervised Local Learning"): SCPL's ``--head man``.

A local head sees only its own stage, so what it rewards need not be what the next stage can
use. MAN's head starts with a copy of the *next* stage's first layer, kept as an exponential
moving average (momentum ``m``, 0.995 in the paper) of that layer's weights, plus a bias of its
own that the local loss trains; the rest of the head is SCPL's light head (pool to 2 x 2, MLP,
projection). The EMA weights get no gradient: only the next stage's optimizer moves them, one
step late. So the head scores a stage's output with the features its consumer extracts now.

What crosses a stage boundary backward is the next stage's first-layer weight, never a
gradient, and staleness is fine: stage l+1 sends the weight it will train batch t with (after
its update t-1) when it starts batch t, every ``man_every`` steps; stage l folds it into the EMA
after its own update of batch t, so the EMA serves from batch t+1. Every executor runs that
order (``StageRunner.begin`` / ``_op_U``), so pipelined and multi-process runs stay bitwise the
sequential reference. The exchange bounds how far stage l may run ahead of stage l+1 to about
one batch (it waits at its update of batch t until l+1 has started batch t); in the steady
state of a pipeline the slowest stage sets the pace anyway.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from scpl.errors import ConfigError
from scpl.methods.base import make_head


def next_first_conv(stages: nn.ModuleList, index: int) -> nn.Conv2d:
    """The first Conv2d of stage ``index + 1`` (the layer stage ``index``'s head mirrors)."""
    for m in stages[index + 1].modules():
        if isinstance(m, nn.Conv2d):
            return m
        if isinstance(m, (nn.Linear, nn.LSTM, nn.GRU, nn.Embedding, nn.MultiheadAttention)):
            break
    raise ConfigError(
        f"--head man mirrors the next stage's first convolution, but stage {index + 1} does not "
        "start with one (text and MLP models); use --head mlp-pool"
    )


class MomentumHead(nn.Module):
    """Projection head whose first layer is an EMA of the next stage's first convolution plus a
    learnable bias, then ReLU, 2 x 2 average pooling and the MLP (``mlp-pool``'s)."""

    replica_equal_buffers = ("weight",)
    """Buffers equal on every data-parallel replica by construction (the EMA follows weights
    that are averaged every step): averaging them again would only add rounding."""

    def __init__(
        self,
        conv: nn.Conv2d,
        shape: tuple[int, ...],
        out_dim: int,
        momentum: float,
        hidden: int = 512,
    ) -> None:
        super().__init__()
        if len(shape) != 3 or shape[0] != conv.in_channels:
            raise ConfigError(
                f"--head man: the stage outputs {tuple(shape)} but the next stage's first "
                f"convolution takes {conv.in_channels} channels; use --head mlp-pool"
            )
        if not 0.0 <= momentum < 1.0:
            raise ConfigError(f"--man-momentum {momentum} must be in [0, 1), e.g. 0.995")
        self.shape = tuple(shape)
        self.momentum = momentum
        self.stride, self.padding = conv.stride, conv.padding
        self.dilation, self.groups = conv.dilation, conv.groups
        # Starts as the next stage's initial weights (every executor builds the whole model
        # before placing stages, so all start from the same copy).
        self.register_buffer("weight", conv.weight.detach().clone())
        b = conv.bias.detach().clone() if conv.bias is not None else torch.zeros(conv.out_channels)
        self.bias = nn.Parameter(b)
        c, h, w = shape
        oh = h + 2 * conv.padding[0] - conv.dilation[0] * (conv.kernel_size[0] - 1) - 1
        ow = w + 2 * conv.padding[1] - conv.dilation[1] * (conv.kernel_size[1] - 1) - 1
        oh, ow = oh // conv.stride[0] + 1, ow // conv.stride[1] + 1
        # The mlp-pool head's pooling and MLP over the (ReLU of the) mirrored convolution.
        self.tail = make_head(
            "mlp-pool", conv.out_channels * oh * ow, out_dim, hidden, (conv.out_channels, oh, ow)
        )
        self.register_load_state_dict_pre_hook(_earlier_keys)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = feats.reshape(feats.shape[0], *self.shape)
        # The EMA weight is a buffer (no gradient); the stage and the bias learn through it.
        x = F.conv2d(
            x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )
        return self.tail(F.relu(x).flatten(1))

    @torch.no_grad()
    def fold(self, next_weight: torch.Tensor) -> None:
        """One EMA step towards the next stage's current first-layer weight."""
        self.weight.mul_(self.momentum).add_(next_weight.to(self.weight), alpha=1 - self.momentum)


def _earlier_keys(module, state_dict, prefix, *_args) -> None:
    """Checkpoints written before the head reused ``make_head`` named its MLP ``mlp.0/2``."""
    for old, new in (("mlp.0.", "tail.3."), ("mlp.2.", "tail.5.")):
        for key in [k for k in state_dict if k.startswith(prefix + old)]:
            state_dict[prefix + new + key[len(prefix + old) :]] = state_dict.pop(key)


def feedback_due(step: int, every: int) -> bool:
    """Whether the next stage's weight travels back at training step ``step`` (0-based)."""
    return step % every == 0


__all__ = ["MomentumHead", "feedback_due", "next_first_conv"]
