"""``scpl bench``: the pipeline benchmark, a loop over suites that print tables (never timed
tests). The run harness is :mod:`scpl.perf.harness`, op costs come from :mod:`scpl.perf.costs`,
real-compute timing (``--step-ratio``) from :mod:`scpl.perf.measure`, tables from
:mod:`scpl.report.tables`.

This machine has about one CPU core, so K devices are *emulated*: every op of a tiny real model
(convnet, width 0.125, 8x8 inputs: its real compute is small next to the emulated time) holds
its stage for a chosen duration while releasing the GIL, as a GPU kernel would. Suites:

* ``equal``    equal per-stage costs (``--emulate``, default EQUAL_SPEC), K in {1, 2, 4, 8};
* ``vgg``      the paper VGG's unequal per-stage F/L/B/U costs, measured on this CPU with the
               recorder and scaled so the slowest stage takes ``vgg_stage_ms``;
* ``flops``    the same with FLOP-proportional costs (a compute-bound device);
* ``dist``     scpl on the dist executor (one process per stage, gloo), K = 2, 4;
* ``dp``       data parallel x pipeline: scpl on K=4 stages x R in {1, 2} replicas (dist, gloo,
               K x R processes), the gradient all-reduce and SupCon all-gather costed by
               :class:`scpl.perf.dataparallel.CollectiveModel` (ring all-reduce, not overlapped);
               R x the batch per step (weak scaling);
* ``sim``      every emulated row is replayed by the simulator (its error is a column);
* ``project``  the simulator on VGG's unscaled measured op costs (projected K-device rates);
* ``balance``  paper split vs time-/parameter-balanced split (measured stage costs, simulator);
* ``real``     real compute: one-device SCPL/BP step-time ratio, augmentation share of a step,
               dist vs local CPU time for the same work.

Throughput is the steady-state rate (mini-batches finished per second once the pipeline is
full, see :func:`scpl.perf.simulate.steady_rate`), times the batch size.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from scpl.errors import ConfigError
from scpl.perf.costs import CostSource
from scpl.perf.emulate import format_emulate, parse_emulate, per_micro, stage_totals
from scpl.perf.harness import (
    Proxy,
    dist_result,
    real_compute,
    row_times,
    run_dist,
    run_emulated,
    schedule_rows,
    sim_columns,
)
from scpl.perf.measure import Workload
from scpl.report.tables import format_table, jsonable, public, write_csv
from scpl.studies.bench_targets import check_targets

Log = Callable[[str], None]

EQUAL_SPEC = "F=15ms,L=3ms,B=30ms,U=2ms"
"""Default equal per-stage costs (50 ms of device time per stage and mini-batch)."""

PARTS = ("equal", "vgg", "flops", "dist", "dp", "project", "balance", "real")


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
    dp_stages: int = 4
    dp_replicas: tuple[int, ...] = (1, 2)
    dp_emulate: str = "F=120ms,L=24ms,B=240ms,U=16ms"
    """8 x EQUAL_SPEC: K x R processes share this machine's core, and the proxy's real compute
    and the processes' overhead must stay small next to the emulated time."""
    dp_steps: int = 8
    dp_grad_mb: float = 25.0
    dp_bandwidth_gbs: float = 50.0
    dp_latency_us: float = 20.0
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


def pipeline_suite(
    suite: str,
    costs_for: Callable[[int, str], dict],
    stages: Sequence[int],
    opts: BenchOptions,
    log: Log = print,
    proxy: Proxy | None = None,
) -> list[dict]:
    """Emulated local runs of every schedule at every K; ``costs_for(K, method)`` gives the
    mini-batch op costs. Sequential rows use the sequential executor (one op at a time)."""
    proxy = proxy or opts.proxy
    rows: list[dict] = []
    for K in stages:
        for schedule, method, m in schedule_rows(K, proxy.batch_size):
            emulate = per_micro(costs_for(K, method), m)
            executor = "sequential" if schedule == "sequential" else "local"
            t = time.perf_counter()
            res = run_emulated(executor, schedule, method, K, m, emulate, opts.steps, proxy)
            row = _row(suite, executor, schedule, method, K, m, res, emulate, opts.warmup)
            rows.append(row)
            log(
                f"  {suite} K={K} {schedule}/{method} m={m}: "
                f"{row['samples_per_s']:.1f} samples/s (sim {row['sim_samples_per_s']:.1f}) "
                f"[{time.perf_counter() - t:.1f}s]"
            )
    add_ratios(rows)
    return rows


