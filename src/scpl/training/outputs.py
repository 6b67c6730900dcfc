"""What a run writes: its output folder, metrics log (JSON lines + TensorBoard), summary and
provenance, and progress (a bar on a terminal, a line now and then when unattended).

One folder holds one run (claimed, locked and overwritten by :mod:`scpl.training.runfolder`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from scpl.atomic import atomic_write
from scpl.errors import ConfigError, ScplError
from scpl.provenance import git_commit, hardware
from scpl.training.config import TrainConfig, result_fields

# Seconds between progress lines of an unattended run (stdout not a terminal).
PROGRESS_SECONDS = 30.0


def cpu_copy(state: dict) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def config_id(cfg: TrainConfig) -> str:
    """Eight hex digits naming every setting that changes the result (see
    :data:`scpl.training.config.FIELD_CLASS`): runs that differ get different default folders."""
    values = dataclasses.asdict(cfg)
    key = json.dumps({k: values[k] for k in result_fields(type(cfg))}, sort_keys=True, default=str)
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def out_path(cfg: TrainConfig, recipe: str) -> Path:
    """The output folder ``cfg.out`` names, with its ``{field}`` placeholders filled in."""
    fields = dataclasses.asdict(cfg) | {"recipe": recipe, "config_id": config_id(cfg)}
    try:
        return Path(cfg.out.format(**fields))
    except KeyError as e:
        raise ConfigError(
            f"--out {cfg.out!r} names unknown field {e}; use config field names or {{config_id}}"
        ) from None
    except (ValueError, IndexError, AttributeError) as e:
        raise ConfigError(
            f"--out {cfg.out!r} is not a valid folder template ({e}); write a literal brace as "
            "{{ or }}, or name config fields as {model}"
        ) from None


def check_writable(out: Path) -> None:
    """Raise a one-line error unless ``out`` is a folder this process can write (a resumed run
    writes checkpoints, metrics and its summary there)."""
    try:
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".write-test", delete=True)
        probe.close()
    except OSError as e:
        raise ScplError(
            f"run folder {out} is not writable ({e.strerror}); make it writable, or copy the run "
            "somewhere writable and --resume that copy"
        ) from None


def strict(obj):
    """``obj`` with every non-finite float replaced by None: strict JSON (no NaN/Infinity)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict(v) for v in obj]
    return obj


def dumps(obj, **kwargs) -> str:
    """Strict JSON text (NaN and infinities become null)."""
    return json.dumps(strict(obj), allow_nan=False, default=str, **kwargs)


def atomic_write_json(path: Path, obj) -> None:
    """Write strict JSON via temp file + fsync + rename so a crash never leaves a half-written
    file."""
    text = dumps(obj, indent=2)
    with atomic_write(path, "w") as f:
        f.write(text)


class MetricsLog:
    """JSON lines (always) and TensorBoard scalars (when installed).

    ``resume_step``: the step of the checkpoint a resumed run continues from; records logged
    after it (by the interrupted process) are dropped, so no step appears twice."""

    def __init__(
        self,
        out_dir: Path,
        tensorboard: bool,
        name: str = "metrics.jsonl",
        resume_step: int | None = None,
        echo=print,
    ) -> None:
        path = out_dir / name
        if resume_step is not None and path.exists():
            keep = []
            for line in path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # a line cut short by the crash
                if isinstance(rec, dict) and rec.get("step", 0) <= resume_step:
                    keep.append(line)
            with atomic_write(path, "w") as f:
                f.write("".join(line + "\n" for line in keep))
        self.f = open(path, "a")
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out_dir / "tb" / name.removesuffix(".jsonl")))
            except ImportError:
                echo(
                    "scpl: note: tensorboard is not installed; writing metrics.jsonl only "
                    "(pip install tensorboard, or pass --tensorboard false)"
                )

    def write(self, rec: dict) -> None:
        self.f.write(dumps(rec) + "\n")
        self.f.flush()
        if self.tb is not None:
            for k, v in rec.items():
                if isinstance(v, float) and k not in ("epoch", "step"):
                    self.tb.add_scalar(f"{rec['kind']}/{k}", v, rec["step"])

    def close(self) -> None:
        self.f.close()
        if self.tb is not None:
            self.tb.close()


class ProgressLines:
    """Progress of an unattended run (stdout not a terminal: nohup, a scheduler, ``| tee``):
    one line every ``every`` steps or ``seconds``, whichever comes first, with epoch, step,
    losses, samples/s and ETA."""

    def __init__(self, echo, total_steps: int, every: int, seconds: float = PROGRESS_SECONDS):
        self.echo, self.total, self.every, self.seconds = echo, total_steps, every, seconds
        self.t0 = self.last = time.perf_counter()
        self.steps = self.samples = 0

    def step(self, epoch: str, step: int, samples: int, means: dict[str, float]) -> None:
        """Count one step; print a line when one is due (``means``: the latest logged losses)."""
        self.steps += 1
        self.samples += samples
        now = time.perf_counter()
        if self.steps % self.every and now - self.last < self.seconds:
            return
        self.last = now
        elapsed = max(now - self.t0, 1e-9)
        left = max(self.total - step, 0) * elapsed / self.steps
        losses = " ".join(f"{k.replace('stage', 's')}={v:.3f}" for k, v in means.items())
        self.echo(
            f"progress: {epoch} step {step}/{self.total} {losses} "
            f"{self.samples / elapsed:.1f} samples/s ETA {_hms(left)}".replace("  ", " ")
        )


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def progress(total: int, desc: str, enabled: bool):
    """A progress bar on a terminal (stderr); nothing elsewhere (see :class:`ProgressLines`)."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        disable=None if enabled else True,
        leave=False,
        file=sys.stderr,
        dynamic_ncols=True,
    )


def unattended() -> bool:
    """Is stdout something other than a terminal (a file, a pipe, a scheduler's log)?"""
    try:
        return not sys.stdout.isatty()
    except (AttributeError, ValueError):
        return True


def versions() -> dict:
    return {
        "scpl_commit": git_commit(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hardware": hardware(),
        "cuda": torch.version.cuda,
    }
