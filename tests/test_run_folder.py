"""One run per output folder (issue 24, cases 1, 2 and 4): --overwrite touches nothing until
every input has been checked, moves the old run aside and deletes only the run's own files once
the new run has started; an exclusive lock refuses a second run or a --resume of a live run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scpl.cli import main
from scpl.training.runfolder import RunFolder, run_files

FAST = ["--progress", "false", "--tensorboard", "false", "--epochs", "1", "--max-steps", "4",
        "--log-every", "2", "--device", "cpu"]  # fmt: skip


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("SCPL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SCPL_DATA", raising=False)
    monkeypatch.delenv("SCPL_RUN_LOCKED_BY", raising=False)


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(["train", *argv])
    return code, capsys.readouterr().err


def one_error(code: int, err: str) -> str:
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("scpl: error:"), err
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".scpl.lock"
    }


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A finished smoke run with checkpoints at steps 3 and 4, and a user's notes beside it."""
    out = tmp_path_factory.mktemp("base") / "run"
    code = main(["train", "smoke", "--out", str(out), *FAST, "--checkpoint-every", "1",
                 "--lr-schedule", "constant"])  # fmt: skip
    assert code == 0
    (out / "metrics_notes.jsonl").write_text('{"note": "mine"}\n')
    (out / "notes.txt").write_text("my notes\n")
    return out


@pytest.mark.parametrize(
    "bad",
    [
        ("--dataset", "digits", "--stages", "7"),  # fails when the model is built
        ("--dataset", "fashion-mnist", "--data-dir", "/nonexistent/data", "--download", "false"),
    ],
)
def test_overwrite_with_a_bad_input_leaves_the_old_run_intact(base, tmp_path, capsys, bad):
    """Mutant: the old run's files moved (or deleted) when the folder is claimed instead of
    once the pipeline is built (the folder is left without its run)."""
    x = tmp_path / "x"
    shutil.copytree(base, x)
    before = snapshot(x)
    one_error(*run(capsys, "--out", str(x), *FAST, "--overwrite", "true", *bad))
    assert snapshot(x) == before


def test_overwrite_that_fails_before_its_first_step_puts_the_old_run_back(
    base, tmp_path, capsys, monkeypatch
):
    """Mutant: abort() not restoring the files set aside."""
    from scpl.api import Pipeline

    x = tmp_path / "x"
    shutil.copytree(base, x)
    before = snapshot(x)

    def broken(self, x, y):
        raise RuntimeError("the first step broke")

    monkeypatch.setattr(Pipeline, "step", broken)
    with pytest.raises(RuntimeError, match="first step broke"):
        main(["train", "smoke", "--out", str(x), *FAST, "--overwrite", "true", "--lr", "0.01"])
    assert snapshot(x) == before
    assert not list(x.glob(".overwritten-*"))


@pytest.mark.parametrize("manifest", [True, False])
def test_overwrite_deletes_only_the_runs_files(base, tmp_path, capsys, manifest):
    """The old run's files are replaced (its extra checkpoint too), a user's
    metrics_notes.jsonl and notes.txt stay; a run from before manifests is read by the exact
    names a run writes.

    Mutants: run files matched by ``metrics*.jsonl`` (the notes deleted); the set-aside folder
    kept after the new run started."""
    x = tmp_path / "x"
    shutil.copytree(base, x)
    if not manifest:
        for m in x.glob(".scpl-files.*"):
            m.unlink()
    assert (x / "checkpoints" / "ckpt-000000003.rank0.pt").exists()
    code, err = run(capsys, "smoke", "--out", str(x), *FAST, "--overwrite", "true", "--lr", "0.01")
    assert code == 0, err
    assert (x / "metrics_notes.jsonl").read_text() == '{"note": "mine"}\n'
    assert (x / "notes.txt").read_text() == "my notes\n"
    assert sorted(p.name for p in (x / "checkpoints").iterdir()) == ["ckpt-000000004.rank0.pt"]
    assert json.loads((x / "summary.json").read_text())["config"]["lr"] == 0.01
    assert not list(x.glob(".overwritten-*"))


def test_a_users_files_alone_are_not_another_run(tmp_path, capsys):
    x = tmp_path / "x"
    x.mkdir()
    (x / "metrics_notes.jsonl").write_text("{}\n")
    assert run_files(x) == []
    code, err = run(capsys, "smoke", "--out", str(x), *FAST)
    assert code == 0, err
    assert (x / "metrics_notes.jsonl").read_text() == "{}\n"


def test_a_live_runs_folder_is_refused_naming_its_pid(base, tmp_path, capsys):
    """A second run into the folder, or a --resume of it, while its lock is held.

    Mutant: no lock taken (both accepted)."""
    x = tmp_path / "x"
    shutil.copytree(base, x)
    holder = RunFolder(x, 0, 1)
    holder.lock("--out")  # as a live run holds it (flock: per open file, even in one process)
    line = one_error(*run(capsys, "smoke", "--out", str(x), *FAST, "--overwrite", "true"))
    assert f"PID {os.getpid()}" in line and "another run holds this folder" in line
    line = one_error(*run(capsys, "--resume", str(x), "--progress", "false"))
    assert f"PID {os.getpid()}" in line and "still training" in line
    holder.release()
    code, err = run(capsys, "--resume", str(x), "--progress", "false", "--epochs", "2")
    assert code == 0, err


def test_two_runs_started_together_into_one_folder_do_not_mix(tmp_path):
    """The issue's repro: two runs at the same instant into one --out; one trains, the other is
    refused with one line (by the lock, or by the first run's files)."""
    out = tmp_path / "x"
    cmd = [sys.executable, "-m", "scpl.cli", "train", "smoke", "--out", str(out), *FAST]
    env = dict(os.environ, OMP_NUM_THREADS="1", SCPL_CACHE=str(tmp_path / "cache"))
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    err = next(e for code, e in results if code == 2)
    assert "holds this folder" in err or "holds another run" in err, err
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and len(steps) == len(set(steps)) + 1  # train 4 + epoch 4
