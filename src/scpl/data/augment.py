"""Batched, per-sample random augmentation on the target device (kornia).

Augmentation runs on whole uint8 batches after they reach the device, so a GPU does the work
and the host never decodes per-sample: that keeps augmentation a small share of a step.

Two two-view recipes exist because the paper's text and its authors' code differ:

* ``two-view`` (Khosla et al., what the appendix describes): two independent *strong* views,
  each a random resized crop, flip, colour jitter (p=0.8) and grayscale (p=0.2).
* ``two-view-ref`` (the SCPL authors' code): one *weak* view (crop with padding + flip) and one
  *strong* view (the weak ops + colour jitter p=0.8 + grayscale p=0.2); no resized crop.

Flips follow the dataset: one that declares itself orientation-sensitive (``DatasetSpec.
orientation_sensitive``, e.g. digits, where a mirrored 2 reads as a 5) is never flipped unless
``--flip on`` asks for it; ``scpl list`` shows what each image dataset gets.

Crop sizes follow the input: the pad of the padded crop is 1/8 of the side (4 px at 32x32, 3 at
28x28, 1 at 8x8), and the resized crop's smallest area share grows on small images so the
smallest crop keeps about as many pixels per side as a 0.2-area crop of a 32x32 image (14 px):
0.2 at >= 32 px, 0.26 at 28 px, capped at 0.6 below that.
"""

from __future__ import annotations

import kornia.augmentation as K
import torch
from torch import nn

from scpl.errors import ConfigError

AUGMENTS = ("none", "basic", "strong", "two-view", "two-view-ref")
TWO_VIEW = ("two-view", "two-view-ref")
FLIPS = ("auto", "on", "off")

REF_SIDE = 32
"""Side length at which the resized crop uses Khosla et al.'s scale (0.2, 1)."""
MIN_SCALE = 0.2
MAX_MIN_SCALE = 0.6


def num_views(kind: str) -> int:
    """Inputs per image the augmentation produces (2 for the two-view kinds)."""
    return 2 if kind in TWO_VIEW else 1


def crop_scale(side: int) -> tuple[float, float]:
    """Area range of the random resized crop for images ``side`` pixels wide (see module doc)."""
    low = MIN_SCALE * (REF_SIDE / max(1, side)) ** 2 if side < REF_SIDE else MIN_SCALE
    return (min(MAX_MIN_SCALE, low), 1.0)


def crop_padding(side: int) -> int:
    """Padding of the padded random crop: 1/8 of the side (the usual 4 px at 32x32), >= 1."""
    return max(1, side // 8)


def use_flips(setting: str, orientation_sensitive: bool) -> bool:
    """Whether augmentation flips images: ``--flip`` on/off, or auto (unless the dataset is
    orientation-sensitive)."""
    if setting not in FLIPS:
        raise ConfigError(f"--flip {setting!r}: choose one of {', '.join(FLIPS)}")
    return setting == "on" or (setting == "auto" and not orientation_sensitive)


def describe_augment(kind: str, input_shape: tuple[int, ...], flip: bool) -> str:
    """One line saying what ``kind`` does to images of ``input_shape`` (``scpl list``, run log)."""
    if kind not in AUGMENTS:
        raise ConfigError(f"unknown --augment {kind!r}; choose one of: {', '.join(AUGMENTS)}")
    if kind == "none":
        return "none (normalise only)"
    side = min(input_shape[-2:])
    flips = "flips" if flip else "no flips"
    pad = f"pad-crop {crop_padding(side)} px"
    resized = f"resized crop (area {crop_scale(side)[0]:.2f}-1)"
    parts = {
        "basic": f"{pad}, {flips}",
        "strong": f"{resized}, {flips}, colour jitter",
        "two-view": f"2 views of {resized}, {flips}, colour jitter",
        "two-view-ref": f"view 1 {pad}, {flips}; view 2 the same + colour jitter",
    }
    return f"{kind}: {parts[kind]}"


def colour_ops(channels: int) -> list[nn.Module]:
    """Colour jitter p=0.8 and grayscale p=0.2 (SupCon's); one channel: brightness/contrast only,
    since saturation, hue and grayscale are undefined for it."""
    if channels == 3:
        return [K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8), K.RandomGrayscale(p=0.2)]
    return [K.ColorJitter(0.4, 0.4, p=0.8)]


class Augment(nn.Module):
    """Turns a uint8 batch [N, C, H, W] into normalised float inputs.

    kinds: ``none`` (normalise only), ``basic`` (random crop with padding + horizontal flip),
    ``strong`` (SupCon augmentation of Khosla et al.: random resized crop, flip, colour jitter
    p=0.8, grayscale p=0.2), ``two-view`` (two independent strong views per image: 2N inputs
    with duplicated labels, as the paper describes), ``two-view-ref`` (a basic view and a
    basic + colour view per image, as the authors' code trains: 2N inputs).
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
        flips: list[nn.Module] = [K.RandomHorizontalFlip()] if flip else []
        weak = [K.RandomCrop((h, w), padding=crop_padding(min(h, w))), *flips]
        strong = [K.RandomResizedCrop((h, w), scale=crop_scale(min(h, w))), *flips]
        strong += colour_ops(c)
        ops: list[nn.Module] = []
        self.second: nn.Module | None = None  # the other view's ops when views differ
        if kind == "basic":
            ops = weak
        elif kind in ("strong", "two-view"):
            ops = strong
        elif kind == "two-view-ref":
            ops = weak
            self.second = nn.Sequential(
                K.RandomCrop((h, w), padding=crop_padding(min(h, w))), *flips, *colour_ops(c)
            )
        self.ops = nn.Sequential(*ops)

    @property
    def num_views(self) -> int:
        return num_views(self.kind)

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
        elif self.second is not None:
            xf = torch.cat([self.ops(xf), self.second(xf)])
            y = torch.cat([y, y])
        else:
            xf = self.ops(xf)
        return (xf - self.mean) / self.std, y
