"""Parity: every executor and schedule computes what the sequential reference computes.

CPU, float32, fixed seed, one intra-op thread (conftest). Local-loss schedules and NMP must be
bitwise equal to the reference; GPipe equals full-batch BP within 1e-5 relative on a model
without BatchNorm (with BatchNorm, each micro-batch normalises with its own statistics, so
GPipe computes a different function than full-batch BP -- see docs/DESIGN.md).
"""

from __future__ import annotations

import pytest
import torch

from parity_utils import assert_states_equal, make_batches, make_units, run_dist, run_executor
from scpl.errors import ConfigError
from scpl.parallel.schedules import SCHEDULES


@pytest.mark.parametrize("stages", [2, 3, 4])
@pytest.mark.parametrize("method", ["scpl", "early-exit"])
def test_parity_local_scpl_equals_sequential(stages, method):
    ref, ref_metrics, ref_acc, _ = run_executor(
        "sequential", "sequential", method=method, stages=stages
    )
    got, metrics, acc, _ = run_executor("local", "scpl", method=method, stages=stages)
    assert_states_equal(ref, got)
    assert acc == ref_acc  # evaluation runs through the executor too
    assert metrics == ref_metrics  # logged losses by value, bitwise (not only their names)


@pytest.mark.parametrize("model", ["vgg", "resnet18", "lstm", "transformer"])
def test_parity_local_scpl_other_models(model):
    ref, *_ = run_executor("sequential", "sequential", model=model, stages=4, steps=2)
    got, *_ = run_executor("local", "scpl", model=model, stages=4, steps=2)
    assert_states_equal(ref, got)


def test_parity_sequential_schedule_on_local_executor():
    ref, *_ = run_executor("sequential", "sequential")
    got, *_ = run_executor("local", "sequential")
    assert_states_equal(ref, got)


@pytest.mark.parametrize("num_micro", [2, 4])
def test_parity_scpl_gpipe_equals_sequential_accumulating_micro_batches(num_micro):
    ref, *_ = run_executor("sequential", "sequential", num_micro=num_micro)
    got, *_ = run_executor("local", "scpl-gpipe", num_micro=num_micro)
    assert_states_equal(ref, got)


def _plain_bp_states(steps=3, **kw):
    """Single-device BP with one autograd graph through all stages (no executor involved)."""
    from scpl.parallel import OptimConfig, build_stage_optimizer

    units, _ = make_units(method="bp", **kw)
    opts = [build_stage_optimizer(u, OptimConfig(lr=1e-2, total_steps=10)) for u in units]
    for x, y in make_batches(steps):
        for o, _ in opts:
            o.zero_grad(set_to_none=True)
        h = x
        for u in units:
            h = u(h)
        loss, _ = units[-1].loss(h, y)
        loss.backward()
        for o, s in opts:
            o.step()
            s.step()
    return [u.state_dict() for u in units]


@pytest.mark.parametrize("stages", [2, 4])
def test_parity_nmp_equals_single_device_bp(stages):
    ref = _plain_bp_states(stages=stages)
    seq, *_ = run_executor("sequential", "sequential", method="bp", stages=stages)
    got, *_ = run_executor("local", "nmp", method="bp", stages=stages)
    assert_states_equal(ref, seq)
    assert_states_equal(ref, got)


@pytest.mark.parametrize("num_micro", [2, 4])
def test_parity_gpipe_equals_full_batch_bp_without_batchnorm(num_micro):
    ref = _plain_bp_states(batch_norm=False)
    got, *_ = run_executor("local", "gpipe", method="bp", num_micro=num_micro, batch_norm=False)
    assert_states_equal(ref, got, exact=False, rtol=1e-5, atol=1e-6)


