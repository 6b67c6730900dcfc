"""Emulated device time: per-stage, per-op durations that a run adds to each op's real work.

With emulation each op of stage s holds its "device" for ``emulate[s][op]`` seconds after its real
work, releasing the GIL (see :class:`~scpl.parallel.runner.StageRunner`), as a GPU kernel
would. That turns a machine with one CPU core into K independent devices whose speed we choose,
so pipeline speedups can be measured where real parallel compute cannot.

Spec grammar (``--emulate``)::

    F=10ms,L=2ms,B=20ms,U=1ms              every stage the same
    0:F=10ms,B=20ms;1:F=12ms,B=24ms        per stage (';' between stages)
    F=10ms,B=20ms;3:B=30ms                 defaults, then an override for stage 3
    1-2:F=5ms   *:U=1ms                    ranges and '*' (all stages)
    send_act=1ms,recv_act=1ms              transfer cost (send/recv/comm are shorthands)
    measured / flops                       op costs of the real model (see scpl.perf.costs)

Op names are those of :mod:`scpl.parallel.schedules` (``F L B U send_act recv_act send_grad
recv_grad``); ``send`` = send_act + send_grad, ``recv`` = recv_act + recv_grad, ``comm`` = all
four. Units: ``us``, ``ms``, ``s``. Semantics of transfer costs: ``send_*=d`` holds the sender d
after it handed the message over; ``recv_*=d`` holds the receiver d after the message arrived (a
synchronous copy is ``send=d,recv=d``; the simulator uses the same semantics).
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence

from scpl.errors import ConfigError
from scpl.parallel.schedules import OP_KINDS

Costs = dict[int, dict[str, float]]

UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0}
ALIASES = {
    "send": ("send_act", "send_grad"),
    "recv": ("recv_act", "recv_grad"),
    "comm": ("send_act", "recv_act", "send_grad", "recv_grad"),
}
WORK_OPS = ("F", "L", "B", "U")
COMM_OPS = ("recv_act", "send_act", "recv_grad", "send_grad")
_EXAMPLE = "e.g. 'F=10ms,L=2ms,B=20ms,U=1ms' or '0:F=10ms,B=20ms;1:F=12ms,B=24ms'"
_DURATION = re.compile(r"^([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(us|µs|ms|s)$")


def parse_duration(text: str) -> float:
    """'10ms' -> 0.01 (seconds). A unit is required."""
    m = _DURATION.match(text.strip())
    if not m:
        raise ConfigError(
            f"--emulate: bad duration {text.strip()!r}; give a number with a unit, e.g. 10ms, "
            "250us or 0.02s"
        )
    return float(m.group(1)) * UNITS[m.group(2)]


def _stages_of(sel: str, num_stages: int, spec: str) -> list[int]:
    sel = sel.strip()
    if sel == "*":
        return list(range(num_stages))
    m = re.fullmatch(r"(\d+)(?:-(\d+))?", sel)
    if not m:
        raise ConfigError(
            f"--emulate {spec!r}: bad stage selector {sel!r}; use a stage index (0), a range "
            f"(1-3) or '*', {_EXAMPLE}"
        )
    lo = int(m.group(1))
    hi = int(m.group(2)) if m.group(2) is not None else lo
    if lo > hi or hi >= num_stages:
        raise ConfigError(
            f"--emulate {spec!r}: stage {sel} does not exist with {num_stages} stages; use "
            f"0..{num_stages - 1}"
        )
    return list(range(lo, hi + 1))


def parse_emulate(spec: str | None, num_stages: int) -> Costs:
    """Parse an ``--emulate`` spec into ``ExecutorOptions.emulate`` ({stage: {op: seconds}}).

    ``None``, ``''`` and ``'none'`` give ``{}`` (no emulation). ``'measured'`` is resolved by the
    caller (it needs a model), see :mod:`scpl.perf.costs`.
    """
    if spec is None or not spec.strip() or spec.strip().lower() in ("none", "off", "0"):
        return {}
    if spec.strip().lower() == "measured":
        raise ConfigError(
            "--emulate measured needs a model to time; it is resolved by `scpl bench` / "
            "`scpl profile`, not by parse_emulate"
        )
    if num_stages < 1:
        raise ConfigError(f"--emulate needs at least one stage (got {num_stages})")
    out: Costs = {s: {} for s in range(num_stages)}
    for segment in spec.split(";"):
        segment = segment.strip()
        if not segment:
            continue
        stages = list(range(num_stages))
        body = segment
        if ":" in segment:
            sel, body = segment.split(":", 1)
            stages = _stages_of(sel, num_stages, spec)
        if not body.strip():
            raise ConfigError(f"--emulate {spec!r}: stage {sel.strip()} has no ops; {_EXAMPLE}")
        for item in body.split(","):
            item = item.strip()
            if not item:
                continue
            if "=" not in item:
                raise ConfigError(f"--emulate {spec!r}: {item!r} is not OP=DURATION; {_EXAMPLE}")
            op, dur = (p.strip() for p in item.split("=", 1))
            kinds = ALIASES.get(op, (op,))
            for k in kinds:
                if k not in OP_KINDS:
                    raise ConfigError(
                        f"--emulate {spec!r}: unknown op {op!r}; choose from "
                        f"{', '.join(OP_KINDS + tuple(ALIASES))}"
                    )
            seconds = parse_duration(dur)
            for s in stages:
                for k in kinds:
                    out[s][k] = seconds
    return {s: d for s, d in out.items() if d}


def format_emulate(costs: Costs, num_stages: int | None = None) -> str:
    """The spec that parses back to ``costs`` (one ';' segment per stage, in µs precision)."""
    if not costs:
        return "none"
    stages = sorted(costs) if num_stages is None else range(num_stages)
    segs = []
    for s in stages:
        ops = costs.get(s, {})
        items = [f"{k}={ops[k] * 1e3:.3f}ms" for k in OP_KINDS if ops.get(k)]
        if items:
            segs.append(f"{s}:" + ",".join(items))
    return ";".join(segs)


def scale_costs(costs: Costs, factor: float, kinds: Sequence[str] = OP_KINDS) -> Costs:
    """Multiply the durations of ``kinds`` by ``factor`` (others unchanged)."""
    return {s: {k: v * factor if k in kinds else v for k, v in d.items()} for s, d in costs.items()}


def per_micro(costs: Costs, num_micro: int) -> Costs:
    """Mini-batch op costs -> micro-batch op costs: F, L, B and transfers shrink by 1/m, U stays
    (the linear model; real devices lose some efficiency on small micro-batches)."""
    if num_micro == 1:
        return costs
    return scale_costs(costs, 1.0 / num_micro, ("F", "L", "B") + COMM_OPS)


def merge_costs(costs: Costs, extra: Costs, num_stages: int) -> Costs:
    """``costs`` with ``extra``'s ops added (or replaced) per stage, for stages < K."""
    out = {s: dict(costs.get(s, {})) for s in range(num_stages)}
    for s, d in extra.items():
        if s < num_stages:
            out[s].update(d)
    return out


