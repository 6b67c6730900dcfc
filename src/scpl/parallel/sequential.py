"""The reference executor: one device, batch by batch, stage by stage."""

from __future__ import annotations

import torch
from torch import nn

from scpl.parallel.base import EXECUTORS, Executor, OptimConfig, build_stage_optimizer


@EXECUTORS.register("sequential", help="one device, stage after stage (the parity reference)")
class SequentialExecutor(Executor):
    """Runs every stage on one device.

    Local methods: for each stage, F -> L -> B -> U, then hand the detached output on.
    BP: forward through all stages, one backward from the last loss, then every stage updates.
    """

    name = "sequential"

    def __init__(self, units: nn.ModuleList, local: bool, optim: OptimConfig, devices: list[torch.device]):
        super().__init__(units, local, optim, devices)
        self.device = devices[0]
        self.units.to(self.device)
        pairs = [build_stage_optimizer(u, optim) for u in units]
        self.optimizers = [p[0] for p in pairs]
        self.schedulers = [p[1] for p in pairs]

    def train_step(self, x, y):
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        metrics: dict[str, torch.Tensor] = {}
        if self.local:
            for i, unit in enumerate(self.units):
                out = unit(x.detach())
                loss, terms = unit.loss(out, y)
                self.optimizers[i].zero_grad(set_to_none=True)
                loss.backward()
                self.optimizers[i].step()
                self.schedulers[i].step()
                for k, v in terms.items():
                    metrics[f"stage{i}/{k}"] = v.detach()
                x = out
            return metrics
        total = None
        for i, unit in enumerate(self.units):
            x = unit(x)
            loss, terms = unit.loss(x, y)
            for k, v in terms.items():
                metrics[f"stage{i}/{k}"] = v.detach()
            if loss is not None:
                total = loss if total is None else total + loss
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        total.backward()
        for opt, sched in zip(self.optimizers, self.schedulers, strict=True):
            opt.step()
            sched.step()
        return metrics

    @torch.no_grad()
    def predict(self, x):
        x = x.to(self.device, non_blocking=True)
        for unit in self.units:
            x = unit(x)
        return self.units[-1].predict(x)

    def state_dict(self) -> dict:
        return {
            "units": self.units.state_dict(),
            "optimizers": [o.state_dict() for o in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers],
        }

    def load_state_dict(self, state: dict) -> None:
        self.units.load_state_dict(state["units"])
        for o, s in zip(self.optimizers, state["optimizers"], strict=True):
            o.load_state_dict(s)
        for o, s in zip(self.schedulers, state["schedulers"], strict=True):
            o.load_state_dict(s)
