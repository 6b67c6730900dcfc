"""Executors run a method's stage units on devices in the order a schedule gives.

Every executor drives :class:`~scpl.parallel.runner.StageRunner` objects, one per stage, through
the programs of a :class:`~scpl.parallel.schedules.Schedule`. The ``sequential`` executor runs
the schedule's global serial order op by op and is the reference every other executor matches
bit for bit (CPU, float32).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from scpl.errors import ConfigError
from scpl.registry import Registry


@dataclass
class OptimConfig:
    """Per-stage Adam settings with an optional cosine LR decay stepped per iteration.

    The default is a constant learning rate; ``schedule="cosine"`` needs ``total_steps`` (the
    run's length), because a cosine over one step would swing between max and min every step.
    """

    lr: float = 1e-3
    lr_min: float = 1e-5
    weight_decay: float = 0.0
    total_steps: int = 0
    schedule: str = "constant"  # or "cosine" (paper vision recipes)

    def __post_init__(self) -> None:
        if self.schedule not in ("constant", "cosine"):
            raise ConfigError(f"lr schedule {self.schedule!r}: choose 'constant' or 'cosine'")
        if self.schedule == "cosine" and self.total_steps < 1:
            raise ConfigError(
                "a cosine lr schedule needs total_steps >= 1 (the number of training steps); "
                "pass OptimConfig(total_steps=N, schedule='cosine') or use schedule='constant'"
            )


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
    # foreach=False keeps the update a plain per-tensor loop, identical on every executor.
    opt = torch.optim.Adam(
        unit.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=False
    )
    if cfg.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=max(1, cfg.total_steps), eta_min=cfg.lr_min
        )
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return opt, sched


class MetricSink:
    """Thread-safe running sums of per-batch loss terms, kept on device until collected."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}

    def add(self, terms: dict[str, torch.Tensor]) -> None:
        with self._lock:
            for k, v in terms.items():
                self._sums[k] = self._sums[k] + v if k in self._sums else v.clone()
                self._counts[k] = self._counts.get(k, 0) + 1

    def collect(self) -> dict[str, float]:
        """Means since the last call (this is the only host sync for metrics)."""
        with self._lock:
            sums, counts = self._sums, self._counts
            self._sums, self._counts = {}, {}
        return {k: float(v) / counts[k] for k, v in sorted(sums.items())}


@dataclass
class ExecutorOptions:
    """How an executor runs a schedule."""

    schedule: str = "sequential"
    num_micro: int = 1
    queue_depth: int = 2  # bounded queues between stages (activations in flight per link)
    emulate: dict | None = None  # per-stage, per-op emulated device seconds: {stage: {op: s}}
    record: bool = False  # keep a timeline of events
    nan_guard: str = "off"  # per-step check before each update: off, stop or skip


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
