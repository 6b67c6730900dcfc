"""Re-running a `scpl` command under torchrun (``scpl train --executor dist --nproc N``)."""

from __future__ import annotations

import os
import subprocess
import sys


def launch_torchrun(nproc: int) -> int:
    """Re-run this command under torchrun with ``nproc`` processes on this host."""
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
    return subprocess.call(
        cmd, env=dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    )
