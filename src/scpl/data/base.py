"""Dataset plumbing shared by every loader: in-memory splits, the lookup order, downloads.

Lookup order for a real dataset's files (first hit wins):
``--data-dir`` > ``$SCPL_DATA`` > standard system locations > the cache dir
(``$SCPL_CACHE`` or ``~/.cache/scpl``) > download from the canonical source into the cache,
with a checksum check. Nothing is downloaded at import time.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from scpl.errors import ConfigError, DataError
from scpl.registry import Registry


@dataclass
class Split:
    """One split held in memory. Vision: ``x`` uint8 [N, C, H, W]; text: int64 token ids."""

    x: torch.Tensor
    y: torch.Tensor
    lengths: torch.Tensor | None = None  # true sequence lengths (text only)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, index: torch.Tensor) -> Split:
        lengths = None if self.lengths is None else self.lengths[index]
        return Split(self.x[index], self.y[index], lengths)


@dataclass
class DataBundle:
    """Train / validation / test splits plus what a model needs to know about the inputs."""

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    input_shape: tuple[int, ...]  # per-sample shape, e.g. (3, 32, 32)
    kind: str = "image"  # "image" or "text"
    orientation_sensitive: bool = False  # mirror images may be other classes: never flipped
    mean: tuple[float, ...] = ()  # per-channel mean of the train split, in [0, 1] units
    std: tuple[float, ...] = ()
    extra: dict = field(default_factory=dict)  # e.g. vocab for text


@dataclass
class RawData:
    """What a loader returns: full train and test sets, before the validation split."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    # Text only: true sequence lengths (int64 [N], each >= 1) of the padded token ids.
    train_lengths: torch.Tensor | None = None
    test_lengths: torch.Tensor | None = None
    extra: dict = field(default_factory=dict)  # copied into DataBundle.extra (e.g. the vocab)


DEFAULT_VOCAB_SIZE = 30000


@dataclass(frozen=True)
class LoadOptions:
    """How a loader reads its files; image loaders ignore the text settings."""

    vocab_size: int = DEFAULT_VOCAB_SIZE
    """Text: vocabulary size built from the train split, counting <pad> and <unk>."""
    max_len: int = 0
    """Text: tokens kept per document; 0 = the dataset's default (AG News 60, IMDB 350, ...)."""
    text_column: str = "text"
    """text-csv: the header of the column holding the documents."""
    label_column: str = "label"
    """text-csv: the header of the column holding the labels."""

    def __post_init__(self) -> None:
        if self.vocab_size < 2:
            raise ConfigError(
                f"--vocab-size {self.vocab_size} must be >= 2 (it counts <pad> and <unk>), "
                f"e.g. --vocab-size {DEFAULT_VOCAB_SIZE}"
            )
        if self.max_len < 0:
            raise ConfigError(
                f"--max-len {self.max_len} must be >= 1, or 0 for the dataset's default"
            )
        for flag, value in (
            ("--text-column", self.text_column),
            ("--label-column", self.label_column),
        ):
            if not value.strip():
                raise ConfigError(f"{flag} is empty; pass the CSV header of that column")

    def text_len(self, default: int) -> int:
        """Tokens kept per document: ``max_len``, or the dataset's ``default`` when 0."""
        return self.max_len or default


@dataclass
class DatasetSpec:
    """A registered dataset: how to find its files and how to read them."""

    name: str
    # Called with the resolved root dir (None if the dataset needs no files) and the options.
    load: Callable[[Path | None, LoadOptions], RawData]
    needs_files: bool = True
    # Returns True if ``root`` holds this dataset's files in the expected layout.
    present: Callable[[Path], bool] = lambda root: False
    system_dirs: tuple[str, ...] = ()
    # Subdirectory of the cache dir the dataset lives in, and how to fetch it there.
    download: Callable[[Path], None] | None = None
    kind: str = "image"
    # Known per-sample input shape and class count (for `scpl params` without loading data).
    input_shape: tuple[int, ...] = ()
    num_classes: int = 0
    # Parametrised datasets (``name:PARAMS``, e.g. ``synthetic:3x64x64:200``): returns the spec
    # for the text after the first colon, or raises ConfigError naming the expected form.
    with_params: Callable[[str], DatasetSpec] | None = None
    # Images whose mirror image may be another class (digits: a flipped 2 reads as a 5, a
    # flipped 7 as nothing): augmentation never flips them by default (`--flip auto`).
    orientation_sensitive: bool = False


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def register_dataset(spec: DatasetSpec, help: str = "") -> DatasetSpec:
    """Register a dataset spec under its name."""
    return DATASETS.register(spec.name, help=help)(spec)


def dataset_spec(name: str) -> DatasetSpec:
    """The spec for a dataset name, resolving ``name:PARAMS`` for parametrised datasets."""
    base, sep, params = name.partition(":")
    spec = DATASETS.get(base)
    if not sep:
        return spec
    if spec.with_params is None:
        raise ConfigError(f"dataset {base!r} takes no parameters; use --dataset {base}")
    return spec.with_params(params)