def test_gpipe_with_batchnorm_differs_from_full_batch_bp():
    """Documented behaviour: BN statistics are per micro-batch, so GPipe != full-batch BP."""
    ref = _plain_bp_states(batch_norm=True)
    got, *_ = run_executor("local", "gpipe", method="bp", num_micro=4, batch_norm=True)
    diffs = [
        float((a - b).abs().max())
        for sa, sb in zip(ref, got, strict=False)
        for a, b in zip(sa.values(), sb.values(), strict=False)
    ]
    assert max(diffs) > 1e-4


def test_schedule_method_mismatch_is_a_config_error():
    with pytest.raises(ConfigError, match="'gpipe' or 'nmp'"):
        run_executor("local", "scpl", method="bp")
    with pytest.raises(ConfigError, match="'scpl' or 'scpl-gpipe'"):
        run_executor("local", "nmp", method="scpl")
    with pytest.raises(ConfigError, match="no micro-batches"):
        run_executor("local", "scpl", num_micro=2)
    with pytest.raises(ConfigError, match="does not divide"):
        run_executor("local", "scpl-gpipe", num_micro=3, batch=16)


def test_every_schedule_program_is_its_serial_order_filtered():
    for name in SCHEDULES:
        sched = SCHEDULES.get(name)
        for local in (True, False):
            if sched.local is not None and sched.local != local:
                continue
            order = sched.order(3, 2, local)
            progs = sched.programs(3, 2, local)
            assert sum(len(p) for p in progs) == len(order)
            assert all(p[-1].kind == "U" for p in progs)  # one update per mini-batch per stage


# -- dist: one gloo process per stage ---------------------------------------------------
DIST_CASES = [
    (2, "scpl", "scpl", 1),
    (3, "scpl", "scpl", 1),
    (4, "scpl", "scpl", 1),
    (3, "sequential", "scpl", 1),
    (3, "scpl-gpipe", "scpl", 2),
    (3, "nmp", "bp", 1),
    (3, "gpipe", "bp", 2),
    (2, "scpl", "early-exit", 1),
]
TEXT_DIST_CASES = [("lstm", "scpl", "scpl"), ("transformer", "scpl", "scpl"), ("lstm", "nmp", "bp")]


@pytest.mark.parametrize("model,schedule,method", TEXT_DIST_CASES)
def test_parity_dist_text_models(tmp_path, model, schedule, method):
    """(hidden, lengths) activations with variable lengths cross process boundaries intact."""
    ref, _, ref_acc, _ = run_executor(
        "sequential", "sequential", model=model, method=method, stages=3
    )
    results = run_dist(3, tmp_path, schedule=schedule, model=model, method=method, stages=3)
    assert_states_equal(ref, [r["state"] for r in results])
    assert all(r["acc"] == ref_acc for r in results)


@pytest.mark.parametrize("stages,schedule,method,num_micro", DIST_CASES)
def test_parity_dist_equals_sequential(tmp_path, stages, schedule, method, num_micro):
    ref, ref_metrics, ref_acc, _ = run_executor(
        "sequential", "sequential", method=method, stages=stages, num_micro=num_micro
    )
    results = run_dist(
        stages, tmp_path, schedule=schedule, method=method, stages=stages, num_micro=num_micro
    )
    got = [r["state"] for r in results]
    # gpipe reverses the micro-batch order of backward: same math, different summation order.
    assert_states_equal(ref, got, exact=schedule != "gpipe")
    assert all(r["acc"] == ref_acc for r in results)
    for r in results:  # every rank reports its own stage's loss terms, equal to the reference
        assert r["metrics"] or method == "bp", "every rank logs its stage's terms"
        for k, v in r["metrics"].items():
            if schedule == "gpipe":
                assert v == pytest.approx(ref_metrics[k], rel=1e-6)
            else:
                assert v == ref_metrics[k], k


def test_dist_executor_without_process_group_is_a_config_error():
    with pytest.raises(ConfigError, match="torchrun"):
        run_executor("dist", "scpl")


