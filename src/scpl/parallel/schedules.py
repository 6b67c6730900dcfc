"""Schedules: which operations each stage runs, in which order, for one mini-batch.

A schedule is pure description. For K stages and m micro-batches it yields a *global serial
order* of (stage, op) pairs -- a valid one-op-at-a-time execution, which the sequential executor
runs and the simulator replays -- and each stage's *program* is that order filtered to the stage.
Pipelined executors run the K programs concurrently, each stage looping over mini-batches with
no barrier between them; data dependencies (activations forward, gradients backward) are the only
synchronisation. Because a stage only changes its own parameters, concurrent execution computes
exactly what the serial order computes.

Ops:
  recv_act / send_act   receive the (activation, labels) of a micro-batch / pass it on
  F                     stage forward on a micro-batch
  L                     local loss (local methods) or the final loss (BP, last stage)
  B                     backward (local loss, or the gradient received from the next stage)
  recv_grad / send_grad gradient w.r.t. the stage input (BP only)
  U                     optimizer + LR-scheduler step, then zero the gradients
"""

from __future__ import annotations

from dataclasses import dataclass

from scpl.errors import ConfigError
from scpl.registry import Registry


@dataclass(frozen=True)
class Op:
    """One operation of one stage on one micro-batch (``mb`` is -1 for U)."""

    kind: str
    mb: int = -1

    def __str__(self) -> str:
        return self.kind if self.mb < 0 else f"{self.kind}{self.mb}"


OP_KINDS = ("recv_act", "F", "send_act", "L", "B", "recv_grad", "send_grad", "U")
Step = tuple[int, Op]


@dataclass(frozen=True)
class Schedule:
    """A registered schedule: its serial order generator and its properties."""

    name: str
    local: bool | None  # True: local-loss methods only; False: BP only; None: either
    concurrent: bool  # False: one op at a time (the reference); True: stages run at once
    micro_batches: bool  # whether m > 1 is meaningful
    auto_for: tuple[tuple[bool, bool], ...] = ()
    """(local method?, m > 1?) cases for which ``schedule="auto"`` picks this schedule."""

    def accepts(self, local: bool) -> bool:
        """Whether a method with (``local``) or without local losses may use this schedule."""
        return self.local is None or self.local == local

    def order(self, num_stages: int, num_micro: int, local: bool) -> list[Step]:
        """Global serial order of (stage, op) for one mini-batch."""
        return ORDERS[self.name](num_stages, num_micro, local)

    def programs(self, num_stages: int, num_micro: int, local: bool) -> list[list[Op]]:
        """Each stage's op list for one mini-batch (the serial order filtered by stage)."""
        progs: list[list[Op]] = [[] for _ in range(num_stages)]
        for stage, op in self.order(num_stages, num_micro, local):
            progs[stage].append(op)
        return progs


SCHEDULES: Registry[Schedule] = Registry("schedule")


def _local_order(K: int, m: int, forward_first: bool) -> list[Step]:
    """Local losses: each stage finishes (F, L, B, U) before the next stage needs nothing more
    than its activations. ``forward_first`` runs all micro-batch forwards (sending each at once)
    before the losses/backwards, as SCPL+GPipe does, so the next stage starts sooner."""
    order: list[Step] = []
    for s in range(K):
        ops: list[Op] = []
        for mb in range(m):
            if s > 0:
                ops.append(Op("recv_act", mb))
            ops.append(Op("F", mb))
            if s < K - 1:
                ops.append(Op("send_act", mb))
            if not forward_first:
                ops += [Op("L", mb), Op("B", mb)]
        if forward_first:
            for mb in range(m):
                ops += [Op("L", mb), Op("B", mb)]
        ops.append(Op("U"))
        order += [(s, op) for op in ops]
    return order


def _bp_order(K: int, m: int) -> list[Step]:
    """BP: forward every micro-batch through all stages, backward in reverse stage order
    then every stage updates once. Backwards run in micro-batch order (GPipe's throughput does
    not depend on it), so each stage accumulates its gradient in the same order as the
    sequential reference and every BP pipeline is bitwise checkable against it."""
    order: list[Step] = []
    for mb in range(m):
        for s in range(K):
            if s > 0:
                order.append((s, Op("recv_act", mb)))
            order.append((s, Op("F", mb)))
            if s < K - 1:
                order.append((s, Op("send_act", mb)))
            else:
                order.append((s, Op("L", mb)))
    for mb in range(m):
        for s in range(K - 1, -1, -1):
            if s < K - 1:
                order.append((s, Op("recv_grad", mb)))
            order.append((s, Op("B", mb)))
            if s > 0:
                order.append((s, Op("send_grad", mb)))
    # Stages update as soon as their last backward is done (stage K-1 first).
    for s in range(K - 1, -1, -1):
        order.append((s, Op("U")))
    return order


