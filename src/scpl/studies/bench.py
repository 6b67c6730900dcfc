"""Benchmarks: commands that print tables (never timed tests).

``step_ratio`` measures the one-device compute cost of each method relative to BP, timing the
methods round-robin in one process so that machine noise hits all of them alike.

``run_bench`` (``scpl bench``) measures the pipeline. This machine has about one CPU core, so K
devices are *emulated*: every op of a tiny real model (convnet, width 0.125, 8x8 inputs: its real
compute is small next to the emulated time) holds its stage for a chosen duration while releasing
the GIL, as a GPU kernel would. Suites:

* ``equal``    equal per-stage costs (``--emulate``, default EQUAL_SPEC), K in {1, 2, 4, 8};
* ``vgg``      the paper VGG's unequal per-stage F/L/B/U costs, measured on this CPU with the
               recorder and scaled so the slowest stage takes ``vgg_stage_ms``;
* ``dist``     scpl on the dist executor (one process per stage, gloo), K = 2, 4;
* ``sim``      every emulated row is replayed by the simulator (its error is a column);
* ``project``  the simulator on VGG's unscaled measured op costs (projected K-device rates);
* ``balance``  paper split vs time-/parameter-balanced split (measured stage costs, simulator);
* ``real``     real compute: one-device SCPL/BP step-time ratio, augmentation share of a step,
               dist vs local CPU time for the same work.

Throughput is the steady-state rate (mini-batches finished per second once the pipeline is
full, see :func:`scpl.perf.simulate.steady_rate`), times the batch size.
"""

from __future__ import annotations

import csv
import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

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
    """Print rows as a Markdown table (floats with 3 decimals; 'samples' lists left out)."""
    print(format_table(rows, title))


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v != v:  # NaN
            return "-"
        a = abs(v)
        return f"{v:.0f}" if a >= 1000 else f"{v:.1f}" if a >= 100 else f"{v:.3g}"
    if isinstance(v, list | tuple):
        return ",".join(map(str, v))
    return "-" if v is None else str(v)


def format_table(rows: list[dict], title: str = "") -> str:
    if not rows:
        return f"# {title}\n(no rows)\n"
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys and k != "samples" and not k.startswith("_")]
    lines = [f"# {title}"] if title else []
    lines.append("| " + " | ".join(keys) + " |")
    lines.append("|" + "|".join("---" for _ in keys) + "|")
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(k)) for k in keys) + " |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------
# Emulated pipeline runs
# ------------------------------------------------------------------------------------------

EQUAL_SPEC = "F=15ms,L=3ms,B=30ms,U=2ms"
"""Default equal per-stage costs (50 ms of device time per stage and mini-batch)."""


@dataclass
class Proxy:
    """The tiny real model that carries emulated durations (its own compute is small)."""

    model: str = "convnet"
    width: float = 0.125
    input_shape: tuple[int, ...] = (1, 8, 8)
    batch_size: int = 16
    head: str = "linear"
    proj_dim: int = 32
    num_classes: int = 10
    model_kwargs: dict = field(default_factory=dict)  # e.g. vocab_size for text models


def method_for(schedule: str, method: str = "scpl") -> str:
    """The method a schedule runs in the bench: BP for nmp/gpipe, ``method`` otherwise."""
    return "bp" if schedule in ("nmp", "gpipe") else method


def make_executor(
    executor: str,
    schedule: str,
    method: str,
    num_stages: int,
    num_micro: int = 1,
    emulate: dict | None = None,
    record: bool = True,
    proxy: Proxy | None = None,
    queue_depth: int = 2,
    partition: Sequence[int] | None = None,
    device: str = "cpu",
    seed: int = 0,
):
    proxy = proxy or Proxy()
    torch.manual_seed(seed)
    model = build_model(
        proxy.model,
        proxy.input_shape,
        proxy.num_classes,
        num_stages,
        proxy.width,
        partition,
        **proxy.model_kwargs,
    )
    meth = build_method(method, MethodConfig(head=proxy.head, proj_dim=proxy.proj_dim))
    return EXECUTORS.get(executor)(
        meth.attach(model),
        meth.local,
        OptimConfig(total_steps=1000),
        [torch.device(device)],
        ExecutorOptions(
            schedule=schedule,
            num_micro=num_micro,
            queue_depth=queue_depth,
            emulate=emulate,
            record=record,
        ),
        method,
    )


def make_batches(steps: int, proxy: Proxy, seed: int = 0) -> list:
    """``steps`` random batches for the proxy (images or, for a (T,) input shape, text)."""
    from scpl.perf.emulate import synthetic_batch

    g = torch.Generator().manual_seed(seed)
    vocab = proxy.model_kwargs.get("vocab_size", 1000)
    return [
        synthetic_batch(proxy.input_shape, proxy.batch_size, proxy.num_classes, g, vocab)
        for _ in range(steps)
    ]


