"""Executors run a method's stage units on devices in the order a schedule gives.

Every executor drives :class:`~scpl.parallel.runner.StageRunner` objects, one per stage, through
the programs of a :class:`~scpl.parallel.schedules.Schedule`. The ``sequential`` executor runs
the schedule's global serial order op by op and is the reference every other executor matches
bit for bit (CPU, float32).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from scpl.errors import ConfigError, ScplError
from scpl.registry import Registry


class NonFiniteError(ScplError):
    """A loss or gradient became NaN/inf (raised by the NaN guard)."""


def nonfinite_message(stage: int, term: str, step: int) -> str:
    """The NaN guard's one-line error, naming the stage, the step and the loss term."""
    what = f"{term} loss" if term != "gradient" else "gradient of the stage loss"
    return (
        f"non-finite {what} at stage {stage}, step {step}; lower --lr or check the data "
        "(--nan-guard skip drops such batches instead)"
    )


class NonFiniteFlag:
    """Device-side record, per checked value (loss terms, gradient), of the first step at which
    it was NaN/inf (-1 while finite). Updating it never syncs; :meth:`report` reads it once."""

    def __init__(self, stage: int) -> None:
        self.stage = stage
        self.names: list[str] = []
        self.first: torch.Tensor | None = None

    def update(self, names: list[str], vals: torch.Tensor, step: int) -> None:
        """Fold one step's values (on the device) into the flag."""
        if not names:
            return
        if names != self.names[: len(names)] or self.first is None:
            old = dict(zip(self.names, self.first.unbind(0), strict=True)) if self.names else {}
            missing = vals.new_full((), -1, dtype=torch.int64)
            union = names + [n for n in self.names if n not in names]
            self.first = torch.stack([old.get(n, missing) for n in union])
            self.names = union
        cur = self.first[: len(names)]
        bad = ~torch.isfinite(vals)
        new = torch.where(bad & (cur < 0), torch.full_like(cur, step), cur)
        self.first = (
            torch.cat([new, self.first[len(names) :]]) if len(self.names) > len(names) else new
        )

    def snapshot(self) -> tuple[list[str], torch.Tensor] | None:
        return (list(self.names), self.first) if self.first is not None else None


def first_nonfinite(
    flags: list[tuple[int, list[str], list[int]]],
) -> tuple[int, int, str] | None:
    """(step, stage, term) of the earliest non-finite value over stages' flags (ties: the
    lowest stage, loss terms before the gradient), or None when all were finite."""
    hits = [
        (step, stage, i, names[i])
        for stage, names, first in flags
        for i, step in enumerate(first)
        if step >= 0
    ]
    if not hits:
        return None
    step, stage, _, name = min(hits)
    return step, stage, name


