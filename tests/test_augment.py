"""Augmentations: views per image, the authors' weak/strong pair, crop sizes that follow the
input size."""

from __future__ import annotations

import pytest
import torch

from scpl.data.augment import AUGMENTS, Augment, crop_padding, crop_scale, num_views
from scpl.errors import ConfigError


def _batch(c: int = 3, side: int = 32, n: int = 6):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, c, side, side), generator=g, dtype=torch.uint8)
    return x, torch.arange(n) % 3


@pytest.mark.parametrize("kind", AUGMENTS)
@pytest.mark.parametrize("c, side", [(3, 32), (1, 28), (1, 8)])
def test_every_kind_keeps_the_shape_and_duplicates_labels_per_view(kind, c, side):
    x, y = _batch(c, side)
    aug = Augment(kind, (c, side, side), (0.5,) * c, (0.25,) * c)
    out, yy = aug(x, y)
    v = num_views(kind)
    assert aug.num_views == v
    assert out.shape == (v * len(x), c, side, side) and out.dtype == torch.float32
    assert torch.equal(yy, y.repeat(v))


def test_two_view_ref_is_a_weak_and_a_strong_view():
    """The first view only crops (with padding) and flips: without colour ops, every pixel of
    the weak view is a pixel of the image or padding. The second adds colour jitter."""
    torch.manual_seed(0)
    x, y = _batch(3, 32, 16)
    aug = Augment("two-view-ref", (3, 32, 32), (0.0,) * 3, (1.0,) * 3)
    out, _ = aug(x, y)
    weak, strong = out[:16], out[16:]
    values = set((x.float() / 255.0).unique().tolist()) | {0.0}
    assert set(weak.unique().tolist()) <= values
    assert not set(strong.unique().tolist()) <= values  # jitter makes new intensities
    names = [type(m).__name__ for m in aug.modules()]
    assert "RandomResizedCrop" not in names and "ColorJitter" in names


def test_crop_sizes_follow_the_input_size():
    assert crop_scale(32) == (0.2, 1.0) and crop_scale(64) == (0.2, 1.0)
    low28 = crop_scale(28)[0]
    assert 0.2 < low28 < 0.3  # a 28x28 crop keeps ~14 px per side, as a 0.2 crop of 32x32
    assert crop_scale(8) == (0.6, 1.0)
    assert (crop_padding(32), crop_padding(28), crop_padding(8)) == (4, 3, 1)


def test_unknown_kind_lists_the_choices():
    with pytest.raises(ConfigError, match="two-view-ref"):
        Augment("nope", (1, 8, 8), (0.5,), (0.25,))
