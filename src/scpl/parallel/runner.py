"""StageRunner: executes one stage's program (see schedules.py) on its device.

The runner is the only code that touches a stage's parameters during training, whichever
executor drives it: the sequential executor calls it op by op in the global serial order, the
local executor runs one runner per worker thread, the dist executor one per process. That is
what makes parity between executors hold by construction.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from scpl.errors import ConfigError
from scpl.parallel.base import (
    NonFiniteError,
    NonFiniteFlag,
    OptimConfig,
    build_stage_optimizer,
)
from scpl.parallel.schedules import Op

__all__ = ["NonFiniteError", "StageRunner", "Channel", "Recorder", "Event", "split_micro"]

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Event:
    """One recorded operation: which stage did what on which batch, and when (seconds)."""

    stage: int
    kind: str
    batch: int
    mb: int
    start: float
    end: float
    device: str = ""


class Recorder:
    """Thread-safe event log shared by all stages of a run (a timeline)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.t0 = clock()
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def add(self, ev: Event) -> None:
        with self._lock:
            self.events.append(ev)


class Channel:
    """How a stage exchanges activations and gradients with its neighbours."""

    def recv_act(self, stage: int, batch: int, mb: int) -> tuple[object, torch.Tensor]:
        raise NotImplementedError

    def send_act(self, stage: int, batch: int, mb: int, act, y: torch.Tensor) -> None:
        raise NotImplementedError

    def recv_grad(self, stage: int, batch: int, mb: int) -> torch.Tensor:
        raise NotImplementedError

    def send_grad(self, stage: int, batch: int, mb: int, grad: torch.Tensor) -> None:
        raise NotImplementedError

    def send_feedback(self, stage: int, step: int, tensors: list[torch.Tensor]) -> None:
        """Weights from ``stage`` back to ``stage - 1`` for training step ``step`` (``--head
        man``); received by :meth:`recv_feedback` in the same step."""
        raise NotImplementedError

    def recv_feedback(self, stage: int, step: int, like: list[torch.Tensor]) -> list:
        """``stage``'s copy of the next stage's feedback of step ``step`` (``like``: empty
        tensors of its shapes, which a transport may receive into)."""
        raise NotImplementedError


def detach_act(act):
    """Detach an activation (a tensor, or a tuple of tensors whose first one is the main one)."""
    if isinstance(act, tuple):
        return tuple(a.detach() if torch.is_tensor(a) else a for a in act)
    return act.detach()


def act_tensor(act) -> torch.Tensor:
    return act[0] if isinstance(act, tuple) else act


def is_host_side(t, index: int) -> bool:
    """Whether member ``index`` of an activation tuple is host-side metadata.

    The first tensor (the data, or the tokens of a text batch) and every floating-point tensor
    live on the stage's device; later integer tensors (a text batch's ``lengths``) stay where the
    data loader put them -- on the host -- so no stage ever has to copy them back (a sync)."""
    return index > 0 and torch.is_tensor(t) and not t.is_floating_point()


def act_to(act, device: torch.device):
    """Move an activation to ``device`` (non-blocking); host-side metadata stays where it is."""
    if isinstance(act, tuple):
        return tuple(
            a.to(device, non_blocking=True) if torch.is_tensor(a) and not is_host_side(a, i) else a
            for i, a in enumerate(act)
        )
    return act.to(device, non_blocking=True)


def act_tensors(act) -> list[torch.Tensor]:
    """Every tensor of an activation (for stream bookkeeping)."""
    if isinstance(act, tuple):
        return [a for a in act if torch.is_tensor(a)]
    return [act] if torch.is_tensor(act) else []


@dataclass
class _MicroBatch:
    x: object = None  # stage input (detached; requires grad under BP for stages > 0)
    y: torch.Tensor | None = None
    out: object = None
    loss: torch.Tensor | None = None
    grad_out: torch.Tensor | None = None
    terms: dict = field(default_factory=dict)


