"""SCPL's lookahead head (``--head lookahead``, scpl.methods.lookahead): parity on the threaded
and dist executors, what the head is, that its gradient stays in its stage, its price, bad input.

Mutants the checks here fail on: the head *sharing* the next stage's modules instead of copying
them (``test_lookahead_head_is_an_independent_copy``: the next stage would then be trained by
this stage's loss, and equal to the head); the head skipping the copied stage (the same test:
the head's output must be the copy's output through mlp-pool); the cost model not seeing the
copied stage (``test_lookahead_is_priced``).
"""

from __future__ import annotations

import pytest
import torch

from parity_utils import (
    assert_pipeline_refuses,
    assert_states_equal,
    make_batches,
    make_pipeline,
    run_dist,
    run_executor,
)
from scpl.methods.lookahead import LookaheadHead, units_after

LOOK = {"head": "lookahead"}


@pytest.mark.parametrize("model,shape", [("convnet", (1, 8, 8)), ("vanilla-convnet", (1, 8, 8))])
def test_parity_lookahead_local_executor(model, shape):
    """Pipelined threads are bitwise the sequential reference (weights, logged terms, eval)."""
    kw = dict(model=model, stages=3, input_shape=shape, steps=4, method_options=LOOK)
    ref, ref_m, ref_acc, _ = run_executor("sequential", "sequential", **kw)
    got, m, acc, _ = run_executor("local", "scpl", **kw)
    assert_states_equal(ref, got)
    assert (m, acc) == (ref_m, ref_acc)


def test_parity_dist_lookahead(tmp_path):
    """One process per stage: bitwise the reference on every rank."""
    ref, ref_m, ref_acc, _ = run_executor(
        "sequential", "sequential", stages=3, steps=3, method_options=LOOK
    )
    results = run_dist(3, tmp_path, schedule="scpl", stages=3, steps=3, method_options=LOOK)
    assert_states_equal(ref, [r["state"] for r in results])
    assert all(r["acc"] == ref_acc for r in results)


def test_lookahead_head_is_an_independent_copy():
    """The head starts as the units after its stage (two by default, across stage boundaries,
    fewer at the end), runs them then mlp-pool, and trains apart from them: after steps the
    copies differ from the units, and a backward of stage 0's loss reaches stage 0 and its head
    but no later stage."""
    pipe = make_pipeline("sequential", "sequential", stages=4, method_options=LOOK)
    model = pipe.model
    units = [r.unit for r in pipe.executor.runners]
    head = units[0].aux["head"]
    assert isinstance(head, LookaheadHead) and not isinstance(units[3].aux["head"], LookaheadHead)
    assert [len(units_after(model, s, 2)) for s in range(4)] == [2, 2, 1, 0]
    later = torch.nn.Sequential(*units_after(model, 0, 2))
    for a, b in zip(head.body.parameters(), later.parameters(), strict=True):
        assert torch.equal(a, b) and a is not b
    feats = torch.randn(4, *units[0].out_shape)
    want = head.tail(later(feats).flatten(1))
    torch.testing.assert_close(head(feats.flatten(1)), want, rtol=0, atol=0)
    for x, y in make_batches(3):
        pipe.step(x, y)
    assert any(
        not torch.equal(a, b)
        for a, b in zip(head.body.parameters(), later.parameters(), strict=True)
    )
    for u in units:
        u.zero_grad(set_to_none=True)
    x, y = make_batches(1)[0]
    loss, _ = units[0].loss(units[0](x), y)
    loss.backward()
    assert all(p.grad is None for u in units[1:] for p in u.parameters())
    assert all(p.grad is not None for p in head.body.parameters())
    pipe.close()


def test_lookahead_is_priced():
    """The per-unit FLOP model charges each hidden unit's head for the copied units (more the
    more units it copies), and the last unit's (mlp-pool) is unchanged."""
    from scpl.perf.costmodel import profile_model

    args = ("vanilla-convnet", "scpl", (1, 8, 8), 10, 0.25, 8)
    light = profile_model(*args, "mlp-pool", 16)
    one = profile_model(*args, "lookahead", 16, method_options={"lookahead_units": 1})
    two = profile_model(*args, "lookahead", 16)
    n = len(light.loss_fwd)
    assert all(two.loss_fwd[u] > one.loss_fwd[u] > 0 for u in range(n - 2))
    assert two.head_params[0] > one.head_params[0] > light.head_params[0]
    assert two.loss_fwd[n - 1] == pytest.approx(light.loss_fwd[n - 1])
    assert two.fwd == light.fwd


@pytest.mark.parametrize(
    "model,method,match",
    [("lstm", "scpl", "conv models only"), ("convnet", "early-exit", "SCPL only")],
)
def test_lookahead_bad_input(model, method, match):
    assert_pipeline_refuses(model, method, LOOK, match)
