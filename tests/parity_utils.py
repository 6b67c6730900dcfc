"""Helpers for parity tests: build identical stage units and run N steps on an executor."""

from __future__ import annotations

import torch

import scpl
from scpl.methods import MethodConfig, build_method
from scpl.models import build_model
from scpl.parallel import OptimConfig

PARITY_OPTIM = dict(lr=1e-2, total_steps=10)


def make_model(model="convnet", stages=4, seed=0, input_shape=(1, 8, 8), width=0.125, **kw):
    """The parity model, seeded (a method's heads draw from the same RNG stream next)."""
    torch.manual_seed(seed)
    return build_model(model, input_shape, 10, stages, width, **kw)


def make_units(
    model="convnet",
    method="scpl",
    stages=4,
    seed=0,
    input_shape=(1, 8, 8),
    width=0.125,
    head="mlp",
    **kw,
):
    m = make_model(model, stages, seed, input_shape, width, **kw)
    meth = build_method(method, MethodConfig(head=head, proj_dim=32))
    return meth.attach(m), meth


def make_pipeline(
    executor="sequential",
    schedule="sequential",
    model="convnet",
    method="scpl",
    stages=4,
    num_micro=1,
    input_shape=(1, 8, 8),
    emulate=None,
    record=False,
    devices="cpu",
    precision="fp32",
    nan_guard="interval",
    optim=None,
    method_options=None,
    **kw,
):
    """A pipeline over the parity model, built through scpl.pipeline(); ``method_options``
    (e.g. ``{"local_loss": "sim"}``) go to the method's config."""
    m = make_model(model, stages, input_shape=input_shape, **kw)
    return scpl.pipeline(
        m,
        method,
        devices=devices,
        optimizer=optim or OptimConfig(**PARITY_OPTIM),
        schedule=schedule,
        micro_batches=num_micro,
        executor=executor,
        emulate=emulate,
        record=record,
        precision=precision,
        nan_guard=nan_guard,
        **{"head": "mlp", "proj_dim": 32, **(method_options or {})},
    )


def text_kwargs(model, kw):
    """Small text-model settings for parity runs (no dropout: bitwise comparisons)."""
    base = (
        dict(vocab_size=50, embed_dim=24, dropout=0.0)
        if model == "transformer"
        else dict(vocab_size=50, embed_dim=24)
    )
    return dict(base, **kw)


TEXT_MODELS = ("lstm", "transformer")


def assert_pipeline_refuses(model, method, method_options, match, stages=3):
    """Building a pipeline with these method options fails with one ConfigError matching
    ``match`` (text models get small text settings and a 12-token input)."""
    import pytest

    from scpl.errors import ConfigError

    kw = dict(input_shape=(12,), **text_kwargs(model, {})) if model in TEXT_MODELS else {}
    with pytest.raises(ConfigError, match=match):
        make_pipeline(
            "sequential",
            "sequential",
            model=model,
            method=method,
            stages=stages,
            method_options=method_options,
            **kw,
        ).close()


def make_batches(num_steps=3, batch=16, input_shape=(1, 8, 8), seed=123, num_classes=4, text=False):
    g = torch.Generator().manual_seed(seed)
    if text:  # (tokens, lengths) with variable lengths; id 0 is padding
        t = input_shape[0]
        out = []
        for _ in range(num_steps):
            lengths = torch.randint(1, t + 1, (batch,), generator=g)
            tokens = torch.randint(2, 50, (batch, t), generator=g)
            tokens[torch.arange(t).view(1, -1) >= lengths.view(-1, 1)] = 0
            out.append(((tokens, lengths), torch.randint(0, num_classes, (batch,), generator=g)))
        return out
    return [
        (
            torch.randn(batch, *input_shape, generator=g),
            torch.randint(0, num_classes, (batch,), generator=g),
        )
        for _ in range(num_steps)
    ]