@dataclass
class OptimConfig:
    """Per-stage Adam settings with an optional LR schedule stepped per iteration.

    The default is a constant learning rate; ``schedule="cosine"`` needs ``total_steps`` (the
    run's length), because a cosine over one step would swing between max and min every step.
    ``schedule="wsd"`` (warm-up, stable, decay; Hägele et al. 2024, "Scaling Laws and
    Compute-Optimal Training Beyond Fixed Training Durations") keeps the LR constant until the
    last ``decay_fraction`` of the run: its first :func:`wsd_decay_start` steps do not depend on
    the run's length, so runs of several lengths branch from one constant-LR run.
    """

    lr: float = 1e-3
    lr_min: float = 1e-5
    weight_decay: float = 0.0
    total_steps: int = 0
    schedule: str = "constant"  # or "cosine" (paper vision recipes)
    decoupled_weight_decay: bool = False
    """AdamW (Loshchilov & Hutter 2019): shrink the weights by lr x weight_decay each step
    instead of adding weight_decay x w to the gradient, where Adam's normaliser would scale it
    away; then the decay bounds the weights' growth at any constant rate."""
    foreach: bool = True
    """Multi-tensor (foreach) Adam: a handful of kernel launches per stage instead of several
    per parameter. Every executor uses the same setting, so parity stays bitwise."""
    fused: bool | None = None
    """Fused Adam (one kernel per stage). None: where the stage's device is in
    ``FUSED_ADAM_DEVICES`` (CUDA), else ``foreach``; True/False forces it on/off. Fused Adam also
    lets an fp16 ``GradScaler`` step without reading ``found_inf`` back to the host."""
    warmup_steps: int = 0
    """wsd: steps of linear warm-up from lr/warmup_steps to lr."""
    decay_fraction: float = 0.2
    """wsd: share of the run (at its end) over which the LR decays to lr_min."""
    decay_shape: str = "linear"
    """wsd: linear or 1-sqrt (lr_min + (lr - lr_min) * (1 - sqrt(progress)))."""

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ConfigError(
                f"lr schedule {self.schedule!r}: choose one of {', '.join(SCHEDULES)}"
            )
        if self.schedule in ("cosine", "wsd") and self.total_steps < 1:
            raise ConfigError(
                f"a {self.schedule} lr schedule needs total_steps >= 1 (the number of training "
                f"steps); pass OptimConfig(total_steps=N, schedule={self.schedule!r}) or use "
                "schedule='constant'"
            )
        if self.decay_shape not in DECAY_SHAPES:
            raise ConfigError(
                f"decay shape {self.decay_shape!r}: choose one of {', '.join(DECAY_SHAPES)}"
            )
        if not 0.0 <= self.decay_fraction <= 1.0:
            raise ConfigError(f"decay fraction {self.decay_fraction} must be in [0, 1], e.g. 0.2")
        if self.warmup_steps < 0:
            raise ConfigError(f"warm-up steps {self.warmup_steps} must be >= 0")


SCHEDULES = ("constant", "cosine", "wsd")
DECAY_SHAPES = ("linear", "1-sqrt")


def wsd_decay_start(total_steps: int, decay_fraction: float) -> int:
    """The step at which a WSD run of ``total_steps`` leaves its constant phase (every step
    before it has the same LR in runs of any length)."""
    return total_steps - round(decay_fraction * total_steps)


def wsd_factor(cfg: OptimConfig) -> Callable[[int], float]:
    """LR multiplier per step of a WSD schedule (a closure, not a callable object, so
    LambdaLR's state_dict never saves it: a resumed run of another length keeps its own)."""
    total, warm, floor = cfg.total_steps, cfg.warmup_steps, cfg.lr_min / cfg.lr
    start = wsd_decay_start(total, cfg.decay_fraction)
    span = max(1, total - start)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if step < start:
            return 1.0
        p = min(1.0, (step - start + 1) / span)  # reaches lr_min at the last update
        shape = p if cfg.decay_shape == "linear" else math.sqrt(p)
        return floor + (1.0 - floor) * (1.0 - shape)

    return factor


# Devices whose stages get fused Adam by default. Fused Adam takes the loss scaler's found_inf
# and scale as tensors, so GradScaler.step skips its per-step `.item()` (a host sync each step
# under fp16 with foreach Adam). torch has a fused CPU kernel too, but it rounds differently from
# foreach and CPU runs are the bitwise reference (tests/test_reference.py builds foreach Adam),
# so CPU stays on foreach.
FUSED_ADAM_DEVICES = ("cuda",)


def adam_impl(device: torch.device | str, cfg: OptimConfig) -> str:
    """Which Adam implementation a stage on ``device`` gets: "fused", "foreach" or "for-loop"."""
    fused = cfg.fused if cfg.fused is not None else torch.device(device).type in FUSED_ADAM_DEVICES
    if fused:
        return "fused"
    return "foreach" if cfg.foreach else "for-loop"


OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]


@dataclass
class StageOptim:
    """Any torch optimizer (and optional LR scheduler) per stage, from factories: each stage
    calls ``optimizer(stage_parameters)`` and ``scheduler(optimizer)`` once. Stages update
    alone, so each gets its own instance."""

    optimizer: OptimizerFactory
    scheduler: SchedulerFactory | None = None


