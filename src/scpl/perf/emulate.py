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
    measured                               op times measured from the real model (see bench)

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
    caller (it needs a model), see :func:`measure_op_costs`.
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


def synthetic_batch(
    input_shape: tuple[int, ...],
    batch_size: int,
    num_classes: int = 10,
    generator=None,
    vocab_size: int = 1000,
):
    """A random training batch (x, y) for a model's input shape: images ``(C, H, W)`` give a
    float tensor; text ``(T,)`` gives ``(tokens, lengths)`` (padded with 0, the longest row full
    length). Labels cycle through the classes, so every class present has positives."""
    import torch

    n = batch_size
    y = torch.arange(n) % max(1, min(num_classes, n // 2))
    if len(input_shape) == 1:
        t = input_shape[0]
        tokens = torch.randint(2, max(3, vocab_size), (n, t), generator=generator)
        lengths = torch.randint(1, t + 1, (n,), generator=generator)
        lengths[0] = t
        tokens[torch.arange(t).expand(n, t) >= lengths[:, None]] = 0
        return (tokens, lengths), y
    return torch.randn(n, *input_shape, generator=generator), y


def measure_op_costs(
    model: str = "vgg",
    method: str = "scpl",
    num_stages: int = 4,
    width: float = 1.0,
    input_shape: tuple[int, ...] = (3, 32, 32),
    num_classes: int = 10,
    batch_size: int = 16,
    steps: int = 3,
    warmup: int = 1,
    partition: Sequence[int] | None = None,
    num_micro: int = 1,
    device: str = "cpu",
    head: str = "mlp",
    proj_dim: int = 1024,
    seed: int = 0,
    model_kwargs: dict | None = None,
) -> Costs:
    """Time each op of each stage of the real model on one device: the sequential executor with
    a recorder runs ``warmup + steps`` training steps; returns the median per (stage, op).
    These are the costs ``--emulate measured`` emulates and ``scpl bench --project`` simulates."""
    import torch

    from scpl.methods import MethodConfig, build_method
    from scpl.models import build_model
    from scpl.parallel import EXECUTORS, ExecutorOptions, OptimConfig

    dev = torch.device(device)
    torch.manual_seed(seed)
    kw = dict(model_kwargs or {})
    m = build_model(model, input_shape, num_classes, num_stages, width, partition, **kw)
    meth = build_method(method, MethodConfig(head=head, proj_dim=proj_dim))
    ex = EXECUTORS.get("sequential")(
        meth.attach(m),
        meth.local,
        OptimConfig(total_steps=1000),
        [dev],
        ExecutorOptions("sequential", num_micro=num_micro, record=True),
        method,
    )
    g = torch.Generator().manual_seed(seed)
    x, y = synthetic_batch(input_shape, batch_size, num_classes, g, kw.get("vocab_size", 1000))
    x = tuple(t.to(dev) for t in x) if isinstance(x, tuple) else x.to(dev)
    y = y.to(dev)
    try:
        for _ in range(warmup + steps):
            ex.submit(x, y)
            ex.collect()
    finally:
        ex.close()
    return costs_from_events(ex.recorder.events, skip_batches=warmup, stat="median")


def flop_op_costs(
    model: str = "vgg",
    method: str = "scpl",
    num_stages: int = 4,
    width: float = 1.0,
    input_shape: tuple[int, ...] = (3, 32, 32),
    num_classes: int = 10,
    batch_size: int = 32,
    partition: Sequence[int] | None = None,
    flops_per_s: float = 1e12,
    head: str = "mlp",
    proj_dim: int = 1024,
    model_kwargs: dict | None = None,
    seed: int = 0,
) -> Costs:
    """Op costs of a compute-bound device: the FLOPs of each stage's F, L and B (counted by
    torch.utils.flop_counter on one training step: matmuls and convolutions only) divided by
    ``flops_per_s``. U and transfers cost 0. On a GPU, where the per-step optimizer and the
    small elementwise ops are cheap next to the convolutions, this is closer to the real split
    of work between stages than CPU timings (on a CPU the projection heads' Adam updates weigh
    much more)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from scpl.methods import MethodConfig, build_method
    from scpl.models import build_model
    from scpl.parallel.runner import act_tensor, detach_act

    torch.manual_seed(seed)
    kw = dict(model_kwargs or {})
    m = build_model(model, input_shape, num_classes, num_stages, width, partition, **kw)
    meth = build_method(method, MethodConfig(head=head, proj_dim=proj_dim))
    units = meth.attach(m)
    g = torch.Generator().manual_seed(seed)
    x, y = synthetic_batch(input_shape, batch_size, num_classes, g, kw.get("vocab_size", 1000))
    out_costs: Costs = {}
    for s, unit in enumerate(units):
        unit.train()
        x = detach_act(x)
        if not meth.local and s > 0:
            act_tensor(x).requires_grad_(True)
        with FlopCounterMode(display=False) as fc:
            out = unit.forward_train(x, y)  # AL carries targets: its output is not its input
        f = fc.get_total_flops()
        with FlopCounterMode(display=False) as fc:
            loss, _ = unit.loss(out, y)
        lf = fc.get_total_flops()
        with FlopCounterMode(display=False) as fc:
            if loss is not None and (meth.local or s == num_stages - 1):
                loss.backward()
            else:
                t = act_tensor(out)
                torch.autograd.backward(t, torch.ones_like(t))
        b = fc.get_total_flops()
        costs = {"F": f / flops_per_s, "B": b / flops_per_s}
        if loss is not None:
            costs["L"] = lf / flops_per_s
        out_costs[s] = costs
        x = unit.to_next(out)
    return out_costs
