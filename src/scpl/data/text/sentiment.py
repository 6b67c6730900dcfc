"""Sentiment corpora: IMDB (the aclImdb tree, or the single "review,sentiment" CSV) and SST-2
(GLUE TSVs). aclImdb is checked against its md5; the GLUE mirror publishes none for SST-2.
"""

from __future__ import annotations

from pathlib import Path

import torch

from scpl.data.archive import extract_tar, extract_zip
from scpl.data.base import DatasetSpec, LoadOptions, RawData, download_file, register_dataset
from scpl.data.text.cache import tokenised
from scpl.data.text.readers import csv_with_header, int_label, tsv_with_header
from scpl.data.text.tokens import Row
from scpl.errors import DataError

# --------------------------------------------------------------------------------------------
# IMDB: the aclImdb tree, or the single "review,sentiment" CSV
# --------------------------------------------------------------------------------------------

IMDB_FOLDER = "aclImdb"
IMDB_ARCHIVE = "aclImdb_v1.tar.gz"
IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
IMDB_MD5 = "7c2ac02c03563afcf9b574c7e56c153a"
IMDB_CSV_NAMES = ("IMDB Dataset.csv", "IMDB_Dataset.csv", "imdb_dataset.csv", "imdb.csv")
IMDB_MAX_LEN = 350
IMDB_CLASSES = ("negative", "positive")
IMDB_SPLIT_SEED = 0  # the single CSV is split 50/50 per class with this fixed seed
_SENTIMENT = {"negative": 0, "neg": 0, "0": 0, "positive": 1, "pos": 1, "1": 1}


def _imdb_tree(root: Path) -> Path | None:
    for d in (root, root / IMDB_FOLDER):
        if all((d / s / c).is_dir() for s in ("train", "test") for c in ("pos", "neg")):
            return d
    return None


def _imdb_csv(root: Path) -> Path | None:
    for name in IMDB_CSV_NAMES:
        if (root / name).is_file():
            return root / name
    return None


def _imdb_present(root: Path) -> bool:
    return (
        _imdb_tree(root) is not None
        or _imdb_csv(root) is not None
        or (root / IMDB_ARCHIVE).is_file()
    )


def _imdb_files(d: Path, split: str) -> list[tuple[Path, int]]:
    out = []
    for label, cls in enumerate(("neg", "pos")):
        folder = d / split / cls
        files = sorted(p for p in folder.iterdir() if p.suffix == ".txt" and p.is_file())
        if not files:
            raise DataError(f"{folder} holds no .txt reviews; re-extract {IMDB_ARCHIVE}")
        out += [(p, label) for p in files]
    return out


def _read_review(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e}); re-extract {IMDB_ARCHIVE}") from None