@dataclass
class RunResult:
    events: list
    wall_s: float
    cpu_s: float
    steps: int
    batch_size: int


def run_emulated(
    executor: str,
    schedule: str,
    method: str,
    num_stages: int,
    num_micro: int = 1,
    emulate: dict | None = None,
    steps: int = 12,
    proxy: Proxy | None = None,
    queue_depth: int = 2,
    torch_profiler: str | None = None,
    warmup_batches: int = 1,
) -> RunResult:
    """Train ``steps`` mini-batches of the proxy with a recorder; returns their timeline.

    ``warmup_batches`` run first and are flushed (lazy initialisation, the first optimizer step),
    so the recorded batches start on an idle, warm pipeline; they are renumbered from 0 and time
    starts at their first op. ``torch_profiler``: also wrap the timed batches in torch.profiler
    and write its Chrome trace there."""
    proxy = proxy or Proxy()
    ex = make_executor(
        executor, schedule, method, num_stages, num_micro, emulate, True, proxy, queue_depth
    )
    batches = make_batches(warmup_batches + steps, proxy)
    prof = None
    try:
        for x, y in batches[:warmup_batches]:
            ex.submit(x, y)
        ex.flush()
        if torch_profiler:
            from torch.profiler import ProfilerActivity, profile

            acts = [ProfilerActivity.CPU]
            if torch.cuda.is_available():
                acts.append(ProfilerActivity.CUDA)
            kw = {}
            try:  # the stage workers are threads: record them all, not only this one
                from torch._C._profiler import _ExperimentalConfig

                kw["experimental_config"] = _ExperimentalConfig(profile_all_threads=True)
            except (ImportError, TypeError):
                pass
            prof = profile(activities=acts, **kw)
            prof.__enter__()
        c0, t0 = time.process_time(), time.perf_counter()
        for x, y in batches[warmup_batches:]:
            ex.submit(x, y)
        ex.flush()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        ex.collect()
    finally:
        ex.close()
        if prof is not None:
            prof.__exit__(None, None, None)
            Path(torch_profiler).parent.mkdir(parents=True, exist_ok=True)
            prof.export_chrome_trace(str(torch_profiler))
    events = rebase(ex.recorder.events, warmup_batches)
    return RunResult(events, wall, cpu, steps, proxy.batch_size)


def rebase(events, skip_batches: int) -> list:
    """Drop eval and the first ``skip_batches`` batches; renumber batches from 0 and shift time
    so the first remaining op starts at 0."""
    from scpl.parallel.runner import Event

    ev = [e for e in events if e.batch >= skip_batches]
    if not ev:
        return []
    t0 = min(e.start for e in ev)
    return [
        Event(e.stage, e.kind, e.batch - skip_batches, e.mb, e.start - t0, e.end - t0, e.device)
        for e in ev
    ]


# -- dist: one process per stage ------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dist_worker(rank: int, world: int, port: int, kw: dict, out_dir: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        proxy = Proxy(**kw["proxy"])
        ex = make_executor(
            "dist",
            kw["schedule"],
            kw["method"],
            world,
            kw.get("num_micro", 1),
            kw.get("emulate"),
            True,
            proxy,
            partition=kw.get("partition"),
        )
        batches = make_batches(kw["warmup"] + kw["steps"], proxy)
        for x, y in batches[: kw["warmup"]]:
            ex.submit(x, y)
        ex.flush()
        dist.barrier()
        c0, t0 = time.process_time(), time.perf_counter()
        for x, y in batches[kw["warmup"] :]:
            ex.submit(x, y)
        ex.flush()
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        events = [vars(e) for e in ex.recorder.events if e.batch >= 0]
        ex.close()
        with open(f"{out_dir}/rank{rank}.json", "w") as f:
            json.dump({"cpu_s": cpu, "wall_s": wall, "events": events}, f)
    finally:
        dist.destroy_process_group()


def run_dist(world: int, **kw) -> list[dict]:
    """Run the proxy (or ``kw['proxy']``) on ``world`` gloo processes; per-rank results."""
    import torch.multiprocessing as mp

    kw.setdefault("proxy", asdict(Proxy()))
    kw.setdefault("warmup", 1)
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_dist_worker, args=(world, _free_port(), kw, tmp), nprocs=world, join=True)
        out = []
        for r in range(world):
            with open(f"{tmp}/rank{r}.json") as f:
                out.append(json.load(f))
    return out


# ------------------------------------------------------------------------------------------
# The bench
# ------------------------------------------------------------------------------------------

