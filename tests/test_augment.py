"""Augmentations: views per image, the authors' weak/strong pair, crop sizes that follow the
input size, flips that follow the dataset (none for orientation-sensitive sets such as digits).

Mutants the flip tests catch: digits' spec without ``orientation_sensitive=True``;
``use_flips`` ignoring the dataset (auto = on); ``Augment`` flipping whatever ``flip`` says;
the training loop not passing ``flip`` (or ``load_dataset`` not carrying the flag into the
bundle); ``--smoke``'s synthetic stand-in of digits flipping; ``scpl list`` not showing the
choice; a resumed pre-``--flip`` run losing its flips; a constant crop padding.
"""

from __future__ import annotations

import pytest
import torch

from scpl.data import dataset_spec
from scpl.data.augment import (
    AUGMENTS,
    Augment,
    crop_padding,
    crop_scale,
    describe_augment,
    num_views,
    use_flips,
)
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


def _flipped_share(dataset: str, kind: str = "two-view-ref", n: int = 256) -> float:
    """Share of views whose bright half moved to the right: the image is bright on its left half
    only, so a crop shift (at most the padding, 1 px at 8x8 and 3 at 28x28) keeps it left and
    only a flip moves it."""
    spec = dataset_spec(dataset)
    c, h, w = spec.input_shape
    flip = use_flips("auto", spec.orientation_sensitive)
    aug = Augment(kind, (c, h, w), (0.0,) * c, (1.0,) * c, flip)
    x = torch.zeros(n, c, h, w, dtype=torch.uint8)
    x[..., : w // 2] = 255
    torch.manual_seed(0)
    out, _ = aug(x, torch.zeros(n, dtype=torch.long))
    left, right = out[..., : w // 2].sum((1, 2, 3)), out[..., w // 2 :].sum((1, 2, 3))
    return (right > left).float().mean().item()


@pytest.mark.parametrize("kind", ["basic", "strong", "two-view", "two-view-ref"])
def test_digits_are_never_flipped_fashion_mnist_is(kind):
    assert dataset_spec("digits").orientation_sensitive
    assert _flipped_share("digits", kind) == 0.0
    assert 0.3 < _flipped_share("fashion-mnist", kind) < 0.7


def test_flip_setting_overrides_the_dataset():
    assert use_flips("auto", False) and not use_flips("auto", True)
    assert use_flips("on", True) and not use_flips("off", False)
    with pytest.raises(ConfigError, match="--flip 'yes': choose one of auto, on, off"):
        use_flips("yes", False)
    aug = Augment("basic", (1, 8, 8), (0.5,), (0.25,), flip=False)
    assert "RandomHorizontalFlip" not in [type(m).__name__ for m in aug.modules()]


@pytest.mark.parametrize("side, pad", [(8, 1), (28, 3), (32, 4), (64, 8)])
def test_crop_padding_scales_with_the_image(side, pad):
    aug = Augment("two-view-ref", (1, side, side), (0.5,), (0.25,))
    crops = [m for m in aug.modules() if type(m).__name__ == "RandomCrop"]
    assert len(crops) == 2 and all(m.flags["padding"] == pad for m in crops)
    assert f"pad-crop {pad} px" in describe_augment("two-view-ref", (1, side, side), True)


def test_training_on_digits_builds_an_augment_without_flips(tmp_path, monkeypatch):
    """The loop takes the flag from the loaded dataset (stopped once the Augment exists)."""
    from scpl.training import loop
    from scpl.training.config import TrainConfig

    built = []

    class Built(Exception):
        pass

    def record(*args, **kw):
        built.append(Augment(*args, **kw))
        raise Built

    monkeypatch.setattr(loop, "Augment", record)
    for dataset, flips in (("digits", False), ("synthetic:1x8x8:4:64:32", True)):
        cfg = TrainConfig(
            dataset=dataset, model="convnet", width=0.0625, stages=2, device="cpu",
            progress=False, tensorboard=False, out=str(tmp_path / dataset.replace(":", "-")),
        )  # fmt: skip
        with pytest.raises(Built):
            loop.train(cfg, echo=lambda *a: None)
        names = [type(m).__name__ for m in built[-1].modules()]
        assert ("RandomHorizontalFlip" in names) is flips, dataset


def test_scpl_list_shows_each_image_datasets_augmentation():
    from scpl.report.catalogue import catalogue

    lines = catalogue().splitlines()
    after = {ln.split()[0]: lines[i + 1] for i, ln in enumerate(lines[:-1]) if ln.startswith("  ")}
    assert "no flips" in after["digits"] and "orientation-sensitive" in after["digits"]
    assert "pad-crop 1 px" in after["digits"]
    assert "pad-crop 3 px, flips" in after["fashion-mnist"]
    assert "augment" not in after["ag-news"]  # text: no augmentation line


def test_smoke_stand_in_of_digits_keeps_the_flip_choice():
    from scpl.training.recipes import make_config

    smoke = make_config("smoke", {"smoke": True, "augment": "basic"})
    assert smoke.dataset.startswith("synthetic:1x8x8:") and smoke.flip == "off"
    assert make_config("smoke", {"smoke": True, "flip": "on"}).flip == "on"
    assert make_config("default", {"smoke": True}).flip == "auto"  # fashion-mnist flips


def test_resuming_a_run_saved_before_flip_existed_keeps_flipping(tmp_path):
    """Such a run flipped every dataset: its remaining steps must too (bitwise resume)."""
    import dataclasses

    from scpl.training.checkpoint import save_checkpoint
    from scpl.training.checks import resume_config
    from scpl.training.config import TrainConfig

    old = dataclasses.asdict(TrainConfig(dataset="digits", out=str(tmp_path)))
    del old["flip"]
    save_checkpoint(tmp_path, 5, 0, {"config": old, "recipe": "default"})
    cfg, _ = resume_config(str(tmp_path), {})
    assert cfg.flip == "on"
    new = dict(old, flip="auto")
    save_checkpoint(tmp_path, 6, 0, {"config": new, "recipe": "default"})
    assert resume_config(str(tmp_path), {})[0].flip == "auto"
