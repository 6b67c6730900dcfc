"""Re-running a `scpl` command under torchrun (``scpl train --executor dist --nproc N``).

The launcher owns the run: it checks the settings and the output folder before any process
starts, forwards SIGINT/SIGTERM/SIGHUP to torchrun (which stops its ranks) and waits for it,
and condenses torchrun's failure report into one line naming the rank that failed first.
torchrun asks the kernel to stop it when the launcher dies and each rank to end it when
torchrun dies (:func:`bind_to_parent`), so no process trains on alone after a launcher or
torchrun was killed, even by SIGKILL; the launcher reaps the ranks a killed torchrun leaves.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import TextIO

# Seconds torchrun gets to stop its ranks after a forwarded signal before it is killed.
STOP_GRACE_S = 15.0

_LOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ torch/distributed/")
_FAILED = re.compile(r"failed \(exitcode: (-?\d+)\) local_rank: (\d+)")
_BLAME = re.compile(r"rank (\d+) \(stage \d+\) died or stalled while rank (\d+)")


_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> bool:
    """Linux prctl(2) through libc; False where unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def bind_to_parent(sig: int = signal.SIGKILL, parent: int | None = None) -> None:
    """Linux: have the kernel send ``sig`` to this process when its parent exits (a rank when
    torchrun exits, torchrun when the launcher exits), so no process of a run outlives the
    process that started it, even one killed by SIGKILL. ``parent``: the PID the parent had
    (a child that sets this up after a fork checks it has not already been orphaned)."""
    if not _prctl(_PR_SET_PDEATHSIG, int(sig)):
        return
    if os.getppid() != (parent if parent is not None else os.getppid()) or os.getppid() == 1:
        os._exit(1)  # the parent died before the request took effect


def _reap_orphans(timeout: float = 5.0) -> None:
    """Reap the ranks that a killed torchrun left to this process (a child subreaper), so none
    is left a zombie."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return  # no children left
        if pid == 0:
            time.sleep(0.05)


class TorchrunReport:
    """Filters torchrun's stderr: the ranks' lines pass through; torchrun's own log lines, its
    traceback and its failure summary are kept out of sight (``verbose`` shows them) and parsed
    for the rank that failed first."""

    def __init__(self, sink: TextIO, verbose: bool = False, replicas_of: int = 0) -> None:
        self.sink, self.verbose = sink, verbose
        # Data parallelism: stages per replica (rank r*K + l is stage l of replica r); 0: none.
        self.replicas_of = replicas_of
        self.first: tuple[int, int] | None = None  # (rank, exit code) of the first failure
        self.root: tuple[int, int] | None = None  # torchrun's "Root Cause" entry
        self.blamed: dict[int, int] = {}  # rank -> the peer it says died or stalled
        self._held: list[str] = []
        self._dropping = False
        self._in_root = False
        self._root_rank: int | None = None

    def feed(self, line: str) -> None:
        """One line of torchrun's stderr (ranks' stderr comes through it too)."""
        if self.verbose:  # everything as torchrun wrote it; still parsed for the summary
            self.sink.write(line)
            self.sink.flush()
        if self._dropping:
            self._parse_report(line)
            return
        if _LOG_LINE.match(line):
            m = _FAILED.search(line)
            if m and self.first is None:
                self.first = (int(m.group(2)), int(m.group(1)))
            return
        if self._held:
            if "torch/distributed/run.py" in line or "torch/distributed/launcher" in line:
                self._held, self._dropping = [], True  # torchrun's own traceback and report
                return
            self._held.append(line)
            if line.strip() and not line.startswith((" ", "\t", "Traceback")):
                held, self._held = self._held, []  # a rank's traceback ended: show it
                for h in held:
                    self._emit(h)
            return
        if line.startswith("Traceback (most recent call last):"):
            self._held = [line]
            return
        m = _BLAME.search(line)
        if m:
            self.blamed.setdefault(int(m.group(2)), int(m.group(1)))
        self._emit(line)

    def _parse_report(self, line: str) -> None:
        if line.startswith("Root Cause"):
            self._in_root = True
        elif self._in_root:
            m = re.match(r"\s*rank\s*:\s*(\d+)", line)
            if m:
                self._root_rank = int(m.group(1))
            m = re.match(r"\s*exitcode\s*:\s*(-?\d+)", line)
            if m and self._root_rank is not None and self.root is None:
                self.root = (self._root_rank, int(m.group(1)))

    def _emit(self, line: str) -> None:
        if not self.verbose:
            self.sink.write(line)
            self.sink.flush()

    def close(self) -> None:
        for h in self._held:  # an unfinished traceback: show what there is
            self._emit(h)
        self._held = []

    def summary(self) -> str | None:
        """One line naming the rank that failed first (None if no rank failed)."""
        first = self.root or self.first
        if first is None:
            return None
        rank, code = first
        culprit, seen = rank, {rank}
        while culprit in self.blamed and self.blamed[culprit] not in seen:
            culprit = self.blamed[culprit]
            seen.add(culprit)
        if code < 0:
            with contextlib.suppress(ValueError):
                how = f"killed by {signal.Signals(-code).name}"
        else:
            how = f"exit code {code}"
        if culprit != rank:
            return (
                f"scpl: error: rank {culprit} ({self._place(culprit)}) died or stalled first; rank "
                f"{rank} ({self._place(rank)}) stopped waiting for it ({how}) and the other ranks "
                "were stopped"
            )
        return (
            f"scpl: error: rank {rank} ({self._place(rank)}) failed first ({how}); the other ranks "
            "were stopped (--debug shows torchrun's report)"
        )

    def _place(self, rank: int) -> str:
        if not self.replicas_of:
            return f"stage {rank}"
        replica, stage = divmod(rank, self.replicas_of)
        return f"stage {stage} of replica {replica}"


def launch_torchrun(nproc: int, cfg=None, recipe: str = "custom") -> int:
    """Re-run this command under torchrun with ``nproc`` processes on this host.

    With ``cfg``, the settings and the output folder are checked first (a wrong --nproc or a
    folder holding another run fails here, once, before any process starts)."""
    folder = preflight(cfg, recipe) if cfg is not None else None
    argv = sys.argv[1:]
    cleaned: list[str] = []
    skip = False
    for a in argv:  # drop --nproc N / --nproc=N so the children do not relaunch
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        cleaned.append(a)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "scpl.cli",
        *cleaned,
    ]
    print("scpl: launching " + " ".join(cmd[1:]), file=sys.stderr)
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    if folder is not None:
        from scpl.training.runfolder import LOCK_ENV

        env[LOCK_ENV] = str(os.getpid())  # the launcher holds the run folder's lock for its ranks
    try:
        return run_supervised(
            cmd,
            env,
            verbose="--debug" in argv,
            replicas_of=cfg.stages if cfg is not None and cfg.data_parallel > 1 else 0,
        )
    finally:
        if folder is not None:
            folder.release()


def preflight(cfg, recipe: str):
    """Checks the ranks would each fail on, done once in the launcher; returns the run folder,
    locked for the run's life (the ranks, told by an environment variable, do not lock it)."""
    from pathlib import Path

    from scpl.errors import ConfigError
    from scpl.training.checkpoint import latest_checkpoint
    from scpl.training.outputs import check_writable, out_path
    from scpl.training.runfolder import RunFolder

    cfg.validate()
    world = cfg.stages * cfg.data_parallel
    if cfg.nproc != world:
        raise ConfigError(
            f"--nproc {cfg.nproc} does not match --stages {cfg.stages}"
            + (f" x --data-parallel {cfg.data_parallel}" if cfg.data_parallel > 1 else "")
            + f": the dist executor runs one process per stage and replica; pass --nproc {world}"
        )
    if cfg.resume:
        latest_checkpoint(Path(cfg.resume), 0, cfg.stages)
        check_writable(Path(cfg.resume))
        return RunFolder.resume(Path(cfg.resume), rank=0, world=world, lock=True)
    # Checked, not touched: each rank moves its own files of an overwritten run aside.
    return RunFolder.claim(
        out_path(cfg, recipe), rank=None, world=world, overwrite=cfg.overwrite, lock=True
    )


