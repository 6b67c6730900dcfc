"""Runs that never mix, lose or fake work: one run per output folder, resume from the run's own
settings, checkpoints that cannot run code, honest non-zero exits for runs that learned
nothing, one-line errors instead of tracebacks or aborts, strict JSON, files with the user's
umask, progress for unattended runs, and a launcher that owns its ranks."""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from scpl.cli import main
from scpl.errors import ScplError
from scpl.training.config import TrainConfig
from scpl.training.flags import field_docs

FAST = [
    "--progress",
    "false",
    "--tensorboard",
    "false",
    "--epochs",
    "1",
    "--max-steps",
    "4",
    "--log-every",
    "2",
    "--device",
    "cpu",
]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("SCPL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SCPL_DATA", raising=False)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["train", *argv])
    c = capsys.readouterr()
    return code, c.out, c.err


def one_error(code: int, err: str) -> str:
    """The single 'scpl: error:' line of a failed run (rc 2, no traceback)."""
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("scpl: error:"), err
    return lines[0]


# -- 1. one run per output folder ------------------------------------------------------------


def test_second_run_into_the_same_folder_is_refused_and_overwrite_replaces_it(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run(capsys, "smoke", "--out", str(out), *FAST)
    assert code == 0, err
    summary = (out / "summary.json").read_text()
    metrics = (out / "metrics.jsonl").read_text()
    line = one_error(*run(capsys, "smoke", "--out", str(out), *FAST, "--lr", "0.01")[::2])
    assert "--resume" in line and "--overwrite" in line and str(out) in line
    assert (out / "summary.json").read_text() == summary  # untouched
    assert (out / "metrics.jsonl").read_text() == metrics
    code, _, err = run(capsys, "smoke", "--out", str(out), *FAST, "--lr", "0.01", "--overwrite")
    assert code == 0, err
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and len(steps) == len(set(steps)) + 1  # train 4 + epoch 4
    assert json.loads((out / "summary.json").read_text())["config"]["lr"] == 0.01


def test_default_folder_names_what_changes_the_result():
    from scpl.training.outputs import out_path

    base = TrainConfig()
    name = out_path(base, "default")
    changes = ({"lr": 0.01}, {"epochs": 3}, {"width": 0.5}, {"weight_decay": 0.1},
               {"data_dir": "/other/data"}, {"threads": 1})  # fmt: skip
    for change in changes:
        assert out_path(TrainConfig(**change), "default") != name, change
    for same in ({"progress": False}, {"log_every": 7}):
        assert out_path(TrainConfig(**same), "default") == name, same


def test_pruning_never_deletes_the_checkpoint_just_written(tmp_path):
    from scpl.training.checkpoint import save_checkpoint

    ck = tmp_path / "checkpoints"
    ck.mkdir()
    for step in (90, 100):  # higher steps than the run's own (e.g. a folder reused before)
        torch.save({}, ck / f"ckpt-{step:09d}.rank0.pt")
    path = save_checkpoint(tmp_path, 5, 0, {"step": 5})
    assert path.exists()


# -- 3. resume from the run's own settings -----------------------------------------------------


@pytest.fixture
def finished_run(tmp_path, capsys):
    out = tmp_path / "done"
    code, _, err = run(
        capsys, "smoke", "--out", str(out), *FAST, "--checkpoint-every", "1", "--lr-schedule",
        "constant",
    )  # fmt: skip
    assert code == 0, err
    return out


def test_resume_alone_takes_the_settings_from_the_checkpoint(finished_run, capsys):
    code, out, err = run(capsys, "--resume", str(finished_run), "--epochs", "2", *FAST[:4])
    assert code == 0, err
    assert "resumed" in out and "recipe=smoke" in out
    summary = json.loads((finished_run / "summary.json").read_text())
    assert summary["config"]["dataset"] == "digits" and summary["config"]["epochs"] == 2


@pytest.mark.parametrize(
    "flags",
    [
        ("--val-fraction", "0.3"),
        ("--weight-decay", "0.1"),
        ("--last-supcon", "false"),
        ("--data-dir", "/other/data"),  # other files are other data (issue 24, case 8)
        ("--threads", "3"),  # another thread count changes the bits (case 9)
    ],
)
def test_resume_refuses_flags_that_change_the_result(finished_run, capsys, flags):
    """Mutants: data_dir or threads classed "cosmetic" again in FIELD_CLASS."""
    line = one_error(*run(capsys, "--resume", str(finished_run), *flags)[::2])
    assert flags[0] in line and "change the result" in line


def test_every_field_is_classified_and_unknown_fields_change_the_result():
    from scpl.training.config import FIELD_CLASS, field_class

    names = set(field_docs(TrainConfig))
    assert set(FIELD_CLASS) <= names  # no stale entries
    assert {field_class(n) for n in names} <= {"cosmetic", "extends", "result"}
    assert field_class("a_field_added_later") == "result"
    assert field_class("lr") == field_class("val_fraction") == "result"


# -- 4. checkpoints cannot run code -----------------------------------------------------------


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_planted_pickle_in_a_checkpoint_is_not_executed(finished_run, tmp_path, capsys):
    marker = tmp_path / "pwned"
    ck = finished_run / "checkpoints"
    newest = max(ck.glob("ckpt-*.rank0.pt"))
    evil = ck / "ckpt-999999999.rank0.pt"
    torch.save({"config": {}, "x": _Payload(str(marker))}, evil)
    line = one_error(*run(capsys, "--resume", str(finished_run))[::2])
    assert not marker.exists(), "the planted pickle ran"
    assert str(evil) in line and "not loaded" in line
    evil.unlink()
    assert newest.exists()


# -- 5. runs that learned nothing end non-zero -------------------------------------------------


def _loader(y: torch.Tensor, x: torch.Tensor | None = None, batch: int = 16):
    from torch.utils.data import DataLoader, TensorDataset

    x = torch.randn(len(y), 1, 8, 8) if x is None else x
    return DataLoader(TensorDataset(x, y), batch_size=batch)


def _cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(
        model="convnet", width=0.125, stages=2, epochs=1, batch_size=16, progress=False,
        tensorboard=False, device="cpu", executor="sequential", out=str(tmp_path / "r"),
        log_every=1, augment="none",
    )  # fmt: skip
    return TrainConfig(**{**base, **kw})


def test_a_run_whose_updates_were_all_skipped_fails(tmp_path):
    from scpl.training.loop import train

    y = torch.arange(64) % 4
    nan = torch.full((64, 1, 8, 8), float("nan"))
    with pytest.raises(ScplError, match="skipped by --nan-guard skip"):
        train(_cfg(tmp_path, nan_guard="skip"), train_loader=_loader(y, nan), echo=lambda *a: None)


def test_zero_steps_is_refused(tmp_path, capsys):
    line = one_error(
        *run(capsys, "smoke", "--out", str(tmp_path / "r"), *FAST, "--max-steps", "-1")[::2]
    )
    assert "--max-steps" in line


def test_single_class_training_labels_are_refused_before_training(tmp_path):
    from scpl.training.loop import train

    echoed: list[str] = []
    with pytest.raises(ScplError, match="single class"):
        train(
            _cfg(tmp_path),
            train_loader=_loader(torch.zeros(64, dtype=torch.long)),
            echo=echoed.append,
        )
    assert not echoed  # refused before the model was even built


# -- 6. one line, never a traceback or an abort ------------------------------------------------

BAD_FLAGS = {
    "log-every-0": (["--log-every", "0"], "--log-every"),
    "threads-negative": (["--threads", "-1"], "--threads"),
    "lr-nan": (["--lr", "nan"], "--lr"),
    "width-nan": (["--width", "nan"], "--width"),
    "brace-in-out": (["--out", "{tmp}/a{b"], "--out"),
    "batch-norm-batch-of-one": (["--method", "bp", "--batch-size", "1"], "BatchNorm"),
    "micro-batches-of-one": (
        ["--method", "bp", "--batch-size", "2", "--micro-batches", "2"],
        "BatchNorm",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FLAGS))
def test_bad_flag_is_one_line(case, tmp_path, capsys):
    flags, word = BAD_FLAGS[case]
    flags = [f.replace("{tmp}", str(tmp_path)) for f in flags]
    line = one_error(*run(capsys, "smoke", "--out", str(tmp_path / "o"), *FAST, *flags)[::2])
    assert word in line


@pytest.mark.parametrize("what", ["missing", "file"])
def test_resume_of_a_missing_folder_or_a_file_is_one_line(what, tmp_path, capsys):
    target = tmp_path / "x"
    if what == "file":
        target.write_text("not a run")
    line = one_error(*run(capsys, "--resume", str(target))[::2])
    assert str(target) in line


def _idx(path: Path, n: int, shape: tuple[int, ...] | None) -> None:
    import struct

    if shape is None:  # labels
        path.write_bytes(struct.pack(">II", 0x801, n) + bytes(i % 10 for i in range(n)))
    else:
        dims = struct.pack(">" + "I" * len(shape), *shape)
        path.write_bytes(
            struct.pack(">I", 0x800 + len(shape) + 1)
            + struct.pack(">I", n)
            + dims
            + bytes(n * shape[0] * shape[1])
        )


def test_train_and_test_images_of_different_shapes_are_one_line(tmp_path, capsys):
    d = tmp_path / "fm"
    d.mkdir()
    _idx(d / "train-images-idx3-ubyte", 40, (28, 28))
    _idx(d / "train-labels-idx1-ubyte", 40, None)
    _idx(d / "t10k-images-idx3-ubyte", 20, (32, 32))
    _idx(d / "t10k-labels-idx1-ubyte", 20, None)
    line = one_error(
        *run(capsys, "smoke", "--dataset", "fashion-mnist", "--data-dir", str(d), "--download",
             "false", "--out", str(tmp_path / "o"), *FAST, "--batch-size", "8")[::2]
    )  # fmt: skip
    assert "shape" in line


def test_empty_idx_file_is_one_line(tmp_path, capsys):
    d = tmp_path / "fm"
    d.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):  # fmt: skip
        (d / name).write_bytes(b"")
    line = one_error(
        *run(capsys, "smoke", "--dataset", "fashion-mnist", "--data-dir", str(d), "--download",
             "false", "--out", str(tmp_path / "o"), *FAST)[::2]
    )  # fmt: skip
    assert "ubyte" in line


