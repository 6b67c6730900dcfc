"""Tag-free point-to-point messages between the ranks of one pipeline (the ``dist`` executor's
transport; the executor itself is :mod:`scpl.parallel.dist`).

Messages never rely on tags (NCCL ignores them). Four process groups, each carrying one kind
of message, in one direction per pair of ranks, in an order both ends derive from the schedule:

* ``host`` (gloo, CPU tensors): a fixed-size header before every activation (kind, batch,
  micro-batch, and each tensor's dtype/layout/shape), host-side metadata such as a text batch's
  lengths. Headers are host tensors, so describing a message never syncs a device.
* ``token`` (gloo): the tokens that serialise non-concurrent schedules. They have a group of
  their own because a token and an activation between the same two ranks are sent in one
  order and needed by the receiver in the other.
* ``fwd`` (the default backend): activation and label payloads, rank r -> r+1 (and AL's
  inference exports to the last rank before an evaluation).
* ``bwd`` (the default backend): gradients, rank r+1 -> r (and, for local methods, which send
  no gradients, ``--head man``'s first-layer weights).

One communicator per direction means a send never waits behind a receive of the opposite
direction on the same NCCL stream. Between two ranks, each group's messages in one direction
are received in the order they were sent, which is all FIFO matching needs;
``check_message_logs`` verifies exactly that on recorded runs (tests/test_dist_order.py).

Receives are posted ahead: the next header's receive is always outstanding; when a header has
arrived (polled between ops) the payload receives are posted at once; a BP stage posts its
gradient receives as soon as the matching forward output exists. On NCCL a ``wait`` only makes
the compute stream wait, so the host runs ahead; at most ``3 * queue_depth`` sends per link are
tracked before the oldest is waited for.
"""

from __future__ import annotations

import datetime
from collections import deque
from dataclasses import dataclass

import torch
import torch.distributed as dist

from scpl.parallel.runner import Channel, is_host_side

KIND_TRAIN, KIND_EVAL, KIND_STOP = 0, 1, 2
# Header: [kind, batch, micro-batch, number of tensors, then per tensor: dtype code,
# channels-last flag, host flag, ndim, up to MAX_DIMS sizes]. Activations may be tuples (text:
# (hidden, lengths)) of any shape, so every message describes itself and batch size / sequence
# length may vary per batch.
MAX_TENSORS, MAX_DIMS = 5, 5
SLOT = 4 + MAX_DIMS
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


@dataclass
class Groups:
    """The three process groups (see the module docstring)."""

    host: object
    fwd: object
    bwd: object
    token: object

    @classmethod
    def create(
        cls, timeout_s: float | None = None, num_stages: int = 0, replicas: int = 1
    ) -> Groups:
        """The groups of this rank's pipeline. With ``replicas > 1`` each replica gets its own
        four groups over its K ranks (messages address peers by their stage, the rank within
        the group)."""
        # Every rank builds its executor, so every rank makes these calls in the same order.
        # The timeout bounds every wait on a peer, so a dead rank becomes an error, not a hang.
        timeout = datetime.timedelta(seconds=timeout_s) if timeout_s else None
        if replicas > 1:
            from scpl.parallel.dp import pipeline_groups

            mine = dist.get_rank() // num_stages
            return cls(
                *(
                    pipeline_groups(num_stages, replicas, backend, timeout)[mine]
                    for backend in ("gloo", None, None, "gloo")
                )
            )
        host = dist.new_group(backend="gloo", timeout=timeout)
        fwd = dist.new_group(timeout=timeout)
        bwd = dist.new_group(timeout=timeout)
        token = dist.new_group(backend="gloo", timeout=timeout)
        return cls(host, fwd, bwd, token)

    def destroy(self) -> None:
        for g in (self.host, self.fwd, self.bwd, self.token):
            try:
                dist.destroy_process_group(g)
            except (RuntimeError, ValueError):
                pass


@dataclass
class _Incoming:
    """An activation message whose header has arrived and whose payload receives are posted."""

    kind: int
    batch: int
    mb: int
    works: list
    bufs: list
    host: list  # per tensor: travelled over the host group


