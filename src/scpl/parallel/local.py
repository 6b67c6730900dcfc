"""The ``local`` executor: one process, one worker thread per stage/device, bounded queues.

Each worker loops over jobs (train or eval mini-batches) and runs its stage's program for each,
with no barrier between mini-batches: stage l starts batch t+1 as soon as it has updated on
batch t, while stage l+1 is still working on batch t. Activations (with labels and batch id)
move forward and gradients backward through bounded queues, which also give back-pressure.

On CUDA each worker has its own stream. Lifetime rule for every tensor that crosses streams
(see docs/DESIGN.md): the producer moves it to the consumer's device on its own stream and
records an event after that work; the consumer's stream waits on the event before using it and
calls ``record_stream`` on it, so the caching allocator does not hand its memory to another
allocation until the consumer's queued work is done. The batch from the caller's thread enters
stage 0 the same way (an event on the caller's stream), and whatever the caller reads back --
metrics, evaluation counts, weights for checkpoints -- is behind an event sync. The host never
synchronises in the steady state.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterable

import torch

from scpl.errors import ScplError
from scpl.parallel.base import EXECUTORS
from scpl.parallel.runner import Channel, act_tensors, act_to, split_micro
from scpl.parallel.sequential import RunnerExecutor

_POLL_S = 0.1  # how often a blocked worker checks whether another worker failed


class _Stop:
    pass


class _WorkerFailed(Exception):
    pass


class QueueChannel(Channel):
    """Bounded queues between neighbouring stages (one for activations, one for gradients)."""

    def __init__(self, num_stages: int, depth: int, failed: threading.Event) -> None:
        self.act = [queue.Queue(maxsize=depth) for _ in range(num_stages)]  # into stage s
        self.grad = [queue.Queue(maxsize=depth) for _ in range(num_stages)]  # into stage s
        self.back = [queue.Queue() for _ in range(num_stages)]  # weights into stage s
        self.failed = failed

    def _put(self, q: queue.Queue, item) -> None:
        while True:
            if self.failed.is_set():
                raise _WorkerFailed
            try:
                q.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def _get(self, q: queue.Queue):
        while True:
            if self.failed.is_set():
                raise _WorkerFailed
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                continue

    # -- crossing streams ------------------------------------------------------------------
    def _handoff(self, stage: int, dst: int, act, y=None):
        """Producer side: move an activation (a tensor or a tuple, as ``act_to`` does) and its
        labels, or a gradient, to stage ``dst``'s device on the producer's stream, then record
        an event after that work."""
        to = self.device_of[dst]
        act = act_to(act, to)
        if y is not None:
            y = y.to(to, non_blocking=True)
        dev = self.device_of[stage]
        ev = None
        if dev.type == "cuda":
            ev = torch.cuda.Event()
            ev.record(torch.cuda.current_stream(dev))
        return act, y, ev

    def _accept(self, stage: int, ev, tensors) -> None:
        """Consumer side: wait for the producer's event on this stage's stream and mark every
        received tensor as used by it (``record_stream``), so its memory is not reused while
        this stream may still read it."""
        dev = self.device_of[stage]
        if ev is None or dev.type != "cuda":
            return
        stream = torch.cuda.current_stream(dev)
        stream.wait_event(ev)
        for t in tensors:
            if t.is_cuda:
                t.record_stream(stream)

    def send_act(self, stage, batch, mb, act, y):
        act, y, ev = self._handoff(stage, stage + 1, act, y)
        self._put(self.act[stage + 1], (batch, mb, act, y, ev))

    def recv_act(self, stage, batch, mb):
        b, m, act, y, ev = self._get(self.act[stage])
        assert (b, m) == (batch, mb), f"stage {stage} expected batch {batch}.{mb}, got {b}.{m}"
        self._accept(stage, ev, [*act_tensors(act), y])
        return act, y

    def send_grad(self, stage, batch, mb, grad):
        grad, _, ev = self._handoff(stage, stage - 1, grad)
        self._put(self.grad[stage - 1], (batch, mb, grad, ev))

    def recv_grad(self, stage, batch, mb):
        b, m, grad, ev = self._get(self.grad[stage])
        assert (b, m) == (batch, mb), f"stage {stage} expected grad {batch}.{mb}, got {b}.{m}"
        self._accept(stage, ev, [grad])
        return grad

    # Weights travel back (--head man) on a queue of their own, unbounded: a stage is at most
    # two steps' feedback ahead of its consumer (it needs the consumer's activations to move on).
    def send_feedback(self, stage, step, tensors):
        moved, _, ev = self._handoff(stage, stage - 1, tuple(tensors))
        self.back[stage - 1].put((step, moved, ev))

    def recv_feedback(self, stage, step, like):
        s, tensors, ev = self._get(self.back[stage])
        assert s == step, f"stage {stage} expected feedback of step {step}, got {s}"
        self._accept(stage, ev, list(tensors))
        return list(tensors)


@EXECUTORS.register("local", help="one process, a worker thread (and CUDA stream) per stage")
class LocalExecutor(RunnerExecutor):
    """Pipelined execution of every schedule across the devices of one process."""

    name = "local"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        K = self.num_stages
        self.failed = threading.Event()
        self.errors: list[BaseException] = []
        self.channel = QueueChannel(K, self.options.queue_depth, self.failed)
        self.channel.device_of = self.devices
        # Jobs: stage 0 receives the data with its job; later stages only the job header.
        self.jobs = [queue.Queue(maxsize=K + self.options.queue_depth) for _ in range(K)]
        self.results: queue.Queue = queue.Queue()
        self._submitted = 0
        self._done = [0] * K
        self._cv = threading.Condition()
        self.streams = [
            torch.cuda.Stream(device=d) if d.type == "cuda" else None for d in self.devices
        ]
        self._done_events: list = [None] * K  # per stage: event after its last finished job
        # The weights were moved to the devices on the caller's stream; the workers' streams
        # do not order after it, so wait once here.
        self._sync_devices()
        # The caller's intra-op thread count, applied in every worker: a new thread's BLAS may
        # otherwise use its own default and sum large matmuls in another order (not bitwise
        # equal to the sequential reference).
        self._num_threads = torch.get_num_threads()
        self.threads = [
            threading.Thread(target=self._worker, args=(s,), name=f"scpl-stage{s}", daemon=True)
            for s in range(K)
        ]
        for t in self.threads:
            t.start()

    # -- worker side ----------------------------------------------------------------------
    def _worker(self, s: int) -> None:
        torch.set_num_threads(self._num_threads)
        stream = self.streams[s]
        ctx = torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()
        runner, program = self.runners[s], self.programs[s]
        try:
            with ctx:
                while True:
                    job = self.channel._get(self.jobs[s])
                    if isinstance(job, _Stop):
                        return
                    kind, batch, payload, size, ev = job
                    if s == 0 and payload is not None:
                        # The batch was made on the caller's stream: wait for it, and keep its
                        # memory from being reused while this stream reads it.
                        tensors = [t for x, y in payload for t in (*act_tensors(x), y)]
                        self.channel._accept(0, ev, tensors)
                    if kind == "train":
                        runner.begin(batch, payload, size, self.options.num_micro, self.channel)
                        for op in program:
                            runner.run(op, self.channel)
                        self.sink.add(runner.metrics(), key=s, flag=runner.flag)
                    else:
                        self._eval_step(s, batch, payload[0] if payload else None)
                    if stream is not None:
                        done = torch.cuda.Event()
                        done.record(stream)
                        self._done_events[s] = done
                    with self._cv:
                        self._done[s] += 1
                        self._cv.notify_all()
        except _WorkerFailed:
            return
        except BaseException as e:  # surface in the main thread, stop the other workers
            self.errors.append(e)
            self.failed.set()
            with self._cv:
                self._cv.notify_all()

    def _eval_step(self, s: int, batch: int, payload) -> None:
        runner = self.runners[s]
        if s == 0:
            x, y = payload
        else:
            x, y = self.channel.recv_act(s, batch, 0)
        out = runner.infer(x)
        if s < self.num_stages - 1:
            self.channel.send_act(s, batch, 0, out, y)
        else:
            y = y.to(out.device, non_blocking=True)
            hit = (out.argmax(1) == y).sum()
            ev = None
            if hit.is_cuda:
                ev = torch.cuda.Event()
                ev.record(torch.cuda.current_stream(hit.device))
            self.results.put((hit, ev))

    # -- caller side ----------------------------------------------------------------------
    def _raise_if_failed(self) -> None:
        if self.failed.is_set():
            err = self.errors[0] if self.errors else RuntimeError("a stage worker failed")
            if isinstance(err, ScplError):
                raise err
            raise RuntimeError(f"stage worker failed: {err!r}") from err

    def _enqueue(self, kind: str, payload, size: int) -> None:
        batch = self._batch
        self._batch += 1
        self._submitted += 1
        ev = None
        if payload is not None:
            dev = next(
                (t.device for x, y in payload for t in (*act_tensors(x), y) if t.is_cuda), None
            )
            if dev is not None:  # the caller's stream made (or copied) the batch
                ev = torch.cuda.Event()
                ev.record(torch.cuda.current_stream(dev))
        for s in range(self.num_stages):
            job = (kind, batch, payload if s == 0 else None, size, ev if s == 0 else None)
            try:
                self.channel._put(self.jobs[s], job)
            except _WorkerFailed:
                self._raise_if_failed()

    def submit(self, x, y):
        self._raise_if_failed()
        self._enqueue("train", split_micro(x, y, self.options.num_micro), int(y.shape[0]))

    def flush(self) -> None:
        """Wait until every stage finished every submitted job, then for the devices to finish
        that work (event syncs), so the caller may read weights and optimizer state."""
        with self._cv:
            while min(self._done) < self._submitted and not self.failed.is_set():
                self._cv.wait(timeout=_POLL_S)
        self._raise_if_failed()
        for ev in self._done_events:
            if ev is not None:
                ev.synchronize()

    def _sync_devices(self) -> None:
        for d in set(self.devices):
            if d.type == "cuda":
                torch.cuda.synchronize(d)

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._sync_devices()  # written on the caller's stream; the workers read on theirs

    def load_unit_states(self, states: list[dict]) -> None:
        super().load_unit_states(states)
        self._sync_devices()

    def evaluate(self, batches: Iterable[tuple[object, torch.Tensor]]) -> tuple[int, int]:
        self.flush()
        total, n_batches = 0, 0
        for x, y in batches:
            self._enqueue("eval", [(act_to(x, self.devices[0]), y)], int(y.shape[0]))
            total += int(y.shape[0])
            n_batches += 1
        self.flush()
        hits = []
        for _ in range(n_batches):
            hit, ev = self.results.get()
            if ev is not None:
                ev.synchronize()
            hits.append(hit.to("cpu"))
        return int(sum(int(h) for h in hits)), total

    def close(self) -> None:
        if not self.threads:
            return
        for s in range(self.num_stages):
            try:
                self.jobs[s].put(_Stop(), timeout=1.0)
            except queue.Full:
                self.failed.set()
        for t in self.threads:
            t.join(timeout=5.0)
        self.threads = []