def stage_totals(costs: Costs, num_stages: int, kinds: Sequence[str] = WORK_OPS) -> list[float]:
    """Sum of the given op costs per stage (one op each)."""
    return [sum(costs.get(s, {}).get(k, 0.0) for k in kinds) for s in range(num_stages)]


def costs_from_events(
    events, skip_batches: int = 1, base: Costs | None = None, stat: str = "mean"
) -> Costs:
    """Per-(stage, op) costs from a recorded timeline, for the simulator to replay it.

    Work ops (F, L, B, U never block): the mean recorded span (the mean, not the median: a
    pipeline's critical path adds spans up; ``stat="median"`` for a robust one-device timing). A receive's span includes waiting for the message,
    so its own cost is measured from when the matching send started (the message is put then)
    to the receive's end. A send blocks only on a full queue: its shortest span. Transfers
    without a matching event fall back to ``base[stage][op]`` when given, else the shortest span.
    Events of the first ``skip_batches`` batches (warm-up) and of eval (batch < 0) are dropped.
    """
    sends = {
        (e.kind, e.stage, e.batch, e.mb): e.start
        for e in events
        if e.kind in ("send_act", "send_grad")
    }
    by: dict[tuple[int, str], list[float]] = {}
    own: dict[tuple[int, str], list[float]] = {}
    for e in events:
        if e.batch < skip_batches:
            continue
        by.setdefault((e.stage, e.kind), []).append(e.end - e.start)
        if e.kind in ("recv_act", "recv_grad"):
            src = ("send_act", e.stage - 1) if e.kind == "recv_act" else ("send_grad", e.stage + 1)
            put = sends.get((src[0], src[1], e.batch, e.mb))
            if put is not None:
                own.setdefault((e.stage, e.kind), []).append(max(0.0, e.end - max(e.start, put)))
    out: Costs = {}
    for (s, k), d in sorted(by.items()):
        if (s, k) in own:
            v = statistics.fmean(own[(s, k)])
        elif k in COMM_OPS:
            v = (base or {}).get(s, {}).get(k, 0.0) if base is not None else min(d)
        else:
            v = statistics.fmean(d) if stat == "mean" else statistics.median(d)
        out.setdefault(s, {})[k] = v
    return out
