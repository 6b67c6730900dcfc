"""Every executor against an independent training step: :mod:`scpl.studies.reference`.

The parity tests in test_parity.py compare executors with each other; all of them drive the same
``StageRunner``, the methods' loss code and the same optimizer construction, so a bug there is
shared by every side and passes unnoticed. The reference re-implements the step in float64 from
the definitions: its own SupCon (a loop over anchors, both normalisations), its own projection
heads built from each stage's output shape, its own Adam and its own cosine learning rate. It
shares only the model's stage bodies and the seed. Compared within float32-vs-float64 rounding
(:func:`~scpl.studies.reference.compare_states`, relative 1e-4 per tensor; losses 1e-5), after
3 steps of the 4-stage parity ConvNet, under a constant and a cosine learning rate.

Mutants of the engine this module catches (each was applied to the source and the tests here
failed; the ones marked * stay checked by a monkeypatched test below):

* (a)* SupCon temperature applied twice (logits / tau / tau);
* (b)* the anchor counted as its own positive (diagonal not masked out of the positives, nor of
  the denominator), and separately the positives mask without ``& ~self_mask`` (an infinite loss);
* (c)* the LR scheduler stepped before the optimizer in ``StageRunner._op_U`` (the cosine runs:
  with a constant rate the two orders are the same, which is why every parity test missed it);
* (d)* an extra optimizer step per update in ``StageRunner._op_U`` (passes runner-vs-runner
  parity);
* (e) ``reference`` normalisation dividing by |P(i)| instead of |P(i)| + 1;
* (f) micro-batch losses not weighted by 1/m (scpl-gpipe and gpipe rows);
* (g) ``decoupled_weight_decay`` not passed to torch's Adam (AdamW runs as L2-decay Adam); and,
  in the reference, the decoupled decay applied after the Adam update instead of before it
  (torch's order): ``test_parity_reference_weight_decay`` fails on both.
"""

from __future__ import annotations

import pytest
import torch

import scpl
from parity_utils import make_batches, make_model, run_dist
from scpl.methods.supcon import supcon_loss
from scpl.parallel import OptimConfig
from scpl.studies.reference import (
    ReferenceConfig,
    compare_losses,
    compare_states,
    reference_train,
    supcon_reference,
)

STEPS = 3
LR = dict(lr=1e-2, total_steps=10)
BP_INPUT = (1, 16, 16)
"""BP runs on 16 x 16 inputs: on 8 x 8 the last stage sees 1 x 1 maps, where a shift of stage
2's BatchNorm bias is removed by stage 3's BatchNorm, so its gradient is rounding noise that
Adam scales up to +-lr (float32 and float64 then differ by lr-sized steps)."""
SCHEDULES = ("constant", "cosine")


def _input(method):
    return BP_INPUT if method == "bp" else (1, 8, 8)


def engine_run(
    executor, schedule, method="scpl", micro=1, lr_schedule="cosine", optim_kw=None, **method_kw
):
    """The parity ConvNet (4 stages, mlp heads of 32) through scpl.pipeline for STEPS steps:
    final unit states and per-step loss terms."""
    shape = _input(method)
    pipe = scpl.pipeline(
        make_model("convnet", 4, input_shape=shape),
        method,
        devices="cpu",
        optimizer=OptimConfig(**LR, schedule=lr_schedule, **(optim_kw or {})),
        schedule=schedule,
        micro_batches=micro,
        executor=executor,
        head="mlp",
        proj_dim=32,
        **method_kw,
    )
    losses = []
    try:
        for x, y in make_batches(STEPS, input_shape=shape):
            pipe.step(x, y)
            pipe.flush()
            losses.append(pipe.metrics())
        states = [{k: v.clone() for k, v in s.items()} for s in pipe.unit_states()]
    finally:
        pipe.close()
    return states, losses


