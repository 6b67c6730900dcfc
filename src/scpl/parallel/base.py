"""Executors run a method's stage units on devices in the order a schedule gives.

Every executor drives :class:`~scpl.parallel.runner.StageRunner` objects, one per stage, through
the programs of a :class:`~scpl.parallel.schedules.Schedule`. The ``sequential`` executor runs
the schedule's global serial order op by op and is the reference every other executor matches
bit for bit (CPU, float32).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from scpl.registry import Registry


@dataclass
class OptimConfig:
    """Per-stage optimizer settings (Adam + cosine LR stepped per iteration)."""

    lr: float = 1e-3
    lr_min: float = 1e-5
    weight_decay: float = 0.0
    total_steps: int = 1
    schedule: str = "cosine"  # or "constant" (NLP recipes)


def build_stage_optimizer(
    unit: nn.Module, cfg: OptimConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """One Adam per stage over the stage's parameters (body, heads, classifier)."""
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
