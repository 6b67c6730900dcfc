"""Batched, per-sample random augmentation on the target device (kornia).

Augmentation runs on whole uint8 batches after they reach the device, so a GPU does the work
and the host never decodes per-sample: that keeps augmentation a small share of a step.
"""

from __future__ import annotations

import kornia.augmentation as K
import torch
from torch import nn

from scpl.errors import ConfigError

AUGMENTS = ("none", "basic", "strong", "two-view")


class Augment(nn.Module):
    """Turns a uint8 batch [N, C, H, W] into normalised float inputs.

    kinds: ``none`` (normalise only), ``basic`` (random crop with padding + horizontal flip),
    ``strong`` (SupCon augmentation of Khosla et al.: random resized crop, flip, colour jitter
    p=0.8, grayscale p=0.2), ``two-view`` (two independent strong views per image: 2N inputs
    with duplicated labels, as the paper trains vision models).
    """

    def __init__(
        self,
        kind: str,
        input_shape: tuple[int, ...],
        mean: tuple[float, ...],
        std: tuple[float, ...],
        flip: bool = True,
    ) -> None:
        super().__init__()
        if kind not in AUGMENTS:
            raise ConfigError(f"unknown --augment {kind!r}; choose one of: {', '.join(AUGMENTS)}")
        self.kind = kind
        c, h, w = input_shape
        self.register_buffer("mean", torch.tensor(mean).view(1, c, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, c, 1, 1), persistent=False)
        ops: list[nn.Module] = []
        if kind == "basic":
            ops = [K.RandomCrop((h, w), padding=max(1, h // 8))]
            if flip:
                ops.append(K.RandomHorizontalFlip())
        elif kind in ("strong", "two-view"):
            ops = [K.RandomResizedCrop((h, w), scale=(0.2, 1.0))]
            if flip:
                ops.append(K.RandomHorizontalFlip())
            if c == 3:
                ops += [K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8), K.RandomGrayscale(p=0.2)]
            else:
                # Saturation, hue and grayscale are undefined for one channel: jitter the rest.
                ops += [K.ColorJitter(0.4, 0.4, p=0.8)]
        self.ops = nn.Sequential(*ops)

    @property
    def num_views(self) -> int:
        return 2 if self.kind == "two-view" else 1

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255.0 - self.mean) / self.std

    @torch.no_grad()
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kind == "none":
            return self.normalise(x), y
        xf = x.float() / 255.0
        if self.kind == "two-view":
            xf = torch.cat([self.ops(xf), self.ops(xf)])
            y = torch.cat([y, y])
        else:
            xf = self.ops(xf)
        return (xf - self.mean) / self.std, y