def run_executor(
    executor="sequential",
    schedule="sequential",
    model="convnet",
    method="scpl",
    stages=4,
    num_micro=1,
    steps=3,
    batch=16,
    input_shape=(1, 8, 8),
    emulate=None,
    record=False,
    per_step=False,
    method_options=None,
    **kw,
):
    text = model in TEXT_MODELS
    if text:
        input_shape = (12,)
        kw = text_kwargs(model, kw)
    pipe = make_pipeline(
        executor,
        schedule,
        model,
        method,
        stages,
        num_micro,
        input_shape,
        emulate,
        record,
        method_options=method_options,
        **kw,
    )
    ex = pipe.executor
    if executor == "dist":
        ex.barrier(120.0)  # ranks start at different times on a loaded machine: align them
    losses = []
    try:
        for x, y in make_batches(steps, batch, input_shape, text=text):
            pipe.step(x, y)
            if per_step:
                pipe.flush()
                losses.append(pipe.metrics())
        pipe.flush()
        states = [{k: v.clone() for k, v in st.items()} for st in pipe.unit_states()]
        metrics = pipe.metrics()
        acc = pipe.evaluate(make_batches(1, batch, input_shape, seed=7, text=text))
        correct, total = round(acc * batch), batch
    finally:
        pipe.close()
    if per_step:
        ex.step_metrics = losses
    return states, metrics, (correct, total), ex


def assert_states_equal(a, b, exact=True, rtol=1e-5, atol=1e-7):
    assert len(a) == len(b)
    for sa, sb in zip(a, b, strict=True):
        assert sa.keys() == sb.keys()
        for k in sa:
            if exact:
                assert torch.equal(sa[k], sb[k]), (
                    f"{k} differs (max abs {float((sa[k].float() - sb[k].float()).abs().max())})"
                )
            else:
                torch.testing.assert_close(
                    sa[k], sb[k], rtol=rtol, atol=atol, msg=lambda m, k=k: f"{k}: {m}"
                )


def _dist_worker(rank, world, rdzv, kwargs, out_dir):
    import faulthandler
    import sys

    import torch.distributed as dist

    faulthandler.dump_traceback_later(60, exit=True, file=sys.stderr)  # a hang becomes a traceback
    torch.set_num_threads(1)
    init_gloo(rank, world, rdzv)
    try:
        states, metrics, acc, ex = run_executor("dist", **kwargs)
        events = [vars(e) for e in ex.recorder.events] if ex.recorder else []
        torch.save(
            {
                "state": states[0],
                "metrics": metrics,
                "acc": acc,
                "events": events,
                "step_metrics": getattr(ex, "step_metrics", None),
            },
            f"{out_dir}/rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def rendezvous(out_dir) -> str:
    """A ``file://`` rendezvous of one's own for a spawned test group (pass it to
    :func:`init_gloo`). A TCP store on a port found free a moment earlier can be taken by
    another job's test in between, whose ranks then meet ours (seen as ``Resource temporarily
    unavailable`` in ProcessGroupGloo's set-up); a fresh file under the test's own tmp folder
    cannot collide, and gloo's own connections use ports the kernel hands out."""
    import uuid
    from pathlib import Path

    return f"file://{Path(out_dir).resolve() / f'rendezvous-{uuid.uuid4().hex}'}"


def init_gloo(rank: int, world: int, rdzv: str) -> None:
    """Join a gloo group of ``world`` spawned test processes through ``rdzv``."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=rdzv, rank=rank, world_size=world)


def run_dist(world, out_dir, **kwargs):
    """Run ``run_executor('dist', **kwargs)`` on ``world`` gloo processes; return per-rank results."""
    import torch.multiprocessing as mp

    args = (world, rendezvous(out_dir), kwargs, str(out_dir))
    mp.spawn(_dist_worker, args=args, nprocs=world, join=True)
    return [torch.load(f"{out_dir}/rank{r}.pt") for r in range(world)]