def _row(suite, executor, schedule, method, K, m, res, emulate, warmup) -> dict:
    return {
        "suite": suite,
        "executor": executor,
        "schedule": schedule,
        "method": method,
        "K": K,
        "m": m,
        **row_times(res, warmup),
        **sim_columns(res, schedule, K, m, method, emulate, warmup),
        "_events": res.events,
        "_emulate": emulate,
    }


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


def model_costs(opts: BenchOptions, source: str = "measured", **kw) -> CostSource:
    """Op costs of the measured model (``opts.model`` at ``vgg_width``, batch ``vgg_batch``) on
    ``opts.device``; measurements are shared by every suite of the process."""
    w = Workload(opts.model, opts.vgg_width, tuple(opts.input_shape), opts.vgg_batch)
    w.steps, w.device = opts.vgg_steps, opts.device
    return CostSource(source, w, **kw)


def _transfer(opts: BenchOptions) -> dict:
    k = max(opts.stages + opts.vgg_stages + opts.dist_stages + (1,))
    return parse_emulate(opts.transfer, k)


# -- suites: each returns its rows ---------------------------------------------------------


def equal_rows(opts: BenchOptions, results: dict, log: Log) -> list[dict]:
    log(f"bench: equal stages, emulate {opts.emulate!r}")
    for K in opts.stages:
        parse_emulate(opts.emulate, K)  # fail before any run
    return pipeline_suite(
        "equal", CostSource(opts.emulate, transfer=opts.transfer), opts.stages, opts, log
    )


def scaled_rows(opts: BenchOptions, results: dict, log: Log, source: str) -> list[dict]:
    """Measured (``vgg``) or FLOP-proportional (``vgg-flops``) costs of the model, scaled so the
    slowest SCPL stage takes ``vgg_stage_ms`` (BP by the same factor), plus the transfer spec."""
    what = "measured" if source == "measured" else "FLOP-proportional"
    log(
        f"bench: {opts.model} {what} costs at width {opts.vgg_width}, batch {opts.vgg_batch}, "
        f"scaled so the slowest stage takes {opts.vgg_stage_ms} ms"
    )
    costs = model_costs(opts, source, transfer=_transfer(opts), slowest_ms=opts.vgg_stage_ms)
    suite = "vgg" if source == "measured" else "vgg-flops"
    rows = pipeline_suite(suite, costs, opts.vgg_stages, opts, log)
    results[f"{suite.replace('-', '_')}_emulate"] = {
        f"K={K}/{m}": format_emulate(costs(K, m), K)
        for K in opts.vgg_stages
        for m in ("scpl", "bp")
    }
    return rows


def dist_rows(opts: BenchOptions, results: dict, log: Log = print) -> list[dict]:
    """Emulated scpl on the dist executor (gloo processes), next to the local executor."""
    log("bench: dist executor (gloo processes)")
    costs = CostSource(opts.emulate, transfer=opts.transfer)
    rows = []
    for K in opts.dist_stages:
        emulate = costs(K)
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
        rr = dist_result(res, opts.steps, opts.proxy.batch_size)
        row = _row("equal", "dist", "scpl", "scpl", K, 1, rr, emulate, opts.warmup)
        rows.append(row)
        log(f"  dist K={K}: {row['samples_per_s']:.1f} samples/s [{time.perf_counter() - t:.1f}s]")
    return rows


