"""Executors run a method's stage units on devices in the order a schedule gives.

The single-device ``sequential`` executor here is the reference every other executor must
match bit for bit (CPU, float32): for local methods, stage l runs forward, local loss, backward
and update on a batch before stage l+1 sees that batch's (detached) activation.
"""

from __future__ import annotations

import math
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


class Executor:
    """Runs training steps and inference for a list of stage units."""

    name = ""

    def __init__(self, units: nn.ModuleList, local: bool, optim: OptimConfig, devices: list[torch.device]):
        self.units = units
        self.local = local
        self.optim_cfg = optim
        self.devices = devices

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """One mini-batch; returns detached loss terms keyed 'stage{l}/{term}' (no host sync)."""
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Inference path: stages then classifier, no heads."""
        raise NotImplementedError

    def current_lr(self) -> float:
        """Learning rate of the first stage's optimizer (all stages share the schedule)."""
        return lr_of(self.optimizers[0])

    def train(self, mode: bool = True) -> None:
        self.units.train(mode)

    def state_dict(self) -> dict:
        raise NotImplementedError

    def close(self) -> None:
        """Release workers/process groups."""


EXECUTORS: Registry[type[Executor]] = Registry("executor")


def lr_of(opt: torch.optim.Optimizer) -> float:
    return float(opt.param_groups[0]["lr"])


def finite_or_none(v: float) -> float | None:
    return v if math.isfinite(v) else None