PARTS = ("equal", "vgg", "flops", "dist", "project", "balance", "real")
SCHEDULE_ROWS = (  # (schedule, micro-batches = K?)
    ("sequential", False),
    ("scpl", False),
    ("scpl-gpipe", True),
    ("nmp", False),
    ("gpipe", True),
)


@dataclass
class BenchOptions:
    parts: tuple[str, ...] = PARTS
    stages: tuple[int, ...] = (1, 2, 4, 8)
    vgg_stages: tuple[int, ...] = (1, 2, 4)  # VGG has 6 units: K=8 does not exist
    steps: int = 12
    warmup: int = 2  # mini-batches left out of the steady-state rate
    emulate: str = EQUAL_SPEC
    transfer: str = ""  # e.g. "send_act=1ms,recv_act=1ms", added to every emulated suite
    proxy: Proxy = field(default_factory=Proxy)
    model: str = "vgg"  # the measured model (vgg suite, project, balance, real)
    input_shape: tuple[int, ...] = (3, 32, 32)
    vgg_width: float = 0.5
    vgg_batch: int = 32
    vgg_steps: int = 3
    vgg_stage_ms: float = 50.0
    balance: tuple[str, ...] = ("time", "params")
    balance_stages: int = 4
    real_width: float = 0.25
    real_batch: int = 128
    rounds: int = 3
    overhead_width: float = 0.25
    overhead_batch: int = 32
    overhead_steps: int = 6
    dist_stages: tuple[int, ...] = (2, 4)
    out: str = "runs/bench"
    device: str = "cpu"
    threads: int = 1
    command: str = ""

    @classmethod
    def quick(cls, **kw) -> BenchOptions:
        base = dict(
            parts=("equal",),
            stages=(1, 2),
            steps=5,
            warmup=1,
            emulate="F=4ms,L=1ms,B=8ms,U=1ms",
            vgg_stages=(2,),
            vgg_width=0.125,
            vgg_batch=8,
            vgg_steps=1,
            vgg_stage_ms=12.0,
            dist_stages=(2,),
            real_width=0.125,
            real_batch=16,
            rounds=1,
            overhead_width=0.125,
            overhead_batch=8,
            overhead_steps=2,
            balance_stages=2,
        )
        base.update(kw)
        return cls(**base)


def _row_times(res: RunResult, warmup: int) -> dict:
    from scpl.perf.simulate import SimResult

    sr = SimResult(res.events, 0, res.steps)
    rate = sr.steady_rate(warmup) * res.batch_size
    return {
        "samples_per_s": rate,
        "e2e_samples_per_s": res.steps * res.batch_size / res.wall_s,
        "iter_latency_ms": sr.latency() * 1e3,
    }


def _sim_cols(res: RunResult, schedule: str, K: int, m: int, method: str, emulate, warmup: int):
    """Replay a recorded run in the simulator with the op costs the run recorded (work ops: mean
    span; receives: from the matching send to their end; see costs_from_events) -- the error
    columns -- and with the nominal emulated costs alone (no proxy compute) -- the nominal
    columns."""
    from scpl.perf.emulate import costs_from_events
    from scpl.perf.simulate import compare, simulate

    local = build_method(method).local
    costs = costs_from_events(res.events, skip_batches=0, base=emulate)
    sim = simulate(schedule, K, costs, res.steps, m, local)
    nominal = simulate(schedule, K, emulate or {}, res.steps, m, local)
    c = compare(res.events, sim.events, warmup)
    rate = nominal.steady_rate(warmup) * res.batch_size
    return {
        "sim_samples_per_s": sim.steady_rate(warmup) * res.batch_size,
        "sim_err_pct": 100 * c["throughput_rel_err"],
        "sim_makespan_err_pct": 100 * c["makespan_rel_err"],
        "sim_same_order": c["same_order"],
        "nominal_samples_per_s": rate,
        "nominal_latency_ms": nominal.latency() * 1e3,
    }


