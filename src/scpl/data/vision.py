"""Image datasets: Fashion-MNIST (IDX), CIFAR-10/100 (python pickles), Tiny ImageNet (JPEG tree),
scikit-learn's digits, and a synthetic set for benchmarks.

Every loader returns :class:`RawData` with uint8 images ``[N, C, H, W]`` and int64 labels.
Corrupt, truncated or inconsistent files raise :class:`DataError` naming the file.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import os
import pickle
import shutil
import tarfile
import tempfile
import warnings
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from scpl.atomic import atomic_write
from scpl.data.base import (
    DatasetSpec,
    RawData,
    cache_dir,
    check_labels,
    download_file,
    register_dataset,
)
from scpl.errors import ConfigError, DataError

# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------


def _is_within(base: Path, name: str) -> bool:
    """True if archive member ``name`` stays inside ``base`` once extracted."""
    if not name or os.path.isabs(name) or name.startswith(("/", "\\")):
        return False
    target = (base / name).resolve()
    base = base.resolve()
    return target == base or base in target.parents


def _publish_dir(tmp_root: Path, top: str, dest_dir: Path) -> None:
    """Move ``tmp_root/top`` to ``dest_dir/top`` in one rename, so a crash mid-extraction
    never leaves a half-filled folder that would look present."""
    src = tmp_root / top
    if not src.is_dir():
        raise DataError(f"archive did not contain the folder {top}/; delete it and re-download")
    final = dest_dir / top
    try:
        os.replace(src, final)
    except OSError:
        # Another process (or an earlier partial copy) already put a folder there; keep it.
        if not final.is_dir():
            raise


def _extract_tar(archive: Path, top: str) -> None:
    """Safely extract ``archive`` next to itself; only plain files/dirs under ``top/``."""
    dest = archive.parent
    try:
        tmp = Path(tempfile.mkdtemp(dir=dest, prefix=f".{top}.", suffix=".part"))
    except OSError as e:
        raise DataError(
            f"cannot extract {archive}: its folder is not writable ({e}); extract it by hand"
        ) from None
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = []
            for m in tar:
                # Links and devices are never part of these datasets; refusing them closes
                # the classic tar path-traversal holes even without the stdlib data filter.
                if not (m.isfile() or m.isdir()) or not _is_within(tmp, m.name):
                    raise DataError(
                        f"{archive}: refusing unsafe archive member {m.name!r}; "
                        f"delete the file and re-download"
                    )
                members.append(m)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, members=members, filter="data")
            else:  # pragma: no cover - Python without the PEP 706 backport
                tar.extractall(tmp, members=members)
        _publish_dir(tmp, top, dest)
    except DataError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise DataError(
            f"{archive} is truncated or corrupt ({type(e).__name__}: {e}); "
            f"delete it and re-download, or extract it by hand"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _extract_zip(archive: Path, top: str) -> None:
    """Safely extract ``archive`` next to itself (see :func:`_extract_tar`)."""
    dest = archive.parent
    try:
        tmp = Path(tempfile.mkdtemp(dir=dest, prefix=f".{top}.", suffix=".part"))
    except OSError as e:
        raise DataError(
            f"cannot extract {archive}: its folder is not writable ({e}); extract it by hand"
        ) from None
    try:
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                if not _is_within(tmp, name):
                    raise DataError(
                        f"{archive}: refusing unsafe archive member {name!r}; "
                        f"delete the file and re-download"
                    )
            zf.extractall(tmp)
        _publish_dir(tmp, top, dest)
    except DataError:
        raise
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as e:
        raise DataError(
            f"{archive} is truncated or corrupt ({type(e).__name__}: {e}); "
            f"delete it and re-download, or extract it by hand"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Fashion-MNIST (IDX format)
# --------------------------------------------------------------------------------------------

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


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (plain or gzip) into a numpy array, validating header and size."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                buf = f.read()
        else:
            buf = path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(
            f"{path}: unreadable or corrupt gzip ({type(e).__name__}: {e}); "
            f"delete it and re-download"
        ) from None
    if len(buf) < 4:
        raise DataError(f"{path}: truncated IDX file ({len(buf)} bytes); delete it and re-download")
    zero, code, ndim = int.from_bytes(buf[:2], "big"), buf[2], buf[3]
    if zero != 0 or code not in _IDX_DTYPES or ndim == 0:
        raise DataError(
            f"{path}: bad IDX magic number 0x{buf[:4].hex()}; not an IDX file, replace it"
        )
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise DataError(f"{path}: truncated IDX header; delete it and re-download")
    dims = tuple(int.from_bytes(buf[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_DTYPES[code]
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(buf) != expected:
        raise DataError(
            f"{path}: size {len(buf)} bytes does not match its IDX header {dims} "
            f"({expected} bytes); the file is truncated or corrupt, delete it and re-download"
        )
    arr = np.frombuffer(buf, dtype=dtype, offset=header).reshape(dims)
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
    if len(images) != len(labels):
        raise DataError(
            f"{img_path.name} has {len(images)} images but {lbl_path.name} has {len(labels)} "
            f"labels; replace the mismatched pair"
        )
    x = torch.from_numpy(images.copy()).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    check_labels(y, 10, str(lbl_path))  # name the file, not just the dataset
    return x, y


def _fashion_load(root: Path | None) -> RawData:
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


# --------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100 (python pickle batches)
# --------------------------------------------------------------------------------------------

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

    def load(root: Path | None) -> RawData:
        assert root is not None
        if complete(root):
            d = root
        elif complete(root / folder):
            d = root / folder
        elif (root / archive).is_file():
            _extract_tar(root / archive, folder)
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


# --------------------------------------------------------------------------------------------
# Tiny ImageNet
# --------------------------------------------------------------------------------------------

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


def _tiny_load(root: Path | None) -> RawData:
    assert root is not None
    d = _tiny_dir(root)
    if d is None:
        _extract_zip(root / TINY_ZIP, TINY_FOLDER)
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


register_dataset(
    DatasetSpec(
        name="tiny-imagenet",
        load=_tiny_load,
        present=_tiny_present,
        download=_tiny_download,
        input_shape=(3, TINY_SIZE, TINY_SIZE),
        num_classes=200,  # the real set; a trimmed wnids.txt gives fewer at load time
    ),
    help="Tiny ImageNet: 100k train / 10k val (used as test) 3x64x64 images, 200 classes",
)


# --------------------------------------------------------------------------------------------
# Embedded / generated datasets (no files)
# --------------------------------------------------------------------------------------------

DIGITS_TEST_FRACTION = 0.2
DIGITS_SEED = 0


def _digits_load(root: Path | None) -> RawData:
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
    ),
    help="scikit-learn digits: 1797 1x8x8 grayscale handwritten digits, 10 classes (embedded)",
)

# Module-level so benchmarks can change them (e.g. ``vision.SYNTHETIC_TRAIN = 65536``).
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


def _synthetic_load(root: Path | None) -> RawData:
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
        load=lambda root: _synthetic_raw(shape, classes, n_train, n_test),
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