def cache_dir() -> Path:
    """Root of scpl's cache: ``$SCPL_CACHE`` or ``~/.cache/scpl``."""
    return Path(os.environ.get("SCPL_CACHE", Path.home() / ".cache" / "scpl"))


def resolve_root(spec: DatasetSpec, data_dir: str | os.PathLike | None, download: bool) -> Path:
    """Find the directory holding ``spec``'s files, downloading into the cache as a last resort."""
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        if not root.exists():
            raise DataError(f"data dir {root} does not exist; pass an existing --data-dir")
        for cand in (root, root / spec.name):
            if spec.present(cand):
                return cand
        raise DataError(
            f"no {spec.name} files found in {root}; put them there (see `scpl list`) "
            f"or drop --data-dir to use $SCPL_DATA / the cache / a download"
        )
    candidates: list[Path] = []
    if os.environ.get("SCPL_DATA"):
        env = Path(os.environ["SCPL_DATA"]).expanduser()
        candidates += [env / spec.name, env]
    candidates += [Path(p) for p in spec.system_dirs]
    cached = cache_dir() / spec.name
    candidates.append(cached)
    for cand in candidates:
        if cand.exists() and spec.present(cand):
            return cand
    if spec.download is None or not download:
        raise DataError(
            f"{spec.name} files not found (looked in {', '.join(map(str, candidates))}); "
            f"pass --data-dir DIR pointing at them"
        )
    cached.mkdir(parents=True, exist_ok=True)
    spec.download(cached)
    if not spec.present(cached):
        raise DataError(f"download of {spec.name} into {cached} did not produce the expected files")
    return cached


def file_digest(path: Path, algo: str = "md5") -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_file(url: str, dest: Path, md5: str | None = None) -> Path:
    """Download ``url`` to ``dest`` atomically (temp file + rename) and verify its md5."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and (md5 is None or file_digest(dest) == md5):
        return dest
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=60) as resp:
                    shutil.copyfileobj(resp, out)
            except OSError as e:
                raise DataError(
                    f"could not download {url} ({e}); download it by hand and pass --data-dir"
                ) from None
        if md5 is not None:
            got = file_digest(Path(tmp))
            if got != md5:
                raise DataError(
                    f"checksum mismatch for {url}: md5 {got}, expected {md5}; "
                    f"delete {dest.parent} and retry, or fetch the file by hand"
                )
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def split_train_val(raw: RawData, val_fraction: float, seed: int) -> tuple[Split, Split]:
    """Carve a class-stratified validation split out of the training set (deterministic)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction={val_fraction} must be in [0, 1); e.g. --val-fraction 0.1")
    train = Split(raw.train_x, raw.train_y, raw.train_lengths)
    if val_fraction == 0.0:
        empty = torch.zeros(0, dtype=torch.long)
        return train, train.subset(empty)
    g = torch.Generator().manual_seed(seed)
    val_idx = []
    for c in torch.unique(raw.train_y):
        idx = torch.nonzero(raw.train_y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_val = int(round(len(idx) * val_fraction))
        val_idx.append(idx[:n_val])
    val_index = torch.cat(val_idx).sort().values
    mask = torch.ones(len(train), dtype=torch.bool)
    mask[val_index] = False
    return train.subset(torch.nonzero(mask).flatten()), train.subset(val_index)


def check_labels(y: torch.Tensor, num_classes: int, where: str) -> None:
    """Raise DataError if a label lies outside [0, num_classes)."""
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise DataError(
            f"{where}: label {int(y.min()) if int(y.min()) < 0 else int(y.max())} outside "
            f"the class range [0, {num_classes}); fix the label file"
        )


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    val_fraction: float = 0.1,
    seed: int = 0,
    *,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    max_len: int = 0,
    text_column: str = "text",
    label_column: str = "label",
) -> DataBundle:
    """Load a registered dataset into memory and split off validation data.

    ``vocab_size`` / ``max_len`` (0: the dataset's default) set text preprocessing;
    ``text_column`` / ``label_column`` name the columns of the ``text-csv`` files.
    """
    options = LoadOptions(vocab_size, max_len, text_column, label_column)
    spec = dataset_spec(name)
    root = resolve_root(spec, data_dir, download) if spec.needs_files else None
    raw = spec.load(root, options)
    if len(raw.train_y) == 0:
        raise DataError(f"{name}: the training split holds 0 samples; check the data files")
    check_labels(raw.train_y, raw.num_classes, f"{name} train")
    check_labels(raw.test_y, raw.num_classes, f"{name} test")
    train, val = split_train_val(raw, val_fraction, seed)
    test = Split(raw.test_x, raw.test_y, raw.test_lengths)
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    if spec.kind == "image":
        xf = train.x[: min(len(train), 10000)].float() / 255.0
        mean = tuple(xf.mean(dim=(0, 2, 3)).tolist())
        std = tuple(xf.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist())
    return DataBundle(
        name=name,
        train=train,
        val=val,
        test=test,
        num_classes=raw.num_classes,
        input_shape=tuple(raw.train_x.shape[1:]),
        kind=spec.kind,
        orientation_sensitive=spec.orientation_sensitive,
        mean=mean,
        std=std,
        extra=dict(raw.extra),
    )
