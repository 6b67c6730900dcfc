"""Data parallelism across pipelines: R replicas of a K-stage pipeline on K x R processes.

Rank ``r * K + l`` holds stage ``l`` of replica ``r`` (replica-major, so replica 0 is ranks
0..K-1, the ranks a one-replica run has). The layout is a 2-D ``DeviceMesh`` with dims
``("dp", "pp")``: a "pp" group is one replica's pipeline (its point-to-point messages), a "dp"
group holds one stage's R replicas (their gradient all-reduce and, optionally, the SupCon
all-gather). Every stage's update is local, so each stage's replicas average only their own
gradients, with no dependency on any other stage.

Gradients are averaged by one explicit all-reduce of the stage's flattened gradients
(sum, then divide by R) right before the update: deterministic (a fixed algorithm over fixed
buffers) and the same code on gloo and NCCL. Mean-reduced losses over equal shards, averaged
over replicas, give the gradient of the global batch's mean.

With ``supcon_gather`` the projections and labels of a stage's replicas are all-gathered
(an all-gather whose backward sums each replica's rows' gradient over the replicas, as
``torch.distributed.nn.functional.all_gather`` does) before SupCon, so every replica computes SupCon over the global batch. Each
replica then holds R times the gradient of that loss for its own rows; the 1/R of the average
makes the update exactly the global-batch gradient.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from scpl.errors import ScplError


def replica_failed(what: str, group, err: BaseException) -> ScplError:
    """A one-line error for a collective over a stage's replicas that failed or timed out."""
    try:
        ranks = dist.get_process_group_ranks(group)
    except (RuntimeError, ValueError):
        ranks = []
    first = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
    return ScplError(
        f"a replica of this stage (ranks {', '.join(map(str, ranks))}) died or stalled during "
        f"the {what} of rank {dist.get_rank()} ({first}); stopping -- check those ranks' logs, "
        "then restart with --resume OUT_DIR"
    )


@dataclass
class Mesh:
    """This rank's place in the K x R layout and its process groups."""

    stage: int
    replica: int
    num_stages: int
    replicas: int
    pp: object  # this replica's pipeline group (ranks r*K .. r*K+K-1)
    dp: object  # this stage's replicas (ranks l, K+l, 2K+l, ...)
    device_mesh: object = None  # torch DeviceMesh over ("dp", "pp"), when it could be built

    def global_rank(self, replica: int, stage: int) -> int:
        return replica * self.num_stages + stage


def rank_of(rank: int, num_stages: int) -> tuple[int, int]:
    """(replica, stage) of a global rank."""
    return divmod(rank, num_stages)


def pipeline_groups(num_stages: int, replicas: int, backend: str | None, timeout) -> list:
    """One new group per replica over its pipeline's ranks (every rank calls this, in order);
    returns all of them (index = replica)."""
    return [
        dist.new_group(
            ranks=list(range(r * num_stages, (r + 1) * num_stages)),
            backend=backend,
            timeout=timeout,
        )
        for r in range(replicas)
    ]


def build_mesh(num_stages: int, replicas: int, device_type: str, timeout_s: float | None) -> Mesh:
    """The "dp" groups (one per stage) and a "pp" group per replica, with ``timeout_s`` on every
    wait; plus a ``DeviceMesh`` view of them for users who want one."""
    timeout = datetime.timedelta(seconds=timeout_s) if timeout_s else None
    replica, stage = rank_of(dist.get_rank(), num_stages)
    dp_groups = [
        dist.new_group(
            ranks=[r * num_stages + s for r in range(replicas)],
            timeout=timeout,
        )
        for s in range(num_stages)
    ]
    pp_groups = pipeline_groups(num_stages, replicas, None, timeout)
    mesh = Mesh(stage, replica, num_stages, replicas, pp_groups[replica], dp_groups[stage])
    try:
        from torch.distributed.device_mesh import DeviceMesh

        layout = torch.arange(num_stages * replicas).view(replicas, num_stages)
        mesh.device_mesh = DeviceMesh.from_group(
            [mesh.dp, mesh.pp], device_type, mesh=layout, mesh_dim_names=("dp", "pp")
        )
    except (ImportError, RuntimeError, ValueError, TypeError, AssertionError):
        mesh.device_mesh = None  # the groups above are all the executor uses
    return mesh


class GradAverager:
    """Averages a stage's gradients over its replicas: one all-reduce of the flattened
    gradients (parameters without a gradient are skipped on every replica alike)."""

    def __init__(self, module: torch.nn.Module, group, replicas: int) -> None:
        self.params = [p for p in module.parameters() if p.requires_grad]
        self.group, self.replicas = group, replicas

    def __call__(self) -> None:
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        try:
            dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=self.group)
        except (RuntimeError, dist.DistError) as e:
            raise replica_failed("gradient all-reduce", self.group, e) from None
        flat.div_(self.replicas)
        offset = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[offset : offset + n].view_as(g))
            offset += n


def _comm_device(group, device: torch.device) -> torch.device:
    """Where a collective's tensors must live: NCCL moves CUDA tensors only, gloo any."""
    return device if dist.get_backend(group) == "nccl" else torch.device("cpu")


