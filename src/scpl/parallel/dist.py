"""The ``dist`` executor: one process per stage over torch.distributed (gloo on CPU, NCCL on GPU).

Started by ``torchrun --nproc-per-node K`` (or ``scpl train --executor dist --nproc K``, which
re-launches itself under torchrun), so multi-host runs work unchanged. Rank r builds the
model from the shared seed (so initial weights equal the single-process reference), keeps only
stage r and frees the rest. Activations and labels move forward, gradients backward, by
point-to-point isend/irecv; the receive of the next message header is posted as soon as the
current one arrives (double buffering), and at most ``queue_depth`` sends per link are in flight.

Non-concurrent schedules (``sequential``) are serialised with a token passed between ranks at
every change of owner in the schedule's global order, so the dist reference runs one op at a time.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable

import torch
import torch.distributed as dist

from scpl.errors import ConfigError, ScplError
from scpl.parallel.base import (
    EXECUTORS,
    Executor,
    ExecutorOptions,
    MetricSink,
    OptimConfig,
    check_units,
)
from scpl.parallel.runner import Channel, Recorder, StageRunner, act_tensor, split_micro
from scpl.parallel.schedules import Op, resolve_schedule

TAG_HEADER, TAG_ACT, TAG_GRAD, TAG_TOKEN, TAG_EXPORT = 1, 2, 4, 5, 6
KIND_TRAIN, KIND_EVAL, KIND_STOP = 0, 1, 2
# Header: [kind, batch, micro-batch, number of tensors, then per tensor: dtype code, ndim,
# up to MAX_DIMS sizes]. Activations may be tuples (text: (hidden, lengths)) of any shape, so
# every message describes itself and batch size / sequence length may vary per batch.
MAX_TENSORS, MAX_DIMS = 4, 5
SLOT = 3 + MAX_DIMS  # dtype code, memory-format code, ndim, sizes
HEADER_LEN = 4 + MAX_TENSORS * SLOT


def is_channels_last(t: torch.Tensor) -> bool:
    """Strictly channels-last 4-d (not also plain-contiguous, as C=1 or 1x1 maps are)."""
    return (
        t.dim() == 4
        and not t.is_contiguous()
        and t.is_contiguous(memory_format=torch.channels_last)
    )


def wire_view(t: torch.Tensor) -> torch.Tensor:
    """A contiguous view of ``t``'s own memory layout to send or receive into.

    Kernels pick different code paths (and so round differently) for channels-last and
    contiguous inputs; keeping the producer's layout on the receiving rank keeps dist runs
    bitwise equal to one-process runs."""
    return t.permute(0, 2, 3, 1) if is_channels_last(t) else t.contiguous()


def empty_like_layout(shape, dtype, device, channels_last: bool) -> torch.Tensor:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty(shape, dtype=dtype, device=device, memory_format=fmt)


DTYPES = [
    torch.float32,
    torch.float16,
    torch.bfloat16,
    torch.float64,
    torch.int64,
    torch.int32,
    torch.bool,
    torch.uint8,
]


class DistChannel(Channel):
    """Point-to-point messages between neighbouring ranks (rank == stage)."""

    def __init__(self, rank: int, world: int, device: torch.device, act_dtype, depth: int):
        self.rank, self.world, self.device = rank, world, device
        self.act_dtype = act_dtype
        self.depth = max(1, depth)
        self.pending: deque = deque()  # (work, tensors kept alive until the send completes)
        self._next_header = None  # (work, tensor): the posted receive of the next header
        self.last_kind = KIND_TRAIN
        self.token_pending: deque = deque()
        self.peer = -1  # the rank of the last blocking wait (named if it fails)

    # -- sending --------------------------------------------------------------------------
    def _isend(self, tensor: torch.Tensor, dst: int, tag: int) -> None:
        tensor = tensor.contiguous()
        self.peer = dst
        self.pending.append((dist.isend(tensor, dst, tag=tag), tensor, dst))
        while len(self.pending) > 3 * self.depth:  # 3 messages per activation: bound the link
            self._wait_oldest()

    def _wait_oldest(self) -> None:
        work, _, dst = self.pending.popleft()
        self.peer = dst
        work.wait()

    def wait_sends(self) -> None:
        while self.pending:
            self._wait_oldest()

    def send_header(self, kind: int, batch: int, mb: int, tensors: list[torch.Tensor]) -> None:
        h = [0] * HEADER_LEN
        h[:4] = [kind, batch, mb, len(tensors)]
        if len(tensors) > MAX_TENSORS:
            raise ValueError(f"an activation may hold at most {MAX_TENSORS} tensors")
        for i, t in enumerate(tensors):
            if t.dim() > MAX_DIMS:
                raise ValueError(f"activations may have at most {MAX_DIMS} dims, got {t.dim()}")
            base = 4 + i * SLOT
            h[base : base + 3 + t.dim()] = [
                DTYPES.index(t.dtype),
                int(is_channels_last(t)),
                t.dim(),
                *t.shape,
            ]
        self._isend(
            torch.tensor(h, dtype=torch.int64, device=self._comm_device), self.rank + 1, TAG_HEADER
        )

    def send_act(self, stage, batch, mb, act, y, kind=KIND_TRAIN):
        tensors = list(act) if isinstance(act, tuple) else [act]
        tensors.append(y)  # labels travel with the activation
        self.send_header(kind, batch, mb, tensors)
        for t in tensors:
            self._isend(wire_view(t.to(self._comm_device)), self.rank + 1, TAG_ACT)

    def send_grad(self, stage, batch, mb, grad):
        # Our input arrived in the previous stage's output layout; send its gradient in the same
        # layout, which is what the receiver allocates.
        x = self.input_like(mb)
        fmt = torch.channels_last if is_channels_last(x) else torch.contiguous_format
        self._isend(wire_view(grad.contiguous(memory_format=fmt)), self.rank - 1, TAG_GRAD)

    # -- receiving ------------------------------------------------------------------------
    @property
    def _comm_device(self) -> torch.device:
        # NCCL moves CUDA tensors only; gloo moves CPU tensors.
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    def post_header_recv(self) -> None:
        h = torch.empty(HEADER_LEN, dtype=torch.int64, device=self._comm_device)
        self._next_header = (dist.irecv(h, self.rank - 1, tag=TAG_HEADER), h)

    def recv_header(self) -> tuple[int, int, int, list]:
        if self._next_header is None:
            self.post_header_recv()
        work, h = self._next_header
        self.peer = self.rank - 1
        work.wait()
        self._next_header = None
        v = [int(a) for a in h.tolist()]
        specs = []
        for i in range(v[3]):
            base = 4 + i * SLOT
            dtype, cl, ndim = DTYPES[v[base]], bool(v[base + 1]), v[base + 2]
            specs.append((dtype, cl, tuple(v[base + 3 : base + 3 + ndim])))
        self.last_kind = v[0]
        return v[0], v[1], v[2], specs

    def recv_act(self, stage, batch, mb):
        kind, b, m, specs = self.recv_header()
        if kind == KIND_STOP:
            raise EOFError
        bufs = [empty_like_layout(shape, dt, self._comm_device, cl) for dt, cl, shape in specs]
        works = [dist.irecv(wire_view(t), self.rank - 1, tag=TAG_ACT) for t in bufs]
        self.post_header_recv()  # double buffering: the next header can land while we compute
        for w in works:
            w.wait()
        if kind == KIND_TRAIN:
            assert (b, m) == (batch, mb), (
                f"rank {self.rank} expected batch {batch}.{mb}, got {b}.{m}"
            )
        *act, y = bufs
        return (tuple(act) if len(act) > 1 else act[0]), y

    def recv_grad(self, stage, batch, mb):
        out = self.grad_like(mb)  # the gradient arrives in our output's layout
        g = empty_like_layout(out.shape, self.act_dtype, self._comm_device, is_channels_last(out))
        self.peer = self.rank + 1
        dist.recv(wire_view(g), self.rank + 1, tag=TAG_GRAD)
        return g

    def token_send(self, dst: int) -> None:
        # Not in `pending`: the batch's closing token is only received when the next batch
        # starts, so flush() must not wait for it (close() does).
        t = torch.zeros(1, device=self._comm_device)
        self.token_pending.append((dist.isend(t, dst, tag=TAG_TOKEN), t))
        while len(self.token_pending) > 2:
            self.token_pending.popleft()[0].wait()

    def token_recv(self, src: int) -> None:
        self.peer = src
        dist.recv(torch.zeros(1, device=self._comm_device), src, tag=TAG_TOKEN)


def serialised_programs(order: list[tuple[int, Op]], num_stages: int) -> list[list[Op]]:
    """Per-rank programs for a non-concurrent schedule: insert a token hand-off wherever the
    owner of the next op changes, plus one from the batch's last owner back to its first."""
    progs: list[list[Op]] = [[] for _ in range(num_stages)]
    first, last = order[0][0], order[-1][0]
    if first != last:
        progs[first].append(Op("token_recv_batch", last))  # skipped for the first batch
    prev = first
    for stage, op in order:
        if stage != prev:
            progs[prev].append(Op("token_send", stage))
            progs[stage].append(Op("token_recv", prev))
            prev = stage
        progs[stage].append(op)
    if first != last:
        progs[last].append(Op("token_send", first))
    return progs


