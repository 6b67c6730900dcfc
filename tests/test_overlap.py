"""Overlap is real: with emulated device time (ops hold their device while releasing the GIL,
as a GPU kernel does), stage l works on batch t+1 while stage l+1 still works on batch t.

Asserts on recorded event order and intervals only, never on wall-clock durations.
"""

from __future__ import annotations

import pytest

from parity_utils import run_dist, run_executor
from scpl.parallel.runner import Event

# Emulated seconds per op: every stage's F/L/B hold the device; the real compute is tiny.
EMULATE = {s: {"F": 0.02, "L": 0.005, "B": 0.02} for s in range(3)}


def _overlaps(a: Event, b: Event) -> bool:
    return a.start < b.end and b.start < a.end


def _cross_batch_overlaps(events: list[Event], stage: int, batch: int) -> bool:
    """Does stage ``stage`` on batch ``batch + 1`` overlap stage ``stage + 1`` on ``batch``?"""
    work = ("F", "L", "B", "U")
    a = [e for e in events if e.stage == stage and e.batch == batch + 1 and e.kind in work]
    b = [e for e in events if e.stage == stage + 1 and e.batch == batch and e.kind in work]
    assert a and b, "missing events"
    return any(_overlaps(x, y) for x in a for y in b)


def _check_pipelined(events: list[Event], num_stages: int, num_batches: int) -> None:
    for s in range(num_stages - 1):
        hits = [_cross_batch_overlaps(events, s, t) for t in range(num_batches - 1)]
        # In the steady state every consecutive pair overlaps; demand it for most of them.
        assert sum(hits) >= num_batches - 2, f"stage {s}: overlaps {hits}"
        # Event order: stage s starts F on batch t+1 before stage s+1 ends its batch t.
        for t in range(num_batches - 1):
            f_next = min(e.start for e in events if (e.stage, e.batch, e.kind) == (s, t + 1, "F"))
            end_prev = max(e.end for e in events if e.stage == s + 1 and e.batch == t)
            if hits[t]:
                assert f_next < end_prev


def _events_of(ex) -> list[Event]:
    return [e for e in ex.recorder.events if e.batch >= 0]


def test_overlap_local_scpl():
    *_, ex = run_executor("local", "scpl", stages=3, steps=5, emulate=EMULATE, record=True)
    _check_pipelined(_events_of(ex), 3, 5)


def test_no_overlap_in_sequential_reference():
    *_, ex = run_executor(
        "sequential", "sequential", stages=3, steps=3, emulate=EMULATE, record=True
    )
    ev = sorted(_events_of(ex), key=lambda e: e.start)
    for a, b in zip(ev, ev[1:], strict=False):
        assert a.end <= b.start + 1e-6, f"{a} overlaps {b}"


def test_nmp_has_no_cross_batch_overlap():
    """BP cannot pipeline mini-batches: batch t+1 starts only after stage 0 updated on batch t."""
    *_, ex = run_executor(
        "local", "nmp", method="bp", stages=3, steps=3, emulate=EMULATE, record=True
    )
    ev = _events_of(ex)
    for t in range(2):
        u0 = max(e.end for e in ev if (e.stage, e.batch, e.kind) == (0, t, "U"))
        later = [e.start for e in ev if e.batch == t + 1 and e.kind in ("F", "L", "B", "U")]
        assert min(later) >= u0 - 1e-6


def test_overlap_dist_scpl(tmp_path):
    results = run_dist(
        3, tmp_path, schedule="scpl", stages=3, steps=5, emulate=EMULATE, record=True
    )
    events = [Event(**e) for r in results for e in r["events"] if e["batch"] >= 0]
    _check_pipelined(events, 3, 5)


@pytest.mark.parametrize(
    "schedule,method,num_micro", [("scpl-gpipe", "scpl", 2), ("gpipe", "bp", 2)]
)
def test_micro_batches_overlap_within_a_mini_batch(schedule, method, num_micro):
    *_, ex = run_executor(
        "local",
        schedule,
        method=method,
        stages=3,
        steps=2,
        num_micro=num_micro,
        emulate=EMULATE,
        record=True,
    )
    ev = _events_of(ex)
    # Stage 0's forward of micro-batch 1 overlaps stage 1's forward of micro-batch 0.
    a = [e for e in ev if (e.stage, e.batch, e.kind, e.mb) == (0, 0, "F", 1)]
    b = [e for e in ev if (e.stage, e.batch, e.kind, e.mb) == (1, 0, "F", 0)]
    assert any(_overlaps(x, y) for x in a for y in b)