class BufferAverager:
    """Averages a stage's floating buffers (BatchNorm's running mean and variance) over its
    replicas, in place: every replica then holds the same, bitwise equal buffers.

    Called before every evaluation and checkpoint (and whenever the stage's state is read),
    not every step: a running statistic is an exponential moving average, linear in the batch
    statistics, so averaging at those points gives the every-step average up to rounding,
    without a blocking collective in each step. Train-mode forwards never read the buffers, so
    the weights do not depend on when this runs. Integer buffers (``num_batches_tracked``)
    count the same on every replica and are left alone, as are the buffers a module lists in
    ``replica_equal_buffers``."""

    def __init__(self, module: torch.nn.Module, group, replicas: int) -> None:
        self.module, self.group, self.replicas = module, group, replicas

    def __call__(self) -> None:
        # Read the buffers now: ``module.to()`` replaces buffer tensors (not parameters).
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for mod in self.module.modules():
            # Buffers a module declares equal on every replica (MAN's EMA weight) stay as
            # they are: averaging equal values would only add rounding.
            same = getattr(mod, "replica_equal_buffers", ())
            for name, b in mod.named_buffers(recurse=False):
                if b.is_floating_point() and name not in same:
                    by_dtype.setdefault(b.dtype, []).append(b)
        for bufs in by_dtype.values():
            flat = torch.cat([b.detach().reshape(-1) for b in bufs])
            try:
                dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=self.group)
            except (RuntimeError, dist.DistError) as e:
                raise replica_failed("buffer all-reduce", self.group, e) from None
            flat.div_(self.replicas)
            offset = 0
            for b in bufs:
                n = b.numel()
                b.detach().copy_(flat[offset : offset + n].view_as(b))
                offset += n


def replica_seed(seed: int, replica: int, stage: int) -> int:
    """A distinct, deterministic seed for the compute of ``stage`` on ``replica``."""
    digest = hashlib.sha256(f"scpl-replica/{seed}/{replica}/{stage}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class ReplicaRng:
    """The random stream of one replica's stage compute (dropout masks), kept apart from the
    process's global stream.

    Every replica's process is seeded alike, so without this all replicas of a stage would
    draw the same dropout masks (on different rows). The global stream stays the data's:
    every replica's stage 0 draws and augments the same global batch and takes its rows, as a
    one-replica run does. ``active()`` swaps this stream in for a training step."""

    def __init__(self, seed: int, device: torch.device) -> None:
        self.cuda = device if device.type == "cuda" else None
        g = torch.Generator()
        g.manual_seed(seed)
        self.cpu_state = g.get_state()
        self.cuda_state = None
        if self.cuda is not None:
            gc = torch.Generator(device=self.cuda)
            gc.manual_seed(seed)
            self.cuda_state = gc.get_state()

    @contextmanager
    def active(self) -> Iterator[None]:
        outer = torch.get_rng_state()
        torch.set_rng_state(self.cpu_state)
        if self.cuda is not None:
            outer_cuda = torch.cuda.get_rng_state(self.cuda)
            torch.cuda.set_rng_state(self.cuda_state, self.cuda)
        try:
            yield
        finally:
            self.cpu_state = torch.get_rng_state()
            torch.set_rng_state(outer)
            if self.cuda is not None:
                self.cuda_state = torch.cuda.get_rng_state(self.cuda)
                torch.cuda.set_rng_state(outer_cuda, self.cuda)

    def state(self) -> torch.Tensor:
        parts = [self.cpu_state] + ([self.cuda_state] if self.cuda is not None else [])
        return torch.cat(parts)

    def load(self, state: torch.Tensor) -> None:
        n = self.cpu_state.numel()
        self.cpu_state = state[:n].clone()
        if self.cuda is not None:
            self.cuda_state = state[n:].clone()

    def gather(self, group, device: torch.device) -> list[torch.Tensor]:
        """Every replica's stream state (index = replica), so replica 0's checkpoint resumes
        them all (equal sizes: the replicas of a stage run on one kind of device)."""
        mine = self.state().to(_comm_device(group, device))
        parts = [torch.empty_like(mine) for _ in range(dist.get_world_size(group=group))]
        try:
            dist.all_gather(parts, mine, group=group)
        except (RuntimeError, dist.DistError) as e:
            raise replica_failed("RNG state gather", group, e) from None
        return [p.cpu() for p in parts]


class _GatherRows(torch.autograd.Function):
    """All-gather along dim 0 whose backward sums each rank's rows' gradient over the group.

    ``torch.distributed.nn.functional.all_gather`` does the same, but its gloo backward
    addresses a sub-group's members by their global rank and fails on any group that is not
    the whole world (the "dp" groups of every stage but 0); this one all-reduces the full
    gradient (R x the rows, deterministic) and keeps this rank's rows."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        ctx.rank, ctx.n = dist.get_rank(group=group), z.shape[0]
        parts = [torch.empty_like(z) for _ in range(dist.get_world_size(group=group))]
        dist.all_gather(parts, z.contiguous(), group=group)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n], None


class FeatureGather:
    """``(z, y) -> (z_all, y_all)``: projections and labels of every replica of a stage, in
    replica order, with gradients flowing back to each replica's own rows."""

    def __init__(self, group) -> None:
        self.group = group

    def __call__(self, z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = dist.get_world_size(group=self.group)
        ys = [torch.empty_like(y) for _ in range(n)]
        try:
            dist.all_gather(ys, y.contiguous(), group=self.group)
        except (RuntimeError, dist.DistError) as e:
            raise replica_failed("SupCon all-gather", self.group, e) from None
        return _GatherRows.apply(z, self.group), torch.cat(ys)


def all_reduce_cost(nbytes: float, replicas: int, bandwidth: float, latency: float) -> float:
    """Seconds of a ring all-reduce of ``nbytes`` over ``replicas`` ranks: each rank sends and
    receives 2 (R-1)/R of the buffer, plus ``2 (R-1)`` latency-bound steps."""
    if replicas <= 1:
        return 0.0
    return 2 * (replicas - 1) / replicas * nbytes / bandwidth + 2 * (replicas - 1) * latency
