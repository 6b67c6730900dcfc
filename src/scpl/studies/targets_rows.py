"""`scpl bench --targets`: emulated rows (a proxy running a schedule with modelled op times,
checked against the independent reference) and the FLOP suites of the paper's networks."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from scpl.perf.balance import StageCosts, flop_stage_costs
from scpl.perf.costmodel import (
    Costs,
    Profile,
    one_device_costs,
    peak_activation_bytes,
    profile_model,
    stage_op_costs,
    stage_times,
)
from scpl.perf.emulate import per_micro, scale_costs
from scpl.perf.pricing import bp_split, local_split
from scpl.studies.targets_setup import BP_PIPELINES, Net, TargetsOptions
from scpl.studies.targets_verify import RowModel, verify_row

# -- emulated rows --------------------------------------------------------------------------


def _proxy(opts: TargetsOptions):
    from scpl.perf.harness import Proxy

    return Proxy(batch_size=opts.proxy_batch)


def reference_run(
    method: str, num_stages: int, num_micro: int, batches: list, opts: TargetsOptions
) -> tuple[list[dict], Costs]:
    """The sequential executor on the ``sequential`` schedule after ``batches`` (no emulation):
    final unit states, and the median real time of each (stage, op) of the proxy (what
    :func:`emulated_row` subtracts from the emulated time)."""
    from scpl.perf.emulate import costs_from_events
    from scpl.perf.harness import proxy_pipeline

    with proxy_pipeline(
        "sequential", "sequential", method, num_stages, num_micro, None, True, _proxy(opts)
    ) as pipe:
        for x, y in batches:
            pipe.step(x, y)
        states = [{k: v.clone() for k, v in s.items()} for s in pipe.unit_states()]
        events = pipe.executor.recorder.events
    skip = min(opts.warmup, len(batches) - 1)
    return states, costs_from_events(events, skip_batches=skip, stat="median")


def calibrated(emulate: Costs, real: Costs) -> Costs:
    """Emulated durations less the proxy's own work on each compute op (F, L, B, U; at least
    0), so that an op holds its stage for about its emulated time in all."""
    return {
        s: {
            k: max(0.0, v - (real.get(s, {}).get(k, 0.0) if k in ("F", "L", "B", "U") else 0.0))
            for k, v in ops.items()
        }
        for s, ops in emulate.items()
    }


def folded(emulate: Costs) -> Costs:
    """Move the emulated time of L, U and send_act onto B (fewer sleeps, each of which costs a
    wake-up on a loaded machine). Timing-exact where those ops and B follow each other with no
    receive in between: ``scpl`` at m=1 (recv_act, F, send_act, L, B, U; a send puts its
    message before it holds the stage, so the message leaves at the same time) and one device
    (F, L, B, U)."""
    out: Costs = {}
    for s, ops in emulate.items():
        d = dict(ops)
        moved = sum(d.pop(k, 0.0) for k in ("L", "U", "send_act"))
        d["B"] = d.get("B", 0.0) + moved
        out[s] = d
    return out


def emulated_row(
    name: str,
    schedule: str,
    method: str,
    costs: Costs,
    num_micro: int,
    opts: TargetsOptions,
    executor: str = "local",
    verify: RowModel | None = None,
) -> dict:
    """Run ``schedule`` on the proxy with ``costs`` (per mini-batch; split per micro-batch
    here) emulated; returns the row. ``verify``: the row's own network, on which the schedule
    is checked against the independent reference (:mod:`scpl.studies.targets_verify`)."""
    from scpl.methods import METHODS
    from scpl.perf.harness import make_batches, proxy_pipeline, rebase
    from scpl.perf.simulate import SimResult, simulate

    K = len(costs)
    proxy = _proxy(opts)
    emulate = per_micro(costs, num_micro)
    batches = make_batches(opts.warmup + opts.steps, proxy)
    _, real = reference_run(method, K, num_micro, batches, opts)
    held = calibrated(emulate, real) if opts.calibrate else emulate
    if (schedule == "scpl" and num_micro == 1) or (executor == "sequential" and K == 1):
        held = folded(held)
    t0 = time.perf_counter()
    rates = []
    for _ in range(max(1, opts.repeats)):
        with proxy_pipeline(executor, schedule, method, K, num_micro, held, True, proxy) as pipe:
            for x, y in batches[: opts.warmup]:
                pipe.step(x, y)
            pipe.flush()
            for x, y in batches[opts.warmup :]:
                pipe.step(x, y)
            pipe.flush()
            events = rebase(pipe.executor.recorder.events, opts.warmup)
        rates.append(SimResult(events, K, opts.steps).steady_rate(1) * proxy.batch_size)
    wall = time.perf_counter() - t0
    local = METHODS.get(method).local
    # The median run, not the best one: a headline is what a user would get, not a lucky retry.
    rate = statistics.median(rates)
    nominal = simulate(schedule, K, emulate, opts.steps, num_micro, local)
    row = {
        "row": name,
        "schedule": schedule,
        "method": method,
        "executor": executor,
        "K": K,
        "m": num_micro,
        "samples_per_s": rate,
        "nominal_samples_per_s": nominal.steady_rate(1) * proxy.batch_size,
        "stage_ms": [round(t * 1e3, 3) for t in stage_times(costs)],
        "runs_samples_per_s": [round(r, 2) for r in rates],
        "wall_s": wall,
    }
    if verify is not None:
        bad = verify_row(verify, schedule, method, num_micro, opts)
        row["verified"] = not bad
        if bad:
            row["mismatches"] = bad[:5]
    return row


# -- the FLOP suites ------------------------------------------------------------------------


@dataclass
class Suite:
    """One network under the FLOP cost model: profiles, splits and their per-stage costs."""

    net: Net
    prof: Profile
    local_costs: StageCosts
    bp_costs: StageCosts
    paper: list[int]
    auto: list[int]
    bp_best: list[int]
    scale: float = 1.0  # emulated seconds per model-device second


def make_suite(net: Net, opts: TargetsOptions, head: str | None = None) -> Suite:
    from scpl.models import build_model

    prof = profile_model(
        net.model,
        "scpl",
        net.input_shape,
        net.num_classes,
        opts.width,
        net.batch_size,
        head or opts.head,
        opts.proj_dim,
        opts.stages,
        net.model_kwargs,
    )
    lc, bc = flop_stage_costs(prof, True), flop_stage_costs(prof, False)
    paper = build_model(
        net.model, net.input_shape, net.num_classes, opts.stages, 0.125, **net.model_kwargs
    ).partition
    # The splits of the shared price list (scpl.perf.pricing, also time to accuracy's).
    auto, best = local_split(prof, opts.stages), bp_split(prof, opts.stages)
    scale = opts.stage_ms * 1e-3 / max(lc.stage_costs(auto))
    return Suite(net, prof, lc, bc, paper, auto, best, scale)


def flop_rows(suite: Suite, opts: TargetsOptions, gpipe: bool, log) -> list[dict]:
    """SCPL (auto split) pipelined, one-device BP, and (``gpipe``) the BP pipelines at m in
    {K, 2K, 4K} on BP's own best split, plus SCPL on 1F1B micro-batches (memory)."""
    prof, K, f = suite.prof, opts.stages, suite.scale
    model = suite.net.model
    rows = []
    scpl = scale_costs(stage_op_costs(prof, suite.auto, True), f)
    own = RowModel(suite.net, tuple(suite.auto), prof.head)
    rows.append(emulated_row(f"{model} scpl auto", "scpl", "scpl", scpl, 1, opts, verify=own))
    rows[-1].update(partition=suite.auto, head=prof.head, kind="scpl")
    log(fmt_row(rows[-1]))
    bp1 = scale_costs(one_device_costs(prof), f)
    rows.append(
        emulated_row(
            f"{model} bp one device",
            "sequential",
            "bp",
            bp1,
            1,
            opts,
            executor="sequential",
        )
    )
    rows[-1].update(partition=[prof.num_units], head="-", kind="bp-1")
    log(fmt_row(rows[-1]))
    if not gpipe:
        return rows
    bp = scale_costs(stage_op_costs(prof, suite.bp_best, False), f)
    for mult in opts.micro:
        m = mult * K
        if opts.proxy_batch % m or opts.proxy_batch // m < 2:
            continue
        for sched in BP_PIPELINES:
            own = RowModel(suite.net, tuple(suite.bp_best), "-")
            name = f"{model} bp {sched} m={m}"
            rows.append(emulated_row(name, sched, "bp", bp, m, opts, verify=own))
            rows[-1].update(partition=suite.bp_best, head="-", kind="bp-pipe")
            rows[-1]["peak_act_bytes"] = peak_activation_bytes(prof, suite.bp_best, sched, m, False)
            log(fmt_row(rows[-1]))
    return rows


def fmt_row(row: dict) -> str:
    """One log line of a row."""
    v = row.get("verified")
    check = "" if v is None else (" verified" if v else " MISMATCH")
    return (
        f"  {row['row']:34s} {row['samples_per_s']:9.1f} samples/s (nominal "
        f"{row['nominal_samples_per_s']:.1f}) [{row['wall_s']:.1f}s]{check}"
    )
