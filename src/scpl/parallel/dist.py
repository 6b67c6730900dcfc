"""The ``dist`` executor: one process per stage over torch.distributed (gloo on CPU, NCCL on GPU).

Started by ``torchrun --nproc-per-node K`` (or ``scpl train --executor dist --nproc K``, which
re-launches itself under torchrun), so multi-host runs work unchanged. Rank r builds the
model from the shared seed (so initial weights equal the single-process reference), keeps only
stage r and frees the rest.

Messages between the ranks are tag-free, over four process groups (one kind of message, one
direction each); :mod:`scpl.parallel.dist_channel` holds that transport and explains why. With
``--data-parallel R`` the replicas' collectives live in :mod:`scpl.parallel.dp`.

Non-concurrent schedules (``sequential``) are serialised with a token passed between ranks at
every change of owner in the schedule's global order, so the dist reference runs one op at a time.
"""

from __future__ import annotations

import contextlib
import datetime
import time
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
from scpl.parallel.dist_channel import (  # noqa: F401  (re-exported: importable from here)
    DTYPES,
    HEADER_LEN,
    KIND_EVAL,
    KIND_STOP,
    KIND_TRAIN,
    MAX_DIMS,
    MAX_TENSORS,
    SLOT,
    DistChannel,
    Groups,
    check_message_logs,
    empty_like_layout,
    is_channels_last,
    wire_view,
)
from scpl.parallel.runner import Recorder, StageRunner, act_tensor, split_micro
from scpl.parallel.schedules import Op, resolve_schedule


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
        self.global_rank, self.world = dist.get_rank(), dist.get_world_size()
        K = len(units)
        R = self.options.data_parallel
        if self.world != K * R:
            dp = f" x {R} replicas" if R > 1 else ""
            raise ConfigError(
                f"--executor dist runs one process per stage{' and replica' if R > 1 else ''}: "
                f"{K} stages{dp} but {self.world} processes; launch with --nproc-per-node "
                f"{K * R} (or --stages {self.world // R})"
            )
        # Rank r*K + l holds stage l of replica r; ``rank`` is the stage (the rank within this
        # replica's pipeline groups).
        self.replica, self.rank = divmod(self.global_rank, K)
        self.replicas = R
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
            self.options.precision,
        )
        self.mesh = None
        self._buffer_sync = None
        self._rng = None
        if R > 1:
            from scpl.parallel.dp import (
                BufferAverager,
                FeatureGather,
                GradAverager,
                ReplicaRng,
                build_mesh,
                replica_seed,
            )

            self.mesh = build_mesh(K, R, self.device.type, self.options.dist_timeout)
            self.runner.grad_sync = GradAverager(self.runner.unit, self.mesh.dp, R)
            self._buffer_sync = BufferAverager(self.runner.unit, self.mesh.dp, R)
            # Each replica's stage draws its own dropout masks; a one-replica run keeps the
            # process's global stream (and so stays bitwise what it was).
            seed = replica_seed(torch.initial_seed(), self.replica, self.rank)
            self._rng = ReplicaRng(seed, self.device)
            if self.options.supcon_gather:
                self.runner.unit.feature_gather = FeatureGather(self.mesh.dp)
        self.groups = Groups.create(self.options.dist_timeout, K, R)
        self.channel = DistChannel(self.rank, K, self.device, self.options.queue_depth, self.groups)
        self.channel.grad_like = self._output_of
        self.channel.input_like = lambda mb: act_tensor(self.runner._mbs[mb].x)
        # This rank's gradient receives per mini-batch, in program order (posted ahead).
        self._grad_plan = [op.mb for op in self.program if op.kind == "recv_grad"]
        self._serialised = not schedule.concurrent
        self._first_owner = order[0][0]
        self._last_owner = order[-1][0]
        self.sink = MetricSink()
        self._batch = 0
        self._closed = False

    @property
    def needs_input(self) -> bool:
        return self.rank == 0

    def _output_of(self, mb: int):
        """The gradient w.r.t. our output has the output's shape (known once F has run)."""
        m = self.runner._mbs.get(mb)
        return act_tensor(m.out) if m is not None and m.out is not None else None

    def _run_program(self) -> None:
        ch = self.channel
        ch.begin_batch(self._grad_plan)
        for op in self.program:
            ch.poll()
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
        base = self.global_rank - self.rank
        return ScplError(
            f"rank {base + peer} (stage {peer}) died or stalled while rank {self.global_rank} "
            f"(stage {self.rank}) "
            f"was exchanging data with it ({first}); stopping -- check rank {base + peer}'s log, "
            "then "
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
        self.runner.begin(self._batch, micro, size, self.options.num_micro, self.channel)
        with self._rng.active() if self._rng is not None else contextlib.nullcontext():
            self._run_program()
        self.sink.add(self.runner.metrics(), key=self.rank, flag=self.runner.flag)
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
        """Align every rank before the steady state. A monitored barrier over the gloo host
        group (on any backend) names the ranks that did not arrive; on NCCL a device barrier
        on the data group follows, which also sets up its communicator."""
        try:
            dist.monitored_barrier(
                group=self.groups.host,
                timeout=datetime.timedelta(seconds=timeout_s),
                wait_all_ranks=True,
            )
            if dist.get_backend() == "nccl":
                dist.barrier(device_ids=[self.device.index or 0])
        except (RuntimeError, dist.DistError) as e:
            first = str(e).strip().splitlines()[0][:200]
            raise ScplError(
                f"ranks did not reach the barrier in {timeout_s:.0f}s: {first}; check their logs"
            ) from None

    def _sync_exports(self) -> None:
        """Send this stage's inference export (if any) to the last rank, which loads it (over
        the fwd group, before any evaluation message: the last rank receives in that order)."""
        from torch.nn.utils import parameters_to_vector, vector_to_parameters

        last = self.num_stages - 1
        ch = self.channel
        if self._my_export is not None:
            vec = parameters_to_vector(self._my_export.parameters()).detach()
            ch._isend(vec.to(ch.comm_device), last, "fwd", "export")
            ch.wait_sends()
        elif self.rank == last:
            for src, mod in enumerate(self._export_copies):
                if mod is None:
                    continue
                vec = parameters_to_vector(mod.parameters()).detach().to(ch.comm_device)
                ch.peer = src
                ch._irecv(vec, src, "fwd", "export").wait()
                vector_to_parameters(vec.to(next(mod.parameters()).device), mod.parameters())

    def _evaluate(self, batches: Iterable[tuple[object, torch.Tensor]]) -> tuple[int, int]:
        self._sync_replicas()  # flushes; every replica scores with the same buffers
        if self._has_exports:
            self._sync_exports()
        correct = None
        total = 0
        ch = self.channel
        for i, (x, y) in enumerate(batches):
            if i % self.replicas != self.replica:
                continue  # data parallelism: each replica evaluates its share of the batches
            if self.rank > 0:
                x, y = ch.recv_act(self.rank, -1, 0)
            out = self.runner.infer(x)
            if self.rank < self.num_stages - 1:
                ch.send_act(self.rank, -1 - i, 0, out, y, kind=KIND_EVAL)
            else:
                hit = (out.argmax(1) == y.to(out.device, non_blocking=True)).sum()
                correct = hit if correct is None else correct + hit
            total += int(y.shape[0])
        self.flush()
        n = int(correct) if correct is not None else 0  # one sync per evaluation
        result = torch.tensor([n, total], dtype=torch.int64, device=ch.comm_device)
        dist.broadcast(result, group=self.groups.fwd, group_src=self.num_stages - 1)
        if self.mesh is not None:
            dist.all_reduce(result, group=self.mesh.dp)  # every replica's share
        return int(result[0]), int(result[1])

    def current_lr(self) -> float:
        return float(self.runner.optimizer.param_groups[0]["lr"])

    def train(self, mode: bool = True) -> None:
        self.flush()
        self.runner.unit.train(mode)

    def _sync_replicas(self) -> None:
        """Finish sent messages; with replicas, average the stage's buffers over them (a
        collective: every replica of the stage calls this at the same point)."""
        self.flush()
        if self._buffer_sync is not None:
            self._buffer_sync()

    def unit_states(self) -> list[dict]:
        """Only this rank's stage: the list holds one state (index = rank)."""
        self._sync_replicas()
        return [self.runner.unit.state_dict()]

    def load_unit_states(self, states: list[dict]) -> None:
        self.runner.unit.load_state_dict(states[0])

    def state_dict(self) -> dict:
        """This stage's state. With replicas, a collective: the buffers are averaged first
        (so the replicas, and replica 0's checkpoint, hold the same) and every replica's
        random stream is gathered (index = replica), so one file resumes them all."""
        self._sync_replicas()
        state = {"runner": self.runner.state_dict(), "batch": self._batch, "rank": self.rank}
        if self._rng is not None:
            state["replica_rng"] = self._rng.gather(self.mesh.dp, self.device)
        return state

    def load_state_dict(self, state: dict) -> None:
        self.runner.load_state_dict(state["runner"])
        self._batch = state["batch"]
        if self._rng is not None and "replica_rng" in state:
            self._rng.load(state["replica_rng"][self.replica])

    def close(self) -> None:
        """Tell the next rank we are done and consume what is still addressed to us, so every
        posted receive and send completes before the process group is torn down."""
        if self._closed:
            return
        self._closed = True
        ch = self.channel
        if (
            self._serialised
            and self._batch > 0
            and self.rank == self._first_owner != self._last_owner
        ):
            ch.token_recv(self._last_owner)  # the token the last batch handed back
        if self.rank < self.num_stages - 1:
            ch.send_header(KIND_STOP, -1, 0)
        if self.rank > 0:
            kind = ch.recv_message().kind
            assert kind == KIND_STOP, (
                f"rank {self.rank}: unconsumed message of kind {kind} at close"
            )
        ch.wait_sends()
        while ch.token_pending:
            ch.token_pending.popleft()[0].wait()
        self.groups.destroy()
