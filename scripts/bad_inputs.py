"""Run every bad input in the catalogue and print what the user sees (Markdown table).

    .venv/bin/python scripts/bad_inputs.py > docs/bad-inputs.md

Each case writes its broken files into a temp dir, runs `scpl ...` in a subprocess and records
the exit code and the single error line.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SMOKE = ["train", "smoke", "--progress", "false", "--epochs", "1", "--max-steps", "2"]


def idx_images(n: int, truncate: bool = False) -> bytes:
    data = struct.pack(">IIII", 0x00000803, n, 28, 28) + bytes(n * 28 * 28)
    return data[: len(data) // 2] if truncate else data


def idx_labels(labels: list[int]) -> bytes:
    return struct.pack(">II", 0x00000801, len(labels)) + bytes(labels)


def fmnist_dir(root: Path, truncate=False, bad_label=False) -> Path:
    d = root / "fmnist"
    d.mkdir()
    labels = [i % 10 for i in range(20)]
    if bad_label:
        labels[3] = 10
    for prefix in ("train", "t10k"):
        (d / f"{prefix}-images-idx3-ubyte").write_bytes(
            idx_images(20, truncate and prefix == "train")
        )
        (d / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_labels(labels))
    return d


def cases(tmp: Path) -> list[tuple[str, list[str], dict]]:
    c: list[tuple[str, list[str], dict]] = []
    c.append(
        (
            "missing data dir",
            SMOKE + ["--dataset", "fashion-mnist", "--data-dir", str(tmp / "nope")],
            {},
        )
    )
    c.append(
        (
            "truncated IDX file",
            SMOKE
            + [
                "--dataset",
                "fashion-mnist",
                "--data-dir",
                str(fmnist_dir(tmp / "a", truncate=True) if (tmp / "a").mkdir() is None else ""),
            ],
            {},
        )
    )
    c.append(
        (
            "label outside the class range",
            SMOKE
            + [
                "--dataset",
                "fashion-mnist",
                "--data-dir",
                str(fmnist_dir(tmp / "b", bad_label=True) if (tmp / "b").mkdir() is None else ""),
            ],
            {},
        )
    )
    gz = tmp / "gz"
    gz.mkdir()
    d = fmnist_dir(gz)
    for f in list(d.iterdir()):
        (d / (f.name + ".gz")).write_bytes(gzip.compress(f.read_bytes())[:40])
        f.unlink()
    c.append(("corrupt .gz IDX", SMOKE + ["--dataset", "fashion-mnist", "--data-dir", str(d)], {}))
    cif = tmp / "cifar" / "cifar-10-batches-py"
    cif.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (cif / name).write_bytes(pickle.dumps({b"data": b"x"})[:10])
    c.append(
        (
            "corrupt CIFAR pickle",
            SMOKE + ["--dataset", "cifar10", "--data-dir", str(tmp / "cifar")],
            {},
        )
    )
    tgz = tmp / "tgz"
    tgz.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.size = 1000
        t.addfile(info, io.BytesIO(bytes(1000)))
    (tgz / "cifar-10-python.tar.gz").write_bytes(buf.getvalue()[:200])
    c.append(("truncated tar.gz", SMOKE + ["--dataset", "cifar10", "--data-dir", str(tgz)], {}))
    zp = tmp / "zip"
    zp.mkdir()
    (zp / "tiny-imagenet-200.zip").write_bytes(b"PK\x03\x04 not really a zip")
    c.append(("corrupt zip", SMOKE + ["--dataset", "tiny-imagenet", "--data-dir", str(zp)], {}))
    csvd = tmp / "agnews"
    csvd.mkdir()
    (csvd / "train.csv").write_text('"1","title","text"\n"9","bad","label"\n')
    (csvd / "test.csv").write_text('"1","a","b"\n')
    c.append(
        (
            "CSV with a bad label",
            SMOKE + ["--model", "lstm", "--dataset", "ag-news", "--data-dir", str(csvd)],
            {},
        )
    )
    empty = tmp / "empty"
    empty.mkdir()
    (empty / "train.csv").write_text("")
    (empty / "test.csv").write_text("")
    c.append(
        (
            "empty text file",
            SMOKE + ["--model", "lstm", "--dataset", "ag-news", "--data-dir", str(empty)],
            {},
        )
    )
    good = tmp / "agnews-good"
    good.mkdir()
    rows = "\n".join(
        f'"{1 + i % 4}","title {i}","some words about topic {i % 4} here"' for i in range(64)
    )
    (good / "train.csv").write_text(rows + "\n")
    (good / "test.csv").write_text(rows + "\n")
    glove = tmp / "glove.txt"
    glove.write_text("words 0.1 0.2 0.3\n")
    c.append(
        (
            "GloVe dimension mismatch",
            SMOKE
            + [
                "--model",
                "lstm",
                "--dataset",
                "ag-news",
                "--data-dir",
                str(good),
                "--glove",
                str(glove),
            ],
            {},
        )
    )
    src = tmp / "payload.bin"
    src.write_bytes(b"not the real file")
    c.append(
        (
            "checksum mismatch after download",
            [
                "-c",
                "from pathlib import Path; from scpl.data.base import download_file; "
                f"download_file('file://{src}', Path('{tmp}/dl/file.gz'), md5='0' * 32)",
            ],
            {"PYTHON": "1"},
        )
    )
    c.append(("unknown model", SMOKE + ["--model", "alexnet"], {}))
    c.append(("unknown method", SMOKE + ["--method", "dfa"], {}))
    c.append(("unknown dataset", SMOKE + ["--dataset", "mnist"], {}))
    c.append(("ill-formed synthetic dataset spec", SMOKE + ["--dataset", "synthetic:3x32:10"], {}))
    c.append(("unknown experiment", ["experiment", "cifar", "--trials", "1"], {}))
    c.append(("unknown ablation row", ["experiment", "fmnist-ablate-head", "--rows", "big"], {}))
    c.append(("unknown schedule in epoch-time", ["epoch-time", "--schedules", "1f1b"], {}))
    c.append(("unknown schedule", SMOKE + ["--schedule", "1f1b"], {}))
    c.append(("unknown executor", SMOKE + ["--executor", "ray"], {}))
    c.append(("unknown recipe", ["train", "paper-cifar10-vgg", "--progress", "false"], {}))
    c.append(("K larger than the model's layers", SMOKE + ["--model", "vgg", "--stages", "7"], {}))
    c.append(("a device that does not exist", SMOKE + ["--device", "cuda:3"], {}))
    c.append(("batch size < 2 under a contrastive loss", SMOKE + ["--batch-size", "1"], {}))
    c.append(
        (
            "micro-batches that do not divide the batch",
            SMOKE + ["--micro-batches", "5", "--batch-size", "32"],
            {},
        )
    )
    c.append(
        (
            "schedule that does not fit the method",
            SMOKE + ["--method", "bp", "--schedule", "scpl"],
            {},
        )
    )
    blocker = tmp / "file"
    blocker.write_text("x")
    c.append(("output dir not writable", SMOKE + ["--out", str(blocker / "run")], {}))
    c.append(("NaN loss", SMOKE + ["--lr", "1e12", "--max-steps", "10"], {}))
    c.append(("--resume without checkpoints", SMOKE + ["--resume", str(empty)], {}))
    c.append(("dist without enough processes", SMOKE + ["--executor", "dist"], {}))
    return c


def main() -> None:
    scpl = [sys.executable, "-m", "scpl.cli"]
    print("| bad input | exit | what the user sees (stderr) |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as d:
        for name, args, env in cases(Path(d)):
            if env.pop("PYTHON", None):  # an API-level case: show the one-line DataError
                args = [
                    "-c",
                    "import sys\nfrom scpl.errors import ScplError\ntry:\n exec(sys.argv[1])\n"
                    "except ScplError as e:\n print(f'scpl: error: {e}', file=sys.stderr); sys.exit(2)",
                    args[1],
                ]
                cmd = [sys.executable, *args]
            else:
                cmd = scpl + args
            p = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=300,
                env=dict(os.environ, OMP_NUM_THREADS="1", **env),
                cwd=d,
            )
            lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
            msg = lines[-1] if lines else "(nothing)"
            if "Traceback" in p.stderr:
                msg = "TRACEBACK: " + msg
            print(f"| {name} | {p.returncode} | `{msg.replace('|', '/')}` |")


if __name__ == "__main__":
    main()
