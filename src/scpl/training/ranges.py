"""The allowed range of every numeric run setting (:class:`~scpl.training.config.TrainConfig`
field) and the check that names the first value outside it (``TrainConfig.validate``)."""

from __future__ import annotations

import math
import os

from scpl.errors import ConfigError

# The allowed values of every numeric setting, in one place: field -> (low, high, hint).
# ``low`` is inclusive unless marked by OPEN (then the value must be above it); ``high`` is
# inclusive and may be a function (limits of this machine). Bounds well beyond any real run
# keep absurd values (a seed past 64 bits, a 10^8-token document, 10^5 threads) from reaching
# torch, where they end in tracebacks, overflows or a segfault. tests/test_bad_inputs_more.py
# checks every int and float field is listed.
OPEN = "open"
_BIG = 10**12  # step counts: far beyond any run, small enough for every counter


def _max_threads() -> int:
    return 4 * (os.cpu_count() or 1)


RANGES: dict[str, tuple] = {
    "embed_dim": (1, 65536, ""),
    "vocab_size": (3, 10**8, " (<pad>, <unk> and at least one word)"),
    "max_len": (0, 100_000, " (0 = the dataset's default)"),
    "stages": (1, 1024, ""),
    "width": ((0, OPEN), 1024, ", e.g. 0.25 or 1"),
    "epochs": (1, 10**6, ""),
    "batch_size": (1, 2**24, ""),
    "eval_batch_size": (1, 2**24, ""),
    "lr": ((0, OPEN), math.inf, ", e.g. 1e-3"),
    "lr_min": (0, math.inf, ""),
    "weight_decay": (0, math.inf, " (0 = none), e.g. 5e-4"),
    "proj_dim": (1, 65536, ", e.g. 128"),
    "temperature": ((0, OPEN), 1e4, ", e.g. 0.1"),
    "local_ce": (0, 1e4, " (0 = SupCon only)"),
    "local_recon": (0, 1e4, " (0 = off), e.g. 1"),
    "man_momentum": (0, (1, OPEN), ", e.g. 0.995"),
    "man_every": (1, _BIG, " (steps)"),
    "lookahead_units": (1, 1024, ", e.g. 2"),
    "head_pool": (1, 4096, ", e.g. 2 or 4"),
    "val_fraction": (0, (1, OPEN), ""),
    "seed": (0, 2**63 - 1, ""),
    "micro_batches": (1, 2**24, ""),
    "queue_depth": (1, 1024, ""),
    "dist_timeout": (1, 7 * 86400, " seconds"),
    "nproc": (0, 1024, ""),
    "data_parallel": (1, 1024, ""),
    "max_steps": (0, _BIG, " (0 = full epochs)"),
    "train_steps": (0, _BIG, " (0 = --epochs decides)"),
    "warmup_steps": (0, _BIG, " (0 = none)"),
    "decay_fraction": (0, 1, ", e.g. 0.2"),
    "log_every": (1, _BIG, ""),
    "threads": (0, _max_threads, " (0 = PyTorch's default; at most 4 per CPU core)"),
    "checkpoint_every": (0, _BIG, " (0 = epoch ends only)"),
}


def check_ranges(cfg, ranges: dict[str, tuple] = RANGES) -> None:
    """Raise one ConfigError naming the first field of ``cfg`` outside its :data:`RANGES`."""
    for name, (low, high, hint) in ranges.items():
        v = getattr(cfg, name, None)
        if v is None or isinstance(v, bool):
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"{flag} must be a finite number (got {v})")
        lo, lo_open = low if isinstance(low, tuple) else (low, None)
        hi, hi_open = high if isinstance(high, tuple) else (high, None)
        hi = hi() if callable(hi) else hi
        if (v <= lo if lo_open else v < lo) or (v >= hi if hi_open else v > hi):
            left = f"above {_num(lo)}" if lo_open else f">= {_num(lo)}"
            if hi == math.inf:
                rule = left
            else:
                right = f"below {_num(hi)}" if hi_open else f"<= {_num(hi)}"
                rule = f"{left} and {right}"
            raise ConfigError(f"{flag} {_num(v)} is out of range: use a value {rule}{hint}")


def _num(x) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"
