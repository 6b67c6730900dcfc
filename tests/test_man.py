"""SCPL's momentum head (``--head man``, scpl.methods.man): parity on every executor, the EMA's
meaning checked by hand, resume, data-parallel buffers, bad input.

Mutants the checks here fail on (each run in ``test_man_ema_catches_mutants``): the EMA's
momentum and its complement swapped; ``--man-every`` ignored (the weight folded in every step);
the fold skipped (the head keeps the next stage's initial weights). The structural test fails if
the EMA weight is a trained parameter; the data-parallel test fails if the EMA weight is averaged
over replicas like a BatchNorm statistic.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from parity_utils import (
    assert_pipeline_refuses,
    assert_states_equal,
    init_gloo,
    make_batches,
    make_pipeline,
    rendezvous,
    run_dist,
    run_executor,
)
from scpl.methods import man as man_mod
from scpl.methods.man import MomentumHead

MAN = {"head": "man"}


@pytest.mark.parametrize("model,shape", [("convnet", (1, 8, 8)), ("vanilla-convnet", (1, 8, 8))])
def test_parity_man_local_executor(model, shape):
    """Pipelined threads are bitwise the sequential reference (weights incl. the EMA, logged
    terms, evaluation), with the weight sent back every step and every second step."""
    for every in (1, 2):
        kw = dict(
            model=model,
            stages=3,
            input_shape=shape,
            steps=4,
            method_options={**MAN, "man_every": every},
        )
        ref, ref_m, ref_acc, _ = run_executor("sequential", "sequential", **kw)
        got, m, acc, _ = run_executor("local", "scpl", **kw)
        assert_states_equal(ref, got)
        assert (m, acc) == (ref_m, ref_acc)


def test_parity_man_gpipe_micro_batches():
    """SCPL+GPipe with 2 micro-batches: the feedback is per step, not per micro-batch."""
    opts = {**MAN}
    ref, *_ = run_executor("sequential", "sequential", stages=3, num_micro=2, method_options=opts)
    got, *_ = run_executor("local", "scpl-gpipe", stages=3, num_micro=2, method_options=opts)
    assert_states_equal(ref, got)


def test_parity_dist_man(tmp_path):
    """One process per stage: the weights travel back over the gradient group; bitwise the
    reference on every rank."""
    opts = {**MAN, "man_every": 2}
    ref, ref_m, ref_acc, _ = run_executor(
        "sequential", "sequential", stages=3, steps=4, method_options=opts
    )
    results = run_dist(3, tmp_path, schedule="scpl", stages=3, steps=4, method_options=opts)
    assert_states_equal(ref, [r["state"] for r in results])
    assert all(r["acc"] == ref_acc for r in results)
    for r in results:
        for k, v in r["metrics"].items():
            assert v == ref_m[k], k


def _first_conv(unit):
    return next(m for m in unit.body.modules() if isinstance(m, torch.nn.Conv2d))


def _check_ema(every: int, momentum: float = 0.5, steps: int = 5) -> None:
    """Train on the sequential executor; recompute each hidden stage's EMA in float64 from the
    next stage's first-layer weight as it was when each step started."""
    pipe = make_pipeline(
        "sequential",
        "sequential",
        stages=3,
        method_options={**MAN, "man_every": every, "man_momentum": momentum},
    )
    runners = pipe.executor.runners
    units = [r.unit for r in runners]
    ema = [_first_conv(units[s + 1]).weight.detach().double().clone() for s in range(2)]
    for t, (x, y) in enumerate(make_batches(steps)):
        before = [_first_conv(units[s + 1]).weight.detach().double().clone() for s in range(2)]
        pipe.step(x, y)
        if t % every == 0:
            ema = [momentum * e + (1 - momentum) * w for e, w in zip(ema, before, strict=True)]
    pipe.close()
    for s in range(2):
        got = units[s].aux["head"].weight.double()
        torch.testing.assert_close(got, ema[s], rtol=0, atol=1e-6)
        # The next stage did move, so the check has something to see.
        assert not torch.allclose(_first_conv(units[s + 1]).weight.double(), ema[s], atol=1e-4)


@pytest.mark.parametrize("every", [1, 2])
def test_man_ema_follows_the_next_stage(every):
    _check_ema(every)


@pytest.mark.parametrize("mutant", ["swapped momentum", "every ignored", "no fold"])
def test_man_ema_catches_mutants(monkeypatch, mutant):
    if mutant == "swapped momentum":

        def fold(self, w):
            self.weight.mul_(1 - self.momentum).add_(w, alpha=self.momentum)

        monkeypatch.setattr(MomentumHead, "fold", torch.no_grad()(fold))
    elif mutant == "every ignored":
        monkeypatch.setattr("scpl.methods.local.feedback_due", lambda step, every: True)
    else:
        monkeypatch.setattr(MomentumHead, "fold", lambda self, w: None)
    with pytest.raises(AssertionError):
        _check_ema(every=2, momentum=0.4)