def test_disk_full_during_a_save_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch):
    from scpl import atomic
    from scpl.training.checkpoint import atomic_save

    target = tmp_path / "ckpt.pt"
    atomic_save({"old": torch.ones(3)}, target)
    link = tmp_path / "full.tmp"
    link.symlink_to("/dev/full")  # writes fail with ENOSPC, as on a full disk
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    monkeypatch.setattr(
        atomic.tempfile, "mkstemp", lambda **kw: (os.open(link, os.O_WRONLY), str(link))
    )
    monkeypatch.setattr(atomic.os, "chmod", lambda *a: None)
    with pytest.raises(ScplError) as e:
        atomic_save({"new": torch.zeros(100_000)}, target)
    msg = str(e.value)
    assert str(target) in msg and os.strerror(errno.ENOSPC) in msg and "\n" not in msg
    assert torch.equal(torch.load(target)["old"], torch.ones(3))


def test_ctrl_c_during_a_save_is_a_plain_interrupt(tmp_path, monkeypatch):
    """Not a RuntimeError from inline_container.cc chained to it (two tracebacks)."""
    from scpl import atomic
    from scpl.training.checkpoint import atomic_save

    class Interrupted(io.FileIO):
        writes = 0

        def write(self, b):
            Interrupted.writes += 1
            if Interrupted.writes > 3:
                raise KeyboardInterrupt
            return super().write(b)

    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, mode: Interrupted(fd, "w"))
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"a": torch.zeros(100_000)}, tmp_path / "ckpt.pt")
    assert not list(tmp_path.iterdir())  # no temp file left, nothing half-written