class StageRunner:
    """Holds one stage unit with its optimizer and LR scheduler; runs ops on one mini-batch."""

    def __init__(
        self,
        unit: nn.Module,
        stage: int,
        num_stages: int,
        local: bool,
        optim: OptimConfig,
        device: torch.device,
        recorder: Recorder | None = None,
        emulate: dict[str, float] | None = None,
        nan_guard: str = "off",
        precision: str = "fp32",
    ) -> None:
        self.unit = unit.to(device)
        self.stage = stage
        self.num_stages = num_stages
        self.is_last = stage == num_stages - 1
        self.local = local
        self.device = device
        self.optimizer, self.scheduler = build_stage_optimizer(self.unit, optim)
        self.recorder = recorder
        self.nan_guard = nan_guard
        self.precision = precision
        self.amp_dtype = AMP_DTYPES.get(precision)
        # fp16 needs loss scaling. Each stage updates alone, so each has its own scaler; under
        # BP one scale would have to be shared by every stage the gradient passes through.
        self.scaler = None
        if precision == "fp16":
            if not local:
                raise ConfigError(
                    "precision fp16 with an end-to-end (BP) method would need one loss scale "
                    "shared by all stages; use precision bf16 (no loss scaling) or fp32"
                )
            self.scaler = torch.amp.GradScaler(device.type)
        # Device-side NaN/inf flag (nan_guard="interval"): the first step at which each loss
        # term (or the gradient) was non-finite, -1 while finite; read only when metrics are.
        self.flag = NonFiniteFlag(stage) if nan_guard == "interval" else None
        # Emulated device time per op kind (seconds): the op holds its device this long after its
        # real work, releasing the GIL as a GPU kernel would (see `scpl bench --emulate`).
        self.emulate = emulate or {}
        self._mbs: dict[int, _MicroBatch] = {}
        self._batch = -1
        self._step = 0  # training step of the current mini-batch (see begin)
        self._num_micro = 1
        # Data parallelism: averages this stage's gradients over its replicas (set by the
        # executor); runs first in U, so every replica's checks and update see the same values.
        self.grad_sync: Callable[[], None] | None = None

    # -- one mini-batch -------------------------------------------------------------------
    def begin(
        self,
        batch: int,
        micro_inputs: list | None,
        batch_size: int,
        num_micro: int = 1,
        channel: Channel | None = None,
    ) -> None:
        """Start a mini-batch; stage 0 is handed its micro-batches [(x, y), ...] here. Weights
        this stage owes the previous one (``--head man``) leave through ``channel`` now."""
        self._batch = batch
        self._num_micro = num_micro
        self._mbs = {}
        # The training step: the updates done so far (``batch`` also counts a pipelined
        # executor's evaluation batches); the same number on every executor and after a resume.
        self._step = int(getattr(self.scheduler, "last_epoch", batch))
        if self.stage > 0 and channel is not None:
            back = self.unit.feedback_out(self._step)
            if back is not None:
                channel.send_feedback(self.stage, self._step, back)
        if micro_inputs is not None:
            for mb, (x, y) in enumerate(micro_inputs):
                self._mbs[mb] = _MicroBatch(x=self._input(x), y=y)

    def _input(self, x):
        x = detach_act(act_to(x, self.device))
        if not self.local and self.stage > 0:
            act_tensor(x).requires_grad_(True)
        return x

    def autocast(self):
        """The stage's autocast context (a no-op in fp32)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def run(self, op: Op, channel: Channel) -> None:
        """Execute one op (timed and recorded when a recorder is attached)."""
        rec = self.recorder
        t0 = rec.clock() if rec else 0.0
        getattr(self, "_op_" + op.kind)(op.mb, channel)
        wait = self.emulate.get(op.kind, 0.0)
        if wait:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            time.sleep(wait)  # releases the GIL, like a running kernel
        if rec:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            rec.add(
                Event(
                    self.stage,
                    op.kind,
                    self._batch,
                    op.mb,
                    t0 - rec.t0,
                    rec.clock() - rec.t0,
                    str(self.device),
                )
            )

    def metrics(self) -> dict[str, torch.Tensor]:
        """Loss terms of the finished mini-batch, averaged over micro-batches (detached)."""
        out: dict[str, torch.Tensor] = {}
        n = len(self._mbs)
        for mb in self._mbs.values():
            for k, v in mb.terms.items():
                key = f"stage{self.stage}/{k}"
                out[key] = out[key] + v if key in out else v
        if n > 1:
            out = {k: v / n for k, v in out.items()}
        return out

    # -- ops ----------------------------------------------------------------------------
    def _op_recv_act(self, mb: int, ch: Channel) -> None:
        x, y = ch.recv_act(self.stage, self._batch, mb)
        self._mbs[mb] = _MicroBatch(x=self._input(x), y=y.to(self.device, non_blocking=True))

    def _op_F(self, mb: int, ch: Channel) -> None:
        m = self._mbs[mb]
        with self.autocast():
            m.out = self.unit.forward_train(m.x, m.y)

    def _op_send_act(self, mb: int, ch: Channel) -> None:
        m = self._mbs[mb]
        ch.send_act(self.stage, self._batch, mb, detach_act(self.unit.to_next(m.out)), m.y)

    def _op_L(self, mb: int, ch: Channel) -> None:
        m = self._mbs[mb]
        with self.autocast():
            loss, terms = self.unit.stage_loss(m.out, m.y, m.x)
        m.terms = {k: v.detach() for k, v in terms.items()}
        if loss is not None and self._num_micro > 1:
            # Equal micro-batches (split_micro checks divisibility): weighting each loss by 1/m
            # makes the accumulated gradient that of the mini-batch mean.
            loss = loss * (1.0 / self._num_micro)
        m.loss = loss

    def _op_B(self, mb: int, ch: Channel) -> None:
        m = self._mbs[mb]
        if self.local or self.is_last:
            (self.scaler.scale(m.loss) if self.scaler is not None else m.loss).backward()
        else:
            torch.autograd.backward(act_tensor(m.out), m.grad_out)
        m.out = None  # free the graph's outputs early
        m.loss = None

    def _op_recv_grad(self, mb: int, ch: Channel) -> None:
        self._mbs[mb].grad_out = ch.recv_grad(self.stage, self._batch, mb).to(
            self.device, non_blocking=True
        )

    def _op_send_grad(self, mb: int, ch: Channel) -> None:
        m = self._mbs[mb]
        ch.send_grad(self.stage, self._batch, mb, act_tensor(m.x).grad)
        m.grad_out = None

    def _op_U(self, mb: int, ch: Channel) -> None:
        if self.grad_sync is not None:
            self.grad_sync()
        if self.flag is not None:
            names, vals = self._check_values()
            self.flag.update(names, vals, self._batch + 1)
        elif self.nan_guard in ("stop", "skip") and not self._finite():
            if self.nan_guard == "stop":
                raise NonFiniteError(self._nonfinite_message())
            # "skip": drop this batch's update but keep the LR schedule aligned with the step.
            self._mark_skipped(1.0)
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()
            self._take_feedback(ch)  # the next stage sent it anyway
            return
        if self.nan_guard == "skip":
            self._mark_skipped(0.0)  # the logged mean is the share of skipped updates
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self._take_feedback(ch)

    def _take_feedback(self, ch: Channel) -> None:
        """After this stage's update of step t: fold in what the next stage sent when it
        started step t (``--head man``; see scpl.methods.man)."""
        if self.is_last:
            return
        like = self.unit.feedback_in(self._step)
        if like is not None:
            self.unit.apply_feedback(ch.recv_feedback(self.stage, self._step, like))

    def _mark_skipped(self, value: float) -> None:
        for m in self._mbs.values():
            m.terms["skipped"] = torch.full((), value, device=self.device)

    def _check_values(self) -> tuple[list[str], torch.Tensor]:
        """Names and values (on the device, no sync) whose finiteness the NaN guard checks:
        each loss term summed over micro-batches, and the gradient norm (not under fp16, whose
        loss scaler handles overflowing gradients itself)."""
        sums: dict[str, torch.Tensor] = {}
        for m in self._mbs.values():
            for k, v in m.terms.items():
                sums[k] = sums[k] + v if k in sums else v
        names = sorted(sums)
        vals = [sums[k].detach().float().reshape(()) for k in names]
        grads = [p.grad for p in self.unit.parameters() if p.grad is not None]
        if grads and self.scaler is None:
            names.append("gradient")
            vals.append(torch.nn.utils.get_total_norm(grads).float().reshape(()))
        if not vals:
            return [], torch.zeros(0, device=self.device)
        return names, torch.stack([v.to(self.device) for v in vals])

    def _finite(self) -> bool:
        """One host sync: are this batch's loss terms and this stage's gradients all finite?"""
        _, vals = self._check_values()
        return bool(torch.isfinite(vals).all()) if vals.numel() else True

    def _nonfinite_message(self) -> str:
        bad = sorted(
            {
                k
                for m in self._mbs.values()
                for k, v in m.terms.items()
                if not torch.isfinite(v).all()
            }
        )
        what = f"{', '.join(bad)} loss" if bad else "gradient"
        return (
            f"non-finite {what} at stage {self.stage}, step {self._batch + 1}; lower --lr or check "
            "the data (--nan-guard skip drops such batches instead)"
        )

    # -- inference ----------------------------------------------------------------------
    @torch.no_grad()
    def infer(self, x):
        """Inference forward of this stage (the last stage returns class logits)."""
        with self.autocast():
            out = self.unit(act_to(x, self.device))
            return self.unit.predict(out) if self.is_last else out

    def state_dict(self) -> dict:
        state = {
            "unit": self.unit.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
        }
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.unit.load_state_dict(state["unit"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])


def split_micro(x, y: torch.Tensor, num_micro: int) -> list[tuple[object, torch.Tensor]]:
    """Split a mini-batch into ``num_micro`` micro-batches along the batch dim."""
    if num_micro == 1:
        return [(x, y)]
    n = y.shape[0]
    if n % num_micro:
        raise ConfigError(
            f"--micro-batches {num_micro} does not divide the batch of {n} inputs; "
            "choose a divisor of the batch size"
        )
    ys = y.chunk(num_micro)
    if isinstance(x, tuple):
        parts = [
            t.chunk(num_micro) if torch.is_tensor(t) and t.shape[:1] == (n,) else [t] * num_micro
            for t in x
        ]
        xs = [tuple(p[i] for p in parts) for i in range(num_micro)]
    else:
        xs = list(x.chunk(num_micro))
    return list(zip(xs, ys, strict=True))
