"""Fail fast: killing one rank of a 3-process gloo run makes the others exit non-zero within
60 s with a one-line message naming the failed rank -- never a hang."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def _rank_cmd(out, timeout="30"):
    return [
        sys.executable,
        "-m",
        "scpl.cli",
        "train",
        "smoke",
        "--executor",
        "dist",
        "--stages",
        "3",
        "--epochs",
        "50",
        "--max-steps",
        "0",
        "--progress",
        "false",
        "--log-every",
        "1",
        "--dist-timeout",
        timeout,
        "--out",
        str(out),
    ]


def _start_ranks(out, timeout="30", world=3, extra=()):
    """``world`` ranks of a dist smoke run (one stage per rank unless ``extra`` says otherwise)."""
    # A file rendezvous of the test's own (SCPL_DIST_INIT): a TCP port found free a moment
    # earlier could be taken by another job's ranks in between.
    rdzv = "file://" + os.path.join(os.path.abspath(out), f"rdzv-{time.monotonic_ns()}")
    procs = []
    for rank in range(world):
        env = dict(
            os.environ,
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE=str(world),
            LOCAL_WORLD_SIZE=str(world),
            SCPL_DIST_INIT=rdzv,
            OMP_NUM_THREADS="1",
        )
        procs.append(
            subprocess.Popen(
                _rank_cmd(out, timeout) + list(extra),
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return procs


def _wait_until_training(procs, log) -> None:
    """Wait (up to 180 s) until ``log`` shows training steps; every rank must stay alive."""
    deadline = time.time() + 180
    while time.time() < deadline and not (log.exists() and log.stat().st_size > 200):
        assert all(p.poll() is None for p in procs), "a rank exited before the kill"
        time.sleep(0.05)


def test_killing_one_rank_stops_the_others_with_a_clear_error(tmp_path):
    procs = _start_ranks(tmp_path)
    _wait_until_training(procs, tmp_path / "metrics.rank1.jsonl")
    procs[1].send_signal(signal.SIGKILL)
    killed_at = time.time()
    for p in (procs[0], procs[2]):
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise AssertionError("a surviving rank hung after its peer was killed") from None
    elapsed = time.time() - killed_at
    assert elapsed < 60
    for p in (procs[0], procs[2]):
        err = p.stderr.read()
        assert p.returncode != 0
        lines = [ln for ln in err.splitlines() if ln.startswith("scpl: error:")]
        assert len(lines) == 1, err[-2000:]
        assert "rank 1 (stage 1)" in lines[0], lines[0]
        assert "Traceback" not in err


def test_a_stalled_rank_is_the_one_every_other_rank_names(tmp_path):
    """Rank 2 stops (SIGSTOP) without dying: rank 1 times out waiting for it and rank 0 for
    rank 1 (which was only waiting); both lines name rank 2, after about --dist-timeout."""
    procs = _start_ranks(tmp_path, timeout="10")
    log2 = tmp_path / "metrics.rank2.jsonl"
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not (log2.exists() and log2.stat().st_size > 200):
            assert all(p.poll() is None for p in procs), "a rank exited before the stall"
            time.sleep(0.05)
        procs[2].send_signal(signal.SIGSTOP)
        for p in (procs[0], procs[1]):
            p.wait(timeout=90)
        for p in (procs[0], procs[1]):
            err = p.stderr.read()
            lines = [ln for ln in err.splitlines() if ln.startswith("scpl: error:")]
            assert p.returncode != 0 and len(lines) == 1, err[-2000:]
            assert lines[0].startswith("scpl: error: rank 2 (stage 2) died or stalled"), lines[0]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()


def test_killing_one_rank_of_a_data_parallel_run_stops_every_rank_naming_it(tmp_path):
    """K=2 stages x R=2 replicas: SIGKILL of rank 3 (stage 1 of replica 1) ends the three
    others within the stall timeout, each with one line naming rank 3."""
    # A later --stages wins over _rank_cmd's 3 (argparse keeps the last value).
    extra = ["--stages", "2", "--data-parallel", "2", "--batch-size", "32"]
    procs = _start_ranks(tmp_path, timeout="20", world=4, extra=extra)
    try:
        _wait_until_training(procs, tmp_path / "metrics.rank3.jsonl")
        procs[3].send_signal(signal.SIGKILL)
        killed_at = time.time()
        for p in procs[:3]:
            p.wait(timeout=90)
        assert time.time() - killed_at < 90
        for p in procs[:3]:
            err = p.stderr.read()
            lines = [ln for ln in err.splitlines() if ln.startswith("scpl: error:")]
            assert p.returncode != 0 and len(lines) == 1, err[-2000:]
            assert "rank 3" in lines[0], lines[0]
            assert "Traceback" not in err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