def dp_rows(opts: BenchOptions, results: dict, log: Log = print) -> list[dict]:
    """Emulated scpl on K stages x R replicas (dist, gloo); the nominal columns are the
    simulator's prediction with the collective cost model."""
    from scpl.perf.dataparallel import CollectiveModel, dp_costs, run_dp

    log("bench: data parallel x pipeline (dist executor, K x R gloo processes)")
    model = CollectiveModel(opts.dp_grad_mb, opts.dp_bandwidth_gbs, opts.dp_latency_us)
    K, rows = opts.dp_stages, []
    for R in opts.dp_replicas:
        costs = dp_costs(
            parse_emulate(opts.dp_emulate, K),
            K,
            R,
            model,
            gather=(opts.proxy.batch_size, opts.proxy.proj_dim),
        )
        t = time.perf_counter()
        res = run_dp(K, R, costs, steps=opts.dp_steps, warmup=1, proxy=opts.proxy)
        # The replicas in the suite's name (the table has no R column); executor "dist" keeps
        # the rows out of the Gantt charts (per-process clocks).
        row = _row(f"dp-R{R}", "dist", "scpl", "scpl", K, 1, res, costs, opts.warmup)
        row["R"], row["allreduce_ms"] = R, model.allreduce_s(R) * 1e3
        rows.append(row)
        log(
            f"  dp K={K} x R={R}: {row['samples_per_s']:.1f} samples/s, predicted "
            f"{row['nominal_samples_per_s']:.1f} [{time.perf_counter() - t:.1f}s]"
        )
    return rows


def project_rows(opts: BenchOptions, log: Log = print) -> list[dict]:
    """Projected K-device throughput of every schedule from the model's unscaled op costs
    measured on one device (the simulator, transfers free unless --transfer)."""
    from scpl.methods import METHODS
    from scpl.perf.simulate import simulate

    log(f"bench: projection from {opts.model} op costs measured on one device")
    measured = model_costs(opts, work_only=False)
    rows = []
    for K in opts.vgg_stages:
        for schedule, method, m in schedule_rows(K, opts.vgg_batch):
            costs = per_micro(measured(K, method), m)
            local = METHODS.get(method).local
            sim = simulate(schedule, K, costs, opts.steps, m, local)
            rows.append(
                {
                    "suite": f"project-{opts.model}",
                    "schedule": schedule,
                    "method": method,
                    "K": K,
                    "m": m,
                    "stage_ms": [round(t * 1e3, 1) for t in stage_totals(measured(K, method), K)],
                    "samples_per_s": sim.steady_rate(opts.warmup) * opts.vgg_batch,
                    "iter_latency_ms": simulate(schedule, K, costs, 1, m, local).makespan * 1e3,
                }
            )
    add_ratios(rows)
    return rows


