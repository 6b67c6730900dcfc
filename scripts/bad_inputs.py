"""Run every bad input in the catalogue and print what the user sees (Markdown table).

    .venv/bin/python scripts/bad_inputs.py > docs/bad-inputs.md
    .venv/bin/python scripts/bad_inputs.py --runs   # only the run/resume/checkpoint cases
    .venv/bin/python scripts/bad_inputs.py --folders   # only issue 24's run-folder cases
    .venv/bin/python scripts/bad_inputs.py --more   # only issue 24's ranges/library/files block

Each case writes its broken files into a temp dir, runs `scpl ...` in a subprocess and records
the exit code and the single error line.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import textwrap
from pathlib import Path

SMOKE = ["train", "smoke", "--progress", "false", "--epochs", "1", "--max-steps", "2"]


def idx_images(n: int, truncate: bool = False, side: int = 28) -> bytes:
    data = struct.pack(">IIII", 0x00000803, n, side, side) + bytes(n * side * side)
    return data[: len(data) // 2] if truncate else data


def idx_labels(labels: list[int]) -> bytes:
    return struct.pack(">II", 0x00000801, len(labels)) + bytes(labels)


def fmnist_dir(root: Path, truncate=False, bad_label=False, labels=None, test_side=28) -> Path:
    d = root / "fmnist"
    d.mkdir()
    labels = list(labels) if labels is not None else [i % 10 for i in range(20)]
    if bad_label:
        labels[3] = 10
    for prefix in ("train", "t10k"):
        side = test_side if prefix == "t10k" else 28
        (d / f"{prefix}-images-idx3-ubyte").write_bytes(
            idx_images(20, truncate and prefix == "train", side)
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
    c += run_cases(tmp)
    c += folder_cases(tmp)  # issue 24: run folders, NaN checkpoints, resume identity
    c += more_cases(tmp)
    return c


FAST = ["--progress", "false", "--tensorboard", "false", "--epochs", "1", "--max-steps", "4"]
ORIG = [*FAST, "--checkpoint-every", "2", "--lr-schedule", "constant"]  # the resumed run's flags


def python_case(code: str) -> list[str]:
    """An API-level case: ``code`` runs in a fresh interpreter (see main)."""
    return ["-c", textwrap.dedent(code)]


def run_cases(tmp: Path) -> list[tuple[str, list[str], dict]]:
    """Runs that mixed, lost or faked work, and faults around them (issue: output folders,
    resume, checkpoints, honest success, clean exits)."""
    c: list[tuple[str, list[str], dict]] = []
    # A finished run with checkpoints, continued or reused by the cases below.
    run = tmp / "run"
    subprocess.run(
        [sys.executable, "-m", "scpl.cli", "train", "smoke", "--out", str(run), *ORIG],
        capture_output=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300, check=True,
    )  # fmt: skip
    reused = tmp / "reused"
    shutil.copytree(run, reused)
    c.append(
        (
            "a second run into the same --out (another lr)",
            ["train", "smoke", "--out", str(reused), *FAST, "--lr", "0.01"],
            {},
        )
    )
    c.append(
        (
            "--resume DIR alone (settings from its checkpoint)",
            ["train", "--resume", str(run), "--progress", "false"],
            {},
        )
    )
    c.append(
        (
            "--resume with --val-fraction",
            [
                "train",
                "smoke",
                "--resume",
                str(run),
                *ORIG,  # the run's own flags, as a user would repeat them
                "--val-fraction",
                "0.3",
                "--progress",
                "false",
            ],
            {},
        )
    )
    c.append(
        (
            "--resume with --weight-decay",
            [
                "train",
                "smoke",
                "--resume",
                str(run),
                *ORIG,  # the run's own flags, as a user would repeat them
                "--weight-decay",
                "0.1",
                "--progress",
                "false",
            ],
            {},
        )
    )
    c.append(
        (
            "--resume with --last-supcon false",
            [
                "train",
                "smoke",
                "--resume",
                str(run),
                *ORIG,  # the run's own flags, as a user would repeat them
                "--last-supcon",
                "false",
                "--progress",
                "false",
            ],
            {},
        )
    )
    evil = tmp / "evil"
    (evil / "checkpoints").mkdir(parents=True)
    plant = python_case(
        f"""
        import os, torch
        class Payload:
            def __reduce__(self):
                return (os.system, ("echo PAYLOAD RAN >&2",))
        torch.save({{"config": {{}}, "x": Payload()}}, "{evil}/checkpoints/ckpt-000000001.rank0.pt")
        """
    )
    subprocess.run([sys.executable, *plant], check=True, timeout=120)
    c.append(
        (
            "a planted pickle in a checkpoint, then --resume",
            ["train", "smoke", "--resume", str(evil), "--progress", "false"],
            {},
        )
    )
    c.append(
        (
            "every update skipped by --nan-guard skip (NaN inputs)",
            python_case(
                f"""
                import torch
                from torch.utils.data import DataLoader, TensorDataset
                from scpl.training.config import TrainConfig
                from scpl.training.loop import train
                x = torch.full((64, 1, 8, 8), float("nan")); y = torch.arange(64) % 4
                cfg = TrainConfig(model="convnet", width=0.125, stages=2, epochs=1, batch_size=16,
                                  progress=False, tensorboard=False, device="cpu", augment="none",
                                  executor="sequential", nan_guard="skip", out="{tmp}/skip")
                s = train(cfg, train_loader=DataLoader(TensorDataset(x, y), batch_size=16))
                print(f"result test_acc={{s['test_acc']}}", file=__import__("sys").stderr)
                """
            ),
            {"PYTHON": "1"},
        )
    )
    c.append(("--max-steps -1 (zero steps)", SMOKE + ["--max-steps", "-1"], {}))
    one = fmnist_dir(tmp / "one" if (tmp / "one").mkdir() is None else tmp, labels=[0] * 20)
    c.append(
        (
            "training labels of a single class",
            SMOKE + ["--dataset", "fashion-mnist", "--data-dir", str(one), "--batch-size", "4"],
            {},
        )
    )
    c.append(
        (
            "an error in the final test evaluation",
            python_case(
                f"""
                import sys
                import scpl.training.loop as loop
                from scpl.errors import ScplError
                real = loop.timed_evaluate
                def broken(pipe, feed, which):
                    if which == "test":
                        raise ScplError("the test split broke")
                    return real(pipe, feed, which)
                loop.timed_evaluate = broken
                from scpl.cli import main
                sys.exit(main(["train", "smoke", "--out", "{tmp}/evalerr", *{FAST!r}]))
                """
            ),
            {"PYTHON": "1"},
        )
    )
    shapes = fmnist_dir(tmp / "shape" if (tmp / "shape").mkdir() is None else tmp, test_side=32)
    c.append(
        (
            "test images of another shape than the training images",
            SMOKE + ["--dataset", "fashion-mnist", "--data-dir", str(shapes), "--batch-size", "4"],
            {},
        )
    )
    c.append(
        (
            "disk full during a checkpoint save",
            python_case(
                f"""
                import os, torch
                from pathlib import Path
                import scpl.atomic as atomic
                from scpl.training.checkpoint import atomic_save
                link = Path("{tmp}/full.tmp"); link.symlink_to("/dev/full")
                atomic.tempfile.mkstemp = lambda **kw: (os.open(link, os.O_WRONLY), str(link))
                atomic_save({{"w": torch.zeros(100000)}}, Path("{tmp}/ckpt.pt"))
                """
            ),
            {"PYTHON": "1"},
        )
    )
    c.append(
        (
            "--resume on a missing folder",
            ["train", "smoke", "--resume", str(tmp / "missing"), "--progress", "false"],
            {},
        )
    )
    blocker = tmp / "a-file"
    blocker.write_text("x")
    c.append(
        (
            "--resume on a file",
            ["train", "smoke", "--resume", str(blocker), "--progress", "false"],
            {},
        )
    )
    c.append(
        ("batch of one under BatchNorm (bp)", SMOKE + ["--method", "bp", "--batch-size", "1"], {})
    )
    c.append(
        (
            "micro-batches of one under BatchNorm",
            SMOKE + ["--method", "bp", "--batch-size", "2", "--micro-batches", "2"],
            {},
        )
    )
    empty_idx = tmp / "empty-idx"
    empty_idx.mkdir()
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (empty_idx / name).write_bytes(b"")
    c.append(
        ("empty IDX file", SMOKE + ["--dataset", "fashion-mnist", "--data-dir", str(empty_idx)], {})
    )
    c.append(("--log-every 0", SMOKE + ["--log-every", "0"], {}))
    c.append(("--threads -1", SMOKE + ["--threads", "-1"], {}))
    c.append(("--lr nan", SMOKE + ["--lr", "nan"], {}))
    c.append(("--width nan", SMOKE + ["--width", "nan"], {}))
    c.append(("a { in --out", SMOKE + ["--out", str(tmp / "a{b")], {}))
    c.append(
        (
            "--nproc that does not match --stages",
            SMOKE + ["--executor", "dist", "--nproc", "3", "--stages", "2"],
            {},
        )
    )
    return c


# -- issue 24 (cases 1-6, 8, 9): overwrite, NaN checkpoints, concurrent runs, resume identity --


def folder_cases(tmp: Path) -> list[tuple[str, list[str], dict]]:
    """Runs that lost the old run, kept NaN checkpoints, mixed two runs or resumed on other
    data or threads (issue 24). Killed launchers and torchruns are in NOTES."""
    c: list[tuple[str, list[str], dict]] = []
    env = dict(os.environ, OMP_NUM_THREADS="1")
    base = tmp / "i24-base"  # a finished run (2 threads, constant LR) with checkpoints
    subprocess.run(
        [sys.executable, "-m", "scpl.cli", "train", "smoke", "--out", str(base), *ORIG,
         "--threads", "2"],
        capture_output=True, env=env, timeout=300, check=True,
    )  # fmt: skip
    for i, (name, flags) in enumerate(
        [
            ("--overwrite with --stages 7 (the old run is kept)", ["--stages", "7"]),
            (
                "--overwrite with a missing --data-dir (the old run is kept)",
                ["--dataset", "fashion-mnist", "--data-dir", str(tmp / "nope"), "--download",
                 "false"],
            ),  # fmt: skip
        ]
    ):
        x = tmp / f"i24-x{i}"
        shutil.copytree(base, x)
        c.append((name, ["train", "--out", str(x), *FAST, "--overwrite", "true", *flags], {}))
    kept = tmp / "i24-notes"
    shutil.copytree(base, kept)
    (kept / "metrics_notes.jsonl").write_text("{}\n")
    c.append(
        (
            "--overwrite of a folder holding a user's metrics_notes.jsonl",
            python_case(
                f"""
                import sys
                from pathlib import Path
                from scpl.cli import main
                rc = main(["train", "smoke", "--out", "{kept}", *{FAST!r}, "--overwrite", "true"])
                notes = Path("{kept}/metrics_notes.jsonl").exists()
                print(f"rc {{rc}}; metrics_notes.jsonl {{'kept' if notes else 'DELETED'}}",
                      file=sys.stderr)
                """
            ),
            {"PYTHON": "1"},
        )
    )
    c.append(
        (
            "NaN between checkpoints under --nan-guard interval (--lr-min 1e30)",
            ["train", "--dataset", "digits", "--model", "convnet", "--stages", "2", "--width",
             "0.125", "--batch-size", "32", "--checkpoint-every", "2", "--lr-min", "1e30",
             "--log-every", "50", "--augment", "none", "--out", str(tmp / "i24-nan"),
             "--progress", "false", "--tensorboard", "false", "--epochs", "1",
             "--max-steps", "40"],
            {},
        )  # fmt: skip
    )
    live = tmp / "i24-live"
    shutil.copytree(base, live)
    for name, argv in [
        ("a second run into a folder a live run holds", ["smoke", "--out", str(live), *FAST]),
        ("--resume of a run still training", ["--resume", str(live), "--progress", "false"]),
    ]:
        c.append(
            (
                name,
                python_case(
                    f"""
                    import sys
                    from scpl.cli import main
                    from scpl.training.runfolder import RunFolder
                    RunFolder("{live}", 0, 1).lock("--out")  # as the live run holds it
                    sys.exit(main(["train", *{argv!r}]))
                    """
                ),
                {"PYTHON": "1"},
            )
        )
    same = tmp / "i24-same"
    c.append(
        (
            "two runs started at the same instant into one --out",
            python_case(
                f"""
                import subprocess, sys
                cmd = [sys.executable, "-m", "scpl.cli", "train", "smoke", "--out", "{same}",
                       *{FAST!r}]
                ps = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                       text=True) for _ in range(2)]
                out = [(p.wait(), p.stderr.read().strip().splitlines()) for p in ps]
                errs = [e[-1] for rc, e in out if rc]
                print(f"exit codes {{sorted(rc for rc, _ in out)}}; " + " ".join(errs),
                      file=sys.stderr)
                """
            ),
            {"PYTHON": "1"},
        )
    )
    c.append(
        (
            "--resume DIR --data-dir OTHER",
            ["train", "--resume", str(base), "--data-dir", str(tmp), "--progress", "false"],
            {},
        )
    )
    c.append(
        (
            "--resume --threads 1 of a run made with 2 threads",
            ["train", "--resume", str(base), "--threads", "1", "--progress", "false"],
            {},
        )
    )
    dist = tmp / "i24-dist"
    subprocess.run(
        [sys.executable, "-m", "scpl.cli", "train", "smoke", "--executor", "dist", "--nproc", "2",
         "--stages", "2", "--out", str(dist), *ORIG],
        capture_output=True, env=env, timeout=600, check=True,
    )  # fmt: skip
    c.append(
        (
            "--resume of an --nproc 2 run without --nproc",
            ["train", "--resume", str(dist), "--progress", "false"],
            {},
        )
    )
    return c


# The test that pins each case's behaviour (cases not listed: tests/test_cli.py and the data
# tests).
TESTS = {
    "a second run into the same --out (another lr)": "test_second_run_into_the_same_folder_is_refused_and_overwrite_replaces_it",
    "--resume DIR alone (settings from its checkpoint)": "test_resume_alone_takes_the_settings_from_the_checkpoint",
    "--resume with --val-fraction": "test_resume_refuses_flags_that_change_the_result",
    "--resume with --weight-decay": "test_resume_refuses_flags_that_change_the_result",
    "--resume with --last-supcon false": "test_resume_refuses_flags_that_change_the_result",
    "a planted pickle in a checkpoint, then --resume": "test_a_planted_pickle_in_a_checkpoint_is_not_executed",
    "every update skipped by --nan-guard skip (NaN inputs)": "test_a_run_whose_updates_were_all_skipped_fails",
    "--max-steps -1 (zero steps)": "test_zero_steps_is_refused",
    "training labels of a single class": "test_single_class_training_labels_are_refused_before_training",
    "an error in the final test evaluation": "test_an_error_in_the_final_evaluation_exits_cleanly",
    "test images of another shape than the training images": "test_train_and_test_images_of_different_shapes_are_one_line",
    "disk full during a checkpoint save": "test_disk_full_during_a_save_is_one_line_and_keeps_the_old_file",
    "--resume on a missing folder": "test_resume_of_a_missing_folder_or_a_file_is_one_line",
    "--resume on a file": "test_resume_of_a_missing_folder_or_a_file_is_one_line",
    "batch of one under BatchNorm (bp)": "test_bad_flag_is_one_line",
    "micro-batches of one under BatchNorm": "test_bad_flag_is_one_line",
    "empty IDX file": "test_empty_idx_file_is_one_line",
    "--log-every 0": "test_bad_flag_is_one_line",
    "--threads -1": "test_bad_flag_is_one_line",
    "--lr nan": "test_bad_flag_is_one_line",
    "--width nan": "test_bad_flag_is_one_line",
    "a { in --out": "test_bad_flag_is_one_line",
    "--nproc that does not match --stages": "test_nproc_not_matching_stages_fails_before_launching",
    # issue 24
    "--overwrite with --stages 7 (the old run is kept)": "test_run_folder.py::test_overwrite_with_a_bad_input_leaves_the_old_run_intact",
    "--overwrite with a missing --data-dir (the old run is kept)": "test_run_folder.py::test_overwrite_with_a_bad_input_leaves_the_old_run_intact",
    "--overwrite of a folder holding a user's metrics_notes.jsonl": "test_run_folder.py::test_overwrite_deletes_only_the_runs_files",
    "NaN between checkpoints under --nan-guard interval (--lr-min 1e30)": "test_checkpoints_hold_only_finite_states_and_the_error_names_the_good_one",
    "a second run into a folder a live run holds": "test_run_folder.py::test_a_live_runs_folder_is_refused_naming_its_pid",
    "--resume of a run still training": "test_run_folder.py::test_a_live_runs_folder_is_refused_naming_its_pid",
    "two runs started at the same instant into one --out": "test_run_folder.py::test_two_runs_started_together_into_one_folder_do_not_mix",
    "--resume DIR --data-dir OTHER": "test_resume_refuses_flags_that_change_the_result",
    "--resume --threads 1 of a run made with 2 threads": "test_resume.py::test_resume_uses_the_thread_count_the_run_used",
    "--resume of an --nproc 2 run without --nproc": "test_resume.py::test_dist_resume_after_crash_is_bitwise_equal",
}


# -- issue 24, items 10-14: ranges, library misuse, broken files, misleading messages ----------
# (tests in tests/test_bad_inputs_more.py)


def more_cases(tmp: Path) -> list[tuple[str, list[str], dict]]:
    """Numeric flags out of range, runs that ended broken, full disks, edited checkpoints,
    `report --out` mistakes, empty or oversized data files and messages that named the wrong
    cause."""
    c: list[tuple[str, list[str], dict]] = []
    outs = iter(range(1000))

    def fresh() -> list[str]:  # a folder of its own per case (a run that gets far writes one)
        return ["--out", str(tmp / f"m24-{next(outs)}")]

    for flags in (
        ["--weight-decay", "-1"],
        ["--seed", "99999999999999999999"],
        ["--proj-dim", "-3"],
        ["--proj-dim", "0"],
        ["--max-len", "100000000"],
        ["--dist-timeout", "0"],
        ["--width", "1e6"],
        ["--width", "500"],
        ["--threads", "100000"],
        ["--lr-min", "10"],
        ["--seed", "nan"],
        ["--executor", "dist", "--nproc", "1", "--stages", "1"],
        ["--npro", "2"],
        ["--micro-batches", "64", "--batch-size", "32"],
        ["--optimizer", "sgd"],
        ["--optimizer", "adamw", "--lr", "1e-3", "--weight-decay", "1000"],
    ):
        c.append((" ".join(flags), SMOKE + fresh() + flags, {}))
    c.append(('--out ""', SMOKE + ["--out", ""], {}))
    c.append(("--lr 1e30 --nan-guard skip", SMOKE + fresh() + ["--lr", "1e30", "--nan-guard", "skip"], {}))
    c.append(
        (
            "a list loader of one class through scpl.train",
            python_case(
                f"""
                import torch
                from scpl.training.config import TrainConfig
                from scpl.training.loop import train
                b = [(torch.randn(16, 1, 8, 8), torch.zeros(16, dtype=torch.long))] * 4
                cfg = TrainConfig(model="convnet", width=0.125, stages=2, epochs=1, batch_size=16,
                                  progress=False, tensorboard=False, device="cpu", augment="none",
                                  executor="sequential", out="{tmp}/one-class")
                train(cfg, train_loader=b, test_loader=b)
                """
            ),
            {"PYTHON": "1"},
        )
    )
    for name, code in (
        (
            "library: step() after close()",
            "p.close(); p.step(torch.randn(8, 8), torch.randint(0, 3, (8,)))",
        ),
        ("library: an empty batch", "p.step(torch.randn(0, 8), torch.zeros(0, dtype=torch.long))"),
        (
            "library: evaluate() with labels outside the classes",
            "p.evaluate([(torch.randn(4, 8), torch.tensor([0, 7, 1, 2]))])",
        ),
    ):
        c.append(
            (
                name,
                python_case(
                    f"""
                    import torch, scpl
                    from torch import nn
                    m = scpl.StagedModel([nn.Linear(8, 16), nn.Linear(16, 16)], nn.Linear(16, 3),
                                         input_shape=(8,))
                    p = scpl.pipeline(m, executor="sequential", head="linear")
                    {code}
                    """
                ),
                {"PYTHON": "1"},
            )
        )
    run = tmp / "run24"
    subprocess.run(
        [sys.executable, "-m", "scpl.cli", "train", "smoke", "--out", str(run), *ORIG],
        capture_output=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300, check=True,
    )  # fmt: skip
    c.append(("a recipe name with --resume", ["train", "paper-fmnist-vgg-bp", "--resume", str(run)], {}))
    c.append(("--overwrite with --resume", ["train", "--resume", str(run), "--overwrite", "true"], {}))
    for which, target in (("metrics.jsonl", "outputs.MetricsLog.write"), ("summary.json", "loop.atomic_write_json")):
        c.append(
            (
                f"disk full while writing {which}",
                python_case(
                    f"""
                    import errno, sys
                    import scpl.training.loop as loop, scpl.training.outputs as outputs
                    def full(*a, **k):
                        raise OSError(errno.ENOSPC, "No space left on device")
                    {target} = full
                    from scpl.cli import main
                    sys.exit(main(["train", "smoke", "--out", "{tmp}/full-{which}", *{FAST!r}]))
                    """
                ),
                {"PYTHON": "1"},
            )
        )
    edited = tmp / "edited24"
    shutil.copytree(run, edited)
    newest = sorted((edited / "checkpoints").glob("ckpt-*.pt"))[-1]
    edit = python_case(
        f"""
        import torch
        ck = torch.load("{newest}", weights_only=True)
        state = ck["executor"]["runners"][0]["unit"]
        name = next(k for k, v in state.items() if torch.is_tensor(v) and v.dim() > 1)
        state[name] = torch.zeros(3)
        torch.save(ck, "{newest}")
        """
    )
    subprocess.run([sys.executable, *edit], check=True, timeout=120)
    c.append(("an edited checkpoint, then --resume", ["train", "--resume", str(edited)], {}))
    c.append(("scpl report --out to a folder", ["report", str(run), "--out", str(tmp)], {}))
    c.append(("scpl report --out to a read-only place", ["report", str(run), "--out", "/sys/report.md"], {}))
    zero = tmp / "zero-images"
    zero.mkdir()
    for prefix in ("train", "t10k"):
        (zero / f"{prefix}-images-idx3-ubyte").write_bytes(idx_images(0))
        (zero / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_labels([]))
    c.append(
        (
            "Fashion-MNIST files with 0 images",
            SMOKE + fresh() + ["--dataset", "fashion-mnist", "--data-dir", str(zero)],
            {},
        )
    )
    bomb = tmp / "bomb"
    bomb.mkdir()
    for prefix in ("train", "t10k"):
        with gzip.open(bomb / f"{prefix}-images-idx3-ubyte.gz", "wb", compresslevel=1) as f:
            f.write(idx_images(20))
            f.write(bytes(64 * 2**20))  # 64 MiB of zeros past the header's size
        (bomb / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_labels([i % 10 for i in range(20)]))
    c.append(
        (
            "an IDX .gz that expands far past its header's size",
            SMOKE + fresh() + ["--dataset", "fashion-mnist", "--data-dir", str(bomb)],
            {},
        )
    )
    c.append(
        (
            "a first checkpoint on a full disk",
            python_case(
                f"""
                import os, torch
                from pathlib import Path
                import scpl.atomic as atomic
                from scpl.training.checkpoint import atomic_save
                d = Path("{tmp}/first-ckpt/checkpoints"); d.mkdir(parents=True)
                link = d / "full.tmp"; link.symlink_to("/dev/full")
                atomic.tempfile.mkstemp = lambda **kw: (os.open(link, os.O_WRONLY), str(link))
                atomic_save({{"w": torch.zeros(100000)}}, d / "ckpt-000000002.rank0.pt")
                """
            ),
            {"PYTHON": "1"},
        )
    )
    good = tmp / "agnews-24"
    good.mkdir()
    rows = "".join(f'"{1 + i % 4}","title {i}","some words about topic {i % 4} here"\n' for i in range(64))
    (good / "train.csv").write_text(rows)
    (good / "test.csv").write_text(rows)
    glove = tmp / "glove-nan.txt"
    glove.write_text("".join(f"{w} {'nan' if w == 'topic' else '0.1'} 0.2 0.3\n" for w in
                             ("some", "words", "about", "topic", "here", "title")))  # fmt: skip
    c.append(
        (
            "a GloVe file with NaN",
            SMOKE + fresh() + ["--model", "lstm", "--dataset", "ag-news", "--data-dir", str(good),
                           "--glove", str(glove), "--embed-dim", "3"],  # fmt: skip
            {},
        )
    )
    return c


MORE_TESTS = {
    **{
        name: "test_bad_inputs_more.py::test_issue_flags_are_one_line"
        for name in (
            "--weight-decay -1", "--seed 99999999999999999999", "--proj-dim -3", "--proj-dim 0",
            "--max-len 100000000", "--dist-timeout 0", "--width 1e6", "--threads 100000",
            "--lr-min 10", "--seed nan", "--executor dist --nproc 1 --stages 1", "--npro 2",
            '--out ""', "--optimizer sgd", "--optimizer adamw --lr 1e-3 --weight-decay 1000",
        )
    },  # fmt: skip
    "--width 500": "test_bad_inputs_more.py::test_width_that_cannot_fit_is_refused_before_building",
    "--micro-batches 64 --batch-size 32": "test_bad_inputs_more.py::test_too_many_micro_batches_names_micro_batches",
    "--lr 1e30 --nan-guard skip": "test_bad_inputs_more.py::test_nan_guard_skip_fails_a_run_that_ends_with_non_finite_weights",
    "a list loader of one class through scpl.train": "test_bad_inputs_more.py::test_a_list_loader_of_one_class_is_refused",
    "library: step() after close()": "test_bad_inputs_more.py::test_step_after_close_raises",
    "library: an empty batch": "test_bad_inputs_more.py::test_an_empty_batch_raises",
    "library: evaluate() with labels outside the classes": "test_bad_inputs_more.py::test_evaluate_checks_labels_are_classes",
    "a recipe name with --resume": "test_bad_inputs_more.py::test_recipe_name_or_overwrite_with_resume_is_refused",
    "--overwrite with --resume": "test_bad_inputs_more.py::test_recipe_name_or_overwrite_with_resume_is_refused",
    "disk full while writing metrics.jsonl": "test_bad_inputs_more.py::test_disk_full_while_writing_the_run_files_is_one_line",
    "disk full while writing summary.json": "test_bad_inputs_more.py::test_disk_full_while_writing_the_run_files_is_one_line",
    "an edited checkpoint, then --resume": "test_bad_inputs_more.py::test_an_edited_checkpoint_is_one_line",
    "scpl report --out to a folder": "test_bad_inputs_more.py::test_report_out_to_a_folder_or_a_read_only_place_is_one_line",
    "scpl report --out to a read-only place": "test_bad_inputs_more.py::test_report_out_to_a_folder_or_a_read_only_place_is_one_line",
    "Fashion-MNIST files with 0 images": "test_bad_inputs_more.py::test_fashion_files_with_zero_images_are_one_line",
    "an IDX .gz that expands far past its header's size": "test_bad_inputs_more.py::test_a_gzip_bomb_is_refused_after_its_header_size",
    "a first checkpoint on a full disk": "test_bad_inputs_more.py::test_a_first_checkpoint_on_a_full_disk_promises_no_earlier_one",
    "a GloVe file with NaN": "test_bad_inputs_more.py::test_a_glove_file_with_nan_is_refused_at_load",
}
TESTS.update(MORE_TESTS)


def main() -> None:
    scpl = [sys.executable, "-m", "scpl.cli"]
    only_runs = "--runs" in sys.argv[1:]
    only_folders = "--folders" in sys.argv[1:]  # issue 24's run-folder cases only
    only_more = "--more" in sys.argv[1:]  # only the issue-24 block (more_cases)
    print("| bad input | exit | what the user sees (stderr) | test (tests/test_reliability.py) |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as d:
        pick = (
            folder_cases
            if only_folders
            else more_cases
            if only_more
            else run_cases
            if only_runs
            else cases
        )
        for name, args, env in pick(Path(d)):
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
            if "PAYLOAD RAN" in p.stderr:
                msg = "CODE FROM THE FILE RAN; " + msg
            if p.returncode == 0:
                result = [ln for ln in p.stdout.splitlines() if ln.startswith("result")]
                msg = (msg + " / stdout: " + result[-1][:80]) if result else msg
            test = f"`{TESTS[name]}`" if name in TESTS else ""
            print(f"| {name} | {p.returncode} | `{msg.replace('|', '/')}` | {test} |")
    print(NOTES)


# Faults that are not one command's input; their tests start real processes.
NOTES = """
Faults around a run, tested in tests/test_reliability.py (not run by this script):