def _one_f_one_b_programs(K: int, m: int, local: bool) -> list[list[Op]]:
    """Per-stage programs of 1F1B (PipeDream-Flush): stage s runs min(K-1-s, m) warm-up
    forwards, then alternates one forward and one backward, then drains the remaining backwards
    and updates once. A micro-batch's activations are freed at its backward, so stage s holds
    at most min(K-s, m) micro-batches (GPipe: all m). Backwards run in micro-batch order, so
    the gradient is accumulated in the sequential reference's order (bitwise equal). Local
    methods have no gradient to wait for: every stage runs F, L, B per micro-batch."""

    def fwd(s: int, mb: int) -> list[Op]:
        ops = [Op("recv_act", mb)] if s > 0 else []
        ops.append(Op("F", mb))
        if s < K - 1:
            ops.append(Op("send_act", mb))
        if local or s == K - 1:
            ops.append(Op("L", mb))
        return ops

    def bwd(s: int, mb: int) -> list[Op]:
        ops = [Op("recv_grad", mb)] if (not local and s < K - 1) else []
        ops.append(Op("B", mb))
        if not local and s > 0:
            ops.append(Op("send_grad", mb))
        return ops

    progs = []
    for s in range(K):
        warm = 0 if local else min(K - 1 - s, m)
        ops = [op for mb in range(warm) for op in fwd(s, mb)]
        for i in range(m - warm):
            ops += fwd(s, warm + i) + bwd(s, i)
        ops += [op for mb in range(m - warm, m) for op in bwd(s, mb)]
        progs.append([*ops, Op("U")])
    return progs


def _interleave(progs: list[list[Op]]) -> list[Step]:
    """A global serial order whose per-stage restriction is ``progs``: repeatedly run the first
    stage whose next op has its message (activation or gradient) already sent."""
    pos, order, sent = [0] * len(progs), [], set()
    total = sum(len(p) for p in progs)
    while len(order) < total:
        for s, prog in enumerate(progs):
            if pos[s] == len(prog):
                continue
            op = prog[pos[s]]
            if op.kind == "recv_act" and ("act", s, op.mb) not in sent:
                continue
            if op.kind == "recv_grad" and ("grad", s, op.mb) not in sent:
                continue
            if op.kind == "send_act":
                sent.add(("act", s + 1, op.mb))
            elif op.kind == "send_grad":
                sent.add(("grad", s - 1, op.mb))
            order.append((s, op))
            pos[s] += 1
            break
        else:
            raise AssertionError(f"programs deadlock at {pos}")
    return order


def _sequential(K: int, m: int, local: bool) -> list[Step]:
    return _local_order(K, m, forward_first=False) if local else _bp_order(K, m)


ORDERS = {
    "sequential": _sequential,
    "scpl": lambda K, m, local: _local_order(K, m, forward_first=False),
    "scpl-gpipe": lambda K, m, local: _local_order(K, m, forward_first=True),
    "nmp": lambda K, m, local: _bp_order(K, m),
    "gpipe": lambda K, m, local: _bp_order(K, m),
    "pipedream-1f1b": lambda K, m, local: _interleave(_one_f_one_b_programs(K, m, local)),
}

for _s, _help in (
    (
        Schedule("sequential", None, False, True),
        "one op at a time, batch by batch, stage by stage (parity reference)",
    ),
    (
        Schedule("scpl", True, True, False, auto_for=((True, False),)),
        "local losses; each stage updates after its backward and takes the next batch",
    ),
    (
        Schedule("scpl-gpipe", True, True, True, auto_for=((True, True),)),
        "SCPL with m micro-batches per stage (paper A.5)",
    ),
    (
        Schedule("nmp", False, True, False, auto_for=((False, False),)),
        "BP split across devices (naive model parallelism)",
    ),
    (
        Schedule("gpipe", False, True, True, auto_for=((False, True),)),
        "BP with m micro-batches and a flush per mini-batch",
    ),
    (
        Schedule("pipedream-1f1b", None, True, True),
        "1F1B (PipeDream-Flush): GPipe's makespan, at most K-s micro-batches held on stage s",
    ),
):
    SCHEDULES.register(_s.name, help=_help)(_s)


def schedules_for(local: bool, num_micro: int = 1) -> list[str]:
    """Concurrent schedules a method may use at ``num_micro`` micro-batches (for messages)."""
    return [
        n
        for n in SCHEDULES.names()
        if SCHEDULES.get(n).concurrent
        and SCHEDULES.get(n).accepts(local)
        and (num_micro == 1 or SCHEDULES.get(n).micro_batches)
    ]


def auto_schedule(local: bool, num_micro: int = 1) -> str:
    """The schedule ``"auto"`` stands for: read off the registry's ``auto_for`` data."""
    case = (local, num_micro > 1)
    for n in SCHEDULES.names():
        if case in SCHEDULES.get(n).auto_for:
            return n
    raise AssertionError(f"no schedule registered as auto for {case}")


def resolve_schedule(name: str, local: bool, method: str, num_micro: int) -> Schedule:
    """Look up a schedule ("auto" picks by method and micro-batches) and check that it fits
    the method and the micro-batch count; mistakes raise ConfigError in library terms."""
    if num_micro < 1:
        raise ConfigError(f"micro_batches={num_micro} must be >= 1")
    if name == "auto":
        name = auto_schedule(local, num_micro)
    sched = SCHEDULES.get(name)
    if not sched.accepts(local):
        kind = "has local losses" if local else "backpropagates end to end"
        raise ConfigError(
            f"schedule {name!r} does not fit method {method!r}, which {kind}; use schedule "
            f"{' or '.join(repr(s) for s in schedules_for(local))} (or 'auto')"
        )
    if num_micro > 1 and not sched.micro_batches:
        raise ConfigError(
            f"schedule {name!r} has no micro-batches; use schedule "
            f"{' or '.join(repr(s) for s in schedules_for(local, num_micro))} or micro_batches=1"
        )
    return sched