def balance_rows(opts: BenchOptions, log: Log = print) -> list[dict]:
    """Paper split vs balanced splits of the measured model: unit costs (body + cut, see
    scpl.perf.balance) -> min-max partition; every partition's stage costs are then measured and its
    scpl pipeline simulated. ``predicted_max_stage_ms`` is the time model's slowest stage for
    each split (one measurement for all splits, so less noisy to compare than the measured
    ones, which are taken one after the other on a shared machine)."""
    from scpl.models import build_model
    from scpl.perf.balance import partition_min_max, unit_costs
    from scpl.perf.simulate import simulate

    K = opts.balance_stages
    log(f"bench: stage balancing of {opts.model} at K={K}")
    measured = model_costs(opts, work_only=False)
    paper = build_model(opts.model, opts.input_shape, 10, K, opts.vgg_width).partition
    splits = [("paper", paper, None)]
    for by in opts.balance:
        uc = unit_costs(
            opts.model,
            by,
            opts.input_shape,
            width=opts.vgg_width,
            measure=lambda meth, n, part: measured(n, meth, partition=part),
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
        costs = measured(K, "scpl", partition=None if list(part) == list(paper) else part)
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


_PUBLIC = tuple(
    "suite executor schedule method K m samples_per_s x_seq x_ideal iter_latency_ms "
    "e2e_samples_per_s sim_samples_per_s sim_err_pct sim_makespan_err_pct nominal_samples_per_s "
    "nominal_latency_ms".split()
)
"""The columns of the printed pipeline table (the CSV and JSON have every column)."""

PIPELINE_SUITES: dict[str, Callable[[BenchOptions, dict, Log], list[dict]]] = {
    "equal": equal_rows,
    "dist": dist_rows,
    "dp": dp_rows,
    "vgg": lambda o, r, log: scaled_rows(o, r, log, "measured"),
    "flops": lambda o, r, log: scaled_rows(o, r, log, "flops"),
}
"""Emulated-pipeline suites: their rows form one table (in this order)."""

TABLE_SUITES: dict[str, Callable[[BenchOptions, Log], list[dict] | dict]] = {
    "project": project_rows,
    "balance": balance_rows,
    "real": lambda o, log: real_compute(
        o.model,
        o.real_width,
        o.real_batch,
        o.input_shape,
        o.rounds,
        o.device,
        Proxy(o.model, o.overhead_width, o.input_shape, o.overhead_batch, "mlp", 128),
        o.overhead_steps,
        log,
    ),
}
"""Suites with a table each (``real`` is one measure per line)."""


def _titles(opts: BenchOptions) -> dict[str, str]:
    return {
        "pipeline": f"pipeline throughput (emulated devices; proxy {opts.proxy.model} w="
        f"{opts.proxy.width} {opts.proxy.input_shape} batch {opts.proxy.batch_size}; "
        f"{opts.steps} mini-batches, steady state after {opts.warmup})",
        "project": f"projected K-device throughput (simulator on {opts.model} w={opts.vgg_width} "
        f"batch {opts.vgg_batch} op costs measured on {opts.device})",
        "balance": f"stage balancing, {opts.model} K={opts.balance_stages} (measured stage costs, "
        "scpl simulated)",
        "real": f"real compute on {opts.device} ({opts.model} width {opts.real_width}, batch "
        f"{opts.real_batch}; two-view step on {2 * opts.real_batch} inputs)",
    }


def run_bench(opts: BenchOptions) -> dict:
    """Run the selected parts, print their tables, write CSV/JSON/Markdown/PNG under opts.out."""
    from scpl.report.timeline import write_suite_gantts

    for p in opts.parts:
        if p not in PARTS:
            raise ConfigError(f"unknown bench part {p!r}; choose from {', '.join(PARTS)}")
    torch.set_num_threads(opts.threads)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    titles = _titles(opts)

    def emit(s: str = "") -> None:
        print(s)
        text.write(s + "\n")

    def log(s: str) -> None:
        print(s, file=sys.stderr, flush=True)

    t_start = time.perf_counter()
    _transfer(opts)  # fail early on a bad spec
    results: dict = {"options": jsonable(asdict(opts)), "tables": {}}
    pipe_rows: list[dict] = []
    for part, suite in PIPELINE_SUITES.items():
        if part in opts.parts:
            pipe_rows += suite(opts, results, log)
    add_ratios(pipe_rows)
    if pipe_rows:
        emit(format_table(public(pipe_rows, _PUBLIC), titles["pipeline"]))
        results["tables"]["pipeline"] = public(pipe_rows)
        write_csv(pipe_rows, out / "pipeline.csv")
        write_suite_gantts(pipe_rows, out)
    real: dict = {}
    for part, suite in TABLE_SUITES.items():
        if part not in opts.parts:
            continue
        got = suite(opts, log)
        if part == "real":
            real = got
            emit(format_table([{"measure": k, "value": v} for k, v in real.items()], titles[part]))
        else:
            emit(format_table(got, titles[part]))
            write_csv(got, out / f"{part}.csv")
        results["tables"][part] = got
    targets = check_targets(pipe_rows, real)
    if targets:
        emit(format_table(targets, "targets (reported, not asserted)"))
        results["tables"]["targets"] = targets
    results["seconds"] = time.perf_counter() - t_start
    (out / "bench.json").write_text(json.dumps(jsonable(results), indent=1))
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
