"""Atomic, resumable checkpoints.

A checkpoint holds everything that determines the rest of a run: every stage's parameters,
optimizer and LR-scheduler state (via the executor), all RNG states, the data-order generator's
state at the start of the epoch and the position in it, and the model-selection state. Resuming
from it reproduces the uninterrupted run bit for bit (CPU).

Files are ``<out>/checkpoints/ckpt-<step>.rank<r>.pt``, written to a temporary file, fsynced and
renamed, so a crash (even SIGKILL during a save) leaves the previous checkpoint intact. The last
two are kept. Under ``dist`` every rank saves at the same global step; resume picks the newest
step for which every rank has a file.

Checkpoints hold only tensors and plain Python values (the RNG states too) and are loaded with
``torch.load(weights_only=True)``: a crafted file in a run folder cannot run code on --resume.
"""

from __future__ import annotations

import contextlib
import os
import pickle
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
    """Every RNG's state as tensors and plain values (loadable with weights_only=True)."""
    kind, key, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "key": torch.from_numpy(np.asarray(key, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (
            n["kind"],
            n["key"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_save(obj, path: Path) -> None:
    """torch.save to a temp file in the same dir, fsync, then rename over ``path``.

    A failed write (disk full, read-only or vanished folder) raises one ScplError naming the
    path; Ctrl-C during the write is a plain KeyboardInterrupt. Either way ``path`` keeps its
    previous content."""

    def count_and_maybe_crash() -> None:
        global _saves
        _saves += 1
        _fault_point(_saves)

    try:
        with atomic_write(path, before_replace=count_and_maybe_crash) as f:
            torch.save(obj, f)
    except (OSError, RuntimeError) as e:
        # torch.save reports a failed write as RuntimeError (inline_container.cc) whose context
        # is the real cause; find it so the user sees that, once.
        cause: BaseException | None = e
        while cause is not None and not isinstance(cause, OSError | KeyboardInterrupt):
            cause = cause.__context__
        if isinstance(cause, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        if cause is None:
            raise
        reason = cause.strerror or cause.__class__.__name__
        # Only promise a checkpoint to resume from when one exists (not for a first save).
        earlier = [q for q in path.parent.glob("**/ckpt-*.pt") if q != path]
        then = (
            "--resume: the previous checkpoint is intact"
            if earlier
            else "start the run again: it has no earlier checkpoint to resume from"
        )
        raise ScplError(
            f"could not write {path} ({reason}); free space or make the folder writable (or pass "
            f"--out on another disk) and {then}"
        ) from None


def _fault_point(n: int) -> None:
    """Test hook: SCPL_FAULT=kill-during-save:N kills the process after the N-th checkpoint's
    data is written but before it is renamed into place (simulates a crash mid-save)."""
    fault = os.environ.get("SCPL_FAULT", "")
    if fault.startswith("kill-during-save:") and n == int(fault.split(":")[1]):
        os.kill(os.getpid(), signal.SIGKILL)


def checkpoint_path(out_dir: Path, step: int, rank: int) -> Path:
    """Where rank ``rank`` saves its checkpoint of ``step``."""
    return Path(out_dir) / "checkpoints" / f"ckpt-{step:09d}.rank{rank}.pt"


def save_checkpoint(out_dir: Path, step: int, rank: int, state: dict) -> Path:
    """Write this rank's checkpoint for ``step`` and prune older ones."""
    ck_dir = out_dir / "checkpoints"
    path = checkpoint_path(out_dir, step, rank)
    atomic_save(state, path)
    # Keep the KEEP newest by step; the file just written is never deleted (the folder holds
    # only this run's checkpoints: train() refuses a folder with another run's files).
    mine = sorted(
        (int(m.group(1)), p)
        for p in ck_dir.glob(f"ckpt-*.rank{rank}.pt")
        if (m := _NAME.search(p.name))
    )
    for _, old in mine[:-KEEP]:
        if old != path:
            with contextlib.suppress(OSError):
                old.unlink(missing_ok=True)
    return path


def branch_point_path(out_dir: Path, step: int, rank: int) -> Path:
    """Where :func:`save_branch_point` keeps rank ``rank``'s state after ``step``."""
    return Path(out_dir) / "branches" / f"ckpt-{step:09d}.rank{rank}.pt"


def save_branch_point(out_dir: Path, step: int, rank: int, state: dict) -> Path:
    """Keep this rank's state after ``step`` in ``<out>/branches/``, never pruned: runs of other
    lengths (WSD budgets) start from it."""
    path = branch_point_path(out_dir, step, rank)
    atomic_save(state, path)
    return path


def latest_checkpoint(run_dir: Path, rank: int, world_size: int | None, tidy: bool = True) -> Path:
    """The newest step that every rank has saved (``world_size=None``: that ``rank`` has
    saved); raise a clear error if there is none. ``tidy`` deletes saves a crash left
    unfinished; a reader that may run beside the training (``--plan``) passes False, since
    the newest of those may be a save still in progress."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ScplError(
            f"--resume {run_dir}: no such folder; pass the output folder of an earlier run"
        )
    ck_dir = run_dir / "checkpoints"
    if not ck_dir.is_dir():
        raise ScplError(f"no checkpoints in {ck_dir}; pass the --out dir of a run that saved some")
    for stale in ck_dir.glob(f"ckpt-*.rank{rank}.pt.*.tmp") if tidy else ():
        # A save interrupted by a crash: never renamed, never valid (kept if we may not delete).
        with contextlib.suppress(OSError):
            stale.unlink(missing_ok=True)
    by_step: dict[int, set[int]] = {}
    for p in ck_dir.iterdir():
        m = _NAME.search(p.name)
        if m:
            by_step.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    need = set(range(world_size)) if world_size is not None else {rank}
    complete = [s for s, ranks in by_step.items() if ranks >= need]
    if not complete:
        raise ScplError(
            f"no complete checkpoint in {ck_dir} for {world_size or 1} rank(s); start a new run"
        )
    return ck_dir / f"ckpt-{max(complete):09d}.rank{rank}.pt"


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint holding only tensors and plain values (never unpickles code)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # weights_only refuses anything but tensors and plain values: a crafted or foreign file.
        lines = [ln.strip() for ln in str(e).splitlines() if "GLOBAL" in ln or "nsupported" in ln]
        first = lines[0][:120] if lines else e.__class__.__name__
        raise ScplError(
            f"checkpoint {path} holds objects other than tensors and plain values and was not "
            f"loaded (loading it could run code: {first}); delete it, or resume from a folder "
            "this version of scpl wrote"
        ) from None
    except OSError as e:
        raise ScplError(
            f"checkpoint {path} cannot be read ({e.strerror or e.__class__.__name__}); check the "
            "path and its permissions"
        ) from None
    except Exception as e:  # truncated / corrupt file
        raise ScplError(
            f"checkpoint {path} is unreadable ({e.__class__.__name__}); delete it to use the previous one"
        ) from None
