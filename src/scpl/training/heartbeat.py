"""Liveness of dist ranks: a heartbeat file per rank, so a rank whose peer stopped answering can
name the rank that stalled instead of a healthy one that was waiting."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

from scpl.errors import ScplError


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

    def blame(self, e: ScplError, cfg) -> ScplError | None:
        """The error naming the rank that went silent while this one waited on it (``e`` is
        this rank's own error, kept in brackets); None when no other rank went silent.
        ``cfg``: the run's config (its stages and replicas name a rank's place)."""
        silent = self.silent()
        if not silent and any(w in str(e) for w in ("died", "stalled", "timed out", "closed")):
            # A peer's loss can reach us before its heartbeat is old enough to count (a
            # replica that failed at once because another rank was killed): give the
            # rank that really went silent time to show, the longest silent first.
            deadline = time.time() + self.SILENT_S + 1.0
            while not silent and time.time() < deadline:
                time.sleep(0.25)
                silent = self.silent()
        if not silent:
            return None
        r, age = silent[0]
        return ScplError(
            f"rank {r} ({_where(r, cfg)}) died or stalled while rank {self.rank} "
            f"({_where(self.rank, cfg)}) waited ({age:.0f} s without a sign of life); stopping -- "
            f"check rank {r}, then restart with --resume OUT_DIR [{e}]"
        )

    def close(self) -> None:
        self._stop.set()


def _where(rank: int, cfg) -> str:
    """'stage l' of a dist rank, with its replica under data parallelism."""
    stage, replica = rank % cfg.stages, rank // cfg.stages
    return f"stage {stage} of replica {replica}" if cfg.data_parallel > 1 else f"stage {stage}"
