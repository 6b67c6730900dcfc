"""CIFAR-10 / CIFAR-100: python pickle batches, read with an unpickler that only builds arrays."""

from __future__ import annotations

import importlib
import pickle
from pathlib import Path

import numpy as np
import torch

from scpl.data.archive import extract_tar
from scpl.data.base import (
    DatasetSpec,
    LoadOptions,
    RawData,
    check_labels,
    download_file,
    register_dataset,
)
from scpl.errors import DataError

# Only what a pickled numpy array needs; anything else in a "data" file is refused, so a
# malicious pickle dropped into a data dir cannot run code.
_PICKLE_ALLOWED = {
    ("_codecs", "encode"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _PICKLE_ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        if module.startswith("numpy.core."):
            # Files pickled under numpy 1.x name numpy.core; numpy 2 moved it to numpy._core
            # and warns on the old path.
            try:
                return getattr(importlib.import_module("numpy._core" + module[10:]), name)
            except ImportError:  # pragma: no cover - numpy 1.x
                pass
        return super().find_class(module, name)


def _load_pickle(path: Path) -> dict:
    """Load one CIFAR batch (``encoding="bytes"``: the files were written by Python 2)."""
    try:
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise DataError(
            f"{path}: truncated or corrupt pickle ({type(e).__name__}: {e}); "
            f"delete it and re-extract or re-download"
        ) from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e}); check the file's permissions") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict batch, got {type(obj).__name__}; replace it")
    return obj


def _cifar_batch(
    path: Path, label_key: bytes, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    batch = _load_pickle(path)
    for key in (b"data", label_key):
        if key not in batch:
            raise DataError(f"{path}: missing key {key.decode()!r}; not a CIFAR batch, replace it")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[label_key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(
            f"{path}: 'data' is {data.dtype} {data.shape}, expected uint8 [N, 3072]; replace it"
        )
    if labels.ndim != 1 or len(labels) != len(data) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{path}: {label_key.decode()!r} has shape {labels.shape} for {len(data)} images; "
            f"replace the file"
        )
    x = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    y = torch.from_numpy(labels.astype(np.int64))
    check_labels(y, num_classes, str(path))  # name the file, not just the dataset
    return x, y


def _cifar_spec(
    name: str,
    folder: str,
    archive: str,
    url: str,
    md5: str,
    train_files: tuple[str, ...],
    test_file: str,
    label_key: bytes,
    num_classes: int,
    help: str,
) -> None:
    files = (*train_files, test_file)

    def complete(d: Path) -> bool:
        return all((d / f).is_file() for f in files)

    def present(root: Path) -> bool:
        # root may be the extracted folder, its parent, or a dir holding the tarball.
        return complete(root) or complete(root / folder) or (root / archive).is_file()

    def load(root: Path | None, options: LoadOptions) -> RawData:
        assert root is not None
        if complete(root):
            d = root
        elif complete(root / folder):
            d = root / folder
        elif (root / archive).is_file():
            extract_tar(root / archive, folder)
            d = root / folder
            if not complete(d):
                raise DataError(
                    f"{root / archive} does not hold all of {', '.join(files)}; "
                    f"delete it and re-download"
                )
        else:
            raise DataError(f"no {name} batches in {root}; pass --data-dir pointing at {folder}/")
        parts = [_cifar_batch(d / f, label_key, num_classes) for f in train_files]
        test_x, test_y = _cifar_batch(d / test_file, label_key, num_classes)
        return RawData(
            torch.cat([p[0] for p in parts]),
            torch.cat([p[1] for p in parts]),
            test_x,
            test_y,
            num_classes=num_classes,
        )

    def download(dest: Path) -> None:
        download_file(url, dest / archive, md5)

    register_dataset(
        DatasetSpec(
            name=name,
            load=load,
            present=present,
            download=download,
            input_shape=(3, 32, 32),
            num_classes=num_classes,
        ),
        help=help,
    )


_cifar_spec(
    "cifar10",
    folder="cifar-10-batches-py",
    archive="cifar-10-python.tar.gz",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    md5="c58f30108f718f92721af3b95e74349a",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_file="test_batch",
    label_key=b"labels",
    num_classes=10,
    help="CIFAR-10: 50k/10k 3x32x32 colour images, 10 classes (python pickle batches)",
)
_cifar_spec(
    "cifar100",
    folder="cifar-100-python",
    archive="cifar-100-python.tar.gz",
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    md5="eb9058c3a382ffc7106e4002c42a8d85",
    train_files=("train",),
    test_file="test",
    label_key=b"fine_labels",
    num_classes=100,
    help="CIFAR-100: 50k/10k 3x32x32 colour images, 100 fine classes (python pickles)",
)
