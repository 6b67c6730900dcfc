"""The ``local`` executor: one process, one worker thread per stage/device, bounded queues.

Each worker loops over jobs (train or eval mini-batches) and runs its stage's program for each,
with no barrier between mini-batches: stage l starts batch t+1 as soon as it has updated on
batch t, while stage l+1 is still working on batch t. Activations (with labels and batch id)
move forward and gradients backward through bounded queues, which also give back-pressure.

On CUDA each worker has its own stream; a message carries a CUDA event recorded after the
producer's work, the consumer's stream waits on it, and the copy to the next device is
non-blocking -- so the host never synchronises in the steady state.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable

import torch

from scpl.errors import ScplError
from scpl.parallel.base import EXECUTORS
from scpl.parallel.runner import Channel, act_tensor, act_to, split_micro
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

    @staticmethod
    def _event(t: torch.Tensor):
        if t.is_cuda:
            ev = torch.cuda.Event()
            ev.record(torch.cuda.current_stream(t.device))
            return ev
        return None

    @staticmethod
    def _wait(ev, device: torch.device) -> None:
        if ev is not None and device.type == "cuda":
            torch.cuda.current_stream(device).wait_event(ev)

    def send_act(self, stage, batch, mb, act, y):
        self._put(self.act[stage + 1], (batch, mb, act, y, self._event(act_tensor(act))))

    def recv_act(self, stage, batch, mb):
        b, m, act, y, ev = self._get(self.act[stage])
        assert (b, m) == (batch, mb), f"stage {stage} expected batch {batch}.{mb}, got {b}.{m}"
        self._wait(ev, self.device_of[stage])
        return act, y

    def send_grad(self, stage, batch, mb, grad):
        self._put(self.grad[stage - 1], (batch, mb, grad, self._event(grad)))

    def recv_grad(self, stage, batch, mb):
        b, m, grad, ev = self._get(self.grad[stage])
        assert (b, m) == (batch, mb), f"stage {stage} expected grad {batch}.{mb}, got {b}.{m}"
        self._wait(ev, self.device_of[stage])
        return grad


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
        ctx = torch.cuda.stream(stream) if stream is not None else _nullcontext()
        runner, program = self.runners[s], self.programs[s]
        try:
            with ctx:
                while True:
                    job = self.channel._get(self.jobs[s])
                    if isinstance(job, _Stop):
                        return
                    kind, batch, payload, size = job
                    if kind == "train":
                        runner.begin(batch, payload, size, self.options.num_micro)
                        for op in program:
                            runner.run(op, self.channel)
                        self.sink.add(runner.metrics())
                    else:
                        self._eval_step(s, batch, payload)
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
            self.results.put((out.argmax(1) == y).sum())

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
        for s in range(self.num_stages):
            try:
                self.channel._put(self.jobs[s], (kind, batch, payload if s == 0 else None, size))
            except _WorkerFailed:
                self._raise_if_failed()

    def submit(self, x, y):
        self._raise_if_failed()
        self._enqueue("train", split_micro(x, y, self.options.num_micro), int(y.shape[0]))

    def flush(self) -> None:
        with self._cv:
            while min(self._done) < self._submitted and not self.failed.is_set():
                self._cv.wait(timeout=_POLL_S)
        self._raise_if_failed()

    def evaluate(self, batches: Iterable[tuple[object, torch.Tensor]]) -> tuple[int, int]:
        self.flush()
        total, n_batches = 0, 0
        for x, y in batches:
            self._enqueue("eval", (act_to(x, self.devices[0]), y), int(y.shape[0]))
            total += int(y.shape[0])
            n_batches += 1
        self.flush()
        correct = 0
        for _ in range(n_batches):
            correct += int(self.results.get())
        return correct, total

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


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
