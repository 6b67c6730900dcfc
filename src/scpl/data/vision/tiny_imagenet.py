"""Tiny ImageNet: a tree of 64x64 JPEGs, decoded once and cached as tensors."""

from __future__ import annotations

import hashlib
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from scpl.atomic import atomic_write
from scpl.data.archive import extract_zip
from scpl.data.base import (
    DatasetSpec,
    LoadOptions,
    RawData,
    cache_dir,
    download_file,
    register_dataset,
)
from scpl.errors import ConfigError, DataError

TINY_FOLDER = "tiny-imagenet-200"
TINY_ZIP = "tiny-imagenet-200.zip"
TINY_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINY_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
TINY_SIZE = 64
_TINY_CACHE_VERSION = 1


def _tiny_dir(root: Path) -> Path | None:
    for d in (root, root / TINY_FOLDER):
        if (d / "wnids.txt").is_file():
            return d
    return None


def _tiny_present(root: Path) -> bool:
    return _tiny_dir(root) is not None or (root / TINY_ZIP).is_file()


def _tiny_cache_path() -> Path:
    return cache_dir() / "tiny-imagenet" / "decoded.pt"


def _sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def _decode_jpeg(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError  # Pillow comes with matplotlib

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{path}: cannot decode image ({e}); replace the file") from None
    if arr.shape != (TINY_SIZE, TINY_SIZE, 3):
        raise DataError(
            f"{path}: image is {arr.shape[1]}x{arr.shape[0]}, expected {TINY_SIZE}x{TINY_SIZE}; "
            f"replace the file"
        )
    return arr


def _decode_all(paths: list[Path]) -> torch.Tensor:
    """Decode JPEGs to uint8 [N, 3, 64, 64]; threads help because PIL drops the GIL."""
    out = np.empty((len(paths), TINY_SIZE, TINY_SIZE, 3), dtype=np.uint8)

    def work(i: int) -> None:
        out[i] = _decode_jpeg(paths[i])

    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        # list() re-raises the first worker exception (a DataError naming the file).
        list(pool.map(work, range(len(paths)), chunksize=256))
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _tiny_index(d: Path) -> tuple[list[str], list[Path], list[int], list[Path], list[int]]:
    """List class ids and (path, label) pairs for train and val; checks the layout."""
    wnids = sorted({w.strip() for w in (d / "wnids.txt").read_text().splitlines() if w.strip()})
    if not wnids:
        raise DataError(f"{d / 'wnids.txt'} lists no classes; replace it")
    index = {w: i for i, w in enumerate(wnids)}
    train_paths: list[Path] = []
    train_labels: list[int] = []
    for w in wnids:
        img_dir = d / "train" / w / "images"
        if not img_dir.is_dir():
            raise DataError(f"missing {img_dir} for class {w}; re-extract {TINY_FOLDER}")
        files = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in (".jpeg", ".jpg"))
        if not files:
            raise DataError(f"{img_dir} holds no JPEGs; re-extract {TINY_FOLDER}")
        train_paths += files
        train_labels += [index[w]] * len(files)
    ann = d / "val" / "val_annotations.txt"
    if not ann.is_file():
        raise DataError(f"missing {ann}; re-extract {TINY_FOLDER}")
    val_paths: list[Path] = []
    val_labels: list[int] = []
    for lineno, line in enumerate(ann.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index:
            raise DataError(
                f"{ann}:{lineno}: expected 'file<TAB>wnid...' with a wnid from wnids.txt, "
                f"got {line[:60]!r}; fix or replace the file"
            )
        p = d / "val" / "images" / fields[0]
        if not p.is_file():
            raise DataError(f"{ann}:{lineno}: image {p} is missing; re-extract {TINY_FOLDER}")
        val_paths.append(p)
        val_labels.append(index[fields[1]])
    if not val_paths:
        raise DataError(f"{ann} lists no images; replace it")
    return wnids, train_paths, train_labels, val_paths, val_labels


def _tiny_load(root: Path | None, options: LoadOptions) -> RawData:
    assert root is not None
    d = _tiny_dir(root)
    if d is None:
        extract_zip(root / TINY_ZIP, TINY_FOLDER)
        d = _tiny_dir(root)
        if d is None:
            raise DataError(f"{root / TINY_ZIP} has no wnids.txt; delete it and re-download")
    wnids, train_paths, train_labels, val_paths, val_labels = _tiny_index(d)
    # The cache is shared by every source dir, so it records which tree it was decoded from.
    key = {
        "version": _TINY_CACHE_VERSION,
        "root": str(d.resolve()),
        "wnids": _sha1(d / "wnids.txt"),
        "val": _sha1(d / "val" / "val_annotations.txt"),
        "n_train": len(train_paths),
    }
    cache = _tiny_cache_path()
    if cache.is_file():
        try:
            blob = torch.load(cache, map_location="cpu", weights_only=True)
            if blob.get("key") == key:
                return RawData(
                    blob["train_x"], blob["train_y"], blob["test_x"], blob["test_y"], len(wnids)
                )
        except Exception as e:  # a stale or damaged cache is rebuilt, never fatal
            warnings.warn(f"ignoring unreadable cache {cache} ({e})", stacklevel=2)
    train_x, test_x = _decode_all(train_paths), _decode_all(val_paths)
    train_y = torch.tensor(train_labels, dtype=torch.int64)
    test_y = torch.tensor(val_labels, dtype=torch.int64)
    blob = {"key": key, "train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}
    try:
        with atomic_write(cache, suffix=".part", durable=False) as f:
            torch.save(blob, f)
    except OSError as e:  # caching is an optimisation; a read-only cache dir is fine
        warnings.warn(f"could not write decoded cache {cache} ({e})", stacklevel=2)
    return RawData(train_x, train_y, test_x, test_y, num_classes=len(wnids))


def _tiny_download(dest: Path) -> None:
    download_file(TINY_URL, dest / TINY_ZIP, TINY_MD5)


def downsample(x: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    """uint8 images [N, C, H, W] -> [N, C, size, size] by area averaging (H, W multiples of
    size), in chunks so 100k images never exist as floats at once."""
    out = torch.empty(x.shape[0], x.shape[1], size, size, dtype=torch.uint8)
    for i in range(0, x.shape[0], chunk):
        xf = torch.nn.functional.interpolate(x[i : i + chunk].float(), (size, size), mode="area")
        out[i : i + chunk] = xf.round().clamp_(0, 255).to(torch.uint8)
    return out


def _tiny_at(params: str) -> DatasetSpec:
    """``tiny-imagenet:32``: the same files, images downsampled to 32x32 (as the SCPL authors
    train on Tiny ImageNet)."""
    try:
        size = int(params)
    except ValueError:
        size = 0
    if size < 1 or TINY_SIZE % size:
        raise ConfigError(
            f"tiny-imagenet:{params}: give an image size that divides {TINY_SIZE}, e.g. "
            "tiny-imagenet:32"
        )

    def load(root: Path | None, options: LoadOptions) -> RawData:
        raw = _tiny_load(root, options)
        if size == TINY_SIZE:
            return raw
        return RawData(
            downsample(raw.train_x, size),
            raw.train_y,
            downsample(raw.test_x, size),
            raw.test_y,
            raw.num_classes,
        )

    return DatasetSpec(
        name=TINY_SPEC.name,
        load=load,
        present=_tiny_present,
        download=_tiny_download,
        input_shape=(3, size, size),
        num_classes=TINY_SPEC.num_classes,
    )


TINY_SPEC = register_dataset(
    DatasetSpec(
        name="tiny-imagenet",
        load=_tiny_load,
        present=_tiny_present,
        download=_tiny_download,
        input_shape=(3, TINY_SIZE, TINY_SIZE),
        num_classes=200,  # the real set; a trimmed wnids.txt gives fewer at load time
        with_params=_tiny_at,
    ),
    help="Tiny ImageNet: 100k train / 10k val (used as test) 3x64x64 images, 200 classes; "
    "tiny-imagenet:32 downsamples to 32x32",
)
