"""1F1B (PipeDream-Flush): bitwise equal to the sequential reference on every executor, bounded
activations in flight, and GPipe's makespan in the simulator."""

from __future__ import annotations

import pytest

from parity_utils import assert_states_equal, run_dist, run_executor
from scpl.parallel.schedules import SCHEDULES
from scpl.perf.simulate import simulate

SCHED = "pipedream-1f1b"


@pytest.mark.parametrize("stages,num_micro", [(2, 2), (3, 4), (4, 8)])
def test_1f1b_bp_equals_sequential_bitwise(stages, num_micro):
    ref, *_ = run_executor(
        "sequential", "sequential", method="bp", stages=stages, num_micro=num_micro
    )
    seq, *_ = run_executor("sequential", SCHED, method="bp", stages=stages, num_micro=num_micro)
    got, *_ = run_executor("local", SCHED, method="bp", stages=stages, num_micro=num_micro)
    assert_states_equal(ref, seq)
    assert_states_equal(ref, got)


def test_1f1b_local_method_equals_sequential_bitwise():
    ref, *_ = run_executor("sequential", "sequential", stages=3, num_micro=4)
    got, *_ = run_executor("local", SCHED, stages=3, num_micro=4)
    assert_states_equal(ref, got)


def test_gpipe_is_bitwise_equal_to_sequential_micro_batches():
    ref, *_ = run_executor("sequential", "sequential", method="bp", stages=3, num_micro=4)
    got, *_ = run_executor("local", "gpipe", method="bp", stages=3, num_micro=4)
    assert_states_equal(ref, got)


def test_1f1b_dist_equals_sequential(tmp_path):
    ref, *_ = run_executor("sequential", "sequential", method="bp", stages=3, num_micro=4)
    res = run_dist(3, tmp_path, schedule=SCHED, method="bp", stages=3, num_micro=4)
    assert_states_equal(ref, [r["state"] for r in res])


def _in_flight(prog):
    held = peak = 0
    for op in prog:
        held += (op.kind == "F") - (op.kind == "B")
        peak = max(peak, held)
    return peak


@pytest.mark.parametrize("K,m", [(4, 4), (4, 16), (3, 2)])
def test_1f1b_holds_at_most_k_minus_s_micro_batches(K, m):
    progs = SCHEDULES.get(SCHED).programs(K, m, False)
    assert [_in_flight(p) for p in progs] == [min(K - s, m) for s in range(K)]
    assert [_in_flight(p) for p in SCHEDULES.get("gpipe").programs(K, m, False)] == [m] * K
    assert all(_in_flight(p) == 1 for p in SCHEDULES.get(SCHED).programs(K, m, True))


def test_1f1b_has_gpipes_makespan():
    costs = {s: {"F": 0.01, "L": 0.001, "B": 0.02, "U": 0.001} for s in range(4)}
    a = simulate("gpipe", 4, costs, 4, num_micro=8, local=False)
    b = simulate(SCHED, 4, costs, 4, num_micro=8, local=False)
    assert b.makespan == pytest.approx(a.makespan, rel=0.02)
