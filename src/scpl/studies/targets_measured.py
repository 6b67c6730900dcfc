"""`scpl bench --targets`: VGG with op costs measured on this machine, and SCPL's one-device
step time against BP's."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence

from scpl.perf.balance import partition_min_max, split_report
from scpl.perf.costmodel import Costs, stage_times
from scpl.perf.emulate import scale_costs
from scpl.studies.targets_rows import emulated_row, fmt_row
from scpl.studies.targets_setup import NETS, TargetsOptions
from scpl.studies.targets_verify import RowModel

# -- measured VGG ---------------------------------------------------------------------------


def cpu_op_costs(w, runs: Sequence[tuple[str, list[int]]], steps: int) -> list[Costs]:
    """Op costs of each (method, partition) of workload ``w`` on one device, the runs taking
    turns step by step (load from other processes hits them alike). Each step's op spans are
    scaled by its thread CPU time / wall time (the sequential executor runs every op in this
    thread, one intra-op thread), which removes the time the step waited for a core; the
    median over ``steps`` timed steps (after one warm-up step) is kept."""
    from scpl.perf.measure import model_pipeline, workload_batch

    x, y = workload_batch(w)
    pipes = [model_pipeline(w, m, len(part), partition=part) for m, part in runs]
    spans: list[dict[tuple[int, str], list[float]]] = [{} for _ in runs]
    try:
        for step in range(1 + steps):
            for i, pipe in enumerate(pipes):
                t0, c0 = time.perf_counter(), time.thread_time()
                pipe.step(x, y)
                pipe.metrics()
                wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
                if step == 0:
                    continue
                f = min(1.0, cpu / wall) if wall > 0 else 1.0
                for e in pipe.executor.recorder.events:
                    if e.batch == step and e.kind in ("F", "L", "B", "U"):
                        spans[i].setdefault((e.stage, e.kind), []).append((e.end - e.start) * f)
    finally:
        for pipe in pipes:
            pipe.close()
    out = []
    for sp in spans:
        c: Costs = {}
        for (st, k), v in sp.items():
            c.setdefault(st, {})[k] = statistics.median(v)
        out.append(c)
    return out


def measured_rows(opts: TargetsOptions, log) -> tuple[list[dict], dict]:
    """VGG at ``measured_width`` with op costs measured on this machine: the time-balanced
    split, SCPL pipelined vs one-device BP (both emulated at the measured costs)."""
    from scpl.models import build_model
    from scpl.perf.balance import UnitCosts, time_stage_costs
    from scpl.perf.emulate import stage_totals
    from scpl.perf.measure import Workload

    net = NETS["vgg"]
    w = opts.measured_width
    t0 = time.perf_counter()
    wl = Workload("vgg", w, net.input_shape, net.batch_size, opts.head, opts.proj_dim)
    # Units: each as its own stage, under BP (body: F+B+U) and SCPL (+ head and loss).
    n = sum(build_model("vgg", net.input_shape, 10, opts.stages, w).partition)
    ones = [1] * n
    bp_u, scpl_u = cpu_op_costs(wl, [("bp", ones), ("scpl", ones)], opts.measured_steps)
    body, full = stage_totals(bp_u, n), stage_totals(scpl_u, n)
    head = [max(0.0, f - b) for f, b in zip(full, body, strict=True)]
    shapes = build_model("vgg", net.input_shape, 10, n, w, ones).stage_shapes
    out_bytes = [4.0 * net.batch_size * math.prod(sh) for sh in shapes]
    costs = time_stage_costs(UnitCosts(body, head, "time"), out_bytes)
    auto = partition_min_max(costs, opts.stages)
    scpl, bp1 = cpu_op_costs(wl, [("scpl", auto), ("bp", [n])], opts.measured_steps)
    log(f"  measured op costs (width {w}) [{time.perf_counter() - t0:.1f}s]")
    work = ("F", "L", "B", "U")
    scpl = {s: {k: v for k, v in d.items() if k in work} for s, d in scpl.items()}
    bp1 = {s: {k: v for k, v in d.items() if k in work} for s, d in bp1.items()}
    f = opts.stage_ms * 1e-3 / max(stage_times(scpl))
    own = RowModel(net, tuple(auto), opts.head)
    costs = scale_costs(scpl, f)
    rows = [emulated_row("vgg-measured scpl auto", "scpl", "scpl", costs, 1, opts, verify=own)]
    rows[-1].update(partition=auto, head=opts.head, kind="scpl")
    log(fmt_row(rows[-1]))
    rows.append(
        emulated_row(
            "vgg-measured bp one device",
            "sequential",
            "bp",
            scale_costs(bp1, f),
            1,
            opts,
            executor="sequential",
        )
    )
    rows[-1].update(partition=[sum(auto)], head="-", kind="bp-1")
    log(fmt_row(rows[-1]))
    detail = {
        "width": w,
        "auto_partition": auto,
        "unit_costs_ms": [round(c * 1e3, 2) for c in costs.body],
        "split": split_report(costs, {"auto": auto}),
        "scpl_stage_ms": [round(t * 1e3, 2) for t in stage_times(scpl)],
        "bp_one_device_ms": round(stage_times(bp1)[0] * 1e3, 2),
    }
    return rows, detail


# -- one-device step time -------------------------------------------------------------------


def step_ratio(opts: TargetsOptions, log) -> dict:
    """SCPL step time / BP step time on one device (VGG, light head, sequential executor),
    the two taking turns step by step; each step's time is its thread's CPU time (one
    intra-op thread), which other processes on a shared machine do not inflate."""
    from scpl.perf.measure import Workload, model_pipeline, workload_batch

    w = Workload(
        "vgg",
        opts.step_ratio_width,
        (3, 32, 32),
        opts.step_ratio_batch,
        head=opts.head,
        proj_dim=opts.proj_dim,
    )
    x, y = workload_batch(w)
    pipes = {m: model_pipeline(w, m, opts.stages, record=False) for m in ("bp", "scpl")}
    times: dict[str, list[float]] = {m: [] for m in pipes}
    walls: dict[str, list[float]] = {m: [] for m in pipes}
    try:
        # Warm-up on a small batch: optimizer state, allocator, lazy set-up; none of it is timed.
        for pipe in pipes.values():
            pipe.step(x[:8], y[:8])
            pipe.metrics()
        for r in range(opts.step_ratio_rounds):
            for m, pipe in pipes.items():
                c0, t0 = time.thread_time(), time.perf_counter()
                pipe.step(x, y)
                pipe.metrics()
                times[m].append(time.thread_time() - c0)
                walls[m].append(time.perf_counter() - t0)
            log(
                f"  step-ratio round {r + 1}: "
                + ", ".join(f"{m} {walls[m][-1]:.2f}s wall {times[m][-1]:.2f}s cpu" for m in pipes)
            )
    finally:
        for pipe in pipes.values():
            pipe.close()
    bp, scpl = statistics.median(times["bp"]), statistics.median(times["scpl"])
    return {
        "width": opts.step_ratio_width,
        "batch": opts.step_ratio_batch,
        "head": opts.head,
        "cpu_s_bp": bp,
        "cpu_s_scpl": scpl,
        "wall_s_bp": statistics.median(walls["bp"]),
        "wall_s_scpl": statistics.median(walls["scpl"]),
        "ratio": scpl / bp,
    }
