"""The reference executor: one op at a time in the schedule's global serial order."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from scpl.parallel.base import (
    EXECUTORS,
    Executor,
    ExecutorOptions,
    MetricSink,
    OptimConfig,
    check_units,
)
from scpl.parallel.runner import Channel, Recorder, StageRunner, split_micro
from scpl.parallel.schedules import resolve_schedule


class MailboxChannel(Channel):
    """In-process hand-off for serial execution: a dict of pending messages."""

    def __init__(self) -> None:
        self.box: dict[tuple, object] = {}

    def send_act(self, stage, batch, mb, act, y):
        self.box[("act", stage + 1, mb)] = (act, y)

    def recv_act(self, stage, batch, mb):
        return self.box.pop(("act", stage, mb))

    def send_grad(self, stage, batch, mb, grad):
        self.box[("grad", stage - 1, mb)] = grad

    def recv_grad(self, stage, batch, mb):
        return self.box.pop(("grad", stage, mb))

    def send_feedback(self, stage, step, tensors):
        self.box[("feedback", stage - 1, step)] = tensors

    def recv_feedback(self, stage, step, like):
        return self.box.pop(("feedback", stage, step))


class RunnerExecutor(Executor):
    """Shared set-up of executors that hold all K stage runners in this process."""

    def __init__(
        self,
        units: nn.ModuleList,
        local: bool,
        optim: OptimConfig,
        devices: list[torch.device],
        options: ExecutorOptions | None = None,
        method: str = "",
    ) -> None:
        self.options = options or ExecutorOptions()
        check_units(units, local)
        self.local = local
        self.num_stages = len(units)
        if len(devices) == 1:
            devices = devices * self.num_stages
        self.devices = devices
        self.schedule = resolve_schedule(
            self.options.schedule, local, method, self.options.num_micro
        )
        self.order = self.schedule.order(self.num_stages, self.options.num_micro, local)
        self.programs = self.schedule.programs(self.num_stages, self.options.num_micro, local)
        self.recorder = Recorder() if self.options.record else None
        emulate = self.options.emulate or {}
        self.runners = [
            StageRunner(
                u,
                s,
                self.num_stages,
                local,
                optim,
                devices[s],
                self.recorder,
                emulate.get(s),
                self.options.nan_guard,
                self.options.precision,
            )
            for s, u in enumerate(units)
        ]
        self.sink = MetricSink()
        self._batch = 0

    def current_lr(self) -> float:
        return float(self.runners[0].optimizer.param_groups[0]["lr"])

    def train(self, mode: bool = True) -> None:
        self.flush()
        for r in self.runners:
            r.unit.train(mode)

    def unit_states(self) -> list[dict]:
        self.flush()
        return [r.unit.state_dict() for r in self.runners]

    def load_unit_states(self, states: list[dict]) -> None:
        self.flush()
        for r, s in zip(self.runners, states, strict=True):
            r.unit.load_state_dict(s)

    def state_dict(self) -> dict:
        self.flush()
        return {"runners": [r.state_dict() for r in self.runners], "batch": self._batch}

    def load_state_dict(self, state: dict) -> None:
        self.flush()
        for r, s in zip(self.runners, state["runners"], strict=True):
            r.load_state_dict(s)
        self._batch = state["batch"]

    def infer(self, x) -> torch.Tensor:
        """Class logits of the inference path (stages + classifier, no heads) for one batch."""
        for r in self.runners:
            x = r.infer(x)
        return x

    def evaluate(self, batches: Iterable[tuple[object, torch.Tensor]]) -> tuple[int, int]:
        self.flush()
        correct, total = None, 0
        for x, y in batches:
            logits = self.infer(x)
            hit = (logits.argmax(1) == y.to(logits.device)).sum()
            correct = hit if correct is None else correct + hit.to(correct.device)
            total += int(y.shape[0])
        return (int(correct) if correct is not None else 0), total


@EXECUTORS.register(
    "sequential", help="one op at a time in the schedule's serial order (parity reference)"
)
class SequentialExecutor(RunnerExecutor):
    """Runs the global serial order of the schedule, one op at a time, in the calling thread."""

    name = "sequential"

    def submit(self, x, y):
        batch = self._batch
        self._batch += 1
        micro = split_micro(x, y, self.options.num_micro)
        ch = MailboxChannel()
        for s, r in enumerate(self.runners):
            r.begin(batch, micro if s == 0 else None, int(y.shape[0]), len(micro), ch)
        for s, op in self.order:
            self.runners[s].run(op, ch)
        for s, r in enumerate(self.runners):
            self.sink.add(r.metrics(), key=s, flag=r.flag)