def pipeline_suite(
    suite: str,
    costs_for: Callable[[int, str], dict],
    stages: Sequence[int],
    opts: BenchOptions,
    log: Callable[[str], None] = print,
    proxy: Proxy | None = None,
) -> list[dict]:
    """Emulated local runs of every schedule at every K; ``costs_for(K, method)`` gives the
    mini-batch op costs. Sequential rows use the sequential executor (one op at a time)."""
    from scpl.perf.emulate import per_micro

    proxy = proxy or opts.proxy
    rows: list[dict] = []
    for K in stages:
        for schedule, micro in SCHEDULE_ROWS:
            m = K if micro and K > 1 else 1
            if micro and K == 1:
                continue  # the same as the m=1 schedule
            methods = ("scpl", "bp") if schedule == "sequential" else (method_for(schedule),)
            for method in methods:
                if proxy.batch_size % m:
                    continue
                emulate = per_micro(costs_for(K, method), m)
                executor = "sequential" if schedule == "sequential" else "local"
                t = time.perf_counter()
                res = run_emulated(executor, schedule, method, K, m, emulate, opts.steps, proxy)
                row = {
                    "suite": suite,
                    "executor": executor,
                    "schedule": schedule,
                    "method": method,
                    "K": K,
                    "m": m,
                    **_row_times(res, opts.warmup),
                }
                row.update(_sim_cols(res, schedule, K, m, method, emulate, opts.warmup))
                row["_events"] = res.events
                row["_emulate"] = emulate
                rows.append(row)
                log(
                    f"  {suite} K={K} {schedule}/{method} m={m}: "
                    f"{row['samples_per_s']:.1f} samples/s (sim {row['sim_samples_per_s']:.1f}) "
                    f"[{time.perf_counter() - t:.1f}s]"
                )
    add_ratios(rows)
    return rows


def add_ratios(rows: list[dict]) -> None:
    """ratio_vs_seq: throughput / that of the sequential run of the same method, suite and K;
    ratio_vs_ideal: ratio_vs_seq / K (1.0 = perfect K-fold speedup)."""
    seq = {
        (r["suite"], r["K"], r["method"]): r["samples_per_s"]
        for r in rows
        if r["schedule"] == "sequential"
    }
    for r in rows:
        base = seq.get((r["suite"], r["K"], r["method"]))
        r["x_seq"] = r["samples_per_s"] / base if base else float("nan")
        r["x_ideal"] = r["x_seq"] / r["K"] if base else float("nan")


def measured_costs(opts: BenchOptions, K: int, method: str, partition=None, cache={}):  # noqa: B006
    """Op costs of the real model at K stages on this device (cached per process)."""
    from scpl.perf.emulate import measure_op_costs

    key = (opts.model, opts.vgg_width, opts.vgg_batch, opts.input_shape, K, method)
    key += (tuple(partition) if partition else None, opts.vgg_steps)
    if key not in cache:
        cache[key] = measure_op_costs(
            opts.model,
            method,
            K,
            opts.vgg_width,
            opts.input_shape,
            batch_size=opts.vgg_batch,
            steps=opts.vgg_steps,
            partition=partition,
            device=opts.device,
        )
    return cache[key]


def work_only(costs: dict) -> dict:
    from scpl.perf.emulate import WORK_OPS

    return {s: {k: v for k, v in d.items() if k in WORK_OPS} for s, d in costs.items()}


def vgg_scaled_costs(opts: BenchOptions, transfer: dict) -> Callable[[int, str], dict]:
    """Measured VGG work-op costs scaled so the slowest SCPL stage takes ``vgg_stage_ms``
    (BP costs by the same factor, so SCPL and BP stay comparable), plus the transfer spec."""
    from scpl.perf.emulate import scale_costs, stage_totals

    def costs_for(K: int, method: str) -> dict:
        ref = work_only(measured_costs(opts, K, "scpl"))
        factor = opts.vgg_stage_ms * 1e-3 / max(stage_totals(ref, K))
        c = scale_costs(work_only(measured_costs(opts, K, method)), factor)
        return _merge(c, transfer, K)

    return costs_for


def flop_scaled_costs(opts: BenchOptions, transfer: dict, cache={}) -> Callable[[int, str], dict]:  # noqa: B006
    """FLOP-proportional op costs of the measured model (a compute-bound device, see
    scpl.perf.emulate.flop_op_costs), scaled so the slowest SCPL stage takes ``vgg_stage_ms``."""
    from scpl.perf.emulate import flop_op_costs, scale_costs, stage_totals

    def flops(K: int, method: str) -> dict:
        key = (opts.model, opts.vgg_width, opts.vgg_batch, opts.input_shape, K, method)
        if key not in cache:
            cache[key] = flop_op_costs(
                opts.model, method, K, opts.vgg_width, opts.input_shape, batch_size=opts.vgg_batch
            )
        return cache[key]

    def costs_for(K: int, method: str) -> dict:
        factor = opts.vgg_stage_ms * 1e-3 / max(stage_totals(flops(K, "scpl"), K))
        return _merge(scale_costs(flops(K, method), factor), transfer, K)

    return costs_for


def _merge(costs: dict, extra: dict, K: int) -> dict:
    out = {s: dict(costs.get(s, {})) for s in range(K)}
    for s, d in extra.items():
        if s < K:
            out[s].update(d)
    return out


