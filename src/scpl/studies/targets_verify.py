"""`scpl bench --targets`: each pipelined row checked against the independent reference.

The timed rows run a tiny proxy with emulated op times; what they claim is that the row's
schedule trains the row's network correctly. So a row is verified on *its own* network (same
model, partition, head, method, micro-batches and schedule) at a small width: a few steps on the
``local`` executor (one thread per stage, as the timed row runs) are compared with
:mod:`scpl.studies.reference`, which shares no schedule, runner, loss or optimizer code with the
engine. (The old check compared the row with the ``sequential`` schedule, but both orders come
from the same schedule code, so a wrong order in it passed.) Text networks run with a 1000-word
vocabulary and no dropout: dropout draws from one RNG in thread order, which no reference can
follow, and the vocabulary only sizes the embedding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from scpl.studies.targets_setup import Net, TargetsOptions

VERIFY_VOCAB = 1000


@dataclass(frozen=True)
class RowModel:
    """What a row trains: the network, its partition and SCPL's head (``-`` under BP)."""

    net: Net = field(hash=False)
    partition: tuple[int, ...]
    head: str

    @property
    def key(self) -> tuple:
        return (self.net.model, self.partition, self.head)


def _workload(rm: RowModel, opts: TargetsOptions):
    from scpl.perf.measure import Workload

    kw = dict(rm.net.model_kwargs)
    if len(rm.net.input_shape) == 1:
        kw["vocab_size"] = VERIFY_VOCAB
    if rm.net.model == "transformer":
        kw["dropout"] = 0.0
    head = rm.head if rm.head != "-" else "mlp"
    return Workload(
        rm.net.model,
        opts.verify_width,
        tuple(rm.net.input_shape),
        opts.verify_batch,
        head,
        opts.proj_dim,
        rm.net.num_classes,
        kw,
    )


_REFERENCES: dict[tuple, object] = {}


def reference_states(rm: RowModel, method: str, num_micro: int, opts: TargetsOptions):
    """The independent reference's result on the row's network (cached per network, partition,
    head, method and micro-batches: several schedules share it)."""
    from scpl.models import build_model
    from scpl.parallel import OptimConfig
    from scpl.perf.harness import make_batches
    from scpl.perf.measure import TIMING_OPTIM
    from scpl.studies.reference import ReferenceConfig, reference_train

    w = _workload(rm, opts)
    key = (*rm.key, method, num_micro, opts.verify_width, opts.verify_batch, opts.verify_steps)
    if key not in _REFERENCES:
        optim = OptimConfig(**TIMING_OPTIM)
        cfg = ReferenceConfig(
            method=method,
            head=w.head,
            proj_dim=w.proj_dim,
            lr=optim.lr,
            lr_min=optim.lr_min,
            total_steps=optim.total_steps,
            schedule=optim.schedule,
            num_micro=num_micro,
        )
        with torch.random.fork_rng():
            torch.manual_seed(0)  # model_pipeline's seed: the same initial weights
            model = build_model(
                w.model, w.input_shape, w.num_classes, len(rm.partition), w.width,
                list(rm.partition), **w.model_kwargs,
            )  # fmt: skip
            _REFERENCES[key] = reference_train(model, make_batches(opts.verify_steps, w), cfg)
    return _REFERENCES[key]


def verify_row(
    rm: RowModel,
    schedule: str,
    method: str,
    num_micro: int,
    opts: TargetsOptions,
    rtol: float = 0.1,
) -> list[str]:
    """Mismatches between ``schedule`` training the row's network on the local executor and the
    independent reference (empty: verified): parameters within ``rtol`` per tensor, loss terms
    within ``rtol`` / 100.

    Looser than the parity tests' 1e-4: these are deep networks with BatchNorm, where float32
    gradients of near-cancelling sums (BatchNorm biases) differ from float64 by up to 1e-2
    after 3 Adam steps at lr 1e-3 (measured: VGG, ResNet-18 and the text networks at width
    0.125, <= 3e-2 per tensor, <= 1.4e-4 per loss). A schedule that updates a step late
    (U before B) is off by >= 0.3 on the same rows."""
    from scpl.perf.harness import make_batches
    from scpl.perf.measure import model_pipeline
    from scpl.studies.reference import compare_losses, compare_states

    w = _workload(rm, opts)
    ref = reference_states(rm, method, num_micro, opts)
    with torch.random.fork_rng():
        pipe = model_pipeline(
            w,
            method,
            len(rm.partition),
            executor="local",
            schedule=schedule,
            num_micro=num_micro,
            partition=list(rm.partition),
            record=False,
        )
        losses = []
        try:
            for x, y in make_batches(opts.verify_steps, w):
                pipe.step(x, y)
                pipe.flush()
                losses.append(pipe.metrics())
            states = [{k: v.clone() for k, v in s.items()} for s in pipe.unit_states()]
        finally:
            pipe.close()
    return compare_states(ref, states, rtol) + compare_losses(ref.losses, losses, rtol / 100)
