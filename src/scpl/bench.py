"""Benchmarks: commands that print tables (never timed tests).

``step_ratio`` measures the one-device compute cost of each method relative to BP, timing the
methods round-robin in one process so that machine noise hits all of them alike.
"""

from __future__ import annotations

import statistics
import time

import torch

from scpl.methods import MethodConfig, build_method
from scpl.models import build_model
from scpl.parallel import EXECUTORS, ExecutorOptions, OptimConfig


def step_ratio(
    model: str = "vgg",
    methods: tuple[str, ...] = ("bp", "early-exit", "scpl"),
    batch_size: int = 128,
    input_shape: tuple[int, ...] = (3, 32, 32),
    num_classes: int = 10,
    width: float = 1.0,
    rounds: int = 3,
    warmup: int = 1,
    device: str = "cpu",
) -> list[dict]:
    """Median seconds per training step of each method on one device (sequential executor)."""
    dev = torch.device(device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, *input_shape, generator=g).to(dev)
    y = torch.randint(0, num_classes, (batch_size,), generator=g).to(dev)
    executors = {}
    for name in methods:
        torch.manual_seed(0)
        m = build_model(model, input_shape, num_classes, 4, width)
        meth = build_method(name, MethodConfig())
        executors[name] = EXECUTORS.get("sequential")(
            meth.attach(m),
            meth.local,
            OptimConfig(total_steps=1000),
            [dev],
            ExecutorOptions("sequential"),
            name,
        )
    times: dict[str, list[float]] = {n: [] for n in methods}
    for r in range(warmup + rounds):
        for name, ex in executors.items():
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t0 = time.perf_counter()
            ex.submit(x, y)
            ex.collect()  # forces the step's results to exist
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            if r >= warmup:
                times[name].append(time.perf_counter() - t0)
    base = statistics.median(times[methods[0]])
    return [
        {
            "method": n,
            "median_s": statistics.median(t),
            "ratio_vs_" + methods[0]: statistics.median(t) / base,
            "samples": t,
        }
        for n, t in times.items()
    ]


def print_table(rows: list[dict], title: str) -> None:
    keys = [k for k in rows[0] if k != "samples"]
    print(f"# {title}")
    print("| " + " | ".join(keys) + " |")
    print("|" + "|".join("---" for _ in keys) + "|")
    for r in rows:
        print(
            "| "
            + " | ".join(f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k]) for k in keys)
            + " |"
        )