@EXECUTORS.register("dist", help="a process per stage over torch.distributed (torchrun)")
class DistExecutor(Executor):
    """Runs this rank's stage; the same training loop runs on every rank."""

    name = "dist"

    def __init__(
        self,
        units,
        local: bool,
        optim: OptimConfig,
        devices: list[torch.device],
        options: ExecutorOptions | None = None,
        method: str = "",
    ) -> None:
        if not dist.is_available() or not dist.is_initialized():
            raise ConfigError(
                "--executor dist needs torch.distributed: launch with torchrun --nproc-per-node K, "
                "or pass --nproc K to `scpl train`"
            )
        self.options = options or ExecutorOptions()
        check_units(units, local)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        K = len(units)
        if self.world != K:
            raise ConfigError(
                f"--executor dist runs one process per stage: {K} stages but {self.world} processes; "
                f"launch with --nproc-per-node {K} (or --stages {self.world})"
            )
        self.local = local
        self.num_stages = K
        self.device = devices[self.rank] if len(devices) > 1 else devices[0]
        schedule = resolve_schedule(self.options.schedule, local, method, self.options.num_micro)
        order = schedule.order(K, self.options.num_micro, local)
        if schedule.concurrent:
            self.program = schedule.programs(K, self.options.num_micro, local)[self.rank]
        else:
            self.program = serialised_programs(order, K)[self.rank]
        self.recorder = Recorder(clock=time.time) if self.options.record else None
        if self.recorder:
            self.recorder.t0 = 0.0  # absolute wall-clock times: comparable across processes
        emulate = (self.options.emulate or {}).get(self.rank)
        unit = units[self.rank]
        dtype = next(unit.parameters()).dtype
        # The last stage may need modules of other stages at inference (AL's decoders): keep
        # private copies on the last rank, refreshed from their owners before each evaluation.
        import copy

        exports = [u.inference_export() for u in units]
        self._export_copies: list = []
        if self.rank == K - 1 and any(e is not None for e in exports[:-1]):
            self._export_copies = [
                copy.deepcopy(e) if e is not None else None for e in exports[:-1]
            ]
            unit.link_exports(self._export_copies)
        self._my_export = exports[self.rank] if self.rank < K - 1 else None
        self._has_exports = any(e is not None for e in exports[:-1])
        # Keep only this rank's stage: drop references to the others so their memory is freed.
        for i in range(K):
            if i != self.rank:
                units[i] = torch.nn.Identity()
        if self._export_copies:
            for m in self._export_copies:
                if m is not None:
                    m.to(self.device)
        self.runner = StageRunner(
            unit,
            self.rank,
            K,
            local,
            optim,
            self.device,
            self.recorder,
            emulate,
            self.options.nan_guard,
        )
        self.channel = DistChannel(self.rank, K, self.device, dtype, self.options.queue_depth)
        # The gradient w.r.t. our output has the output's shape (known once F has run).
        self.channel.grad_like = lambda mb: act_tensor(self.runner._mbs[mb].out)
        self.channel.input_like = lambda mb: act_tensor(self.runner._mbs[mb].x)
        self._serialised = not schedule.concurrent
        self._first_owner = order[0][0]
        self._last_owner = order[-1][0]
        self.sink = MetricSink()
        self._batch = 0

    @property
    def needs_input(self) -> bool:
        return self.rank == 0

    def _run_program(self) -> None:
        ch = self.channel
        for op in self.program:
            if op.kind == "token_send":
                ch.token_send(op.mb)
            elif op.kind == "token_recv" or (op.kind == "token_recv_batch" and self._batch > 0):
                ch.token_recv(op.mb)
            elif op.kind != "token_recv_batch":
                self.runner.run(op, ch)

    def _peer_failed(self, err: BaseException) -> ScplError:
        """Turn a torch.distributed error into a one-line message naming the peer."""
        peer = self.channel.peer
        first = (
            str(err).strip().splitlines()[0][:160] if str(err).strip() else err.__class__.__name__
        )
        return ScplError(
            f"rank {peer} (stage {peer}) died or stalled while rank {self.rank} (stage {self.rank}) "
            f"was exchanging data with it ({first}); stopping -- check rank {peer}'s log, then "
            "restart with --resume OUT_DIR"
        )

    def submit(self, x, y) -> None:
        try:
            self._submit(x, y)
        except (RuntimeError, dist.DistError) as e:
            raise self._peer_failed(e) from None

    def _submit(self, x, y) -> None:
        micro = split_micro(x, y, self.options.num_micro) if self.rank == 0 else None
        size = int(y.shape[0]) if y is not None else 0
        self.runner.begin(self._batch, micro, size, self.options.num_micro)
        self._run_program()
        self.sink.add(self.runner.metrics())
        self._batch += 1

    def flush(self) -> None:
        try:
            self.channel.wait_sends()
        except (RuntimeError, dist.DistError) as e:
            raise self._peer_failed(e) from None

    def evaluate(self, batches: Iterable[tuple[object, torch.Tensor]]) -> tuple[int, int]:
        try:
            return self._evaluate(batches)
        except (RuntimeError, dist.DistError) as e:
            raise self._peer_failed(e) from None

    def barrier(self, timeout_s: float) -> None:
        """A monitored barrier: on timeout, the error names the ranks that did not arrive."""
        import datetime

        try:
            dist.monitored_barrier(
                timeout=datetime.timedelta(seconds=timeout_s), wait_all_ranks=True
            )
        except (RuntimeError, dist.DistError) as e:
            first = str(e).strip().splitlines()[0][:200]
            raise ScplError(
                f"ranks did not reach the barrier in {timeout_s:.0f}s: {first}; check their logs"
            ) from None

    def _sync_exports(self) -> None:
        """Send this stage's inference export (if any) to the last rank, which loads it."""
        from torch.nn.utils import parameters_to_vector, vector_to_parameters

        last = self.num_stages - 1
        dev = self.channel._comm_device
        if self._my_export is not None:
            self.channel.peer = last
            dist.send(
                parameters_to_vector(self._my_export.parameters()).detach().to(dev),
                last,
                tag=TAG_EXPORT,
            )
        elif self.rank == last:
            for src, mod in enumerate(self._export_copies):
                if mod is None:
                    continue
                vec = parameters_to_vector(mod.parameters()).detach().to(dev)
                self.channel.peer = src
                dist.recv(vec, src, tag=TAG_EXPORT)
                vector_to_parameters(vec.to(next(mod.parameters()).device), mod.parameters())

    def _evaluate(self, batches: Iterable[tuple[object, torch.Tensor]]) -> tuple[int, int]:
        self.flush()
        if self._has_exports:
            self._sync_exports()
        correct = torch.zeros((), dtype=torch.int64)
        total = 0
        ch = self.channel
        for i, (x, y) in enumerate(batches):
            if self.rank > 0:
                x, y = ch.recv_act(self.rank, -1, 0)
            out = self.runner.infer(x)
            if self.rank < self.num_stages - 1:
                ch.send_act(self.rank, -1 - i, 0, out, y, kind=KIND_EVAL)
            else:
                correct += (out.argmax(1).cpu() == y.cpu()).sum()
            total += int(y.shape[0])
        self.flush()
        result = torch.tensor([int(correct), total], dtype=torch.int64, device=ch._comm_device)
        dist.broadcast(result, src=self.num_stages - 1)
        return int(result[0]), int(result[1])

    def current_lr(self) -> float:
        return float(self.runner.optimizer.param_groups[0]["lr"])

    def train(self, mode: bool = True) -> None:
        self.flush()
        self.runner.unit.train(mode)

    def unit_states(self) -> list[dict]:
        """Only this rank's stage: the list holds one state (index = rank)."""
        self.flush()
        return [self.runner.unit.state_dict()]

    def load_unit_states(self, states: list[dict]) -> None:
        self.runner.unit.load_state_dict(states[0])

    def state_dict(self) -> dict:
        self.flush()
        return {"runner": self.runner.state_dict(), "batch": self._batch, "rank": self.rank}

    def load_state_dict(self, state: dict) -> None:
        self.runner.load_state_dict(state["runner"])
        self._batch = state["batch"]

    def close(self) -> None:
        """Tell the next rank we are done and consume what is still addressed to us, so every
        posted receive and send completes before the process group is torn down."""
        ch = self.channel
        if (
            self._serialised
            and self._batch > 0
            and self.rank == self._first_owner != self._last_owner
        ):
            ch.token_recv(self._last_owner)  # the token the last batch handed back
        if self.rank < self.num_stages - 1:
            ch.send_header(KIND_STOP, -1, 0, [])
        if self.rank > 0:
            kind = ch.recv_header()[0]
            assert kind == KIND_STOP, (
                f"rank {self.rank}: unconsumed message of kind {kind} at close"
            )
        ch.wait_sends()
        while ch.token_pending:
            ch.token_pending.popleft()[0].wait()