def run_supervised(cmd: list[str], env: dict, verbose: bool = False, replicas_of: int = 0) -> int:
    """Run torchrun in its own session, forwarding SIGINT/SIGTERM/SIGHUP to it and waiting for
    it (killing it after :data:`STOP_GRACE_S`); print one line naming the rank that failed
    first. Returns torchrun's exit code, or 128 + the signal when stopped by one."""
    # Orphaned ranks of a killed torchrun are reparented to this process (not init) and reaped
    # below; torchrun gets SIGTERM if this process dies, even by SIGKILL (it then stops its
    # ranks, which also die with torchrun: bind_to_parent).
    subreaper = _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    me = os.getpid()
    proc = subprocess.Popen(
        cmd,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
        start_new_session=True,
        preexec_fn=lambda: bind_to_parent(signal.SIGTERM, me),
    )
    report = TorchrunReport(sys.stderr, verbose, replicas_of)

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            report.feed(line)
        report.close()

    reader = threading.Thread(target=pump, name="torchrun-stderr", daemon=True)
    reader.start()
    stopped: list[int] = []

    def forward(signum, frame) -> None:
        if not stopped:
            stopped.append(signum)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)  # torchrun stops its ranks on SIGTERM

    watched = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, forward) for s in watched}
    try:
        stop_at = None
        while proc.poll() is None:
            if stopped and stop_at is None:
                stop_at = time.monotonic() + STOP_GRACE_S
            if stop_at is not None and time.monotonic() > stop_at:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)  # ranks die with it (bind_to_parent)
            time.sleep(0.1)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    if proc.returncode < 0 or stopped:
        # torchrun is gone (killed, or stopped by us): no rank of the run may train on.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    if subreaper:
        _reap_orphans()
    reader.join(timeout=5)
    if stopped:
        name = signal.Signals(stopped[0]).name
        print(f"scpl: stopped by {name}: torchrun and its ranks have exited", file=sys.stderr)
        return 128 + stopped[0]
    if proc.returncode < 0:
        sig = -proc.returncode
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        print(
            f"scpl: error: torchrun (PID {proc.pid}) was killed by {name}; its ranks were "
            "stopped with it: --resume the run's folder to continue from its last checkpoint",
            file=sys.stderr,
        )
        return 128 + sig
    if proc.returncode != 0:
        line = report.summary()
        if line:
            print(line, file=sys.stderr)
    return proc.returncode
