"""Long-run memory check: resident memory over many small training steps, per executor.

A leak in an executor (a queue that grows, graphs kept alive, metrics held on the device)
shows up as resident memory that keeps rising; a healthy run stays flat after warm-up.
"""

from __future__ import annotations

import gc
import os
import time

import torch

from scpl.api import pipeline
from scpl.errors import ConfigError
from scpl.methods import MethodConfig
from scpl.models import build_model
from scpl.parallel import OptimConfig


def rss_mb() -> float:
    """Current resident set size of this process in MiB (Linux /proc; else peak RSS)."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def soak(
    executor: str, steps: int, num_samples: int = 20, batch_size: int = 16, log_every: int = 50
) -> dict:
    """Train a tiny 4-stage SCPL convnet for ``steps`` steps and sample RSS ``num_samples`` times."""
    if steps < 20:
        raise ConfigError(f"--soak {steps}: use at least 20 steps")
    torch.manual_seed(0)
    model = build_model("convnet", (1, 8, 8), 10, 4, 0.125)
    pipe = pipeline(
        model,
        "scpl",
        devices="cpu",
        optimizer=OptimConfig(total_steps=steps, schedule="cosine"),
        schedule="scpl",
        executor=executor,
        method_config=MethodConfig(proj_dim=32),
    )
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (batch_size,), generator=g)
    every = max(1, steps // num_samples)
    samples: list[tuple[int, float]] = []
    t0 = time.perf_counter()
    with pipe:
        for step in range(1, steps + 1):
            pipe.step(x, y)
            if step % log_every == 0:
                pipe.metrics()  # as the training loop does
            if step % every == 0:
                pipe.flush()
                gc.collect()
                samples.append((step, rss_mb()))
    # Compare against the first sample after warm-up (allocator pools fill during the first 10%).
    warm = [s for s in samples if s[0] >= steps // 10] or samples
    base = warm[0][1]
    return {
        "executor": executor,
        "steps": steps,
        "rss_start_mb": base,
        "rss_end_mb": samples[-1][1],
        "rss_max_mb": max(r for _, r in warm),
        "drift_pct": 100.0 * (samples[-1][1] - base) / base,
        "max_rise_pct": 100.0 * (max(r for _, r in warm) - base) / base,
        "seconds": time.perf_counter() - t0,
        "samples": samples,
    }