def project_rows(opts: BenchOptions) -> list[dict]:
    """Projected K-device throughput of every schedule from VGG's unscaled op costs measured
    on one device (the simulator, transfers free unless --transfer)."""
    from scpl.perf.emulate import per_micro, stage_totals
    from scpl.perf.simulate import simulate

    rows = []
    for K in opts.vgg_stages:
        for schedule, micro in SCHEDULE_ROWS:
            m = K if micro and K > 1 else 1
            if micro and K == 1:
                continue
            methods = ("scpl", "bp") if schedule == "sequential" else (method_for(schedule),)
            for method in methods:
                if opts.vgg_batch % m:
                    continue
                costs = measured_costs(opts, K, method)
                local = build_method(method).local
                sim = simulate(schedule, K, per_micro(costs, m), opts.steps, m, local)
                rows.append(
                    {
                        "suite": f"project-{opts.model}",
                        "schedule": schedule,
                        "method": method,
                        "K": K,
                        "m": m,
                        "stage_ms": [round(t * 1e3, 1) for t in stage_totals(costs, K)],
                        "samples_per_s": sim.steady_rate(opts.warmup) * opts.vgg_batch,
                        "iter_latency_ms": simulate(
                            schedule, K, per_micro(costs, m), 1, m, local
                        ).makespan
                        * 1e3,
                    }
                )
    add_ratios(rows)
    return rows


def balance_rows(opts: BenchOptions, log: Callable[[str], None] = print) -> list[dict]:
    """Paper split vs balanced splits of the measured model: unit costs (body + cut, see
    scpl.perf.balance) -> min-max partition; every partition's stage costs are then measured and its
    scpl pipeline simulated. ``predicted_max_stage_ms`` is the time model's slowest stage for
    each split (one measurement for all splits, so less noisy to compare than the measured
    ones, which are taken one after the other on a shared machine)."""
    from scpl.models import build_model
    from scpl.perf.balance import partition_min_max, unit_costs
    from scpl.perf.emulate import stage_totals
    from scpl.perf.simulate import simulate

    K = opts.balance_stages
    paper = build_model(opts.model, opts.input_shape, 10, K, opts.vgg_width).partition
    splits = [("paper", paper, None)]
    for by in opts.balance:
        uc = unit_costs(
            opts.model,
            by,
            opts.input_shape,
            width=opts.vgg_width,
            measure=lambda meth, n, part: measured_costs(opts, n, meth, part),
        )
        part = partition_min_max(uc, K)
        splits.append((f"balanced-{by}", part, uc))
        scale = 1e3 if by == "time" else 1e-3
        log(
            f"  balance by {by} ({'ms' if by == 'time' else 'k params'}): body "
            f"{[round(c * scale, 1) for c in uc.body]}, cut {[round(c * scale, 1) for c in uc.head]}"
            f" -> {part}"
        )
    time_model = next((uc for _, _, uc in splits if uc is not None and uc.by == "time"), None)
    rows = []
    for name, part, _ in splits:
        # The paper split is the model's default: the same cached measurement as --project.
        costs = measured_costs(opts, K, "scpl", None if list(part) == list(paper) else part)
        st = stage_totals(costs, K)
        sim = simulate("scpl", K, costs, opts.steps, 1, True)
        pred = max(time_model.stage_costs(part)) * 1e3 if time_model is not None else None
        rows.append(
            {
                "split": name,
                "partition": list(part),
                "stage_ms": [round(t * 1e3, 1) for t in st],
                "max_stage_ms": max(st) * 1e3,
                "predicted_max_stage_ms": pred,
                "sim_samples_per_s": sim.steady_rate(opts.warmup) * opts.vgg_batch,
            }
        )
    base = rows[0]["sim_samples_per_s"]
    for r in rows:
        r["x_paper"] = r["sim_samples_per_s"] / base
    return rows


def dist_rows(opts: BenchOptions, log: Callable[[str], None] = print) -> list[dict]:
    """Emulated scpl on the dist executor (gloo processes), next to the local executor."""
    from scpl.parallel.runner import Event
    from scpl.perf.emulate import parse_emulate

    rows = []
    for K in opts.dist_stages:
        emulate = _merge(parse_emulate(opts.emulate, K), parse_emulate(opts.transfer, K), K)
        t = time.perf_counter()
        res = run_dist(
            K,
            schedule="scpl",
            method="scpl",
            emulate=emulate,
            steps=opts.steps,
            warmup=1,
            proxy=asdict(opts.proxy),
        )
        events = rebase([Event(**e) for r in res for e in r["events"]], 1)
        rr = RunResult(
            events, max(r["wall_s"] for r in res), 0.0, opts.steps, opts.proxy.batch_size
        )
        row = {
            "suite": "equal",
            "executor": "dist",
            "schedule": "scpl",
            "method": "scpl",
            "K": K,
            "m": 1,
            **_row_times(rr, opts.warmup),
        }
        row.update(_sim_cols(rr, "scpl", K, 1, "scpl", emulate, opts.warmup))
        row["_events"] = events
        rows.append(row)
        log(f"  dist K={K}: {row['samples_per_s']:.1f} samples/s [{time.perf_counter() - t:.1f}s]")
    return rows


