"""Image datasets without files: scikit-learn's digits and class-coloured synthetic noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from scpl.data.base import DatasetSpec, LoadOptions, RawData, register_dataset
from scpl.errors import ConfigError

DIGITS_TEST_FRACTION = 0.2
DIGITS_SEED = 0


def _digits_load(root: Path | None, options: LoadOptions) -> RawData:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    ds = load_digits()
    # Values are 0..16; stretch to the full uint8 range like every other image set.
    x = np.rint(ds.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[:, None]
    y = ds.target.astype(np.int64)
    tr_x, te_x, tr_y, te_y = train_test_split(
        x, y, test_size=DIGITS_TEST_FRACTION, stratify=y, random_state=DIGITS_SEED
    )
    return RawData(
        torch.from_numpy(np.ascontiguousarray(tr_x)),
        torch.from_numpy(tr_y),
        torch.from_numpy(np.ascontiguousarray(te_x)),
        torch.from_numpy(te_y),
        num_classes=10,
    )


register_dataset(
    DatasetSpec(
        name="digits",
        load=_digits_load,
        needs_files=False,
        input_shape=(1, 8, 8),
        num_classes=10,
        orientation_sensitive=True,
    ),
    help="scikit-learn digits: 1797 1x8x8 grayscale handwritten digits, 10 classes (embedded)",
)

# Module-level so benchmarks can change them (e.g. ``generated.SYNTHETIC_TRAIN = 65536``).
SYNTHETIC_SHAPE: tuple[int, int, int] = (3, 32, 32)
SYNTHETIC_CLASSES = 10
SYNTHETIC_TRAIN = 2048
SYNTHETIC_TEST = 512
SYNTHETIC_SEED = 0
SYNTHETIC_NOISE = 48.0  # std of the per-pixel noise, in uint8 units


def _synthetic_raw(shape: tuple[int, ...], classes: int, n_train: int, n_test: int) -> RawData:
    """Class-coloured noise: each class has its own mean colour, so it is learnable."""
    g = torch.Generator().manual_seed(SYNTHETIC_SEED)
    colours = torch.rand(classes, shape[0], 1, 1, generator=g) * 160 + 48

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        # Balanced classes in random order.
        y = (torch.arange(n) % classes)[torch.randperm(n, generator=g)]
        noise = torch.randn(n, *shape, generator=g) * SYNTHETIC_NOISE
        x = (colours[y] + noise).round().clamp(0, 255).to(torch.uint8)
        return x, y.to(torch.int64)

    train_x, train_y = make(n_train)
    test_x, test_y = make(n_test)
    return RawData(train_x, train_y, test_x, test_y, num_classes=classes)


def _synthetic_load(root: Path | None, options: LoadOptions) -> RawData:
    # Reads the module globals at load time so benchmarks can resize the plain dataset.
    return _synthetic_raw(SYNTHETIC_SHAPE, SYNTHETIC_CLASSES, SYNTHETIC_TRAIN, SYNTHETIC_TEST)


SYNTHETIC_FORM = (
    "synthetic:CxHxW:CLASSES[:TRAIN:TEST], e.g. synthetic:3x64x64:200 or synthetic:1x28x28:10:64:32"
)


def _synthetic_params(params: str) -> DatasetSpec:
    """``synthetic:CxHxW:CLASSES[:TRAIN:TEST]``: class-coloured noise of any shape and size."""
    parts = params.split(":")
    try:
        if len(parts) not in (2, 4):
            raise ValueError
        shape = tuple(int(v) for v in parts[0].lower().split("x"))
        classes = int(parts[1])
        n_train, n_test = (
            (int(parts[2]), int(parts[3])) if len(parts) == 4 else (SYNTHETIC_TRAIN, SYNTHETIC_TEST)
        )
        if len(shape) != 3 or min(*shape, classes, n_train, n_test) < 1:
            raise ValueError
    except ValueError:
        raise ConfigError(
            f"--dataset synthetic:{params} is ill-formed; use {SYNTHETIC_FORM}"
        ) from None
    return DatasetSpec(
        name=f"synthetic:{params}",
        load=lambda root, options: _synthetic_raw(shape, classes, n_train, n_test),
        needs_files=False,
        input_shape=shape,
        num_classes=classes,
    )


register_dataset(
    DatasetSpec(
        name="synthetic",
        load=_synthetic_load,
        needs_files=False,
        # The defaults at import time; code that changes SYNTHETIC_* sees the real shape on load.
        input_shape=SYNTHETIC_SHAPE,
        num_classes=SYNTHETIC_CLASSES,
        with_params=_synthetic_params,
    ),
    help="synthetic: random 3x32x32 class-coloured noise, 10 classes, 2048/512 (benchmarks); "
    "any size as synthetic:CxHxW:CLASSES[:TRAIN:TEST]",
)