def build_stage_optimizer(
    unit: nn.Module, cfg: OptimConfig | StageOptim
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """One optimizer and LR scheduler per stage over the stage's parameters (body, heads,
    classifier)."""
    if isinstance(cfg, StageOptim):
        opt = cfg.optimizer(unit.parameters())
        if not isinstance(opt, torch.optim.Optimizer):
            raise ConfigError(
                "optimizer must be a function of the stage's parameters returning a "
                f"torch.optim.Optimizer (got {type(opt).__name__}), e.g. "
                "optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3)"
            )
        if cfg.scheduler is None:
            return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
        return opt, cfg.scheduler(opt)
    # Every executor builds its optimizers here, from the stage's device, so whichever
    # implementation is picked, the update is the same on all of them (parity stays bitwise).
    params = list(unit.parameters())
    impl = adam_impl(params[0].device if params else torch.device("cpu"), cfg)
    # AdamW rather than Adam(decoupled_weight_decay=...): that keyword is newer than torch 2.3.
    adam = torch.optim.AdamW if cfg.decoupled_weight_decay else torch.optim.Adam
    decay = dict(lr=cfg.lr, weight_decay=cfg.weight_decay)
    if impl == "fused":
        opt = adam(params, fused=True, **decay)
    else:
        opt = adam(params, foreach=impl == "foreach", **decay)
    if cfg.schedule == "wsd":
        sched = torch.optim.lr_scheduler.LambdaLR(opt, wsd_factor(cfg))
    elif cfg.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=max(1, cfg.total_steps), eta_min=cfg.lr_min
        )
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return opt, sched


def _raise_first_nonfinite(flags: list[tuple[int, list[str], torch.Tensor]]) -> None:
    hit = first_nonfinite([(st, names, first.cpu().tolist()) for st, names, first in flags])
    if hit is not None:
        step, stage, term = hit
        raise NonFiniteError(nonfinite_message(stage, term, step))


