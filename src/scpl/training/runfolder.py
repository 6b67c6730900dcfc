"""One run per output folder: an exclusive lock held for the run's life, a manifest of the
files the run writes, and an ``--overwrite`` that loses nothing.

* Lock: ``<out>/.scpl.lock`` is ``flock``-ed (exclusive, non-blocking) by the process that owns
  the run (the single process; under ``--nproc`` the launcher, else dist rank 0) and holds its
  PID. A second run into the folder, or a ``--resume`` of a run still training, is refused with
  one line naming that PID. The kernel drops the lock when its holder dies (even SIGKILL), so a
  lock is never stale.
* Manifest: ``<out>/.scpl-files.rank<r>.json`` lists the files rank r writes. Only those (and
  its ``checkpoints/ckpt-<step>.rank<r>.pt``) are the run's; a folder written before manifests
  existed is read by the exact names a run writes (a user's ``metrics_notes.jsonl`` is never
  one of them).
* Overwrite: nothing is touched until every input has been checked and the pipeline is built
  (:meth:`RunFolder.start`); then the old run's files are moved aside into
  ``<out>/.overwritten-<pid>/`` and deleted only once the new run has started cleanly (its first
  logged step or checkpoint, :meth:`RunFolder.started`). A run that fails before that puts the
  old files back (:meth:`RunFolder.abort`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from scpl.atomic import atomic_write
from scpl.errors import ScplError
from scpl.training.checkpoint import latest_checkpoint, load_checkpoint
from scpl.training.checks import check_resume_config
from scpl.training.config import TrainConfig
from scpl.training.outputs import check_writable, out_path

LOCK = ".scpl.lock"
# Set by the launcher for its ranks: it holds the lock for them.
LOCK_ENV = "SCPL_RUN_LOCKED_BY"

_OWNED = [  # exact relative paths (a group: the rank; none: rank 0)
    re.compile(r"summary\.json"),
    re.compile(r"metrics\.jsonl"),
    re.compile(r"tb/metrics"),
    re.compile(r"metrics\.rank(\d+)\.jsonl"),
    re.compile(r"final\.rank(\d+)\.pt"),
    re.compile(r"tb/metrics\.rank(\d+)"),
    re.compile(r"\.scpl-files\.rank(\d+)\.json"),
]
_CKPT = re.compile(r"checkpoints/ckpt-\d+\.rank(\d+)\.pt(?:\.[^/]+\.tmp)?")


def manifest_name(rank: int) -> str:
    return f".scpl-files.rank{rank}.json"


def files_of_rank(rank: int) -> list[str]:
    """The files (and TensorBoard folders) rank ``rank`` writes, besides its checkpoints."""
    log = "metrics" if rank == 0 else f"metrics.rank{rank}"
    names = [f"{log}.jsonl", f"tb/{log}", f"final.rank{rank}.pt", manifest_name(rank)]
    return names + (["summary.json"] if rank == 0 else [])


def _owner(rel: str) -> tuple[int, bool] | None:
    """(rank, is a checkpoint) of a path a run writes, or None."""
    m = _CKPT.fullmatch(rel)
    if m:
        return int(m.group(1)), True
    for pat in _OWNED:
        m = pat.fullmatch(rel)
        if m:
            return (int(m.group(1)) if m.groups() else 0), False
    return None


def run_files(out: Path, rank: int | None = None, world: int = 1) -> list[Path]:
    """Files of a run in ``out``: every rank's (``rank=None``), or those rank ``rank`` of a
    ``world``-rank run answers for (its own; rank 0 also those of ranks >= ``world``, left by
    a larger run). A rank with a manifest owns only what it lists (and its checkpoints)."""
    out = Path(out)
    if not out.is_dir():
        return []
    candidates = [p for p in out.iterdir()]
    for sub in ("checkpoints", "tb"):
        if (out / sub).is_dir():
            candidates += list((out / sub).iterdir())
    manifests: dict[int, set[str] | None] = {}
    found = []
    for p in candidates:
        rel = p.relative_to(out).as_posix()
        owner = _owner(rel)
        if owner is None:
            continue
        r, is_ckpt = owner
        if rank is not None and r != rank and not (rank == 0 and r >= world):
            continue
        if r not in manifests:
            manifests[r] = _read_manifest(out, r)
        listed = manifests[r]
        if listed is not None and not is_ckpt and rel not in listed and rel != manifest_name(r):
            continue
        found.append(p)
    return sorted(found)


def _read_manifest(out: Path, rank: int) -> set[str] | None:
    try:
        return set(json.loads((out / manifest_name(rank)).read_text())["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # none (a run from before manifests) or unreadable: the exact names


class RunFolder:
    """The output folder of one run, claimed (checked and locked) before any work is done."""

    def __init__(self, out: Path, rank: int | None, world: int) -> None:
        self.out, self.rank, self.world = Path(out), rank, world
        self._lock_fd: int | None = None
        self._aside: Path | None = None
        self._moved: list[str] = []

    # -- claiming ----------------------------------------------------------------------------
    @classmethod
    def claim(
        cls, out: Path, *, rank: int | None, world: int, overwrite: bool, lock: bool
    ) -> RunFolder:
        """Create ``out`` if needed, check it is writable, take its lock (``lock``) and refuse
        a folder holding another run unless ``overwrite`` (which touches nothing yet)."""
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise ScplError(f"--out {out} is a file; pass a folder")
        folder = cls(out, rank, world)
        try:
            out.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=out, prefix=".write-test", delete=True)
            probe.close()
        except OSError as e:
            raise ScplError(
                f"output dir {out} is not writable ({e.strerror}); pass --out DIR you can write"
            ) from None
        if lock:
            folder.lock("--out")
        try:
            old = run_files(out, rank, world)
            if old and not overwrite:
                names = ", ".join(str(p.relative_to(out)) for p in old[:3]) + (
                    ", ..." if len(old) > 3 else ""
                )
                raise ScplError(
                    f"output dir {out} holds another run ({names}); pass --resume {out} to "
                    "continue it, --overwrite true to replace it, or another --out"
                )
        except BaseException:
            folder.release()
            raise
        return folder

    @classmethod
    def resume(cls, out: Path, *, rank: int, world: int, lock: bool) -> RunFolder:
        """The folder of a run being resumed, locked (``lock``)."""
        folder = cls(out, rank, world)
        if lock:
            folder.lock("--resume")
        return folder

    def lock(self, flag: str) -> None:
        """Take ``<out>/.scpl.lock`` or raise one line naming the process that holds it."""
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock (one run per folder is then up to the user)
            return
        path = self.out / LOCK
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise ScplError(
                f"run folder {self.out} is not writable ({e.strerror}); pass a folder you can "
                "write"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            what = "a run still training" if flag == "--resume" else "another run"
            raise ScplError(
                f"{flag} {self.out}: {what} holds this folder (scpl PID {holder}); wait for it "
                "to end or stop it, or pass another folder"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def release(self) -> None:
        """Drop the lock (the file stays: unlinking it would let two runs lock two inodes)."""
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)  # closing the last descriptor releases the flock
            self._lock_fd = None

    # -- overwriting -------------------------------------------------------------------------
    def start(self) -> None:
        """The run is about to write: move the old run's files aside (``--overwrite``) and
        write this rank's manifest."""
        old = run_files(self.out, self.rank, self.world)
        if old:
            self._aside = self.out / f".overwritten-{os.getpid()}"
            for p in old:
                rel = p.relative_to(self.out).as_posix()
                dest = self._aside / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(p, dest)  # same file system: a rename, nothing copied
                self._moved.append(rel)
        mine = 0 if self.rank is None else self.rank
        with atomic_write(self.out / manifest_name(mine), "w") as f:
            f.write(json.dumps({"files": files_of_rank(mine)}, indent=1))

    def started(self) -> None:
        """The run has started cleanly: delete the old run's files set aside."""
        if self._aside is not None:
            shutil.rmtree(self._aside, ignore_errors=True)
            self._aside, self._moved = None, []

    def abort(self) -> None:
        """The run failed before it started cleanly: remove its files and put the old run's
        back."""
        if self._aside is None:
            return
        for p in run_files(self.out, self.rank, self.world):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        for rel in self._moved:
            with contextlib.suppress(OSError):
                (self.out / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(self._aside / rel, self.out / rel)
        shutil.rmtree(self._aside, ignore_errors=True)
        self._aside, self._moved = None, []


def claim_folder(cfg: TrainConfig, recipe: str, env, stage_rank: int):
    """The run's folder, checked and locked (a resumed run's: its checkpoint loaded and its
    settings checked), before any data is loaded: a wrong folder fails in a second, not after
    minutes of loading. Returns the folder, the config (a resume restores the thread count
    the run used) and the checkpoint (None for a new run)."""
    dist = cfg.executor == "dist"
    world = env.world_size if dist else 1
    # The launcher holds the lock for its ranks; without it, dist rank 0 does.
    lock = env.rank == 0 if dist else True
    lock = lock and not os.environ.get(LOCK_ENV)
    ck = None
    if cfg.resume:
        out_dir = Path(cfg.resume)
        ck_path = latest_checkpoint(out_dir, stage_rank, cfg.stages if dist else 1)
        check_writable(out_dir)
        folder = RunFolder.resume(out_dir, rank=env.rank if dist else 0, world=world, lock=lock)
        try:
            ck = load_checkpoint(ck_path)
            saved = ck.get("config", {})
            if not cfg.threads and saved.get("threads"):
                # The thread count the run used (saved resolved): another changes the bits.
                cfg = dataclasses.replace(cfg, threads=saved["threads"])
            check_resume_config(saved, cfg)
        except BaseException:
            folder.release()
            raise
    else:
        folder = RunFolder.claim(
            out_path(cfg, recipe), rank=env.rank if dist else None, world=world,
            overwrite=cfg.overwrite, lock=lock,
        )  # fmt: skip
    return folder, cfg, ck
