"""``scpl profile``: the timeline of a short pipelined run as a Gantt chart and a trace.

Runs a few mini-batches of one or more schedules (emulated device time, real compute, or only
the simulator) with the recorder on, then writes ``<name>.png`` (one Gantt panel per schedule,
on a shared time axis: NMP next to SCPL shows the pipelining at a glance), ``<name>.trace.json``
(Chrome/Perfetto: chrome://tracing or ui.perfetto.dev), ``<name>.events.json`` (the raw events)
and, with ``torch_profiler``, ``<name>-<schedule>.torch.json`` (torch.profiler's own trace).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from scpl.errors import ConfigError


@dataclass
class ProfileOptions:
    schedules: Sequence[str] = ("scpl",)
    model: str = "convnet"
    method: str = "scpl"
    stages: int = 4
    micro_batches: int = 0  # 0: K for scpl-gpipe/gpipe, 1 otherwise
    steps: int = 6
    batch_size: int = 16
    width: float = 0.125
    input_shape: tuple[int, ...] = (1, 8, 8)
    executor: str = "local"
    emulate: str = "F=15ms,L=3ms,B=30ms,U=2ms"
    scale_ms: float = 0.0  # measured costs: scale so the slowest stage takes this long (0: as is)
    simulate: bool = False
    queue_depth: int = 2
    torch_profiler: bool = False
    out: str = "runs/profile"
    name: str = ""
    device: str = "cpu"
    warmup: int = 1
    model_kwargs: dict = field(default_factory=dict)  # e.g. vocab_size for text models


def resolve(name: str, method: str) -> tuple[str, str]:
    """(schedule, method): 'auto' is the registry's choice for the method; a schedule that does
    not take the method runs the one it does (BP on nmp/gpipe, scpl on scpl/scpl-gpipe)."""
    from scpl.methods import METHODS
    from scpl.parallel import resolve_schedule
    from scpl.perf.harness import method_for

    if name == "auto":
        meth = METHODS.get(method)
        name = resolve_schedule("auto", meth.local, method, 1).name
    return name, method_for(name, method)


def profile(opts: ProfileOptions, log=print) -> dict:
    """Run (or simulate) each schedule, write the figures; returns paths and summary rows."""
    from scpl.methods import METHODS
    from scpl.parallel import SCHEDULES
    from scpl.perf.costs import CostSource
    from scpl.perf.emulate import per_micro
    from scpl.perf.harness import Proxy, run_emulated
    from scpl.perf.measure import Workload
    from scpl.perf.simulate import SimResult, compare, simulate
    from scpl.report.tables import format_table
    from scpl.report.timeline import write_gantt, write_trace

    K = opts.stages
    if K < 1 or opts.steps < 1:
        raise ConfigError("--stages and --steps must be >= 1")
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    name = opts.name or f"{'-vs-'.join(opts.schedules)}-K{K}"
    source = opts.emulate.strip().lower()
    measured = source in ("measured", "flops")
    proxy = Proxy(
        opts.model,
        opts.width,
        tuple(opts.input_shape),
        opts.batch_size,
        model_kwargs=dict(opts.model_kwargs),
    )
    if measured:
        proxy = Proxy(batch_size=opts.batch_size if opts.batch_size <= 64 else 16)
    shape = tuple(opts.input_shape)
    workload = Workload(
        opts.model,
        opts.width,
        shape,
        opts.batch_size,
        model_kwargs=dict(opts.model_kwargs),
        device=opts.device,
    )
    # Measured costs: each method scaled by its own slowest stage (a spec is taken as given).
    costs_of = CostSource(opts.emulate, workload, slowest_ms=opts.scale_ms, scale_by=None)
    panels, rows, costs_by = [], [], {}
    for sched_name in opts.schedules:
        schedule, method = resolve(sched_name, opts.method)
        micro = SCHEDULES.get(schedule).micro_batches and schedule != "sequential"
        m = (opts.micro_batches or K) if micro else 1
        if proxy.batch_size % m:
            raise ConfigError(
                f"--micro-batches {m} does not divide --batch-size {proxy.batch_size}; choose a "
                "divisor"
            )
        if source == "measured":
            log(
                f"profile: measuring {opts.model} w={opts.width} {shape} batch "
                f"{opts.batch_size} ({method}, K={K}) op times on {opts.device}"
            )
        costs = costs_of.costs(K, method)
        emulate = per_micro(costs, m)
        costs_by[schedule] = emulate
        local = METHODS.get(method).local
        if opts.simulate:
            if not emulate:
                raise ConfigError("--simulate needs op durations: give --emulate SPEC or measured")
            sim = simulate(schedule, K, emulate, opts.steps, m, local, opts.queue_depth)
            events, row = sim.events, {}
        else:
            executor = "sequential" if schedule == "sequential" else opts.executor
            if executor == "dist":
                raise ConfigError("scpl profile runs the local or sequential executor")
            torch_trace = (
                str(out / f"{name}-{schedule}.torch.json") if opts.torch_profiler else None
            )
            res = run_emulated(
                executor,
                schedule,
                method,
                K,
                m,
                emulate or None,
                opts.steps,
                proxy,
                opts.queue_depth,
                torch_profiler=torch_trace,
            )
            events = res.events
            row = {"executor": executor}
            if emulate:
                sim = simulate(schedule, K, emulate, opts.steps, m, local, opts.queue_depth)
                c = compare(events, sim.events, opts.warmup)
                row["sim_makespan_err_pct"] = 100 * c["makespan_rel_err"]
                row["sim_same_order"] = c["same_order"]
        sr = SimResult(events, K, opts.steps)
        rows.append(
            {
                "schedule": schedule,
                "method": method,
                "K": K,
                "m": m,
                **row,
                "makespan_ms": sr.makespan * 1e3,
                "iter_latency_ms": sr.latency() * 1e3,
                "samples_per_s": sr.steady_rate(opts.warmup) * proxy.batch_size,
            }
        )
        title = f"{schedule} ({method}, K={K}" + (f", m={m}" if m > 1 else "") + ")"
        panels.append((title, events, emulate or None))
    if opts.simulate:
        what = "simulated"
    else:
        what = "emulated" if any(costs_by.values()) else "real"
    if what == "real":
        subtitle = f"{opts.model}, real compute on {opts.device}"
    elif measured:
        what_costs = "FLOP-proportional op costs" if source == "flops" else "op costs measured"
        subtitle = (
            f"{what_costs} on {opts.model} w={opts.width} {tuple(opts.input_shape)} batch "
            f"{opts.batch_size}"
            + (f", scaled to a {opts.scale_ms:g} ms slowest stage" if opts.scale_ms > 0 else "")
        )
    else:
        subtitle = f"op costs {opts.emulate}"
    png = write_gantt(
        panels,
        out / f"{name}.png",
        f"{what} timeline, {opts.steps} mini-batch{'es' if opts.steps != 1 else ''}: {subtitle}",
    )
    trace = write_trace(panels, out / f"{name}.trace.json", {"rows": rows})
    ev_path = out / f"{name}.events.json"
    ev_path.write_text(json.dumps({p[0]: [vars(e) for e in p[1]] for p in panels}))
    log(format_table(rows, f"profile {name}"))
    paths = {"png": str(png), "trace": str(trace), "events": str(ev_path)}
    if opts.torch_profiler and not opts.simulate:
        paths["torch"] = [str(out / f"{name}-{r['schedule']}.torch.json") for r in rows]
    for k, v in paths.items():
        log(f"profile: {k} -> {v}")
    return {"paths": paths, "rows": rows}
