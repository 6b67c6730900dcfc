"""Every executor against an independent SCPL training step written in plain PyTorch.

The parity tests in test_parity.py compare executors with each other; since all of them drive
the same ``StageRunner``, a bug in the runner (say, an extra optimizer step) would be shared by
the reference and every executor and pass unnoticed. ``reference_scpl`` below does not use
``StageRunner``, the executors or the methods' loss code: it runs the paper's recipe directly
(detach each stage's input, SupCon on the stage's projection, cross-entropy on the last stage,
one Adam per stage stepped right after the stage's backward). Only the modules' initial weights
(from the same seed) and the SupCon function (tested against a naive loop in test_supcon.py)
are shared. Weights after every step and the per-step losses must be bitwise equal (CPU,
float32, one intra-op thread).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from parity_utils import (
    PARITY_OPTIM,
    assert_states_equal,
    make_batches,
    make_units,
    run_dist,
    run_executor,
)
from scpl.methods.supcon import supcon_loss

STEPS = 3


def reference_scpl(stages=4, steps=STEPS, temperature=0.1):
    """Plain-PyTorch SCPL on the parity model: returns (per-stage states, per-step losses)."""
    units, _ = make_units("convnet", "scpl", stages)  # the same initial weights
    bodies = [u.body for u in units]
    heads = [u.aux["head"] for u in units]
    classifier = units[-1].classifier
    optims = [
        torch.optim.Adam(list(u.parameters()), lr=PARITY_OPTIM["lr"], foreach=True) for u in units
    ]
    losses = []
    for x, y in make_batches(steps):
        step: dict[str, float] = {}
        h = x
        for s in range(stages):
            out = bodies[s](h.detach())  # no gradient crosses a stage boundary
            supcon = supcon_loss(heads[s](out.flatten(1)), y, temperature)
            loss = supcon
            step[f"stage{s}/supcon"] = float(supcon.detach())
            if s == stages - 1:
                ce = F.cross_entropy(classifier(out), y)
                loss = supcon + ce
                step[f"stage{s}/ce"] = float(ce.detach())
            optims[s].zero_grad(set_to_none=True)
            loss.backward()
            optims[s].step()
            h = out
        losses.append(step)
    return [u.state_dict() for u in units], losses


@pytest.fixture(scope="module")
def reference():
    return reference_scpl()


def _check(reference, states, step_metrics):
    ref_states, ref_losses = reference
    assert_states_equal(ref_states, states)
    assert len(step_metrics) == len(ref_losses)
    for t, (got, want) in enumerate(zip(step_metrics, ref_losses, strict=True)):
        assert got.keys() == want.keys(), f"step {t}: terms {sorted(got)} != {sorted(want)}"
        for k in want:  # by value, bitwise
            assert got[k] == want[k], f"step {t} {k}: {got[k]!r} != {want[k]!r}"


@pytest.mark.parametrize(
    "executor,schedule",
    [("sequential", "sequential"), ("local", "scpl"), ("local", "sequential")],
)
def test_parity_reference_executors_equal_plain_pytorch_scpl(reference, executor, schedule):
    states, _, _, ex = run_executor(executor, schedule, steps=STEPS, per_step=True)
    _check(reference, states, ex.step_metrics)


def test_parity_reference_dist_equals_plain_pytorch_scpl(reference, tmp_path):
    results = run_dist(4, tmp_path, schedule="scpl", stages=4, steps=STEPS, per_step=True)
    states = [r["state"] for r in results]
    # Each rank logs its own stage's terms: merge them per step.
    merged = [
        {k: v for r in results for k, v in r["step_metrics"][t].items()} for t in range(STEPS)
    ]
    _check(reference, states, merged)


def test_parity_reference_catches_an_extra_optimizer_step(reference, monkeypatch):
    """The mutant the runner-vs-runner parity tests cannot see: one extra optimizer step per
    update inside StageRunner. Against the independent step it must fail."""
    from scpl.parallel.runner import StageRunner

    original = StageRunner._op_U

    def mutant(self, mb, ch):
        self.optimizer.step()
        original(self, mb, ch)

    monkeypatch.setattr(StageRunner, "_op_U", mutant)
    states, _, _, ex = run_executor("sequential", "sequential", steps=STEPS, per_step=True)
    with pytest.raises(AssertionError):
        _check(reference, states, ex.step_metrics)
    # ... while the executors still agree with each other (why the old suite missed it).
    local, *_ = run_executor("local", "scpl", steps=STEPS)
    assert_states_equal(states, local)