def augment_share(
    width: float, batch: int, input_shape=(3, 32, 32), rounds: int = 3, device: str = "cpu"
) -> dict:
    """Share of a two-view SCPL training step spent in augmentation (kornia, on the device):
    augmenting a uint8 batch of N images into 2N views vs one SCPL step on those 2N inputs."""
    from scpl.data.augment import Augment

    dev = torch.device(device)
    c = input_shape[0]
    aug = Augment("two-view", input_shape, (0.5,) * c, (0.25,) * c).to(dev)
    g = torch.Generator().manual_seed(0)
    x8 = torch.randint(0, 256, (batch, *input_shape), dtype=torch.uint8, generator=g).to(dev)
    y = (torch.arange(batch) % 10).to(dev)
    t_aug = []
    for r in range(rounds + 1):
        t0 = time.perf_counter()
        xa, ya = aug(x8, y)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        if r:
            t_aug.append(time.perf_counter() - t0)
    step = step_ratio(
        "vgg", ("scpl",), 2 * batch, input_shape, 10, width, rounds=rounds, device=device
    )[0]["median_s"]
    a = statistics.median(t_aug)
    return {"aug_s": a, "step_s": step, "aug_share": a / (a + step)}


def cpu_overhead(opts: BenchOptions, log: Callable[[str], None] = print) -> dict:
    """Total CPU seconds (all threads / all processes) for the same real training work: scpl on
    the real model at K=2, on the local executor (threads) and on the dist executor (gloo)."""
    proxy = Proxy(
        model=opts.model,
        width=opts.overhead_width,
        input_shape=opts.input_shape,
        batch_size=opts.overhead_batch,
        head="mlp",
        proj_dim=128,
    )
    K, steps, warm = 2, opts.overhead_steps, 1
    out = {}
    for executor in ("sequential", "local"):
        ex = make_executor(executor, "scpl", "scpl", K, record=False, proxy=proxy)
        batches = make_batches(warm + steps, proxy)
        try:
            for x, y in batches[:warm]:
                ex.submit(x, y)
            ex.flush()
            c0, t0 = time.process_time(), time.perf_counter()
            for x, y in batches[warm:]:
                ex.submit(x, y)
            ex.flush()
            out[executor] = (time.process_time() - c0, time.perf_counter() - t0)
        finally:
            ex.close()
    res = run_dist(K, schedule="scpl", method="scpl", steps=steps, warmup=warm, proxy=asdict(proxy))
    out["dist"] = (sum(r["cpu_s"] for r in res), max(r["wall_s"] for r in res))
    log(f"  cpu: {out}")
    return {
        "model": f"{opts.model} w={opts.overhead_width} batch {opts.overhead_batch}",
        "K": K,
        "steps": steps,
        "cpu_s_sequential": out["sequential"][0],
        "cpu_s_local": out["local"][0],
        "cpu_s_dist": out["dist"][0],
        "dist_vs_local": out["dist"][0] / out["local"][0],
        "local_vs_sequential": out["local"][0] / out["sequential"][0],
    }