def test_man_head_structure():
    """The EMA weight is a buffer (checkpointed, never trained); the bias is trained; the last
    stage keeps the light head; the weight starts as the next stage's."""
    pipe = make_pipeline("sequential", "sequential", stages=3, method_options=MAN)
    units = [r.unit for r in pipe.executor.runners]
    head = units[0].aux["head"]
    assert isinstance(head, MomentumHead)
    assert "weight" not in dict(head.named_parameters())
    assert "weight" in dict(head.named_buffers()) and "bias" in dict(head.named_parameters())
    assert torch.equal(head.weight, _first_conv(units[1]).weight)
    assert not isinstance(units[2].aux["head"], MomentumHead)
    pipe.close()


def test_man_head_loads_checkpoints_from_before_make_head():
    """The head's pool + MLP come from make_head (keys tail.3/tail.5); state dicts written when
    it built its own MLP (keys mlp.0/mlp.2) still load, to the same outputs. Mutant caught:
    the key map swapped (a shape error on load)."""
    pipe = make_pipeline("sequential", "sequential", stages=3, method_options=MAN)
    head = pipe.executor.runners[0].unit.aux["head"]
    state = head.state_dict()
    old = {k.replace("tail.3.", "mlp.0.").replace("tail.5.", "mlp.2."): v for k, v in state.items()}
    assert any(k.startswith("mlp.0.") for k in old) and not any("tail" in k for k in old)
    fresh = copy.deepcopy(head)
    for p in fresh.parameters():
        torch.nn.init.zeros_(p)
    fresh.load_state_dict(old)
    feats = torch.randn(3, math.prod(head.shape))
    torch.testing.assert_close(fresh(feats), head(feats), rtol=0, atol=0)
    pipe.close()


def test_man_resume_is_bitwise():
    """4 steps in one go == 2 steps, state saved and loaded into a new pipeline, 2 more."""
    batches = make_batches(4)

    def fresh():
        return make_pipeline("sequential", "sequential", stages=3, method_options=MAN)

    a = fresh()
    for x, y in batches:
        a.step(x, y)
    want = a.unit_states()
    b = fresh()
    for x, y in batches[:2]:
        b.step(x, y)
    state = b.state_dict()
    c = fresh()
    c.load_state_dict(state)
    for x, y in batches[2:]:
        c.step(x, y)
    assert_states_equal(want, c.unit_states())
    for p in (a, b, c):
        p.close()


def _averager_worker(rank, world, rdzv, out):
    import torch.distributed as dist

    from scpl.parallel.dp import BufferAverager

    init_gloo(rank, world, rdzv)
    try:
        conv = torch.nn.Conv2d(2, 3, 3)
        unit = torch.nn.Sequential(
            torch.nn.BatchNorm2d(2), MomentumHead(conv, (2, 4, 4), 8, momentum=0.9)
        )
        with torch.no_grad():
            unit[0].running_mean.fill_(3.0)
            unit[1].weight.fill_(3.0)
        # One process standing for 3 replicas: a buffer that is averaged comes out / 3.
        BufferAverager(unit, dist.group.WORLD, replicas=3)()
        torch.save({"bn": unit[0].running_mean.clone(), "ema": unit[1].weight.clone()}, out)
    finally:
        dist.destroy_process_group()


def test_data_parallel_leaves_the_ema_alone(tmp_path):
    """The EMA follows weights equal on every replica: BufferAverager must skip it (BatchNorm
    statistics beside it are still averaged)."""
    import torch.multiprocessing as mp

    out = str(tmp_path / "r.pt")
    mp.spawn(_averager_worker, args=(1, rendezvous(tmp_path), out), nprocs=1, join=True)
    got = torch.load(out)
    assert torch.allclose(got["bn"], torch.full_like(got["bn"], 1.0))
    assert torch.equal(got["ema"], torch.full_like(got["ema"], 3.0))


@pytest.mark.parametrize(
    "model,method,opts,match",
    [
        ("lstm", "scpl", {}, "does not start with one"),
        ("convnet", "early-exit", {}, "SCPL only"),
        ("convnet", "scpl", {"man_every": 0}, "man-every"),
        ("convnet", "scpl", {"man_momentum": 1.0}, "man-momentum"),
    ],
)
def test_man_bad_input(model, method, opts, match):
    assert_pipeline_refuses(model, method, {**MAN, **opts}, match)


def test_feedback_due():
    assert [man_mod.feedback_due(s, 3) for s in range(5)] == [True, False, False, True, False]