class MetricSink:
    """Thread-safe running sums of per-batch loss terms, kept on device until collected.

    ``add`` runs on the producing stage's stream (its worker thread); on CUDA it records an
    event after the sums, and ``collect`` (the caller's thread, another stream) waits on those
    events before reading, so it never reads a sum still being written."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}
        self._events: dict[object, torch.cuda.Event] = {}
        self._flags: dict[object, tuple[int, list[str], torch.Tensor]] = {}

    def add(
        self, terms: dict[str, torch.Tensor], key: object = 0, flag: NonFiniteFlag | None = None
    ) -> None:
        """Accumulate one batch's terms; ``key`` names the producer (its last event is kept),
        ``flag`` is its NaN guard state, checked by :meth:`collect`."""
        snap = flag.snapshot() if flag is not None else None
        with self._lock:
            if snap is not None:
                self._flags[key] = (flag.stage, *snap)
            for k, v in terms.items():
                self._sums[k] = self._sums[k] + v if k in self._sums else v.clone()
                self._counts[k] = self._counts.get(k, 0) + 1
            dev = next((v.device for v in terms.values() if v.is_cuda), None)
            if dev is not None:
                ev = torch.cuda.Event()
                ev.record(torch.cuda.current_stream(dev))
                self._events[key] = ev

    def check_finite(self) -> None:
        """Raise NonFiniteError if a NaN guard flag added so far is set, leaving the sums to
        :meth:`collect` (one small host read: a checkpoint is only written from a state known
        to be finite)."""
        with self._lock:
            flags = list(self._flags.values())
            events = list(self._events.values())
        for ev in events:
            ev.synchronize()
        _raise_first_nonfinite(flags)

    def collect(self) -> dict[str, float]:
        """Means since the last call (this is the only host sync for metrics: one transfer)."""
        with self._lock:
            sums, counts, events = self._sums, self._counts, self._events
            self._sums, self._counts, self._events = {}, {}, {}
            flags = list(self._flags.values())
        for ev in events.values():
            ev.synchronize()
        _raise_first_nonfinite(flags)
        if not sums:
            return {}
        keys = sorted(sums)
        # One device-to-host copy per device instead of one per term.
        by_dev: dict[torch.device, list[str]] = {}
        for k in keys:
            by_dev.setdefault(sums[k].device, []).append(k)
        out: dict[str, float] = {}
        for ks in by_dev.values():
            vals = torch.stack([sums[k].detach().double().reshape(()) for k in ks]).cpu().tolist()
            out.update({k: v / counts[k] for k, v in zip(ks, vals, strict=True)})
        return {k: out[k] for k in keys}


@dataclass
class ExecutorOptions:
    """How an executor runs a schedule."""

    schedule: str = "sequential"
    num_micro: int = 1
    queue_depth: int = 2  # bounded queues between stages (activations in flight per link)
    emulate: dict | None = None  # per-stage, per-op emulated device seconds: {stage: {op: s}}
    record: bool = False  # keep a timeline of events
    nan_guard: str = "off"
    """off; interval (device-side flag, read when metrics are collected: no per-step sync);
    stop (per-step check before each update, one host sync per stage per step); skip (per-step
    check, drop the update)."""
    precision: str = "fp32"
    """fp32, bf16 (autocast per stage) or fp16 (autocast and a GradScaler per stage)."""
    dist_timeout: float | None = None
    """dist: seconds any wait for a peer may take (the executor's process groups); None: the
    timeout the default process group was created with is not visible, so torch's default."""
    data_parallel: int = 1
    """dist: replicas of the pipeline (world size = stages x data_parallel); each stage's
    replicas average their gradients before the update (see ``scpl.parallel.dp``)."""
    supcon_gather: bool = True
    """Under data parallelism: SupCon over the global batch (projections and labels all-gathered
    across a stage's replicas, gradients flowing back) instead of over each replica's shard."""

    def __post_init__(self) -> None:
        if self.data_parallel < 1:
            raise ConfigError(f"data_parallel={self.data_parallel} must be >= 1")
        if self.nan_guard not in NAN_GUARDS:
            raise ConfigError(
                f"nan_guard={self.nan_guard!r}: choose one of {', '.join(NAN_GUARDS)}"
            )
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"precision={self.precision!r}: choose one of {', '.join(PRECISIONS)}"
            )


NAN_GUARDS = ("off", "interval", "stop", "skip")
PRECISIONS = ("fp32", "bf16", "fp16")


class Executor:
    """Runs training steps and inference for a list of stage units."""

    name = ""

    def submit(self, x, y: torch.Tensor) -> None:
        """Train on one mini-batch. Pipelined executors return before the batch is done."""
        raise NotImplementedError

    def collect(self) -> dict[str, float]:
        """Mean loss terms ('stage{l}/{term}') of batches finished since the last call."""
        return self.sink.collect()

    def flush(self) -> None:
        """Block until every submitted batch has finished (all stages updated)."""

    def evaluate(self, batches: Iterable[tuple[object, torch.Tensor]]) -> tuple[int, int]:
        """(correct, total) of the inference path (stages + classifier, no heads)."""
        raise NotImplementedError

    def current_lr(self) -> float:
        raise NotImplementedError

    def train(self, mode: bool = True) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError

    def unit_states(self) -> list[dict]:
        """Each stage unit's state_dict (for model selection and parity checks)."""
        raise NotImplementedError

    def load_unit_states(self, states: list[dict]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release workers / process groups."""


EXECUTORS: Registry[type[Executor]] = Registry("executor")


def check_units(units, local: bool) -> None:
    """Refuse units whose method disagrees with ``local`` (a BP unit under a local schedule has
    no hidden-stage loss and would fail deep inside a stage with a None loss)."""
    for u in units:
        if getattr(u, "detach_input", local) != local:
            kind = "local-loss" if local else "end-to-end (BP)"
            raise ConfigError(
                f"stage {getattr(u, 'index', '?')} was attached by a method that does not match "
                f"the {kind} setting; build executors with scpl.pipeline(model, method=...), "
                "which derives it from the method"
            )