def test_units_keep_stage_boundaries_under_local_executor():
    """The local executor must not let gradients cross: stage inputs arrive detached."""
    units, meth = make_units()
    x, y = make_batches(1)[0]
    out0 = units[0](x)
    from scpl.parallel.runner import detach_act

    assert not detach_act(out0).requires_grad
    assert torch.is_tensor(out0)


def test_parity_dist_al_trains_and_evaluates(tmp_path):
    """AL's last stage needs every decoder at inference: dist ships them before evaluation."""
    ref, _, ref_acc, _ = run_executor("sequential", "sequential", method="al", stages=3)
    results = run_dist(3, tmp_path, schedule="scpl", method="al", stages=3)
    assert_states_equal(ref, [r["state"] for r in results])
    assert all(r["acc"] == ref_acc for r in results)


# -- SCPL's other local objectives (--local-loss) --------------------------------------------
# Mutants these fail on: the sim target built from labels shared across units (each call reads
# the previous call's labels, so the result depends on the op order and the pipelined and dist
# executors diverge from the reference), --local-loss ignored (SupCon everywhere), predsim's
# classifier on the last stage too. The terms' definitions are checked in test_methods.py.
LOCAL_LOSS_TERMS = {
    "sim": {"sim"},
    "supcon+sim": {"supcon", "sim"},
    "predsim": {"sim", "pred"},
}


@pytest.mark.parametrize("schedule,num_micro", [("scpl", 1), ("scpl-gpipe", 2)])
@pytest.mark.parametrize("local_loss", sorted(LOCAL_LOSS_TERMS))
def test_parity_local_losses_equal_sequential(local_loss, schedule, num_micro):
    """Each local objective: the pipelined executor is bitwise the sequential reference
    (weights, logged terms, evaluation), and the stages log the objective's own terms."""
    opts = {"local_loss": local_loss}
    ref, ref_metrics, ref_acc, _ = run_executor(
        "sequential", "sequential", stages=3, num_micro=num_micro, method_options=opts
    )
    got, metrics, acc, _ = run_executor(
        "local", schedule, stages=3, num_micro=num_micro, method_options=opts
    )
    assert_states_equal(ref, got)
    assert acc == ref_acc
    assert metrics == ref_metrics
    hidden = {k.split("/")[1] for k in metrics if k.startswith("stage0/")}
    last = {k.split("/")[1] for k in metrics if k.startswith("stage2/")}
    assert hidden == LOCAL_LOSS_TERMS[local_loss]
    # The last stage's classifier is predsim's "pred" there: no second classifier.
    assert last == (LOCAL_LOSS_TERMS[local_loss] - {"pred"}) | {"ce"}


@pytest.mark.parametrize("model", ["lstm", "vgg"])
def test_parity_local_loss_predsim_other_models(model):
    """Flat text features (the pooled classifier is a Linear) and a BatchNorm model."""
    opts = {"local_loss": "predsim"}
    ref, *_ = run_executor(
        "sequential", "sequential", model=model, stages=3, steps=2, method_options=opts
    )
    got, *_ = run_executor("local", "scpl", model=model, stages=3, steps=2, method_options=opts)
    assert_states_equal(ref, got)


# predsim runs the sim loss and the extra classifier: the other objectives' code paths are its
# parts (their local-executor parity is above); one dist case keeps the suite's time down.
@pytest.mark.parametrize("local_loss", ["predsim"])
def test_parity_dist_local_losses(tmp_path, local_loss):
    """One process per stage: only activations and labels cross; bitwise the reference."""
    opts = {"local_loss": local_loss}
    ref, ref_metrics, ref_acc, _ = run_executor(
        "sequential", "sequential", stages=2, method_options=opts
    )
    results = run_dist(2, tmp_path, schedule="scpl", stages=2, method_options=opts)
    assert_states_equal(ref, [r["state"] for r in results])
    assert all(r["acc"] == ref_acc for r in results)
    for r in results:
        for k, v in r["metrics"].items():
            assert v == ref_metrics[k], k