def check_targets(rows: list[dict], real: dict) -> list[dict]:
    """The issue's targets, evaluated on the measured rows (reported, never asserted)."""

    def get(suite, schedule, K, executor="local", key="samples_per_s"):
        for r in rows:
            if (r["suite"], r["schedule"], r["K"], r["executor"]) == (suite, schedule, K, executor):
                return r[key]
        return None

    out = []

    def add(name, value, ok, detail=""):
        out.append({"target": name, "value": value, "met": ok, "detail": detail})

    for K in sorted({r["K"] for r in rows if r["suite"] == "equal"}):
        x = get("equal", "scpl", K, key="x_seq")
        if x is not None and K > 1:
            add(f"equal K={K}: scpl >= 0.9*K x sequential", x, x >= 0.9 * K, f"need {0.9 * K:.2f}")
    s, n, g = get("equal", "scpl", 4), get("equal", "nmp", 4), get("equal", "gpipe", 4)
    if s and n:
        add("equal K=4: scpl >= 3.3x nmp", s / n, s / n >= 3.3)
    if s and g:
        add("equal K=4: scpl >= 1.5x gpipe(m=K)", s / g, s / g >= 1.5)
    for suite in ("vgg", "vgg-flops"):
        vk = max((r["K"] for r in rows if r["suite"] == suite), default=None)
        if not vk or vk < 2:
            continue
        ls = get(suite, "scpl", vk, key="iter_latency_ms")
        lg = get(suite, "scpl-gpipe", vk, key="iter_latency_ms")
        if ls and lg:
            add(
                f"{suite} K={vk}: one iteration of scpl-gpipe finishes sooner than scpl",
                lg / ls,
                lg < ls,
                f"{lg:.0f} vs {ls:.0f} ms (ratio gpipe/scpl)",
            )
        ts, tg = get(suite, "scpl", vk), get(suite, "scpl-gpipe", vk)
        if ts and tg:
            d = tg / ts - 1
            nom = get(suite, "scpl-gpipe", vk, key="nominal_samples_per_s") / get(
                suite, "scpl", vk, key="nominal_samples_per_s"
            )
            add(
                f"{suite} K={vk}: scpl-gpipe steady throughput within 5% of scpl",
                d,
                abs(d) <= 0.05,
                f"relative difference; with the nominal costs (no proxy overhead) {nom - 1:+.3f}",
            )
    errs = [abs(r["sim_err_pct"]) for r in rows if "sim_err_pct" in r]
    if errs:
        add(
            "simulator within 10% of emulated runs (max |throughput err| %)",
            max(errs),
            max(errs) <= 10,
        )
    if "aug_share" in real:
        add("augmentation share of a step <= 10%", real["aug_share"], real["aug_share"] <= 0.10)
    if "dist_vs_local" in real:
        add("dist vs local CPU time <= 1.15x", real["dist_vs_local"], real["dist_vs_local"] <= 1.15)
    return out


_PUBLIC = (
    "suite",
    "executor",
    "schedule",
    "method",
    "K",
    "m",
    "samples_per_s",
    "x_seq",
    "x_ideal",
    "iter_latency_ms",
    "e2e_samples_per_s",
    "sim_samples_per_s",
    "sim_err_pct",
    "sim_makespan_err_pct",
    "nominal_samples_per_s",
    "nominal_latency_ms",
)


def _public(rows: list[dict], keys: Sequence[str] | None = None) -> list[dict]:
    if keys is None:
        return [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    return [{k: r.get(k) for k in keys if k in r} for r in rows]


def write_csv(rows: list[dict], path: Path) -> None:
    rows = _public(rows)
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: _fmt(v) if isinstance(v, list | tuple) else v for k, v in r.items()})


