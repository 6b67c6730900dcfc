"""Image dataset loaders: each real on-disk format is written small into tmp_path and read back."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scpl.data import DATASETS, DataBundle, load_dataset
from scpl.data.base import download_file
from scpl.data.vision import fashion, generated, tiny_imagenet
from scpl.errors import DataError


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Keep every test away from the user's cache and $SCPL_DATA."""
    monkeypatch.setenv("SCPL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SCPL_DATA", raising=False)


def one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


# --------------------------------------------------------------------------------------------
# IDX / Fashion-MNIST
# --------------------------------------------------------------------------------------------

IDX_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D}


def idx_bytes(arr: np.ndarray) -> bytes:
    code = IDX_CODES[arr.dtype.type]
    head = bytes([0, 0, code, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    return head + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, arr: np.ndarray, gz: bool = False) -> Path:
    data = idx_bytes(arr)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def fashion_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Balanced labels; pixel [0, 0] and [0, 1] encode the sample index so splits are traceable."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    x[:, 0, 0], x[:, 0, 1] = np.arange(n) % 256, np.arange(n) // 256
    y = (np.arange(n) % 10).astype(np.uint8)
    return x, y


def write_fashion(root: Path, gz: bool = False, n_train: int = 40, n_test: int = 20) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    tx, ty = fashion_arrays(n_train, 0)
    vx, vy = fashion_arrays(n_test, 1)
    write_idx(root / "train-images-idx3-ubyte", tx, gz)
    write_idx(root / "train-labels-idx1-ubyte", ty, gz)
    write_idx(root / "t10k-images-idx3-ubyte", vx, gz)
    write_idx(root / "t10k-labels-idx1-ubyte", vy, gz)
    return {"train_x": tx, "train_y": ty, "test_x": vx, "test_y": vy}


@pytest.mark.parametrize("gz", [False, True])
def test_fashion_mnist_plain_and_gz(tmp_path, gz):
    arrays = write_fashion(tmp_path, gz=gz, n_train=100)
    b = load_dataset("fashion-mnist", data_dir=tmp_path, download=False, val_fraction=0.1)
    assert isinstance(b, DataBundle)
    assert (len(b.train), len(b.val), len(b.test)) == (90, 10, 20)
    assert b.input_shape == (1, 28, 28) and b.num_classes == 10
    assert b.train.x.dtype == torch.uint8 and b.train.y.dtype == torch.int64
    assert torch.equal(b.test.x, torch.from_numpy(arrays["test_x"]).unsqueeze(1))
    assert torch.equal(b.test.y, torch.from_numpy(arrays["test_y"]).long())
    assert len(b.mean) == 1 and len(b.std) == 1


def test_fashion_dataset_subdir_of_data_dir(tmp_path):
    write_fashion(tmp_path / "fashion-mnist", gz=True)
    b = load_dataset("fashion-mnist", data_dir=tmp_path, download=False)
    assert len(b.test) == 20


def test_read_idx_multibyte_dtype(tmp_path):
    arr = np.arange(-6, 6, dtype=np.int32).reshape(3, 4) * 100000
    got = fashion.read_idx(write_idx(tmp_path / "a-idx2-int", arr))
    assert got.dtype == np.int32 and got.shape == (3, 4)
    np.testing.assert_array_equal(got, arr)


def test_idx_truncated_raises(tmp_path):
    write_fashion(tmp_path)
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(DataError, match="train-images-idx3-ubyte") as e:
        load_dataset("fashion-mnist", data_dir=tmp_path, download=False)
    assert "truncated" in one_line(e)


def test_idx_truncated_header_raises(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(DataError, match="header"):
        fashion.read_idx(p)


def test_idx_wrong_magic_raises(tmp_path):
    write_fashion(tmp_path)
    p = tmp_path / "t10k-labels-idx1-ubyte"
    p.write_bytes(b"\x12\x34" + p.read_bytes()[2:])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.*magic") as e:
        load_dataset("fashion-mnist", data_dir=tmp_path, download=False)
    one_line(e)


def test_idx_unknown_dtype_code_raises(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(bytes([0, 0, 0x07, 1]) + (1).to_bytes(4, "big") + b"\0")
    with pytest.raises(DataError, match="magic"):
        fashion.read_idx(p)


def test_idx_bad_and_truncated_gzip_raise(tmp_path):
    write_fashion(tmp_path, gz=True)
    p = tmp_path / "train-labels-idx1-ubyte.gz"
    p.write_bytes(b"this is not gzip data at all")
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz") as e:
        load_dataset("fashion-mnist", data_dir=tmp_path, download=False)
    one_line(e)
    q = tmp_path / "train-images-idx3-ubyte.gz"
    q.write_bytes(q.read_bytes()[: len(q.read_bytes()) // 2])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        fashion.read_idx(q)


def test_idx_label_out_of_range_raises(tmp_path):
    write_fashion(tmp_path)
    y = (np.arange(40) % 10).astype(np.uint8)
    y[7] = 10
    write_idx(tmp_path / "train-labels-idx1-ubyte", y)
    with pytest.raises(DataError, match="label 10") as e:
        load_dataset("fashion-mnist", data_dir=tmp_path, download=False)
    assert "train-labels-idx1-ubyte" in one_line(e)


def test_idx_count_mismatch_raises(tmp_path):
    write_fashion(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(19, np.uint8))
    with pytest.raises(DataError, match="20 images but t10k-labels-idx1-ubyte has 19"):
        load_dataset("fashion-mnist", data_dir=tmp_path, download=False)


def test_val_split_disjoint_and_stratified(tmp_path):
    arrays = write_fashion(tmp_path, n_train=200)
    b = load_dataset("fashion-mnist", data_dir=tmp_path, download=False, val_fraction=0.2, seed=3)

    def ids(split):
        return set((split.x[:, 0, 0, 0].long() + 256 * split.x[:, 0, 0, 1].long()).tolist())

    tr, va = ids(b.train), ids(b.val)
    assert not tr & va and tr | va == set(range(200))
    assert torch.bincount(b.val.y, minlength=10).tolist() == [4] * 10
    assert torch.bincount(b.train.y, minlength=10).tolist() == [16] * 10
    # The id pixels say which original row each sample is: labels must follow their images.
    for split in (b.train, b.val):
        idx = (split.x[:, 0, 0, 0].long() + 256 * split.x[:, 0, 0, 1].long()).numpy()
        np.testing.assert_array_equal(split.y.numpy(), arrays["train_y"][idx])
    again = load_dataset(
        "fashion-mnist", data_dir=tmp_path, download=False, val_fraction=0.2, seed=3
    )
    assert torch.equal(again.val.x, b.val.x)


def test_scpl_data_env_lookup(tmp_path, monkeypatch):
    write_fashion(tmp_path / "env" / "fashion-mnist", n_train=30, n_test=10)
    monkeypatch.setenv("SCPL_DATA", str(tmp_path / "env"))
    # $SCPL_DATA outranks the system dirs, so the tiny copy wins over any real install.
    b = load_dataset("fashion-mnist", download=False, val_fraction=0.0)
    assert (len(b.train), len(b.test)) == (30, 10)


def test_missing_data_dir_raises(tmp_path):
    with pytest.raises(DataError, match="does not exist") as e:
        load_dataset("fashion-mnist", data_dir=tmp_path / "nope", download=False)
    one_line(e)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no cifar10 files found"):
        load_dataset("cifar10", data_dir=tmp_path / "empty", download=False)


def test_not_found_without_download_raises(tmp_path, monkeypatch):
    monkeypatch.setattr(DATASETS.get("fashion-mnist"), "system_dirs", ())
    with pytest.raises(DataError, match="--data-dir") as e:
        load_dataset("fashion-mnist", download=False)
    one_line(e)


def test_fashion_download_into_cache(tmp_path, monkeypatch):
    src = tmp_path / "mirror"
    write_fashion(src, gz=True)
    md5s = {
        stem: hashlib.md5((src / f"{stem}.gz").read_bytes()).hexdigest()
        for stem in fashion.FASHION_FILES
    }
    monkeypatch.setattr(fashion, "FASHION_URL", src.as_uri() + "/")
    monkeypatch.setattr(fashion, "FASHION_FILES", md5s)
    monkeypatch.setattr(DATASETS.get("fashion-mnist"), "system_dirs", ())
    b = load_dataset("fashion-mnist", download=True)
    assert len(b.test) == 20
    assert (tmp_path / "cache" / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").is_file()


# --------------------------------------------------------------------------------------------
# download_file
# --------------------------------------------------------------------------------------------


def test_download_file_checksum_mismatch(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload")
    dest = tmp_path / "out" / "file.bin"
    with pytest.raises(DataError, match="checksum mismatch") as e:
        download_file(src.as_uri(), dest, md5="0" * 32)
    one_line(e)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []  # no stray .part file either
    good = hashlib.md5(b"payload").hexdigest()
    assert download_file(src.as_uri(), dest, md5=good).read_bytes() == b"payload"


def test_download_file_unreachable(tmp_path):
    dest = tmp_path / "file.bin"
    with pytest.raises(DataError, match="could not download"):
        download_file((tmp_path / "missing.bin").as_uri(), dest)
    assert not dest.exists()


# --------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100
# --------------------------------------------------------------------------------------------


def cifar_batch(n: int, label_key: bytes, num_classes: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": b"testing batch",
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        label_key: [int(v) for v in np.arange(n) % num_classes],
        b"filenames": [b"x.png"] * n,
    }


def write_cifar10(root: Path, n: int = 10) -> Path:
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for i in range(1, 6):
        (d / f"data_batch_{i}").write_bytes(
            pickle.dumps(cifar_batch(n, b"labels", 10, i), protocol=2)
        )
    (d / "test_batch").write_bytes(pickle.dumps(cifar_batch(n, b"labels", 10, 9)))
    return d


def write_cifar100(root: Path, n: int = 200) -> Path:
    d = root / "cifar-100-python"
    d.mkdir(parents=True)
    train = cifar_batch(n, b"fine_labels", 100, 0)
    train[b"coarse_labels"] = [0] * n
    (d / "train").write_bytes(pickle.dumps(train, protocol=2))
    (d / "test").write_bytes(pickle.dumps(cifar_batch(n // 2, b"fine_labels", 100, 1)))
    return d


def make_tar(folder: Path, archive: Path) -> None:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)


@pytest.mark.parametrize("point_at", ["parent", "folder"])
def test_cifar10_pickles(tmp_path, point_at):
    d = write_cifar10(tmp_path)
    root = tmp_path if point_at == "parent" else d
    b = load_dataset("cifar10", data_dir=root, download=False, val_fraction=0.0)
    assert (len(b.train), len(b.test)) == (50, 10)
    assert b.input_shape == (3, 32, 32) and b.num_classes == 10
    assert b.train.x.dtype == torch.uint8 and b.train.y.dtype == torch.int64
    first = cifar_batch(10, b"labels", 10, 1)[b"data"].reshape(10, 3, 32, 32)
    assert torch.equal(b.train.x[:10], torch.from_numpy(first))
    assert len(b.mean) == 3


def test_cifar100_pickles(tmp_path):
    write_cifar100(tmp_path)
    b = load_dataset("cifar100", data_dir=tmp_path, download=False, val_fraction=0.0)
    assert (len(b.train), len(b.test), b.num_classes) == (200, 100, 100)
    assert int(b.train.y.max()) == 99


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_tarball_is_extracted(tmp_path, name):
    src = tmp_path / "src"
    d = write_cifar10(src) if name == "cifar10" else write_cifar100(src)
    data = tmp_path / "data"
    data.mkdir()
    archive = data / ("cifar-10-python.tar.gz" if name == "cifar10" else "cifar-100-python.tar.gz")
    make_tar(d, archive)
    b = load_dataset(name, data_dir=data, download=False, val_fraction=0.0)
    assert len(b.test) > 0
    assert (data / d.name).is_dir()
    assert sorted(p.name for p in data.iterdir()) == sorted([archive.name, d.name])  # no temp dirs
    again = load_dataset(name, data_dir=data, download=False, val_fraction=0.0)
    assert torch.equal(again.train.x, b.train.x)


def test_cifar_truncated_tarball_raises(tmp_path):
    d = write_cifar10(tmp_path / "src")
    data = tmp_path / "data"
    data.mkdir()
    archive = data / "cifar-10-python.tar.gz"
    make_tar(d, archive)
    archive.write_bytes(archive.read_bytes()[:-2000])
    with pytest.raises(DataError, match="cifar-10-python.tar.gz") as e:
        load_dataset("cifar10", data_dir=data, download=False)
    one_line(e)
    assert sorted(p.name for p in data.iterdir()) == [archive.name]  # nothing half-extracted


def test_cifar_tarball_path_traversal_refused(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    archive = data / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("../evil.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    with pytest.raises(DataError, match="unsafe"):
        load_dataset("cifar10", data_dir=data, download=False)
    assert not (tmp_path / "evil.txt").exists()


def test_cifar_truncated_pickle_raises(tmp_path):
    d = write_cifar10(tmp_path)
    p = d / "data_batch_3"
    p.write_bytes(p.read_bytes()[:500])
    with pytest.raises(DataError, match="data_batch_3") as e:
        load_dataset("cifar10", data_dir=tmp_path, download=False)
    assert "corrupt" in one_line(e)


def test_cifar_missing_key_raises(tmp_path):
    d = write_cifar100(tmp_path)
    batch = cifar_batch(10, b"labels", 100, 0)  # CIFAR-10 key in a CIFAR-100 file
    (d / "test").write_bytes(pickle.dumps(batch))
    with pytest.raises(DataError, match="missing key 'fine_labels'") as e:
        load_dataset("cifar100", data_dir=tmp_path, download=False)
    one_line(e)


def test_cifar_label_out_of_range_raises(tmp_path):
    d = write_cifar10(tmp_path)
    batch = cifar_batch(10, b"labels", 10, 0)
    batch[b"labels"][3] = 10
    (d / "test_batch").write_bytes(pickle.dumps(batch))
    with pytest.raises(DataError, match="test_batch: label 10"):
        load_dataset("cifar10", data_dir=tmp_path, download=False)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_cifar_pickle_with_code_is_refused(tmp_path):
    d = write_cifar10(tmp_path)
    (d / "test_batch").write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}))
    with pytest.raises(DataError, match="not allowed"):
        load_dataset("cifar10", data_dir=tmp_path, download=False)


# --------------------------------------------------------------------------------------------
# Tiny ImageNet
# --------------------------------------------------------------------------------------------

WNIDS = ["n0300", "n0100", "n0200"]  # deliberately unsorted: labels follow sorted order


def jpeg(colour, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (64, 64), colour).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def write_tiny(root: Path, per_class: int = 3, val_per_class: int = 2) -> Path:
    d = root / "tiny-imagenet-200"
    (d / "val" / "images").mkdir(parents=True)
    (d / "test" / "images").mkdir(parents=True)  # unlabeled; must be ignored
    (d / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    ann = []
    for k, w in enumerate(WNIDS):
        img_dir = d / "train" / w / "images"
        img_dir.mkdir(parents=True)
        (d / "train" / w / f"{w}_boxes.txt").write_text("")
        for i in range(per_class):
            (img_dir / f"{w}_{i}.JPEG").write_bytes(jpeg((80 * k, 0, 0)))
        for i in range(val_per_class):
            name = f"val_{k}_{i}.JPEG"
            (d / "val" / "images" / name).write_bytes(jpeg((80 * k, 0, 0)))
            ann.append(f"{name}\t{w}\t0\t0\t63\t63")
    # One grayscale JPEG: real Tiny ImageNet has some, and they must come out as RGB.
    # Its grey level equals its class's red value so the per-class colour check still holds.
    (d / "train" / WNIDS[1] / "images" / f"{WNIDS[1]}_gray.JPEG").write_bytes(jpeg(80, "L"))
    (d / "val" / "val_annotations.txt").write_text("\n".join(ann) + "\n")
    return d


def test_tiny_imagenet_tree_and_decoded_cache(tmp_path, monkeypatch):
    write_tiny(tmp_path)
    b = load_dataset("tiny-imagenet", data_dir=tmp_path, download=False, val_fraction=0.0)
    assert b.num_classes == 3 and b.input_shape == (3, 64, 64)
    assert (len(b.train), len(b.test)) == (10, 6)
    assert b.train.x.dtype == torch.uint8 and b.test.y.dtype == torch.int64
    # Sorted wnids: n0100 -> 0, n0200 -> 1, n0300 -> 2; the red channel encodes the wnid.
    red = {"n0300": 0, "n0100": 80, "n0200": 160}
    for split in (b.train, b.test):
        for x, y in zip(split.x, split.y, strict=True):
            assert abs(int(x[0, 32, 32]) - red[sorted(WNIDS)[int(y)]]) <= 3
    grey = [x for x in b.train.x if abs(int(x[1, 32, 32]) - 80) <= 3]
    assert len(grey) == 1 and abs(int(grey[0][2, 32, 32]) - 80) <= 3
    assert torch.bincount(b.test.y).tolist() == [2, 2, 2]
    cache = tmp_path / "cache" / "tiny-imagenet" / "decoded.pt"
    assert cache.is_file()

    def boom(paths):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(tiny_imagenet, "_decode_all", boom)
    again = load_dataset("tiny-imagenet", data_dir=tmp_path, download=False, val_fraction=0.0)
    assert torch.equal(again.train.x, b.train.x) and torch.equal(again.test.y, b.test.y)


def test_tiny_imagenet_cache_is_keyed_by_source(tmp_path):
    write_tiny(tmp_path / "a", per_class=2)
    write_tiny(tmp_path / "b", per_class=4)
    a = load_dataset("tiny-imagenet", data_dir=tmp_path / "a", download=False, val_fraction=0.0)
    b = load_dataset("tiny-imagenet", data_dir=tmp_path / "b", download=False, val_fraction=0.0)
    assert (len(a.train), len(b.train)) == (7, 13)


def test_tiny_imagenet_damaged_cache_is_rebuilt(tmp_path):
    write_tiny(tmp_path)
    cache = tmp_path / "cache" / "tiny-imagenet" / "decoded.pt"
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="ignoring unreadable cache"):
        b = load_dataset("tiny-imagenet", data_dir=tmp_path, download=False, val_fraction=0.0)
    assert len(b.train) == 10
    assert torch.load(cache, weights_only=True)["train_x"].shape == (10, 3, 64, 64)


def test_tiny_imagenet_zip(tmp_path):
    d = write_tiny(tmp_path / "src")
    data = tmp_path / "data"
    data.mkdir()
    with zipfile.ZipFile(data / "tiny-imagenet-200.zip", "w") as zf:
        for p in sorted(d.rglob("*")):
            zf.write(p, p.relative_to(d.parent).as_posix())
    b = load_dataset("tiny-imagenet", data_dir=data, download=False, val_fraction=0.0)
    assert (len(b.train), len(b.test), b.num_classes) == (10, 6, 3)
    assert (data / "tiny-imagenet-200" / "wnids.txt").is_file()


def test_tiny_imagenet_corrupt_jpeg_raises(tmp_path):
    d = write_tiny(tmp_path)
    bad = d / "train" / "n0200" / "images" / "n0200_1.JPEG"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="n0200_1.JPEG") as e:
        load_dataset("tiny-imagenet", data_dir=tmp_path, download=False)
    one_line(e)


def test_tiny_imagenet_unknown_val_wnid_raises(tmp_path):
    d = write_tiny(tmp_path)
    ann = d / "val" / "val_annotations.txt"
    ann.write_text(ann.read_text() + "val_x.JPEG\tn9999\t0\t0\t1\t1\n")
    with pytest.raises(DataError, match="val_annotations.txt:7"):
        load_dataset("tiny-imagenet", data_dir=tmp_path, download=False)


# --------------------------------------------------------------------------------------------
# digits, synthetic, registry
# --------------------------------------------------------------------------------------------


def test_digits():
    b = load_dataset("digits", val_fraction=0.1)
    assert b.input_shape == (1, 8, 8) and b.num_classes == 10
    assert len(b.train) + len(b.val) + len(b.test) == 1797
    assert len(b.test) == 360
    assert b.train.x.dtype == torch.uint8 and int(b.train.x.max()) == 255
    counts = torch.bincount(b.test.y, minlength=10)
    assert int(counts.min()) >= 35 and int(counts.max()) <= 37  # stratified
    assert torch.equal(load_dataset("digits", val_fraction=0.1).test.x, b.test.x)


def test_synthetic_is_deterministic_and_learnable():
    b = load_dataset("synthetic", val_fraction=0.0)
    assert b.input_shape == (3, 32, 32) and b.num_classes == 10
    assert (len(b.train), len(b.test)) == (2048, 512)
    assert b.train.x.dtype == torch.uint8
    assert torch.bincount(b.train.y).tolist() == [205] * 8 + [204] * 2
    assert torch.equal(load_dataset("synthetic", val_fraction=0.0).train.x, b.train.x)
    # A nearest-class-mean classifier on mean colour must do far better than chance.
    feats = lambda s: s.x.float().mean(dim=(2, 3))  # noqa: E731
    centres = torch.stack([feats(b.train)[b.train.y == c].mean(0) for c in range(10)])
    pred = torch.cdist(feats(b.test), centres).argmin(1)
    assert (pred == b.test.y).float().mean() > 0.9


def test_synthetic_size_is_configurable(monkeypatch):
    monkeypatch.setattr(generated, "SYNTHETIC_SHAPE", (1, 8, 8))
    monkeypatch.setattr(generated, "SYNTHETIC_TRAIN", 100)
    monkeypatch.setattr(generated, "SYNTHETIC_CLASSES", 4)
    b = load_dataset("synthetic", val_fraction=0.0)
    assert b.input_shape == (1, 8, 8) and b.num_classes == 4 and len(b.train) == 100


def test_registry_lists_vision_datasets():
    for name in ("fashion-mnist", "cifar10", "cifar100", "tiny-imagenet", "digits", "synthetic"):
        assert name in DATASETS
        assert DATASETS.describe(name)


def test_specs_declare_shape_and_classes():
    expected = {
        "fashion-mnist": ((1, 28, 28), 10),
        "cifar10": ((3, 32, 32), 10),
        "cifar100": ((3, 32, 32), 100),
        "tiny-imagenet": ((3, 64, 64), 200),
        "digits": ((1, 8, 8), 10),
        "synthetic": ((3, 32, 32), 10),
    }
    for name, (shape, classes) in expected.items():
        spec = DATASETS.get(name)
        assert (spec.input_shape, spec.num_classes) == (shape, classes)