def _imdbcsv_rows(path: Path) -> tuple[list[Row], list[Row]]:
    rows: list[Row] = []
    hint = "expected the 'review,sentiment' CSV (IMDB Dataset.csv)"
    for review, sentiment, where in csv_with_header(path, ("review", "sentiment"), hint):
        label = _SENTIMENT.get(sentiment.strip().lower())
        if label is None:
            raise DataError(
                f"{where}: sentiment {sentiment[:30]!r} is not positive/negative; fix the file"
            )
        rows.append((review, label, where))
    if not rows:
        raise DataError(f"{path} has no rows; replace it with the real file")
    # Deterministic 50/50 split per class (fixed seed, independent of the run's seed).
    g = torch.Generator().manual_seed(IMDB_SPLIT_SEED)
    labels = torch.tensor([r[1] for r in rows])
    train_idx = []
    for c in (0, 1):
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        train_idx.append(idx[: (len(idx) + 1) // 2])
    in_train = torch.zeros(len(rows), dtype=torch.bool)
    in_train[torch.cat(train_idx)] = True
    train = [r for r, t in zip(rows, in_train.tolist(), strict=True) if t]
    test = [r for r, t in zip(rows, in_train.tolist(), strict=True) if not t]
    return train, test


def _imdb_load(root: Path | None, options: LoadOptions) -> RawData:
    assert root is not None
    vocab_size, max_len = options.vocab_size, options.text_len(IMDB_MAX_LEN)
    d = _imdb_tree(root)
    if d is None and _imdb_csv(root) is None:
        extract_tar(root / IMDB_ARCHIVE, IMDB_FOLDER)
        d = _imdb_tree(root)
        if d is None:
            raise DataError(
                f"{root / IMDB_ARCHIVE} has no aclImdb/train|test/pos|neg; delete it and re-download"
            )
    if d is not None:
        train_files, test_files = _imdb_files(d, "train"), _imdb_files(d, "test")
        sources = [p for p, _ in train_files + test_files]
        settings = {"vocab_size": vocab_size, "max_len": max_len, "form": "tree"}

        def read():
            return (
                [(_read_review(p), y, str(p)) for p, y in train_files],
                [(_read_review(p), y, str(p)) for p, y in test_files],
            )

    else:
        csv_path = _imdb_csv(root)
        assert csv_path is not None
        sources = [csv_path]
        settings = {
            "vocab_size": vocab_size,
            "max_len": max_len,
            "form": "csv",
            "seed": IMDB_SPLIT_SEED,
        }

        def read():
            return _imdbcsv_rows(csv_path)

    return tokenised("imdb", sources, settings, read, 2, list(IMDB_CLASSES))


def _imdb_download(dest: Path) -> None:
    download_file(IMDB_URL, dest / IMDB_ARCHIVE, IMDB_MD5)


register_dataset(
    DatasetSpec(
        name="imdb",
        load=_imdb_load,
        present=_imdb_present,
        download=_imdb_download,
        kind="text",
        input_shape=(IMDB_MAX_LEN,),
        num_classes=2,
    ),
    help="IMDB reviews: 25k/25k, 2 classes (aclImdb tree, or 'IMDB Dataset.csv' split 50/50)",
)


# --------------------------------------------------------------------------------------------
# SST-2 (GLUE TSVs; dev is the test split)
# --------------------------------------------------------------------------------------------

SST2_FOLDER = "SST-2"
SST2_ARCHIVE = "SST-2.zip"
SST2_URL = "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip"
SST2_MAX_LEN = 15


def _sst2_dir(root: Path) -> Path | None:
    for d in (root, root / SST2_FOLDER):
        if (d / "train.tsv").is_file() and (d / "dev.tsv").is_file():
            return d
    return None


def _sst2_present(root: Path) -> bool:
    return _sst2_dir(root) is not None or (root / SST2_ARCHIVE).is_file()


def _sst2_rows(path: Path) -> list[Row]:
    rows = [
        (text, int_label(label, 0, 1, where), where)
        for text, label, where in tsv_with_header(path, "sentence", "label")
    ]
    if not rows:
        raise DataError(f"{path} has no rows; replace it with the real file")
    return rows


def _sst2_load(root: Path | None, options: LoadOptions) -> RawData:
    assert root is not None
    d = _sst2_dir(root)
    if d is None:
        extract_zip(root / SST2_ARCHIVE, SST2_FOLDER)
        d = _sst2_dir(root)
        if d is None:
            raise DataError(f"{root / SST2_ARCHIVE} has no train.tsv/dev.tsv; delete it")
    vocab_size, max_len = options.vocab_size, options.text_len(SST2_MAX_LEN)
    files = [d / "train.tsv", d / "dev.tsv"]
    settings = {"vocab_size": vocab_size, "max_len": max_len}
    return tokenised(
        "sst2",
        files,
        settings,
        lambda: (_sst2_rows(files[0]), _sst2_rows(files[1])),
        2,
        ["negative", "positive"],
    )


register_dataset(
    DatasetSpec(
        name="sst2",
        load=_sst2_load,
        present=_sst2_present,
        download=lambda dest: download_file(SST2_URL, dest / SST2_ARCHIVE, md5=None),
        kind="text",
        input_shape=(SST2_MAX_LEN,),
        num_classes=2,
    ),
    help="SST-2 (GLUE): 67k train / 872 dev (used as test) sentences, 2 classes (TSV)",
)