def run_bench(opts: BenchOptions) -> dict:
    """Run the selected parts, print their tables, write CSV/JSON/Markdown/PNG under opts.out."""
    from scpl.perf.emulate import format_emulate, parse_emulate
    from scpl.report.timeline import write_gantt

    torch.set_num_threads(opts.threads)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()

    def emit(s: str = "") -> None:
        print(s)
        text.write(s + "\n")

    def log(s: str) -> None:
        print(s, file=sys.stderr, flush=True)

    for p in opts.parts:
        if p not in PARTS:
            from scpl.errors import ConfigError

            raise ConfigError(f"unknown bench part {p!r}; choose from {', '.join(PARTS)}")
    t_start = time.perf_counter()
    transfer_max_k = max(opts.stages + opts.vgg_stages + opts.dist_stages + (1,))
    parse_emulate(opts.transfer, transfer_max_k)  # fail early on a bad spec
    results: dict = {"options": _jsonable(asdict(opts)), "tables": {}}
    pipe_rows: list[dict] = []

    if "equal" in opts.parts:
        log(f"bench: equal stages, emulate {opts.emulate!r}")
        for K in opts.stages:
            parse_emulate(opts.emulate, K)

        def equal_costs(K: int, method: str) -> dict:
            return _merge(parse_emulate(opts.emulate, K), parse_emulate(opts.transfer, K), K)

        pipe_rows += pipeline_suite("equal", equal_costs, opts.stages, opts, log)
    if "dist" in opts.parts:
        log("bench: dist executor (gloo processes)")
        pipe_rows += dist_rows(opts, log)
        add_ratios(pipe_rows)
    if "vgg" in opts.parts:
        log(
            f"bench: {opts.model} costs measured at width {opts.vgg_width}, batch "
            f"{opts.vgg_batch}, scaled so the slowest stage takes {opts.vgg_stage_ms} ms"
        )
        transfer = parse_emulate(opts.transfer, transfer_max_k)
        costs_for = vgg_scaled_costs(opts, transfer)
        pipe_rows += pipeline_suite("vgg", costs_for, opts.vgg_stages, opts, log)
        results["vgg_emulate"] = {
            f"K={K}/{m}": format_emulate(costs_for(K, m), K)
            for K in opts.vgg_stages
            for m in ("scpl", "bp")
        }
    if "flops" in opts.parts:
        log(
            f"bench: {opts.model} FLOP-proportional costs (width {opts.vgg_width}, batch "
            f"{opts.vgg_batch}), scaled so the slowest stage takes {opts.vgg_stage_ms} ms"
        )
        transfer = parse_emulate(opts.transfer, transfer_max_k)
        costs_for = flop_scaled_costs(opts, transfer)
        pipe_rows += pipeline_suite("vgg-flops", costs_for, opts.vgg_stages, opts, log)
        results["vgg_flops_emulate"] = {
            f"K={K}/{m}": format_emulate(costs_for(K, m), K)
            for K in opts.vgg_stages
            for m in ("scpl", "bp")
        }
    if pipe_rows:
        emit(
            format_table(
                _public(pipe_rows, _PUBLIC),
                f"pipeline throughput (emulated devices; proxy {opts.proxy.model} w="
                f"{opts.proxy.width} {opts.proxy.input_shape} batch {opts.proxy.batch_size}; "
                f"{opts.steps} mini-batches, steady state after {opts.warmup})",
            )
        )
        results["tables"]["pipeline"] = _public(pipe_rows)
        write_csv(pipe_rows, out / "pipeline.csv")
        _write_figures(pipe_rows, out, write_gantt)

    if "project" in opts.parts:
        log(f"bench: projection from {opts.model} op costs measured on one device")
        rows = project_rows(opts)
        emit(
            format_table(
                rows,
                f"projected K-device throughput (simulator on {opts.model} w={opts.vgg_width} "
                f"batch {opts.vgg_batch} op costs measured on {opts.device})",
            )
        )
        results["tables"]["project"] = rows
        write_csv(rows, out / "project.csv")
    if "balance" in opts.parts:
        log(f"bench: stage balancing of {opts.model} at K={opts.balance_stages}")
        rows = balance_rows(opts, log)
        emit(
            format_table(
                rows,
                f"stage balancing, {opts.model} K={opts.balance_stages} (measured stage costs, "
                "scpl simulated)",
            )
        )
        results["tables"]["balance"] = rows
        write_csv(rows, out / "balance.csv")
    real: dict = {}
    if "real" in opts.parts:
        log(f"bench: real compute ({opts.model} width {opts.real_width}, batch {opts.real_batch})")
        sr = step_ratio(
            opts.model,
            ("bp", "scpl"),
            opts.real_batch,
            opts.input_shape,
            10,
            opts.real_width,
            opts.rounds,
            device=opts.device,
        )
        real["step_s_bp"] = sr[0]["median_s"]
        real["step_s_scpl"] = sr[1]["median_s"]
        real["scpl_vs_bp"] = sr[1]["ratio_vs_bp"]
        real.update(
            augment_share(
                opts.real_width, opts.real_batch, opts.input_shape, opts.rounds, opts.device
            )
        )
        real.update(cpu_overhead(opts, log))
        emit(
            format_table(
                [{"measure": k, "value": v} for k, v in real.items()],
                f"real compute on {opts.device} ({opts.model} width {opts.real_width}, batch "
                f"{opts.real_batch}; two-view step on {2 * opts.real_batch} inputs)",
            )
        )
        results["tables"]["real"] = real
    targets = check_targets(pipe_rows, real)
    if targets:
        emit(format_table(targets, "targets (reported, not asserted)"))
        results["tables"]["targets"] = targets
    results["seconds"] = time.perf_counter() - t_start
    (out / "bench.json").write_text(json.dumps(_jsonable(results), indent=1))
    md = ["# scpl bench", ""]
    if opts.command:
        md += ["```", opts.command, "```", ""]
    md += [
        f"Machine: {os.cpu_count()} vCPUs, torch {torch.__version__}, device {opts.device}, "
        f"{opts.threads} intra-op thread(s); {results['seconds']:.0f} s.",
        "",
        text.getvalue(),
    ]
    (out / "bench.md").write_text("\n".join(md))
    log(f"bench: wrote {out}/ ({results['seconds']:.0f} s)")
    return results


def _write_figures(rows: list[dict], out: Path, write_gantt) -> None:
    """Gantt charts of the K=4 (or largest K) runs of each suite, one panel per schedule."""
    for suite in sorted({r["suite"] for r in rows}):
        ks = sorted({r["K"] for r in rows if r["suite"] == suite})
        K = 4 if 4 in ks else ks[-1]
        panels = [
            (
                f"{r['schedule']} ({r['method']}, m={r['m']}, {r['executor']})",
                r["_events"],
                r.get("_emulate") or {},
            )
            for r in rows
            if r["suite"] == suite and r["K"] == K and r["executor"] != "dist"
        ]
        if panels:
            write_gantt(panels, out / f"gantt-{suite}-K{K}.png", f"{suite} stages, K={K}")


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and obj != obj:
        return None
    return obj
