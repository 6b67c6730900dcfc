"""Where the studies' op costs come from: one cost source for bench, epoch-time and profile.

Three sources give the per-stage, per-op seconds of one mini-batch (``{stage: {op: s}}``, the
format of ``ExecutorOptions.emulate`` and of the simulator):

* ``measured``: the real model timed on one device with the recorder
  (:func:`scpl.perf.measure.measure_op_costs`; or round-robin, see
  :meth:`CostSource.time_round_robin`);
* ``flops``: proportional to the FLOPs of each op (a compute-bound device,
  :func:`scpl.perf.measure.flop_op_costs`);
* anything else is an ``--emulate`` spec, taken as given (:func:`scpl.perf.emulate.parse_emulate`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace

from scpl.perf.emulate import (
    WORK_OPS,
    Costs,
    merge_costs,
    parse_emulate,
    scale_costs,
    stage_totals,
)
from scpl.perf.measure import Workload, flop_op_costs, measure_op_costs, measure_round_robin

SOURCES = ("measured", "flops")
"""The sources that need a model; any other string is an --emulate spec."""

_CACHE: dict[str, Costs] = {}


def is_model_source(source: str) -> bool:
    """Whether ``source`` derives costs from a model (measured / flops) rather than a spec."""
    return source.strip().lower() in SOURCES


def op_costs(
    source: str,
    num_stages: int,
    method: str = "scpl",
    workload: Workload | None = None,
    partition: Sequence[int] | None = None,
    work_only: bool = True,
) -> Costs:
    """Mini-batch op costs of ``method`` at ``num_stages`` stages from ``source`` (see the module
    docstring). ``work_only`` drops the measured one-device transfers (in-process hand-offs, not
    link costs). Measured and FLOP costs are computed once per process for the same workload,
    method, K and partition (studies reuse them across suites)."""
    kind = source.strip().lower()
    if kind not in SOURCES:
        return parse_emulate(source, num_stages)
    w = workload or Workload()
    key = json.dumps(
        [kind, asdict(w), num_stages, method, list(partition) if partition else None],
        sort_keys=True,
        default=str,
    )
    if key not in _CACHE:
        if kind == "measured":
            _CACHE[key] = measure_op_costs(
                w.model,
                method,
                num_stages,
                w.width,
                tuple(w.input_shape),
                w.num_classes,
                w.batch_size,
                w.steps,
                w.warmup,
                partition,
                device=w.device,
                head=w.head,
                proj_dim=w.proj_dim,
                model_kwargs=w.model_kwargs,
            )
        else:
            _CACHE[key] = flop_op_costs(
                w.model,
                method,
                num_stages,
                w.width,
                tuple(w.input_shape),
                w.num_classes,
                w.batch_size,
                partition,
                flops_per_s=w.tflops * 1e12,
                head=w.head,
                proj_dim=w.proj_dim,
                model_kwargs=w.model_kwargs,
            )
    costs = _CACHE[key]
    return work_ops(costs) if work_only else {s: dict(d) for s, d in costs.items()}


def work_ops(costs: Costs) -> Costs:
    """Only the F, L, B and U costs."""
    return {s: {k: v for k, v in d.items() if k in WORK_OPS} for s, d in costs.items()}


class CostSource:
    """A study's op costs: ``costs(K, method, batch_size, partition)`` from one source.

    ``slowest_ms > 0`` scales model-derived costs so the slowest stage of ``scale_by`` (at the
    same K; ``None``: of the method itself) takes that long; scaling every method by the same
    factor keeps SCPL and BP comparable. ``transfer`` (an --emulate spec of transfer ops, or
    its parsed costs) is added to every stage. ``max_batch > 0``: larger batches are taken from a ``max_batch`` step
    with F, L and B scaled linearly (U unchanged), e.g. when a big step does not fit in memory.
    """

    def __init__(
        self,
        source: str,
        workload: Workload | None = None,
        *,
        transfer: str | Costs = "",
        slowest_ms: float = 0.0,
        scale_by: str | None = "scpl",
        work_only: bool = True,
        max_batch: int = 0,
    ) -> None:
        self.source = source
        self.workload = workload or Workload()
        self.transfer = transfer
        self.slowest_ms = slowest_ms
        self.scale_by = scale_by
        self.work_only = work_only
        self.max_batch = max_batch
        self._timed: dict[tuple, Costs] = {}  # round-robin timings, see time_round_robin

    @property
    def model_based(self) -> bool:
        return is_model_source(self.source)

    def timed_batch(self, batch_size: int | None = None) -> int:
        """The batch size whose costs stand for ``batch_size`` (see ``max_batch``)."""
        n = batch_size or self.workload.batch_size
        return min(n, self.max_batch) if self.max_batch else n

    def raw(
        self,
        num_stages: int,
        method: str = "scpl",
        batch_size: int | None = None,
        partition: Sequence[int] | None = None,
    ) -> Costs:
        """Unscaled costs, without the transfer spec."""
        if not self.model_based:
            return parse_emulate(self.source, num_stages)
        n = batch_size or self.workload.batch_size
        timed = self.timed_batch(n)
        part = tuple(partition) if partition else None
        c = self._timed.get((num_stages, method, timed, part))
        if c is None:
            w = replace(self.workload, batch_size=timed)
            c = op_costs(self.source, num_stages, method, w, partition, self.work_only)
        return c if timed == n else scale_costs(c, n / timed, ("F", "L", "B"))

    def costs(
        self,
        num_stages: int,
        method: str = "scpl",
        batch_size: int | None = None,
        partition: Sequence[int] | None = None,
    ) -> Costs:
        """Mini-batch op costs per stage (scaled and with transfers, see the class docstring)."""
        c = self.raw(num_stages, method, batch_size, partition)
        if self.slowest_ms > 0 and self.model_based:
            ref = c
            if self.scale_by is not None and self.scale_by != method:
                ref = self.raw(num_stages, self.scale_by, batch_size, partition)
            c = scale_costs(c, self.slowest_ms * 1e-3 / max(stage_totals(ref, num_stages)))
        if not self.transfer:
            return c
        extra = self.transfer
        if isinstance(extra, str):
            extra = parse_emulate(extra, num_stages)
        return merge_costs(c, extra, num_stages)

    __call__ = costs

    def time_round_robin(
        self,
        num_stages: int,
        pairs: Sequence[tuple[int, str]],
        rounds: int,
        warmup: int,
        log: Callable[[str], None] = print,
    ) -> None:
        """Measured source: time every (batch size, method) pair up front, the pairs taking
        turns step by step (:func:`scpl.perf.measure.measure_round_robin`), so that machine load
        hits them alike; ``costs`` then uses these timings. Other sources: nothing to do."""
        if self.source.strip().lower() != "measured":
            return
        timed = list(dict.fromkeys((self.timed_batch(n), m) for n, m in pairs))
        got = measure_round_robin(self.workload, num_stages, timed, rounds, warmup, log)
        for (n, m), c in got.items():
            self._timed[(num_stages, m, n, None)] = c
