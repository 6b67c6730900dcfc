"""Where a result came from: the code's commit and the hardware it ran on (one place for every
table, summary and benchmark that records them)."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

_HERE = Path(__file__).parent


def git_commit() -> str:
    """Short commit of the code that ran, with -dirty when the package had uncommitted changes;
    empty outside a git checkout."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=5, cwd=_HERE
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", str(_HERE))
        return commit + ("-dirty" if commit and dirty else "")
    except Exception:
        return ""


def cpu_name() -> str:
    """The CPU model (from /proc/cpuinfo on Linux)."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return name


def num_cpus() -> int | None:
    """CPUs this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def hardware() -> str:
    """One line: CPU model, CPU count, and the GPUs if any."""
    import torch

    s = f"{cpu_name()}, {num_cpus()} vCPUs"
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        s += f"; {n} x {torch.cuda.get_device_name(0)}"
    return s
