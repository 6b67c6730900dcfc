"""What a run writes: its output folder, metrics log (JSON lines + TensorBoard), summary and
provenance, and the progress bar."""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
import tempfile
from pathlib import Path

import torch

from scpl.atomic import atomic_write
from scpl.errors import ConfigError, ScplError
from scpl.provenance import git_commit, hardware
from scpl.training.config import TrainConfig


def cpu_copy(state: dict) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def prepare_out_dir(cfg: TrainConfig, recipe: str) -> Path:
    """Create the output dir and check it is writable before any work is done."""
    fields = dataclasses.asdict(cfg) | {"recipe": recipe}
    try:
        out = Path(cfg.out.format(**fields))
    except KeyError as e:
        raise ConfigError(
            f"--out {cfg.out!r} names unknown field {e}; use config field names"
        ) from None
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".write-test", delete=True)
        probe.close()
    except OSError as e:
        raise ScplError(
            f"output dir {out} is not writable ({e.strerror}); pass --out DIR you can write"
        ) from None
    return out


def atomic_write_json(path: Path, obj) -> None:
    """Write JSON via temp file + fsync + rename so a crash never leaves a half-written file."""
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2, default=str)


class MetricsLog:
    """JSON lines (always) and TensorBoard scalars (when installed)."""

    def __init__(self, out_dir: Path, tensorboard: bool, name: str = "metrics.jsonl") -> None:
        self.f = open(out_dir / name, "a")
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out_dir / "tb" / name.removesuffix(".jsonl")))
            except Exception:  # tensorboard not installed: JSONL is enough
                self.tb = None

    def write(self, rec: dict) -> None:
        self.f.write(json.dumps(rec) + "\n")
        self.f.flush()
        if self.tb is not None:
            for k, v in rec.items():
                if isinstance(v, float) and k not in ("epoch", "step"):
                    self.tb.add_scalar(f"{rec['kind']}/{k}", v, rec["step"])

    def close(self) -> None:
        self.f.close()
        if self.tb is not None:
            self.tb.close()


def progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        disable=None if enabled else True,
        leave=False,
        file=sys.stderr,
        dynamic_ncols=True,
    )


def versions() -> dict:
    return {
        "scpl_commit": git_commit(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hardware": hardware(),
        "cuda": torch.version.cuda,
    }
