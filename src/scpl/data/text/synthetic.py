"""``synthetic-text``: generated token ids (no files), for smoke runs and tests."""

from __future__ import annotations

import torch

from scpl.data.base import DatasetSpec, LoadOptions, RawData, register_dataset
from scpl.data.text.tokens import PAD, PAD_ID, UNK
from scpl.errors import ConfigError

SYNTHETIC_TEXT_CLASSES = 4
SYNTHETIC_TEXT_TRAIN = 512
SYNTHETIC_TEXT_TEST = 128
SYNTHETIC_TEXT_MAX_LEN = 32
SYNTHETIC_TEXT_SEED = 0
SYNTHETIC_TEXT_FORM = (
    "synthetic-text:CLASSES[:TRAIN:TEST], e.g. synthetic-text:14 or synthetic-text:2:64:32"
)


def _synthetic_text_raw(classes: int, n_train: int, n_test: int, options: LoadOptions) -> RawData:
    """Documents of random length in [1, max_len]; half their words come from a class's own
    word set (the rest uniform), so the labels are learnable from the words alone."""
    vocab_size, max_len = options.vocab_size, options.text_len(SYNTHETIC_TEXT_MAX_LEN)
    vocab_size = max(vocab_size, 3)  # <pad>, <unk> and at least one word
    g = torch.Generator().manual_seed(SYNTHETIC_TEXT_SEED)
    words = vocab_size - 2
    # Class c's own words: a random word set of size ~words / classes (at least 1).
    own = torch.randint(0, words, (classes, max(1, words // classes)), generator=g) + 2

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = (torch.arange(n) % classes)[torch.randperm(n, generator=g)]
        lengths = torch.randint(1, max_len + 1, (n,), generator=g)
        uniform = torch.randint(2, vocab_size, (n, max_len), generator=g)
        pick = torch.randint(0, own.shape[1], (n, max_len), generator=g)
        use_own = torch.rand(n, max_len, generator=g) < 0.5
        x = torch.where(use_own, own[y][torch.arange(n)[:, None], pick], uniform)
        x[torch.arange(max_len)[None, :] >= lengths[:, None]] = PAD_ID
        return x.to(torch.int64), y.to(torch.int64), lengths.to(torch.int64)

    train_x, train_y, train_len = make(n_train)
    test_x, test_y, test_len = make(n_test)
    return RawData(
        train_x,
        train_y,
        test_x,
        test_y,
        num_classes=classes,
        train_lengths=train_len,
        test_lengths=test_len,
        extra={
            "vocab": [PAD, UNK] + [f"w{i}" for i in range(2, vocab_size)],
            "classes": [str(i) for i in range(classes)],
            "max_len": max_len,
        },
    )


def _synthetic_text_params(params: str) -> DatasetSpec:
    """``synthetic-text:CLASSES[:TRAIN:TEST]``: generated documents with any class count."""
    parts = params.split(":")
    try:
        if len(parts) not in (1, 3):
            raise ValueError
        classes = int(parts[0])
        n_train, n_test = (
            (int(parts[1]), int(parts[2]))
            if len(parts) == 3
            else (SYNTHETIC_TEXT_TRAIN, SYNTHETIC_TEXT_TEST)
        )
        if min(classes, n_train, n_test) < 1:
            raise ValueError
    except ValueError:
        raise ConfigError(
            f"--dataset synthetic-text:{params} is ill-formed; use {SYNTHETIC_TEXT_FORM}"
        ) from None
    return DatasetSpec(
        name=f"synthetic-text:{params}",
        load=lambda root, options: _synthetic_text_raw(classes, n_train, n_test, options),
        needs_files=False,
        kind="text",
        input_shape=(SYNTHETIC_TEXT_MAX_LEN,),
        num_classes=classes,
    )


register_dataset(
    DatasetSpec(
        name="synthetic-text",
        load=lambda root, options: _synthetic_text_raw(
            SYNTHETIC_TEXT_CLASSES, SYNTHETIC_TEXT_TRAIN, SYNTHETIC_TEXT_TEST, options
        ),
        needs_files=False,
        kind="text",
        input_shape=(SYNTHETIC_TEXT_MAX_LEN,),
        num_classes=SYNTHETIC_TEXT_CLASSES,
        with_params=_synthetic_text_params,
    ),
    help="synthetic-text: generated documents (1-32 tokens, vocabulary from --vocab-size), "
    "4 classes, 512/128; any size as synthetic-text:CLASSES[:TRAIN:TEST]",
)
