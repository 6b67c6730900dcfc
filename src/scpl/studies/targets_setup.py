"""`scpl bench --targets`: what runs -- the targets and their needs, the networks, the options."""

from __future__ import annotations

from dataclasses import dataclass, field

NEEDS = {
    "vgg-flops-K4-scpl-vs-bp": (">=", 3.0),
    "vgg-flops-K4-scpl-vs-gpipe": (">=", 1.15),
    "vgg-K4-activation-memory-scpl-vs-1f1b": ("<=", 0.5),
    "resnet18-flops-K4-scpl-vs-bp": (">=", 3.0),
    "lstm-flops-K4-scpl-vs-bp": (">=", 3.2),
    "transformer-flops-K4-scpl-vs-bp": (">=", 3.2),
    "vgg-measured-K4-scpl-vs-bp": (">=", 2.5),
    "step-ratio-scpl-vs-bp": ("<=", 1.10),
    "rows-verified": (">=", 1),
}
"""The targets, in report order: (comparison, need)."""

BP_PIPELINES = ("gpipe", "pipedream-1f1b")


@dataclass
class Net:
    """A model as the targets run it."""

    model: str
    input_shape: tuple[int, ...]
    num_classes: int
    width: float = 1.0
    batch_size: int = 32
    model_kwargs: dict = field(default_factory=dict)


NETS = {
    "vgg": Net("vgg", (3, 32, 32), 10),
    "resnet18": Net("resnet18", (3, 32, 32), 10),
    # AG News shapes: 60 tokens, 30k vocabulary, 300-d embeddings, 4 classes.
    "lstm": Net("lstm", (60,), 4, model_kwargs={"vocab_size": 30000}),
    "transformer": Net("transformer", (60,), 4, model_kwargs={"vocab_size": 30000}),
}


@dataclass
class TargetsOptions:
    """What `scpl bench --targets` runs (defaults: the committed run, about 5-8 minutes)."""

    out: str | None = None
    """Output folder (targets.json, targets.md, targets-detail.json)."""
    stages: int = 4
    """K."""
    head: str = "mlp-pool"
    """SCPL's projection head in the headline rows (the paper's mlp is shown next to it)."""
    proj_dim: int = 1024
    """Projection size of the heads."""
    stage_ms: float = 300.0
    """Emulated time of SCPL's slowest stage per mini-batch (every row of a model is scaled by
    the same factor); long next to the proxy's own work (~3 ms of CPU per stage and
    mini-batch), which a loaded machine stretches."""
    steps: int = 6
    """Timed mini-batches per emulated row (after ``warmup`` flushed ones)."""
    warmup: int = 2
    """Mini-batches run before timing; the steady rate is also taken after the first of the
    timed ones."""
    repeats: int = 2
    """Runs per emulated row; the row reports the fastest (the one least disturbed by other
    processes on a shared machine) and is verified only if every run matches."""
    calibrate: bool = True
    """Subtract the proxy's own (one-thread, median) op times from the emulated ones, so each
    op holds its stage for about the modelled time rather than that plus the proxy's work."""
    proxy_batch: int = 32
    """Mini-batch of the proxy model (its micro-batches must stay >= 2 for BatchNorm)."""
    measured_width: float = 0.5
    """VGG width of the CPU-measured row."""
    measured_steps: int = 3
    """Timed steps per measurement of the CPU-measured row (median)."""
    step_ratio_width: float = 1.0
    """VGG width of the one-device step-time ratio."""
    step_ratio_batch: int = 128
    """Batch of the step-time ratio."""
    step_ratio_rounds: int = 2
    """Timed rounds (one step of each method per round) of the step-time ratio."""
    models: tuple[str, ...] = ("vgg", "resnet18", "lstm", "transformer")
    """Which networks to run (the targets of the others are reported as not run)."""
    micro: tuple[int, ...] = (1, 2, 4)
    """GPipe/1F1B micro-batch counts as multiples of K."""
    width: float = 1.0
    """Width of the FLOP-model networks (1 = the paper's)."""
    verify_width: float = 0.125
    """Width at which each pipelined row's own network is checked against the independent
    reference (:mod:`scpl.studies.targets_verify`)."""
    verify_batch: int = 32
    """Mini-batch of that check (divisible by every micro-batch count of the rows)."""
    verify_steps: int = 3
    """Training steps of that check."""
    quick: bool = False
    """Tiny widths and few steps (for tests; the numbers mean nothing)."""


def quick_options(**kw) -> TargetsOptions:
    """Seconds-scale settings for tests."""
    base = dict(
        stage_ms=6.0,
        steps=3,
        warmup=1,
        measured_width=0.125,
        measured_steps=1,
        step_ratio_width=0.125,
        step_ratio_batch=16,
        step_ratio_rounds=1,
        micro=(1, 2),
        width=0.125,
        repeats=1,
        verify_steps=2,
        quick=True,
    )
    base.update(kw)
    return TargetsOptions(**base)
