"""Atomic, resumable checkpoints.

A checkpoint holds everything that determines the rest of a run: every stage's parameters,
optimizer and LR-scheduler state (via the executor), all RNG states, the data-order generator's
state at the start of the epoch and the position in it, and the model-selection state. Resuming
from it reproduces the uninterrupted run bit for bit (CPU).

Files are ``<out>/checkpoints/ckpt-<step>.rank<r>.pt``, written to a temporary file, fsynced and
renamed, so a crash (even SIGKILL during a save) leaves the previous checkpoint intact. The last
two are kept. Under ``dist`` every rank saves at the same global step; resume picks the newest
step for which every rank has a file.
"""

from __future__ import annotations

import os
import random
import re
import signal
from pathlib import Path

import numpy as np
import torch

from scpl.atomic import atomic_write
from scpl.errors import ScplError

KEEP = 2
_NAME = re.compile(r"ckpt-(\d+)\.rank(\d+)\.pt$")
_saves = 0


def rng_state() -> dict:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_save(obj, path: Path) -> None:
    """torch.save to a temp file in the same dir, fsync, then rename over ``path``."""

    def count_and_maybe_crash() -> None:
        global _saves
        _saves += 1
        _fault_point(_saves)

    with atomic_write(path, before_replace=count_and_maybe_crash) as f:
        torch.save(obj, f)


def _fault_point(n: int) -> None:
    """Test hook: SCPL_FAULT=kill-during-save:N kills the process after the N-th checkpoint's
    data is written but before it is renamed into place (simulates a crash mid-save)."""
    fault = os.environ.get("SCPL_FAULT", "")
    if fault.startswith("kill-during-save:") and n == int(fault.split(":")[1]):
        os.kill(os.getpid(), signal.SIGKILL)


def save_checkpoint(out_dir: Path, step: int, rank: int, state: dict) -> Path:
    """Write this rank's checkpoint for ``step`` and prune older ones."""
    ck_dir = out_dir / "checkpoints"
    path = ck_dir / f"ckpt-{step:09d}.rank{rank}.pt"
    atomic_save(state, path)
    mine = sorted(p for p in ck_dir.glob(f"ckpt-*.rank{rank}.pt") if _NAME.search(p.name))
    for old in mine[:-KEEP]:
        old.unlink(missing_ok=True)
    return path


def latest_checkpoint(run_dir: Path, rank: int, world_size: int) -> Path:
    """The newest step that every rank has saved; raise a clear error if there is none."""
    ck_dir = Path(run_dir) / "checkpoints"
    if not ck_dir.is_dir():
        raise ScplError(f"no checkpoints in {ck_dir}; pass the --out dir of a run that saved some")
    for stale in ck_dir.glob(f"ckpt-*.rank{rank}.pt.*.tmp"):
        stale.unlink(missing_ok=True)  # a save interrupted by a crash: never renamed, never valid
    by_step: dict[int, set[int]] = {}
    for p in ck_dir.iterdir():
        m = _NAME.search(p.name)
        if m:
            by_step.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    complete = [s for s, ranks in by_step.items() if ranks >= set(range(world_size))]
    if not complete:
        raise ScplError(
            f"no complete checkpoint in {ck_dir} for {world_size} rank(s); start a new run"
        )
    return ck_dir / f"ckpt-{max(complete):09d}.rank{rank}.pt"


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # truncated / corrupt file
        raise ScplError(
            f"checkpoint {path} is unreadable ({e.__class__.__name__}); delete it to use the previous one"
        ) from None