def test_an_error_in_the_final_evaluation_closes_the_executor(tmp_path, capsys, monkeypatch):
    """Every exit path closes the pipeline (worker threads left running at interpreter exit
    abort it: SIGABRT, rc 134)."""
    import scpl.training.loop as loop
    from scpl.api import Pipeline

    real = loop.timed_evaluate

    def broken(pipe, feed, which):
        if which == "test":
            raise ScplError("the test split broke")
        return real(pipe, feed, which)

    closed: list[bool] = []
    real_close = Pipeline.close

    def close(self):
        closed.append(self._executor is not None)
        real_close(self)

    monkeypatch.setattr(loop, "timed_evaluate", broken)
    monkeypatch.setattr(Pipeline, "close", close)
    line = one_error(*run(capsys, "smoke", "--out", str(tmp_path / "r"), *FAST)[::2])
    assert "the test split broke" in line
    assert True in closed, "the executor was left running"


# -- 7. strict JSON, no duplicate steps, umask, progress, launcher checks ----------------------


def _strict_load(text: str):
    def refuse(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_summary_and_metrics_are_strict_json(tmp_path, capsys):
    out = tmp_path / "r"
    code, _, err = run(capsys, "smoke", "--out", str(out), *FAST, "--val-fraction", "0")
    assert code == 0, err
    summary = _strict_load((out / "summary.json").read_text())
    assert summary["best_val_acc"] is None  # no validation split: NaN became null
    for line in (out / "metrics.jsonl").read_text().splitlines():
        _strict_load(line)


def test_metrics_have_no_duplicate_steps_after_resume(finished_run, capsys):
    ck = finished_run / "checkpoints"
    newest = max(ck.glob("ckpt-*.rank0.pt"))
    newest.unlink()  # as if the process died after logging but before this save
    code, _, err = run(capsys, "--resume", str(finished_run))
    assert code == 0, err
    recs = [json.loads(x) for x in (finished_run / "metrics.jsonl").read_text().splitlines()]
    keys = [(r["kind"], r["step"]) for r in recs]
    assert len(keys) == len(set(keys)), keys


def test_files_are_created_with_the_users_umask(tmp_path, capsys):
    old = os.umask(0o022)
    try:
        out = tmp_path / "r"
        code, _, err = run(capsys, "smoke", "--out", str(out), *FAST)
        assert code == 0, err
    finally:
        os.umask(old)
    for p in [out / "summary.json", out / "final.rank0.pt", *(out / "checkpoints").iterdir()]:
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p


def test_unattended_runs_print_progress_lines(tmp_path, capsys):
    code, out, err = run(
        capsys, "smoke", "--out", str(tmp_path / "r"), *FAST, "--progress", "true",
        "--tensorboard", "true",
    )  # fmt: skip
    assert code == 0, err
    lines = [ln for ln in out.splitlines() if ln.startswith("progress:")]
    assert lines, out
    assert all("samples/s" in ln and "ETA" in ln and "epoch 1/1" in ln for ln in lines)
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:  # asked for TensorBoard without it: said once, the run goes on
        assert out.count("tensorboard is not installed") == 1, out


def test_nproc_not_matching_stages_fails_before_launching(tmp_path):
    p = subprocess.run(
        [sys.executable, "-m", "scpl.cli", "train", "smoke", "--executor", "dist", "--nproc", "3",
         "--stages", "2", "--out", str(tmp_path / "r"), "--progress", "false"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    line = one_error(p.returncode, p.stderr)
    assert "--nproc 3" in line and "--stages 2" in line and "launching" not in p.stderr


def test_stall_timeout_default_is_documented():
    assert TrainConfig.dist_timeout == 60.0
    assert "60 s by default" in field_docs(TrainConfig)["dist_timeout"]


TORCHRUN_FAILURE = """\
[rank1]: something on rank 1
scpl: error: rank 2 (stage 2) died or stalled while rank 1 (stage 1) was exchanging data with it (timeout); stopping
W1202 03:19:56.833000 14091 torch/distributed/elastic/multiprocessing/api.py:1028] Sending process 14139 closing signal SIGTERM
E1202 03:19:56.837000 14091 torch/distributed/elastic/multiprocessing/api.py:1002] failed (exitcode: 2) local_rank: 1 (pid: 14140) of binary: python
Traceback (most recent call last):
  File "<frozen runpy>", line 198, in _run_module_as_main
  File "/venv/lib/python3.11/site-packages/torch/distributed/run.py", line 1032, in <module>
    main()
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
scpl.cli FAILED
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-12-02_03:19:56
  rank      : 1 (local_rank: 1)
  exitcode  : 2 (pid: 14140)
============================================================
"""


def test_launcher_condenses_torchrun_failures_to_one_line_naming_the_first_rank():
    from scpl.launch import TorchrunReport

    sink = io.StringIO()
    report = TorchrunReport(sink)
    for line in TORCHRUN_FAILURE.splitlines(keepends=True):
        report.feed(line)
    report.close()
    shown = sink.getvalue()
    assert "ChildFailedError" not in shown and "torch/distributed" not in shown
    assert "[rank1]: something on rank 1" in shown and "died or stalled" in shown
    # Rank 1 stopped first, but only because rank 2 (which reported nothing) stalled.
    assert report.summary().startswith("scpl: error: rank 2 (stage 2) died or stalled first")
    report = TorchrunReport(io.StringIO())
    report.feed(
        "E1202 03:19:56.837000 1 torch/distributed/elastic/x.py:1] failed (exitcode: -9) local_rank: 0 (pid: 1) of binary: p\n"
    )
    assert report.summary() == (
        "scpl: error: rank 0 (stage 0) failed first (killed by SIGKILL); the other ranks were "
        "stopped (--debug shows torchrun's report)"
    )


# -- 2. the launcher owns its ranks ------------------------------------------------------------


def _pids_of(marker: str) -> list[int]:
    """Processes whose command line mentions ``marker`` (the run's unique output folder)."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                if marker in (d / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                    found.append(int(d.name))
            except OSError:
                continue
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the run's processes")
def test_sigterm_to_the_launcher_stops_every_process_of_the_run(tmp_path):
    import time

    out = tmp_path / "dist-run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "scpl.cli", "train", "smoke", "--executor", "dist", "--nproc", "2",
         "--stages", "2", "--epochs", "50", "--max-steps", "0", "--log-every", "1",
         "--progress", "false", "--tensorboard", "false", "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )  # fmt: skip
    deadline = time.time() + 240
    while time.time() < deadline and len(_pids_of(str(out))) < 4 and proc.poll() is None:
        time.sleep(0.2)  # launcher + torchrun + 2 ranks
    assert proc.poll() is None, proc.stderr.read()[-2000:]
    time.sleep(3)
    proc.send_signal(signal.SIGTERM)
    sent = time.time()
    while time.time() - sent < 10 and _pids_of(str(out)):
        time.sleep(0.2)
    alive = _pids_of(str(out))
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, f"processes of the run still alive 10 s after SIGTERM: {alive}"
    assert proc.wait(timeout=10) == 128 + signal.SIGTERM


# -- issue 24: checkpoints only from finite states ---------------------------------------------


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _tensors(v)


def test_checkpoints_hold_only_finite_states_and_the_error_names_the_good_one(tmp_path, capsys):
    """The issue's repro (there: LR climbing to 1e30 through --lr-min, now refused; here a
    constant LR of 1e8): non-finite state by step 4, detected only at a log interval
    under --nan-guard interval; checkpoints every 2 steps must not save the NaN weights nor
    prune the last finite one, and the error names the checkpoint that is good.

    Mutants: no flag/state check before a save (checkpoints with NaN weights; the good one
    pruned); the message naming the newest file instead of the last finite one."""
    out = tmp_path / "x"
    line = one_error(
        *run(capsys, "--dataset", "digits", "--model", "convnet", "--stages", "2", "--width",
             "0.125", "--max-steps", "40", "--batch-size", "32", "--checkpoint-every", "2",
             "--lr", "1e8", "--lr-schedule", "constant", "--out", str(out), *FAST,
             "--max-steps", "40",
             "--log-every", "50", "--augment", "none")[::2]
    )  # fmt: skip
    assert "non-finite" in line, line
    files = sorted((out / "checkpoints").glob("ckpt-*.pt"))
    assert files, "no checkpoint before the NaN"
    for f in files:
        ck = torch.load(f, weights_only=True)
        bad = [t for t in _tensors(ck["executor"]) if t.is_floating_point()]
        assert all(torch.isfinite(t).all() for t in bad), f"{f.name} holds non-finite tensors"
    assert "last good checkpoint (finite weights) is step" in line and str(files[-1]) in line


def test_a_state_with_inf_weights_is_not_checkpointed():
    """A finite gradient times a huge LR gives inf weights that no loss flag has seen yet.

    Mutant: check_state_finite skipping optimizer state or nested lists."""
    from scpl.parallel.base import NonFiniteError
    from scpl.training.checks import check_state_finite

    fine = {"runners": [{"unit": {"w": torch.ones(2)}, "optimizer": {"state": {0: {}}}}]}
    check_state_finite(fine, 4)
    bad = {"runners": [fine["runners"][0], {"optimizer": {"state": {0: {"exp_avg": torch.tensor([1.0, float("inf")])}}}}]}  # fmt: skip
    with pytest.raises(NonFiniteError, match=r"step 4 \(runners\[1\]\.optimizer\.state\.0\.exp_avg"):
        check_state_finite(bad, 4)


# -- issue 24: a killed launcher or torchrun orphans nothing ----------------------------------


def _start_dist_run(out: Path):
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "scpl.cli", "train", "smoke", "--executor", "dist", "--nproc", "2",
         "--stages", "2", "--epochs", "50", "--max-steps", "0", "--log-every", "1",
         "--progress", "false", "--tensorboard", "false", "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )  # fmt: skip
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if len(_pids_of(str(out))) >= 4 and (out / "metrics.rank1.jsonl").exists():
            break  # launcher + torchrun + 2 ranks, training
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read()[-2000:]
    return proc


def _alive(pids: list[int]) -> list[int]:
    """Those of ``pids`` still running (zombies count: nobody reaped them)."""
    return [p for p in pids if Path(f"/proc/{p}").exists()]


def _gone_within(pids: list[int], seconds: float) -> list[int]:
    import time

    end = time.time() + seconds
    while time.time() < end and _alive(pids):
        time.sleep(0.2)
    alive = _alive(pids)
    for pid in alive:
        with __import__("contextlib").suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return alive


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_sigkill_of_the_launcher_stops_torchrun_and_every_rank(tmp_path):
    """Issue 24, case 5: kill -9 of `scpl` under --nproc 2 left torchrun and both ranks
    training. Mutant: torchrun started without bind_to_parent (it trains on)."""
    out = tmp_path / "dist-run"
    proc = _start_dist_run(out)
    others = [p for p in _pids_of(str(out)) if p != proc.pid]
    proc.kill()
    proc.wait(timeout=10)
    alive = _gone_within(others, 30)
    assert not alive, f"torchrun/ranks alive 30 s after the launcher was killed: {alive}"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_sigkill_of_torchrun_is_one_line_and_leaves_no_rank(tmp_path):
    """Issue 24, case 6: kill -9 of torchrun ended the launcher with rc 247 and no message.
    Mutant: the launcher returning torchrun's negative code (247) without a line. (Reaping
    the orphaned ranks as a child subreaper matters where PID 1 does not reap; here it does.)"""
    out = tmp_path / "dist-run"
    proc = _start_dist_run(out)
    torchrun = [
        p for p in _pids_of(str(out))
        if b"torch.distributed.run" in Path(f"/proc/{p}/cmdline").read_bytes()
    ]  # fmt: skip
    assert len(torchrun) == 1, torchrun
    ranks = [p for p in _pids_of(str(out)) if p not in (proc.pid, torchrun[0])]
    os.kill(torchrun[0], signal.SIGKILL)
    assert proc.wait(timeout=60) == 128 + signal.SIGKILL
    err = proc.stderr.read()
    line = one_error(2, err.split("\n", 1)[1])  # after "scpl: launching": one line
    assert "torchrun" in line and "SIGKILL" in line and "--resume" in line
    alive = _gone_within(ranks, 5)
    assert not alive, f"ranks left running or unreaped after torchrun died: {alive}"
