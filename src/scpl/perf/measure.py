"""Real-compute timing on one device: op costs of a registered model (timed or FLOP-counted), the
round-robin op-cost sweep, step-time ratios between methods and the augmentation share of a step.

Everything here builds its pipelines through :func:`scpl.api.pipeline`. A :class:`Workload`
names what is timed (a registered model at a width, its input, the batch, the method's head);
the sequential executor with a recorder runs it and the recorded op spans become costs
``{stage: {op: seconds}}`` (the format of ``ExecutorOptions.emulate``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from scpl.perf.emulate import WORK_OPS, Costs, costs_from_events

TIMING_OPTIM = {"total_steps": 1000, "schedule": "cosine"}
"""The optimizer settings of timed runs (Adam, a cosine decay that a short run barely moves)."""


@dataclass
class Workload:
    """What is run or timed: a registered model at ``width`` on ``input_shape`` inputs, in
    mini-batches of ``batch_size``, with the method's ``head``/``proj_dim``; ``device``,
    ``warmup``/``steps`` (timed steps) and ``tflops`` (the FLOP cost model's device speed)."""

    model: str = "vgg"
    width: float = 1.0
    input_shape: tuple[int, ...] = (3, 32, 32)
    batch_size: int = 32
    head: str = "mlp"
    proj_dim: int = 1024
    num_classes: int = 10
    model_kwargs: dict = field(default_factory=dict)  # e.g. vocab_size for text models
    device: str = "cpu"
    steps: int = 3
    warmup: int = 1
    tflops: float = 1.0


def model_pipeline(
    w: Workload,
    method: str,
    num_stages: int,
    *,
    executor: str = "sequential",
    schedule: str = "sequential",
    num_micro: int = 1,
    partition: Sequence[int] | None = None,
    emulate: dict | None = None,
    record: bool = True,
    queue_depth: int = 2,
    seed: int = 0,
):
    """The workload's model (seeded) under ``method`` on ``w.device``, as a :class:`Pipeline`."""
    from scpl.api import pipeline
    from scpl.methods import MethodConfig
    from scpl.models import build_model
    from scpl.parallel import OptimConfig

    torch.manual_seed(seed)
    model = build_model(
        w.model,
        tuple(w.input_shape),
        w.num_classes,
        num_stages,
        w.width,
        partition,
        **w.model_kwargs,
    )
    return pipeline(
        model,
        method,
        devices=[w.device],
        optimizer=OptimConfig(**TIMING_OPTIM),
        schedule=schedule,
        micro_batches=num_micro,
        executor=executor,
        method_config=MethodConfig(head=w.head, proj_dim=w.proj_dim),
        queue_depth=queue_depth,
        emulate=emulate,
        record=record,
    )


def synthetic_batch(
    input_shape: tuple[int, ...],
    batch_size: int,
    num_classes: int = 10,
    generator=None,
    vocab_size: int = 1000,
):
    """A random training batch (x, y) for a model's input shape: images ``(C, H, W)`` give a
    float tensor; text ``(T,)`` gives ``(tokens, lengths)`` (padded with 0, the longest row full
    length). Labels cycle through the classes, so every class present has positives."""
    n = batch_size
    y = torch.arange(n) % max(1, min(num_classes, n // 2))
    if len(input_shape) == 1:
        t = input_shape[0]
        tokens = torch.randint(2, max(3, vocab_size), (n, t), generator=generator)
        lengths = torch.randint(1, t + 1, (n,), generator=generator)
        lengths[0] = t
        tokens[torch.arange(t).expand(n, t) >= lengths[:, None]] = 0
        return (tokens, lengths), y
    return torch.randn(n, *input_shape, generator=generator), y


def workload_batch(w: Workload, batch_size: int | None = None, seed: int = 0):
    """One synthetic batch of the workload, on its device."""
    dev = torch.device(w.device)
    g = torch.Generator().manual_seed(seed)
    vocab = w.model_kwargs.get("vocab_size", 1000)
    x, y = synthetic_batch(w.input_shape, batch_size or w.batch_size, w.num_classes, g, vocab)
    x = tuple(t.to(dev) for t in x) if isinstance(x, tuple) else x.to(dev)
    return x, y.to(dev)


def measure_op_costs(
    model: str = "vgg",
    method: str = "scpl",
    num_stages: int = 4,
    width: float = 1.0,
    input_shape: tuple[int, ...] = (3, 32, 32),
    num_classes: int = 10,
    batch_size: int = 16,
    steps: int = 3,
    warmup: int = 1,
    partition: Sequence[int] | None = None,
    num_micro: int = 1,
    device: str = "cpu",
    head: str = "mlp",
    proj_dim: int = 1024,
    seed: int = 0,
    model_kwargs: dict | None = None,
) -> Costs:
    """Time each op of each stage of the real model on one device: the sequential executor with
    a recorder runs ``warmup + steps`` training steps; returns the median per (stage, op).
    These are the costs ``--emulate measured`` emulates and ``scpl bench --project`` simulates."""
    w = Workload(
        model,
        width,
        tuple(input_shape),
        batch_size,
        head,
        proj_dim,
        num_classes,
        dict(model_kwargs or {}),
        device,
        steps,
        warmup,
    )
    pipe = model_pipeline(
        w, method, num_stages, num_micro=num_micro, partition=partition, seed=seed
    )
    ex = pipe.executor
    x, y = workload_batch(w, seed=seed)
    with pipe:
        for _ in range(warmup + steps):
            pipe.step(x, y)
            pipe.metrics()
    return costs_from_events(ex.recorder.events, skip_batches=warmup, stat="median")


def flop_op_costs(
    model: str = "vgg",
    method: str = "scpl",
    num_stages: int = 4,
    width: float = 1.0,
    input_shape: tuple[int, ...] = (3, 32, 32),
    num_classes: int = 10,
    batch_size: int = 32,
    partition: Sequence[int] | None = None,
    flops_per_s: float = 1e12,
    head: str = "mlp",
    proj_dim: int = 1024,
    model_kwargs: dict | None = None,
    seed: int = 0,
    local_ce: float = 0.0,
    local_loss: str = "supcon",
    al_bridge: str = "flat",
    local_recon: float = 0.0,
) -> Costs:
    """Op costs of a compute-bound device of ``flops_per_s``: the FLOPs of each stage's F, L and B
    (counted by torch.utils.flop_counter on one training step: matmuls and convolutions only).
    U and transfers cost 0. On a GPU, where the per-step optimizer and the small elementwise ops
    are cheap next to the convolutions, this is closer to the real split of work between stages
    than CPU timings (on a CPU the projection heads' Adam updates weigh much more). No executor
    runs: the units are stepped by hand, one stage after the other. ``local_ce`` and
    ``local_loss`` (SCPL's extra classifiers and similarity losses) are priced as trained: the
    heads they add and the similarity matmuls are in L and B. ``al_bridge``: AL's bridge
    input (flat or pooled), which sets most of an AL step's FLOPs on image models."""
    from torch.utils.flop_counter import FlopCounterMode

    from scpl.methods import MethodConfig, build_method
    from scpl.models import build_model
    from scpl.parallel.runner import act_tensor, detach_act

    torch.manual_seed(seed)
    kw = dict(model_kwargs or {})
    m = build_model(model, tuple(input_shape), num_classes, num_stages, width, partition, **kw)
    mcfg = MethodConfig(
        head=head,
        proj_dim=proj_dim,
        local_ce=local_ce,
        local_loss=local_loss,
        al_bridge=al_bridge,
        local_recon=local_recon,
    )
    meth = build_method(method, mcfg)
    units = meth.attach(m)
    g = torch.Generator().manual_seed(seed)
    x, y = synthetic_batch(input_shape, batch_size, num_classes, g, kw.get("vocab_size", 1000))
    out_costs: Costs = {}
    for s, unit in enumerate(units):
        unit.train()
        x = detach_act(x)
        if not meth.local and s > 0:
            act_tensor(x).requires_grad_(True)
        with FlopCounterMode(display=False) as fc:
            out = unit.forward_train(x, y)  # AL carries targets: its output is not its input
        f = fc.get_total_flops()
        with FlopCounterMode(display=False) as fc:
            loss, _ = unit.stage_loss(out, y, x)
        lf = fc.get_total_flops()
        with FlopCounterMode(display=False) as fc:
            if loss is not None and (meth.local or s == num_stages - 1):
                loss.backward()
            else:
                t = act_tensor(out)
                torch.autograd.backward(t, torch.ones_like(t))
        b = fc.get_total_flops()
        costs = {"F": f / flops_per_s, "B": b / flops_per_s}
        if loss is not None:
            costs["L"] = lf / flops_per_s
        out_costs[s] = costs
        x = unit.to_next(out)
    return out_costs


def measure_round_robin(
    w: Workload,
    num_stages: int,
    pairs: Sequence[tuple[int, str]],
    rounds: int,
    warmup: int,
    log: Callable[[str], None] = print,
) -> dict[tuple[int, str], Costs]:
    """Time every (inputs per step, method) pair on one device, round-robin.

    One sequential pipeline with a recorder per pair; after ``warmup`` steps each, the pairs
    take turns, one training step at a time, for ``rounds`` rounds, so that load from other
    processes hits every pair alike. On a CPU with one intra-op thread each timed step's op spans
    are scaled by the step's thread CPU time / wall time, which removes the time the step waited
    for a core other processes held (the sequential executor runs every op in this thread); each
    op's cost is then its shortest value over the rounds. Work ops only: one-device transfers
    are in-process hand-offs, not link costs."""
    dev = torch.device(w.device)
    runs = {}
    scale: dict[tuple, float] = {}  # (pair, batch) -> CPU time / wall time of that step
    try:
        for inputs, method in pairs:
            pipe = model_pipeline(w, method, num_stages)
            runs[(inputs, method)] = (pipe, *workload_batch(w, inputs))

        cpu_clock = dev.type == "cpu" and torch.get_num_threads() == 1

        def step(pipe, x, y) -> float:
            t0, c0 = time.perf_counter(), time.thread_time()
            pipe.step(x, y)
            pipe.metrics()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
            return min(1.0, cpu / wall) if cpu_clock and wall > 0 else 1.0

        t = time.perf_counter()
        for run in runs.values():
            for _ in range(warmup):
                step(*run)
        log(f"  warm-up: {len(runs)} (batch, method) pairs [{time.perf_counter() - t:.1f}s]")
        for r in range(rounds):
            t = time.perf_counter()
            for key, run in runs.items():
                scale[(key, warmup + r)] = step(*run)
            busy = statistics.fmean(v for (_, b), v in scale.items() if b == warmup + r)
            log(
                f"  round {r + 1}/{rounds} [{time.perf_counter() - t:.1f}s; this thread had "
                f"a core {100 * busy:.0f}% of the time]"
            )
        out = {}
        for key, (pipe, _, _) in runs.items():
            c: Costs = {}
            for e in pipe.executor.recorder.events:
                if e.batch >= warmup and e.kind in WORK_OPS:
                    d = c.setdefault(e.stage, {})
                    v = (e.end - e.start) * scale.get((key, e.batch), 1.0)
                    d[e.kind] = min(d.get(e.kind, float("inf")), v)
            out[key] = c
    finally:
        for pipe, _, _ in runs.values():
            pipe.close()
    return out


def step_ratio(
    model: str = "vgg",
    methods: tuple[str, ...] = ("bp", "early-exit", "scpl"),
    batch_size: int = 128,
    input_shape: tuple[int, ...] = (3, 32, 32),
    num_classes: int = 10,
    width: float = 1.0,
    rounds: int = 3,
    warmup: int = 1,
    device: str = "cpu",
) -> list[dict]:
    """Median seconds per training step of each method on one device (sequential executor),
    the methods taking turns step by step so that machine noise hits all of them alike."""
    dev = torch.device(device)
    # Workload's head defaults are MethodConfig()'s, as this comparison always used.
    w = Workload(
        model, width, tuple(input_shape), batch_size, num_classes=num_classes, device=device
    )
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, *input_shape, generator=g).to(dev)
    y = torch.randint(0, num_classes, (batch_size,), generator=g).to(dev)
    pipes = {name: model_pipeline(w, name, 4, record=False) for name in methods}
    times: dict[str, list[float]] = {n: [] for n in methods}
    try:
        for r in range(warmup + rounds):
            for name, pipe in pipes.items():
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                t0 = time.perf_counter()
                pipe.step(x, y)
                pipe.metrics()  # forces the step's results to exist
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                if r >= warmup:
                    times[name].append(time.perf_counter() - t0)
    finally:
        for pipe in pipes.values():
            pipe.close()
    base = statistics.median(times[methods[0]])
    return [
        {
            "method": n,
            "median_s": statistics.median(t),
            "ratio_vs_" + methods[0]: statistics.median(t) / base,
            "samples": t,
        }
        for n, t in times.items()
    ]


def augment_share(
    width: float, batch: int, input_shape=(3, 32, 32), rounds: int = 3, device: str = "cpu"
) -> dict:
    """Share of a two-view SCPL training step spent in augmentation (kornia, on the device):
    augmenting a uint8 batch of N images into 2N views vs one SCPL step on those 2N inputs."""
    from scpl.data.augment import Augment

    dev = torch.device(device)
    c = input_shape[0]
    aug = Augment("two-view", input_shape, (0.5,) * c, (0.25,) * c).to(dev)
    g = torch.Generator().manual_seed(0)
    x8 = torch.randint(0, 256, (batch, *input_shape), dtype=torch.uint8, generator=g).to(dev)
    y = (torch.arange(batch) % 10).to(dev)
    t_aug = []
    for r in range(rounds + 1):
        t0 = time.perf_counter()
        aug(x8, y)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        if r:
            t_aug.append(time.perf_counter() - t0)
    step = step_ratio(
        "vgg", ("scpl",), 2 * batch, input_shape, 10, width, rounds=rounds, device=device
    )[0]["median_s"]
    a = statistics.median(t_aug)
    return {"aug_s": a, "step_s": step, "aug_share": a / (a + step)}
