"""SCPL's ``--local-recon W``: each hidden stage also reconstructs its own input.

Why: a linear probe on every stage (``scpl probe``; docs/LOG.md 2026-12-05) shows SCPL's and
Early Exit's first stages *more* linearly separable than BP's, and their later stages adding
little or nothing: a greedy local objective throws away early what later stages need (the
"information collapse" of Wang et al. 2021, "Revisiting Locally Supervised Learning: an
Alternative to End-to-end Training", InfoPro). InfoPro keeps the information with a
reconstruction term beside the local classifier. Ours is stage-local: stage l decodes the
(detached) input it received -- the image for stage 1, the previous stage's output after
that -- so nothing but activations and labels crosses a boundary, and if every stage keeps
what its input held, so does the chain. The decoder is cheap: one 3x3 convolution at the
output's side, then a bilinear resize to the input's; the loss is the mean squared error in float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from scpl.errors import ConfigError
from scpl.methods.supcon import fp32_loss


class InputDecoder(nn.Module):
    """Predicts a stage's C_in x H_in x W_in input from its C x H x W output."""

    def __init__(self, out_shape: tuple[int, ...], in_shape: tuple[int, ...]) -> None:
        super().__init__()
        if len(out_shape) != 3 or len(in_shape) != 3:
            raise ConfigError(
                "--local-recon reconstructs image maps (C x H x W) and this stage's input or "
                f"output is not one ({tuple(in_shape)} -> {tuple(out_shape)}); use it on conv "
                "models"
            )
        self.side = tuple(in_shape[1:])
        self.resize = tuple(out_shape[1:]) != self.side
        self.conv = nn.Conv2d(out_shape[0], in_shape[0], 3, padding=1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        # Convolve at the output's (smaller) side, then resize: 4x cheaper after a stride 2.
        h = self.conv(h)
        if self.resize:
            h = F.interpolate(h, size=self.side, mode="bilinear", align_corners=False)
        return h


@fp32_loss
def recon_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared reconstruction error in float32 (the target is the stage's detached input)."""
    return F.mse_loss(pred, target.detach())


__all__ = ["InputDecoder", "recon_loss"]
