"""Liveness of dist ranks: a heartbeat file per rank, so a rank whose peer stopped answering can
name the rank that stalled instead of a healthy one that was waiting."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path


class Heartbeat:
    """dist: every rank touches ``<out>/.heartbeat/rank<r>`` each second from a thread, so a
    rank whose peer stopped answering can tell the rank that stalled or died (no heartbeat)
    from one that was only waiting in turn (ranks on one host share the folder; elsewhere no
    files are seen and messages stay as the executor wrote them)."""

    INTERVAL_S = 1.0
    SILENT_S = 5.0  # no heartbeat for this long: stalled (e.g. SIGSTOP, swapping) or dead

    def __init__(self, out_dir: Path, rank: int, world_size: int) -> None:
        self.dir, self.rank, self.world_size = Path(out_dir) / ".heartbeat", rank, world_size
        self.path = self.dir / f"rank{rank}"
        self._stop = threading.Event()
        with contextlib.suppress(OSError):
            self.dir.mkdir(exist_ok=True)
            self.path.touch()
        self._thread = threading.Thread(target=self._beat, name="scpl-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.INTERVAL_S):
            with contextlib.suppress(OSError):
                self.path.touch()

    def silent(self) -> list[tuple[int, float]]:
        """Other ranks without a heartbeat for SILENT_S, longest silent first: (rank, seconds)."""
        now, out = time.time(), []
        for r in range(self.world_size):
            try:
                age = now - (self.dir / f"rank{r}").stat().st_mtime
            except OSError:
                continue
            if r != self.rank and age > self.SILENT_S:
                out.append((r, age))
        return sorted(out, key=lambda x: -x[1])

    def close(self) -> None:
        self._stop.set()
