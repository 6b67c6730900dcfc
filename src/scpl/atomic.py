"""Atomic file writes: a crash at any point leaves the target either old or complete."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_write(
    path: Path,
    mode: str = "wb",
    suffix: str = ".tmp",
    durable: bool = True,
    before_replace: Callable[[], None] | None = None,
) -> Iterator:
    """Yield a temp file next to ``path``; on success (fsync and) rename it over ``path``.

    ``durable`` also fsyncs the directory so the rename survives a power loss (checkpoints,
    summaries); caches skip it. ``before_replace`` runs between writing and renaming (a test
    hook for crashes mid-save). On any error the temp file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=suffix)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; files get the user's usual mode
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
        if durable:
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    """The process umask (read without changing it where /proc allows)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
