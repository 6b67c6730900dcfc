"""The `scpl` command: a smoke training run, one-line errors with exit code 2, list, params, help."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from scpl.cli import main
from scpl.methods import METHODS
from scpl.models import MODELS
from scpl.training.config import TrainConfig
from scpl.training.flags import field_docs


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one thread avoids OpenMP spin-wait stalls on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Keep every test away from the user's cache and $SCPL_DATA."""
    monkeypatch.setenv("SCPL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SCPL_DATA", raising=False)


# A quick, learnable run on the embedded digits set (~30 steps of batch 32).
SMOKE = [
    "--progress",
    "false",
    "--tensorboard",
    "false",
    "--augment",
    "none",
    "--batch-size",
    "32",
    "--epochs",
    "1",
    "--max-steps",
    "30",
    "--log-every",
    "10",
    "--lr",
    "3e-3",
    "--head",
    "linear",
    "--proj-dim",
    "64",
    "--device",
    "cpu",
]


def run_smoke(out: Path, capsys, *extra: str) -> tuple[int, str, str]:
    code = main(["train", "smoke", "--out", str(out), *SMOKE, *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def train_records(out: Path) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "train"]


def test_smoke_training_run(tmp_path, capsys):
    out = tmp_path / "r"
    code, stdout, stderr = run_smoke(out, capsys)
    assert code == 0, stderr
    assert "Traceback" not in stderr

    records = train_records(out)
    assert len(records) == 3  # steps 10, 20, 30
    assert [r["step"] for r in records] == [10, 20, 30]
    first, last = records[0]["stage3/ce"], records[-1]["stage3/ce"]
    assert last < first, f"last-stage cross-entropy did not fall: {first} -> {last}"
    for i in range(4):
        assert f"stage{i}/supcon" in records[0]

    result = [line for line in stdout.splitlines() if "test_acc=" in line]
    assert len(result) == 1
    assert "samples_per_s=" in result[0]

    summary = json.loads((out / "summary.json").read_text())
    for key in ("test_acc", "best_epoch", "params", "config"):
        assert key in summary
    assert 0.0 <= summary["test_acc"] <= 1.0
    assert summary["test_acc"] > 0.3  # well above chance (0.1) after 30 steps
    assert summary["best_epoch"] == 1
    assert summary["params"]["effective"] > 0 and summary["params"]["affiliated"] > 0
    assert summary["config"]["dataset"] == "digits"
    assert summary["config"]["method"] == "scpl"
    assert summary["config"]["batch_size"] == 32  # the flag overrides the recipe


@pytest.mark.parametrize("executor", ["sequential", "local"])
def test_smoke_training_is_deterministic(executor, tmp_path, capsys):
    extra = ("--max-steps", "10", "--log-every", "5", "--executor", executor)
    code_a, _, err_a = run_smoke(tmp_path / "a", capsys, *extra)
    code_b, _, err_b = run_smoke(tmp_path / "b", capsys, *extra)
    assert code_a == code_b == 0, err_a + err_b
    rec_a, rec_b = train_records(tmp_path / "a"), train_records(tmp_path / "b")
    assert [r["step"] for r in rec_a] == [r["step"] for r in rec_b] == [5, 10]
    if executor == "sequential":
        # A pipelined executor logs whatever batches have finished at a sync point, which
        # depends on thread timing; the serial reference logs exactly the same numbers.
        assert rec_a == rec_b
    sa = json.loads((tmp_path / "a" / "summary.json").read_text())
    sb = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert sa["test_acc"] == sb["test_acc"]
    assert sa["best_val_acc"] == sb["best_val_acc"]


def write_corrupt_fashion(root: Path) -> Path:
    root.mkdir()
    for stem in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (root / stem).write_bytes(b"this is not an IDX file at all")
    return root


def non_writable_dir(tmp_path: Path) -> Path:
    d = tmp_path / "locked"
    d.mkdir()
    d.chmod(0o500)
    if os.access(d, os.W_OK):
        d.chmod(0o700)
        pytest.skip("running as a user that can write to a 0o500 directory (root)")
    return d


ERROR_CASES = {
    "unknown-model": (["--model", "alexnet"], ["alexnet", *MODELS.names()]),
    "unknown-method": (["--method", "backprop"], ["backprop", *METHODS.names()]),
    "unknown-dataset": (["--dataset", "mnist-xl"], ["mnist-xl", "digits", "fashion-mnist"]),
    "vgg-too-many-stages": (["--model", "vgg", "--stages", "9"], ["9", "between 1 and 6"]),
    "missing-data-dir": (
        ["--dataset", "fashion-mnist", "--data-dir", "{tmp}/nowhere", "--download", "false"],
        ["nowhere", "does not exist"],
    ),
    "corrupt-idx": (
        ["--dataset", "fashion-mnist", "--data-dir", "{fashion}", "--download", "false"],
        ["idx", "ubyte"],
    ),
    "batch-size-1-scpl": (["--method", "scpl", "--batch-size", "1"], ["batch-size", "2"]),
    "missing-gpu": (["--device", "cuda:7"], ["cuda:7"]),
    "bad-partition": (["--partition", "a,b"], ["partition", "a,b"]),
    "partition-does-not-cover": (["--model", "vgg", "--partition", "2,2,2,2"], ["partition"]),
    "partition-length-not-k": (["--model", "vgg", "--partition", "3,3"], ["--stages"]),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_bad_input_is_one_error_line(case, tmp_path, capsys):
    flags, expected = ERROR_CASES[case]
    if case == "missing-gpu" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    fashion = write_corrupt_fashion(tmp_path / "fm") if case == "corrupt-idx" else ""
    flags = [f.format(tmp=tmp_path, fashion=fashion) for f in flags]
    argv = [
        "train",
        "smoke",
        "--out",
        str(tmp_path / "out"),
        "--progress",
        "false",
        "--tensorboard",
        "false",
        *flags,
    ]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("scpl: error:")
    for word in expected:
        assert word.lower() in lines[0].lower(), f"{word!r} missing from: {lines[0]}"


def test_unknown_recipe(tmp_path, capsys):
    code = main(["train", "no-such-recipe", "--out", str(tmp_path / "o"), "--progress", "false"])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("scpl: error:")
    assert "Traceback" not in err
    assert "no-such-recipe" in lines[0] and "smoke" in lines[0] and "default" in lines[0]


def test_output_dir_not_writable(tmp_path, capsys):
    locked = non_writable_dir(tmp_path)
    try:
        code = main(["train", "smoke", "--out", str(locked / "run"), *SMOKE])
        err = capsys.readouterr().err
    finally:
        locked.chmod(0o700)
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("scpl: error:"), err
    assert "Traceback" not in err
    assert "writable" in lines[0]


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in [*MODELS.names(), *METHODS.names(), "digits", "fashion-mnist", "smoke"]:
        assert name in out


def table_rows(out: str) -> dict[tuple[str, str], list[str]]:
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0] in MODELS and cells[1] in METHODS:
            rows[(cells[0], cells[1])] = cells[2:]
    return rows


def test_params(capsys):
    # A small width keeps this fast; the shapes still come from cifar10.
    assert main(["params", "--dataset", "cifar10", "--width", "0.125"]) == 0
    out = capsys.readouterr().out
    assert "cifar10" in out
    rows = table_rows(out)
    image_models = [m for m in MODELS.names() if getattr(MODELS.get(m), "kind", "image") == "image"]
    assert set(rows) == {(m, k) for m in image_models for k in METHODS.names()}
    for model in image_models:
        training, effective, affiliated = (int(c.replace(",", "")) for c in rows[(model, "bp")])
        assert affiliated == 0 and training == effective > 0
        for method in ("scpl", "early-exit"):
            t, e, a = (int(c.replace(",", "")) for c in rows[(model, method)])
            assert e == effective and a > 0 and t == e + a


def test_params_unknown_dataset(capsys):
    assert main(["params", "--dataset", "nope"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("scpl: error:")


def test_train_help_lists_every_field(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    # argparse wraps help text: compare with all whitespace removed.
    out = "".join(capsys.readouterr().out.split())
    docs = field_docs(TrainConfig)
    assert docs, "TrainConfig fields have no docstrings"
    for name, doc in docs.items():
        assert "--" + name.replace("_", "-") in out
        assert "".join(doc.split()) in out, f"help text of {name} missing"


def test_two_process_dist_run_via_torchrun(tmp_path):
    """`scpl train --executor dist --nproc 2` relaunches itself under torchrun and finishes."""
    import subprocess
    import sys

    out = tmp_path / "dist"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "scpl.cli",
            "train",
            "smoke",
            "--executor",
            "dist",
            "--nproc",
            "2",
            "--stages",
            "2",
            "--epochs",
            "1",
            "--max-steps",
            "4",
            "--progress",
            "false",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "test_acc=" in proc.stdout and "samples_per_s=" in proc.stdout
    assert (out / "summary.json").exists()
    assert (out / "metrics.rank1.jsonl").exists()  # rank 1 logs its own stage


def test_nan_loss_stops_with_stage_step_and_term(tmp_path, capsys):
    rc = main(
        ["train", "smoke", "--lr", "1e12", "--progress", "false", "--out", str(tmp_path / "r")]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("scpl: error: non-finite")
    # Stages run concurrently: whichever stage sees the NaN first reports it.
    assert "at stage " in err[0] and "step" in err[0] and "loss" in err[0]


def test_nan_guard_skip_drops_bad_batches_but_fails_a_broken_model(tmp_path, capsys):
    """Skipped updates keep the weights, but the forward passes of NaN batches still put NaN
    in BatchNorm's running statistics: the run ends with one line instead of exit 0 and a
    chance-level test accuracy."""
    rc = main(
        [
            "train",
            "smoke",
            "--lr",
            "1e12",
            "--nan-guard",
            "skip",
            "--progress",
            "false",
            "--out",
            str(tmp_path / "r"),
        ]
    )
    c = capsys.readouterr()
    assert rc == 2 and "test_acc=" not in c.out
    assert c.err.strip().splitlines()[-1].startswith("scpl: error: stage ")
    assert "non-finite values" in c.err


def test_params_out_writes_markdown_and_csv(tmp_path, capsys):
    import csv

    argv = ["params", "--dataset", "synthetic:1x8x8:3", "--model", "convnet", "--width", "0.125"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader(open(tmp_path / "params.csv")))
    assert {r["method"] for r in rows} == set(METHODS.names())
    assert all(int(r["training"]) == int(r["effective"]) + int(r["affiliated"]) for r in rows)
    assert "| convnet | scpl |" in (tmp_path / "params.md").read_text()


def test_version(capsys):
    import scpl

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"scpl {scpl.__version__}"


def test_train_help_groups_and_shows_the_default_recipe(capsys):
    from dataclasses import fields

    from scpl.training.flags import CONFIG_GROUPS
    from scpl.training.recipes import RECIPES

    grouped = [name for names in CONFIG_GROUPS.values() for name in names]
    assert sorted(grouped) == sorted(f.name for f in fields(TrainConfig)), "one group per field"
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    titles = [line[:-1] for line in out.splitlines() if line.endswith(":") and " " not in line]
    assert [t for t in titles if t in CONFIG_GROUPS] == list(CONFIG_GROUPS)
    section = out.split("\noptimisation:\n")[1].split("\n\n")[0]
    assert "--epochs" in section and "--lr " in section
    # A plain `scpl train` runs the "default" recipe: its values are the defaults shown.
    assert RECIPES["default"]["epochs"] != TrainConfig.epochs
    flat = " ".join(out.split())
    assert f"Training epochs. [default: {RECIPES['default']['epochs']}]" in flat
    assert f"[default: {RECIPES['default']['width']}]" in flat


def write_summary(d: Path, test_acc: float, **config) -> Path:
    d.mkdir(parents=True)
    cfg = {**dict(model="convnet", method="scpl", dataset="digits", seed=0, out=str(d)), **config}
    summary = dict(
        test_acc=test_acc,
        best_epoch=2,
        best_val_acc=0.5,
        samples_per_s=1234.56,
        train_seconds=7.25,
        recipe="smoke",
        config=cfg,
    )
    (d / "summary.json").write_text(json.dumps(summary))
    return d


def test_report_tabulates_runs_markdown_and_csv(tmp_path, capsys):
    import csv

    a = write_summary(tmp_path / "runs" / "a", 0.91234, method="scpl")
    b = write_summary(tmp_path / "runs" / "b", float("nan"), method="bp", seed=1)
    assert main(["report", str(a), str(b)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    # Results, then only the config fields that differ (out names the run dir: skipped).
    assert header == [
        "run",
        "test_acc",
        "best_epoch",
        "best_val_acc",
        "samples_per_s",
        "train_s",
        "method",
        "seed",
    ]
    assert lines[2].startswith(f"| {a} | 0.9123 | 2 | 0.5000 | 1234.6 | 7.2 | scpl | 0 |")
    assert "| nan |" in lines[3] and "| bp | 1 |" in lines[3]
    # A folder of runs is searched; CSV keeps raw values.
    out = tmp_path / "table.csv"
    assert main(["report", str(tmp_path / "runs"), "--format", "csv", "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert capsys.readouterr().out == out.read_text()
    assert [r["run"] for r in rows] == [str(a), str(b)]
    assert float(rows[0]["test_acc"]) == 0.91234 and rows[1]["method"] == "bp"


def test_report_of_a_real_run_and_bad_dirs(tmp_path, capsys):
    code, _, err = run_smoke(tmp_path / "r", capsys, "--max-steps", "2", "--log-every", "1")
    assert code == 0, err
    assert main(["report", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and out[2].startswith(f"| {tmp_path / 'r'} |")
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "no summary.json" in err[0]