- SIGTERM (or Ctrl-C) to `scpl train --executor dist --nproc 2`: the launcher forwards it to
  torchrun, which stops its ranks; no process of the run is alive 10 s later, exit code 143
  (`test_sigterm_to_the_launcher_stops_every_process_of_the_run`). Each rank also dies with its
  parent (PR_SET_PDEATHSIG), so a killed torchrun leaves no rank behind.
- A rank that dies or stalls: torchrun's ~60-line report is replaced by one line naming the
  rank that failed first, following "rank P died or stalled while rank R ..." messages to the
  rank that stopped first (`test_launcher_condenses_torchrun_failures_to_one_line_naming_the_first_rank`).
  Ranks wait `--dist-timeout` (60 s by default) for a peer before stopping
  (`test_stall_timeout_default_is_documented`); a rank that stops because its peer timed out
  names the rank without a heartbeat, so a stalled rank (SIGSTOP) is named by every other rank,
  not the healthy rank that was waiting for it (tests/test_failfast.py::
  `test_a_stalled_rank_is_the_one_every_other_rank_names`).
- `kill -9` of the `scpl` launcher under `--nproc 2`: torchrun gets SIGTERM from the kernel
  (PR_SET_PDEATHSIG set in its child) and stops its ranks; none is alive 30 s later
  (`test_sigkill_of_the_launcher_stops_torchrun_and_every_rank`).
- `kill -9` of torchrun: its ranks die with it, the launcher kills what is left of its process
  group, reaps the orphans (it is a child subreaper) and exits 137 with one line,
  `scpl: error: torchrun (PID N) was killed by SIGKILL; its ranks were stopped with it: --resume
  the run's folder to continue from its last checkpoint`
  (`test_sigkill_of_torchrun_is_one_line_and_leaves_no_rank`).
- Ctrl-C during a checkpoint save: a plain interrupt (exit 130), the previous checkpoint intact
  (`test_ctrl_c_during_a_save_is_a_plain_interrupt`).
- NaN in summary.json / metrics.jsonl: written as null (`test_summary_and_metrics_are_strict_json`);
  a resumed run drops metric records logged after its checkpoint
  (`test_metrics_have_no_duplicate_steps_after_resume`); files get the user's umask
  (`test_files_are_created_with_the_users_umask`); stdout not a terminal: a progress line every
  --log-every steps or 30 s (`test_unattended_runs_print_progress_lines`)."""


if __name__ == "__main__":
    main()
