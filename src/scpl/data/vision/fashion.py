"""Fashion-MNIST: the IDX format (plain or gzip) and the dataset."""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np
import torch

from scpl.data.base import (
    DatasetSpec,
    LoadOptions,
    RawData,
    check_labels,
    download_file,
    register_dataset,
)
from scpl.errors import DataError

FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_FILES = {
    "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
}  # md5 of the .gz files

# IDX type codes -> big-endian numpy dtypes (http://yann.lecun.com/exdb/mnist/).
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _find_variant(root: Path, stem: str) -> Path | None:
    """``root/stem`` or ``root/stem.gz``, whichever exists (plain first)."""
    for cand in (root / stem, root / f"{stem}.gz"):
        if cand.is_file():
            return cand
    return None


# The largest IDX payload read (Fashion-MNIST's training images are 47 MB): a header that
# claims more is refused before anything is decompressed.
MAX_IDX_BYTES = 2**31


def read_idx(path: Path, max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """Parse an IDX file (plain or gzip) into a numpy array, validating header and size.

    The header is read first from the (decompressing) stream and bounds what is read after
    it: the payload it announces plus one byte to detect trailing data, so a small gzip that
    expands to gigabytes (a "zip bomb", or a corrupt file) is refused after at most its
    header's size, never decompressed in full."""
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
            buf = f.read(4)
            if len(buf) < 4:
                raise DataError(
                    f"{path}: truncated IDX file ({len(buf)} bytes); delete it and re-download"
                )
            zero, code, ndim = int.from_bytes(buf[:2], "big"), buf[2], buf[3]
            if zero != 0 or code not in _IDX_DTYPES or ndim == 0:
                raise DataError(
                    f"{path}: bad IDX magic number 0x{buf[:4].hex()}; not an IDX file, replace it"
                )
            header = 4 + 4 * ndim
            buf += f.read(4 * ndim)
            if len(buf) < header:
                raise DataError(f"{path}: truncated IDX header; delete it and re-download")
            dims = tuple(int.from_bytes(buf[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
            dtype = _IDX_DTYPES[code]
            payload = math.prod(dims) * dtype.itemsize
            if payload > max_bytes:
                raise DataError(
                    f"{path}: its IDX header {dims} announces {payload / 2**30:.3g} GiB, more "
                    f"than any such dataset ({max_bytes / 2**30:.3g} GiB at most); the file is "
                    "corrupt or not a dataset file, delete it and re-download"
                )
            data = f.read(payload + 1)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(
            f"{path}: unreadable or corrupt gzip ({type(e).__name__}: {e}); "
            f"delete it and re-download"
        ) from None
    if len(data) != payload:
        size = f"over {header + payload}" if len(data) > payload else f"{header + len(data)}"
        raise DataError(
            f"{path}: size {size} bytes does not match its IDX header {dims} "
            f"({header + payload} bytes); the file is truncated or corrupt, delete it and "
            "re-download"
        )
    arr = np.frombuffer(data, dtype=dtype).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def _fashion_present(root: Path) -> bool:
    return all(_find_variant(root, stem) is not None for stem in FASHION_FILES)


def _fashion_part(root: Path, prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    img_path = _find_variant(root, f"{prefix}-images-idx3-ubyte")
    lbl_path = _find_variant(root, f"{prefix}-labels-idx1-ubyte")
    if img_path is None or lbl_path is None:
        raise DataError(
            f"{root}: missing Fashion-MNIST {prefix} files; re-download or re-copy them"
        )
    images, labels = read_idx(img_path), read_idx(lbl_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{img_path}: expected uint8 images [N, H, W], got {images.dtype} {images.shape}; "
            f"replace the file"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DataError(
            f"{lbl_path}: expected uint8 labels [N], got {labels.dtype} {labels.shape}; "
            f"replace the file"
        )
    if len(images) == 0:
        raise DataError(f"{img_path}: holds 0 images; replace it with the real file")
    if len(images) != len(labels):
        raise DataError(
            f"{img_path.name} has {len(images)} images but {lbl_path.name} has {len(labels)} "
            f"labels; replace the mismatched pair"
        )
    x = torch.from_numpy(images.copy()).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    check_labels(y, 10, str(lbl_path))  # name the file, not just the dataset
    return x, y


def _fashion_load(root: Path | None, options: LoadOptions) -> RawData:
    assert root is not None
    train_x, train_y = _fashion_part(root, "train")
    test_x, test_y = _fashion_part(root, "t10k")
    return RawData(train_x, train_y, test_x, test_y, num_classes=10)


def _fashion_download(dest: Path) -> None:
    for stem, md5 in FASHION_FILES.items():
        download_file(FASHION_URL + stem + ".gz", dest / f"{stem}.gz", md5)


register_dataset(
    DatasetSpec(
        name="fashion-mnist",
        load=_fashion_load,
        present=_fashion_present,
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        download=_fashion_download,
        input_shape=(1, 28, 28),
        num_classes=10,
    ),
    help="Fashion-MNIST: 60k/10k 1x28x28 grayscale clothing images, 10 classes (IDX files)",
)
