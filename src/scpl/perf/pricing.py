"""One price list for a training step on K devices, shared by ``scpl bench --targets`` and
``scpl experiment --time-to-accuracy``.

Every contender is priced from the same :class:`~scpl.perf.costmodel.Profile` by the same
function, :func:`~scpl.perf.costmodel.stage_op_costs`: F, L, B from FLOPs, U from the parameters
a stage updates (Adam is memory-bound), ``send_act``/``send_grad`` from the bytes crossing each
cut. The pipelines' step times come from the discrete-event simulator.

* BP on one device: the whole model as one stage (no transfers).
* BP pipelines: on BP's own best split (min-max of BP's stage costs), ``nmp`` and ``gpipe`` /
  ``pipedream-1f1b`` at every micro-batch count up to 4K that divides the batch; the fastest.
* local methods: the ``scpl`` schedule on the split the run trains (``--partition auto``
  resolved as training resolves it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from scpl.perf.costmodel import Costs, Profile, one_device_costs, stage_op_costs

SIM_BATCHES = 16
"""Mini-batches simulated per schedule; the step time is the steady state after the fill."""
BP_SCHEDULES = ("nmp", "gpipe", "pipedream-1f1b")
"""BP schedules tried for the best BP pipeline (nmp without micro-batches)."""
MAX_MICRO_MULT = 4
"""Micro-batch counts go up to MAX_MICRO_MULT x K."""


@dataclass
class Priced:
    """A priced way of running a step: schedule, micro-batches, split and seconds per step."""

    schedule: str
    micro: int
    partition: list[int]
    sec_per_step: float


def simulated_step(costs: Costs, schedule: str, num_stages: int, micro: int, local: bool) -> float:
    """Steady-state seconds per mini-batch of ``schedule`` on ``num_stages`` devices (``costs``
    per mini-batch; split per micro-batch here)."""
    from scpl.perf.emulate import per_micro
    from scpl.perf.simulate import simulate

    sim = simulate(schedule, num_stages, per_micro(costs, micro), SIM_BATCHES, micro, local)
    return 1.0 / sim.steady_rate(warmup=2)


def micro_counts(num_stages: int, inputs: int) -> list[int]:
    """Micro-batch counts tried for a BP pipeline: powers of two and K, 2K, 4K, from 2 up to
    4K, that divide the ``inputs`` of a mini-batch."""
    top = MAX_MICRO_MULT * num_stages
    cands = {2**i for i in range(1, top.bit_length() + 1)} | {
        num_stages * k for k in range(1, MAX_MICRO_MULT + 1) if k & (k - 1) == 0
    }
    return sorted(m for m in cands if 2 <= m <= top and inputs % m == 0)


def bp_split(prof: Profile, num_stages: int) -> list[int]:
    """BP's own best split: the contiguous partition whose slowest BP stage is fastest."""
    from scpl.perf.balance import flop_stage_costs, partition_min_max

    return partition_min_max(flop_stage_costs(prof, False), num_stages)


def local_split(prof: Profile, num_stages: int) -> list[int]:
    """The local method's min-max split (``--partition auto --balance-by flops``)."""
    from scpl.perf.balance import flop_stage_costs, partition_min_max

    return partition_min_max(flop_stage_costs(prof, True), num_stages)


def one_device(prof: Profile) -> Priced:
    """BP on one device (every op in a row, no transfers)."""
    costs = one_device_costs(prof)
    return Priced("one device", 1, [prof.num_units], sum(costs[0].values()))


def best_bp_pipeline(prof: Profile, num_stages: int, inputs: int) -> Priced:
    """The fastest BP pipeline on ``num_stages`` devices, on BP's own best split."""
    part = bp_split(prof, num_stages)
    costs = stage_op_costs(prof, part, False)
    best: Priced | None = None
    for schedule in BP_SCHEDULES:
        for m in [1] if schedule == "nmp" else micro_counts(num_stages, inputs):
            t = simulated_step(costs, schedule, num_stages, m, local=False)
            if best is None or t < best.sec_per_step:
                best = Priced(schedule, m, part, t)
    assert best is not None  # nmp always runs
    return best


def local_pipeline(prof: Profile, partition: Sequence[int]) -> Priced:
    """A local method on the ``scpl`` schedule over ``partition``, one stage per device."""
    costs = stage_op_costs(prof, partition, True)
    t = simulated_step(costs, "scpl", len(partition), 1, local=True)
    return Priced("scpl", 1, list(partition), t)