def reference(method="scpl", micro=1, lr_schedule="cosine", **kw):
    cfg = ReferenceConfig(
        method=method, head="mlp", proj_dim=32, schedule=lr_schedule, num_micro=micro, **LR, **kw
    )
    shape = _input(method)
    model = make_model("convnet", 4, input_shape=shape)
    return reference_train(model, make_batches(STEPS, input_shape=shape), cfg)


def mismatches(ref, states, losses) -> list[str]:
    return compare_states(ref, states) + compare_losses(ref.losses, losses)


@pytest.fixture(scope="module", params=SCHEDULES)
def ref_scpl(request):
    return request.param, reference(lr_schedule=request.param)


@pytest.mark.parametrize("norm", ["paper", "reference"])
def test_reference_supcon_loop_equals_supcon_loss(norm):
    """The loop over anchors and the engine's masked-matrix SupCon agree in float64, with an
    anchor without positives in the batch (skipped by ``paper``, counted as 0 by ``reference``)."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(12, 8, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 3, 4])  # label 4: no positive
    want = supcon_reference(z, y, 0.1, norm)
    got = supcon_loss(z, y, 0.1, norm)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    gw, gg = torch.autograd.grad(want, z)[0], torch.autograd.grad(got, z)[0]
    torch.testing.assert_close(gg, gw, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "executor,schedule",
    [("sequential", "sequential"), ("local", "scpl"), ("local", "sequential")],
)
def test_parity_reference_executors_match_independent_scpl(ref_scpl, executor, schedule):
    lr_schedule, ref = ref_scpl
    states, losses = engine_run(executor, schedule, lr_schedule=lr_schedule)
    assert not mismatches(ref, states, losses)


def test_parity_reference_dist_matches_independent_scpl(tmp_path):
    ref = reference()
    results = run_dist(
        4,
        tmp_path,
        schedule="scpl",
        stages=4,
        steps=STEPS,
        per_step=True,
        optim=OptimConfig(**LR, schedule="cosine"),
    )
    states = [r["state"] for r in results]
    # Each rank logs its own stage's terms: merge them per step.
    merged = [
        {k: v for r in results for k, v in r["step_metrics"][t].items()} for t in range(STEPS)
    ]
    assert not mismatches(ref, states, merged)


@pytest.mark.parametrize(
    "method,schedule,micro,kw",
    [
        ("scpl", "scpl-gpipe", 2, {}),
        ("scpl", "pipedream-1f1b", 2, {}),
        ("scpl", "scpl", 1, {"supcon_norm": "reference"}),
        ("scpl", "scpl", 1, {"last_stage": "detached"}),
        ("bp", "nmp", 1, {}),
        ("bp", "gpipe", 2, {}),
        ("bp", "pipedream-1f1b", 4, {}),
    ],
)
def test_parity_reference_pipelines_match_independent_step(method, schedule, micro, kw):
    """Micro-batched schedules, the other SupCon normalisation, the authors' detached last
    stage and BP (one graph through all stages), each under a cosine rate."""
    ref = reference(method, micro, **kw)
    states, losses = engine_run("local", schedule, method, micro, **kw)
    assert not mismatches(ref, states, losses)


@pytest.mark.parametrize("decoupled", [False, True])
def test_parity_reference_weight_decay(decoupled):
    """Weight decay as L2 in the gradient (adam) and decoupled (adamw), SCPL and BP, under a
    cosine rate; the reference of the other form must not match (the decay is large enough
    to tell them apart in 3 steps)."""
    wd = dict(weight_decay=0.5)
    for method, schedule in (("scpl", "scpl"), ("bp", "gpipe")):
        micro = 2 if method == "bp" else 1
        ref = reference(method, micro, **wd, decoupled=decoupled)
        other = reference(method, micro, **wd, decoupled=not decoupled)
        kw = wd | {"decoupled_weight_decay": decoupled}
        states, losses = engine_run("local", schedule, method, micro, optim_kw=kw)
        assert not mismatches(ref, states, losses)
        assert mismatches(other, states, losses)


def _supcon_twice_tau(z, labels, temperature=0.1, norm="paper"):
    return supcon_loss(z, labels, temperature * temperature, norm)


def _supcon_self_positive(z, labels, temperature=0.1, norm="paper"):
    """SupCon without the self-mask: the anchor is in its own denominator and positives."""
    z = torch.nn.functional.normalize(z.flatten(1), dim=1)
    log_prob = torch.log_softmax(z @ z.T / temperature, dim=1)
    pos = (labels.view(-1, 1) == labels.view(1, -1)).to(log_prob.dtype)
    return (-(pos * log_prob).sum(1) / pos.sum(1)).mean()


def _scheduler_first(original):
    def op_u(self, mb, ch):
        self.scheduler.step()
        step, self.scheduler.step = self.scheduler.step, lambda: None
        try:
            original(self, mb, ch)
        finally:
            self.scheduler.step = step

    return op_u


def _extra_step(original):
    def op_u(self, mb, ch):
        self.optimizer.step()
        original(self, mb, ch)

    return op_u


@pytest.mark.parametrize("mutant", ["twice-tau", "self-positive", "scheduler-first", "extra-step"])
def test_parity_reference_catches_mutants(ref_scpl, mutant, monkeypatch):
    """Mutants (a)-(d) of the module docstring, monkeypatched into the engine (every executor
    would share them, so executor-vs-executor parity passes): the independent reference fails
    them. scheduler-first only shows under the cosine rate."""
    import warnings

    import scpl.methods.local as local_methods
    from scpl.parallel.runner import StageRunner

    lr_schedule, ref = ref_scpl
    if mutant == "twice-tau":
        monkeypatch.setattr(local_methods, "supcon_loss", _supcon_twice_tau)
    elif mutant == "self-positive":
        monkeypatch.setattr(local_methods, "supcon_loss", _supcon_self_positive)
    elif mutant == "scheduler-first":
        monkeypatch.setattr(StageRunner, "_op_U", _scheduler_first(StageRunner._op_U))
    else:
        monkeypatch.setattr(StageRunner, "_op_U", _extra_step(StageRunner._op_U))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about the scheduler-first order
        states, losses = engine_run("sequential", "sequential", lr_schedule=lr_schedule)
    if mutant == "scheduler-first" and lr_schedule == "constant":
        assert not mismatches(ref, states, losses)  # invisible at a constant rate
    else:
        assert mismatches(ref, states, losses)


def test_train_optimizer_adamw_reaches_the_stages(tmp_path):
    """``--optimizer adamw`` trains with decoupled decay: the same run with adam ends with other
    weights, and every stage's optimizer has the flag (mutant: build.py not passing it on)."""
    from scpl.training.config import TrainConfig
    from scpl.training.loop import train

    finals = {}
    for opt in ("adam", "adamw"):
        cfg = TrainConfig(
            model="convnet", method="scpl", dataset="digits", stages=2, width=0.125,
            batch_size=32, max_steps=2, epochs=1, lr=1e-2, weight_decay=0.5, optimizer=opt,
            executor="sequential", augment="none", progress=False, tensorboard=False,
            threads=1, head="linear", proj_dim=16, out=str(tmp_path / opt),
        )  # fmt: skip
        train(cfg, echo=lambda *_: None)
        finals[opt] = torch.load(tmp_path / opt / "final.rank0.pt", weights_only=True)
        ck = sorted((tmp_path / opt / "checkpoints").glob("ckpt-*.pt"))[-1]
        runners = torch.load(ck, weights_only=False)["executor"]["runners"]
        assert all(
            r["optimizer"]["param_groups"][0]["decoupled_weight_decay"] == (opt == "adamw")
            for r in runners
        )
    differ = [
        k for a, b in zip(finals["adam"], finals["adamw"], strict=True) for k in a
        if not torch.equal(a[k], b[k])
    ]  # fmt: skip
    assert differ