class DistChannel(Channel):
    """Point-to-point messages between neighbouring ranks, tag-free. ``rank`` is the rank within
    the pipeline's groups, which is the stage (with data parallelism, each replica's pipeline
    has groups of its own)."""

    def __init__(self, rank: int, world: int, device: torch.device, depth: int, groups: Groups):
        self.rank, self.world, self.device = rank, world, device
        self.depth = max(1, depth)
        self.groups = groups
        nccl = dist.get_backend() == "nccl"
        # NCCL moves CUDA tensors only; gloo moves CPU tensors.
        self.comm_device = device if nccl else torch.device("cpu")
        self.pending: deque = deque()  # (work, tensor kept alive until the send completes, dst)
        self.token_pending: deque = deque()
        self._next_header = None  # (work, tensor): the posted receive of the next header
        self._staged: deque[_Incoming] = deque()  # arrived headers, payload receives posted
        self._grad_works: dict[int, tuple] = {}  # mb -> (work, buffer), posted ahead
        self.grad_plan: list[int] = []  # this batch's gradient receives, in program order
        self.peer = -1  # the rank of the last blocking wait (named if it fails)
        self.message_log: list | None = None  # set to a list to record every message

    # -- bookkeeping ----------------------------------------------------------------------
    def _log(self, group: str, op: str, peer: int, what: str, t: torch.Tensor) -> None:
        if self.message_log is not None:
            self.message_log.append(
                (group, op, peer, what, tuple(t.shape), str(t.dtype).removeprefix("torch."))
            )

    def _isend(self, t: torch.Tensor, dst: int, group: str, what: str) -> None:
        t = t.contiguous()
        self._log(group, "send", dst, what, t)
        self.peer = dst
        work = dist.isend(t, group=getattr(self.groups, group), group_dst=dst)
        self.pending.append((work, t, dst))
        while len(self.pending) > 3 * self.depth:  # bound the sends in flight per link
            self._wait_oldest()

    def _irecv(self, t: torch.Tensor, src: int, group: str, what: str):
        self._log(group, "recv", src, what, t)
        return dist.irecv(t, group=getattr(self.groups, group), group_src=src)

    def _wait_oldest(self) -> None:
        work, _, dst = self.pending.popleft()
        self.peer = dst
        work.wait()

    def wait_sends(self) -> None:
        while self.pending:
            self._wait_oldest()

    # -- sending --------------------------------------------------------------------------
    def _header(self, kind: int, batch: int, mb: int, tensors, host_flags) -> torch.Tensor:
        h = [0] * HEADER_LEN
        h[:4] = [kind, batch, mb, len(tensors)]
        if len(tensors) > MAX_TENSORS:
            raise ValueError(f"an activation may hold at most {MAX_TENSORS - 1} tensors")
        for i, (t, host) in enumerate(zip(tensors, host_flags, strict=True)):
            if t.dim() > MAX_DIMS:
                raise ValueError(f"activations may have at most {MAX_DIMS} dims, got {t.dim()}")
            base = 4 + i * SLOT
            h[base : base + 4 + t.dim()] = [
                DTYPES.index(t.dtype),
                int(is_channels_last(t)),
                int(host),
                t.dim(),
                *t.shape,
            ]
        return torch.tensor(h, dtype=torch.int64)

    def send_header(self, kind: int, batch: int, mb: int, tensors=(), host_flags=(), dst=None):
        """A header (or a token / stop message) to ``dst`` (default: the next rank)."""
        dst = self.rank + 1 if dst is None else dst
        self._isend(self._header(kind, batch, mb, tensors, host_flags), dst, "host", "header")

    def send_act(self, stage, batch, mb, act, y, kind=KIND_TRAIN):
        members = list(act) if isinstance(act, tuple) else [act]
        host = [is_host_side(t, i) for i, t in enumerate(members)] + [False]
        tensors = [*members, y]  # labels travel with the activation
        self.send_header(kind, batch, mb, tensors, host)
        dst = self.rank + 1
        for i, (t, on_host) in enumerate(zip(tensors, host, strict=True)):
            what = "label" if i == len(tensors) - 1 else f"act{i}"
            if on_host:
                self._isend(t.cpu(), dst, "host", what)
            else:
                self._isend(wire_view(t.to(self.comm_device)), dst, "fwd", what)
        self.post_grad_recvs()

    def send_grad(self, stage, batch, mb, grad):
        # Our input arrived in the previous stage's output layout; send its gradient in the same
        # layout, which is what the receiver allocates.
        x = self.input_like(mb)
        fmt = torch.channels_last if is_channels_last(x) else torch.contiguous_format
        g = wire_view(grad.contiguous(memory_format=fmt).to(self.comm_device))
        self._isend(g, self.rank - 1, "bwd", "grad")

    # -- receiving ------------------------------------------------------------------------
    def post_header_recv(self) -> None:
        h = torch.empty(HEADER_LEN, dtype=torch.int64)
        self._next_header = (self._irecv(h, self.rank - 1, "host", "header"), h)

    def _take_header(self, block: bool) -> _Incoming | None:
        """Turn the arrived header into an :class:`_Incoming` with its payload receives posted,
        then post the next header's receive (in this order: the sender sends header, host
        tensors, next header). Without ``block``, only a train message that has already
        arrived is taken (evaluation and stop messages wait for their reader)."""
        if self._next_header is None:
            self.post_header_recv()
        work, h = self._next_header
        if not block and not work.is_completed():
            return None
        self.peer = self.rank - 1
        work.wait()
        v = h.tolist()  # a host tensor: no device sync
        kind = v[0]
        if not block and kind != KIND_TRAIN:
            return None
        works, bufs, host = [], [], []
        for i in range(v[3]):
            base = 4 + i * SLOT
            dtype, cl, on_host, ndim = (
                DTYPES[v[base]],
                bool(v[base + 1]),
                bool(v[base + 2]),
                v[base + 3],
            )
            shape = tuple(v[base + 4 : base + 4 + ndim])
            what = "label" if i == v[3] - 1 else f"act{i}"
            if on_host:
                buf = torch.empty(shape, dtype=dtype)
                works.append(self._irecv(buf, self.rank - 1, "host", what))
            else:
                buf = empty_like_layout(shape, dtype, self.comm_device, cl)
                works.append(self._irecv(wire_view(buf), self.rank - 1, "fwd", what))
            bufs.append(buf)
            host.append(on_host)
        self._next_header = None
        if kind != KIND_STOP:
            self.post_header_recv()  # the next header can land while we compute
        return _Incoming(kind, v[1], v[2], works, bufs, host)

    def poll(self) -> None:
        """Between ops: post the payload receives of activations whose header has arrived,
        and gradient receives whose buffer shape is known. Never blocks."""
        if self.rank > 0:
            while len(self._staged) < self.depth:
                inc = self._take_header(block=False)
                if inc is None:
                    break
                self._staged.append(inc)
        self.post_grad_recvs()

    def _next_incoming(self) -> _Incoming:
        if self._staged:
            return self._staged.popleft()
        return self._take_header(block=True)

    def recv_message(self) -> _Incoming:
        """The next message from the previous rank, payload received."""
        inc = self._next_incoming()
        self.peer = self.rank - 1
        for w in inc.works:
            w.wait()
        return inc

    def recv_act(self, stage, batch, mb):
        inc = self.recv_message()
        if inc.kind == KIND_STOP:
            raise EOFError
        if inc.kind == KIND_TRAIN:
            assert (inc.batch, inc.mb) == (batch, mb), (
                f"rank {self.rank} expected batch {batch}.{mb}, got {inc.batch}.{inc.mb}"
            )
        *act, y = inc.bufs
        return (tuple(act) if len(act) > 1 else act[0]), y

    def begin_batch(self, grad_plan: list[int]) -> None:
        self.grad_plan = list(grad_plan)
        self._grad_works = {}

    def post_grad_recvs(self) -> None:
        """Post gradient receives in program order, as soon as each one's buffer shape (our
        forward output's) is known."""
        while self.grad_plan:
            mb = self.grad_plan[0]
            out = self.grad_like(mb)
            if out is None:
                return
            g = empty_like_layout(out.shape, out.dtype, self.comm_device, is_channels_last(out))
            self._grad_works[mb] = (self._irecv(wire_view(g), self.rank + 1, "bwd", "grad"), g)
            self.grad_plan.pop(0)

    def recv_grad(self, stage, batch, mb):
        self.post_grad_recvs()
        work, g = self._grad_works.pop(mb)
        self.peer = self.rank + 1
        work.wait()
        return g

    # Weights back to the previous rank (--head man), over the bwd group: a local method sends
    # no gradients there, and the shapes are the receiver's own buffers', so no header.
    def send_feedback(self, stage, step, tensors):
        for t in tensors:
            self._isend(t.to(self.comm_device), self.rank - 1, "bwd", "feedback")

    def recv_feedback(self, stage, step, like):
        out = []
        for t in like:
            buf = torch.empty(t.shape, dtype=t.dtype, device=self.comm_device)
            self.peer = self.rank + 1
            self._irecv(buf, self.rank + 1, "bwd", "feedback").wait()
            out.append(buf.to(t.device))
        return out

    def token_send(self, dst: int) -> None:
        # Not in `pending`: the batch's closing token is only received when the next batch
        # starts, so flush() must not wait for it (close() does).
        t = torch.zeros(1)
        self._log("token", "send", dst, "token", t)
        self.token_pending.append((dist.isend(t, group=self.groups.token, group_dst=dst), t))
        while len(self.token_pending) > 2:
            self.token_pending.popleft()[0].wait()

    def token_recv(self, src: int) -> None:
        self.peer = src
        self._irecv(torch.zeros(1), src, "token", "token").wait()


def check_message_logs(logs: list[list[tuple]]) -> list[str]:
    """Problems with tag-free matching in per-rank message logs (empty when there are none).

    Without tags, the k-th message rank a sends to rank b on a group meets the k-th receive b
    posts from a on that group. So for every group and ordered pair, the sender's sends and
    the receiver's receives must agree one for one in what they carry, dtype and shape."""
    problems = []
    world = len(logs)
    for src in range(world):
        for dst in range(world):
            if src == dst:
                continue
            for group in ("host", "fwd", "bwd", "token"):
                sends = [e[3:] for e in logs[src] if e[:3] == (group, "send", dst)]
                recvs = [e[3:] for e in logs[dst] if e[:3] == (group, "recv", src)]
                if len(sends) != len(recvs):
                    problems.append(
                        f"{group} {src}->{dst}: {len(sends)} sends but {len(recvs)} receives"
                    )
                for k, (a, b) in enumerate(zip(sends, recvs, strict=False)):
                    if a != b:
                        problems.append(
                            f"{group} {src}->{dst} message {k}: sent {a}, received as {b}"
                        )
                        break
    return problems
