"""Discrete-event simulator of the schedules on K devices.

Given per-stage op durations ({stage: {op: seconds}}, the same dict as ``--emulate``), it replays
what the ``local`` executor does -- each stage runs its program (see schedules.py) for every
mini-batch in order, with no barrier between mini-batches -- and returns the timeline as the
same :class:`~scpl.parallel.runner.Event` list a recorded run produces, so the same Gantt/trace
writers draw both, and simulated and measured runs can be compared event by event.

Timing rules (those of StageRunner + QueueChannel):

* an op starts when its stage is free; F, L, B, U then take their duration;
* ``recv_act``/``recv_grad`` wait for the message (put by the neighbour's send, plus an optional
  link ``latency``), then take their duration (the recorded span includes the wait);
* ``send_act``/``send_grad`` put the message at once unless the link's bounded queue already
  holds ``queue_depth`` messages not yet taken, in which case they wait for the oldest to be
  taken; then the sender is held for the send's duration;
* a non-concurrent schedule (``sequential``) runs its global serial order one op at a time.

Mini-batches are assumed available at time 0 (the data loader is never the bottleneck).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from scpl.errors import ConfigError
from scpl.parallel.runner import Event
from scpl.parallel.schedules import SCHEDULES, Op

Costs = dict[int, dict[str, float]]


@dataclass
class SimResult:
    """A simulated (or recorded) timeline and its summary numbers."""

    events: list[Event]
    num_stages: int
    num_batches: int
    schedule: str = ""
    num_micro: int = 1

    @property
    def makespan(self) -> float:
        return makespan(self.events)

    def finish_times(self) -> list[float]:
        return finish_times(self.events, self.num_batches)

    def steady_rate(self, warmup: int = 1) -> float:
        """Mini-batches per second in the steady state (see :func:`steady_rate`)."""
        return steady_rate(self.events, self.num_batches, warmup)

    def latency(self) -> float:
        """Seconds from the start until mini-batch 0 has finished on every stage."""
        return self.finish_times()[0] - min(e.start for e in self.events)


def makespan(events: Sequence[Event]) -> float:
    ev = [e for e in events if e.batch >= 0]
    return max(e.end for e in ev) - min(e.start for e in ev)


def finish_times(events: Sequence[Event], num_batches: int | None = None) -> list[float]:
    """For each mini-batch, when its last op (on any stage) ended."""
    fin: dict[int, float] = {}
    for e in events:
        if e.batch >= 0:
            fin[e.batch] = max(fin.get(e.batch, e.end), e.end)
    n = num_batches if num_batches is not None else (max(fin) + 1 if fin else 0)
    return [fin[b] for b in range(n)]


def steady_rate(events: Sequence[Event], num_batches: int | None = None, warmup: int = 1) -> float:
    """Mini-batches per second between the finish of batch ``warmup - 1`` and of the last one:
    the pipeline's throughput once it is full (fill and drain excluded), which is what a long
    training run sees. With ``warmup=0`` it is the end-to-end rate from the first op."""
    fin = finish_times(events, num_batches)
    n = len(fin)
    if warmup <= 0 or n - warmup < 1:
        return n / makespan(events)
    warmup = min(warmup, n - 1)
    return (n - warmup) / (fin[-1] - fin[warmup - 1])


def _cost(costs: Costs, stage: int, kind: str) -> float:
    return float(costs.get(stage, {}).get(kind, 0.0))


def simulate(
    schedule: str,
    num_stages: int,
    costs: Costs,
    num_batches: int = 8,
    num_micro: int = 1,
    local: bool | None = None,
    queue_depth: int = 2,
    latency: float = 0.0,
    device: str = "sim",
) -> SimResult:
    """Simulate ``num_batches`` mini-batches of ``schedule`` on ``num_stages`` devices.

    ``costs[s][op]`` is the duration of one op of that kind on stage s (per micro-batch for
    F/L/B/transfers; see :func:`scpl.perf.emulate.per_micro` to derive them from mini-batch costs).
    ``local`` (local-loss method or BP) defaults to what the schedule requires (local for
    ``sequential``). Returns the timeline; raises ConfigError if the programs deadlock.
    """
    sched = SCHEDULES.get(schedule)
    if local is None:
        local = sched.local if sched.local is not None else True
    if queue_depth < 1:
        raise ConfigError(f"--queue-depth {queue_depth} must be >= 1")
    K = num_stages
    events: list[Event] = []
    if not sched.concurrent:
        t = 0.0
        order = sched.order(K, num_micro, local)
        for b in range(num_batches):
            for s, op in order:
                d = _cost(costs, s, op.kind)
                events.append(Event(s, op.kind, b, op.mb, t, t + d, f"{device}{s}"))
                t += d
        return SimResult(events, K, num_batches, schedule, num_micro)

    programs = sched.programs(K, num_micro, local)
    flat: list[list[tuple[int, Op]]] = [
        [(b, op) for b in range(num_batches) for op in programs[s]] for s in range(K)
    ]
    pos = [0] * K
    free = [0.0] * K
    # Links: ("act", s) carries activations into stage s; ("grad", s) gradients into stage s.
    put: dict[tuple, float] = {}  # (link, batch, mb) -> time the message is in the queue
    taken: dict[tuple, list[float]] = {}  # link -> times its messages were taken, in order
    sent: dict[tuple, int] = {}  # link -> messages sent so far
    remaining = sum(len(f) for f in flat)
    while remaining:
        progressed = False
        for s in range(K):
            while pos[s] < len(flat[s]):
                b, op = flat[s][pos[s]]
                kind, start = op.kind, free[s]
                d = _cost(costs, s, kind)
                if kind in ("recv_act", "recv_grad"):
                    link = ("act" if kind == "recv_act" else "grad", s)
                    key = (link, b, op.mb)
                    if key not in put:
                        break  # the producer has not sent it yet
                    got = max(start, put[key] + latency)
                    taken.setdefault(link, []).append(got)
                    end = got + d
                elif kind in ("send_act", "send_grad"):
                    link = ("act", s + 1) if kind == "send_act" else ("grad", s - 1)
                    n = sent.get(link, 0)
                    if n >= queue_depth:
                        tk = taken.get(link, [])
                        if len(tk) <= n - queue_depth:
                            break  # queue full until the consumer takes message n - depth
                        t_put = max(start, tk[n - queue_depth])
                    else:
                        t_put = start
                    sent[link] = n + 1
                    put[(link, b, op.mb)] = t_put
                    end = t_put + d
                else:
                    end = start + d
                events.append(Event(s, kind, b, op.mb, start, end, f"{device}{s}"))
                free[s] = end
                pos[s] += 1
                remaining -= 1
                progressed = True
        if not progressed:
            stuck = {s: str(flat[s][pos[s]][1]) for s in range(K) if pos[s] < len(flat[s])}
            raise ConfigError(f"schedule {schedule!r} deadlocks in the simulator at {stuck}")
    return SimResult(events, K, num_batches, schedule, num_micro)


def stage_order(events: Sequence[Event], stage: int) -> list[tuple[int, str, int]]:
    """The (batch, op, micro-batch) sequence one stage ran, by start time."""
    ev = sorted((e for e in events if e.stage == stage and e.batch >= 0), key=lambda e: e.start)
    return [(e.batch, e.kind, e.mb) for e in ev]


def compare(recorded: Sequence[Event], simulated: Sequence[Event], warmup: int = 1) -> dict:
    """How well a simulation reproduces a recorded run: per-stage order equality, relative
    makespan error, relative steady-state throughput error, and the median absolute start-time
    error of matched events (seconds, both timelines shifted to start at 0)."""
    rec = [e for e in recorded if e.batch >= 0]
    stages = sorted({e.stage for e in rec})
    same_order = all(stage_order(rec, s) == stage_order(simulated, s) for s in stages)
    n = max(e.batch for e in rec) + 1
    t0r = min(e.start for e in rec)
    t0s = min(e.start for e in simulated)
    sim_start = {(e.stage, e.kind, e.batch, e.mb): e.start - t0s for e in simulated}
    errs = [
        abs((e.start - t0r) - sim_start[(e.stage, e.kind, e.batch, e.mb)])
        for e in rec
        if (e.stage, e.kind, e.batch, e.mb) in sim_start
    ]
    mk_r, mk_s = makespan(rec), makespan(simulated)
    tp_r, tp_s = steady_rate(rec, n, warmup), steady_rate(simulated, n, warmup)
    return {
        "same_order": same_order,
        "makespan_recorded": mk_r,
        "makespan_simulated": mk_s,
        "makespan_rel_err": (mk_s - mk_r) / mk_r,
        "throughput_rel_err": (tp_s - tp_r) / tp_r,
        "start_abs_err_median": statistics.median(errs) if errs else 0.0,
    }


def project_epoch(
    schedule: str,
    method: str,
    num_stages: int,
    costs: Costs,
    steps: int,
    micro: int = 1,
    transfer: Costs | None = None,
    sim_batches: int = 32,
) -> float:
    """Seconds for ``steps`` mini-batches (an epoch) of ``method`` on ``schedule`` over K
    devices, from an empty pipeline: the first ``sim_batches`` simulated, the rest at the
    simulated steady-state rate. ``costs`` are mini-batch op costs (split per micro-batch here),
    ``transfer`` per-message costs added to every stage."""
    from scpl.methods import METHODS
    from scpl.perf.emulate import merge_costs, per_micro

    K = num_stages
    merged = merge_costs(costs, transfer or {}, K)
    n = min(steps, sim_batches)
    local = METHODS.get(method).local
    sim = simulate(schedule, K, per_micro(merged, micro), n, micro, local)
    total = sim.makespan
    if steps > n:
        total += (steps - n) / sim.steady_rate(min(n - 1, max(1, n // 2)))
    return total
