"""Stage balancing: split a model's units into K contiguous stages so the slowest stage is as fast
as possible (a pipeline runs at the pace of its slowest stage).

Cost model: a stage holding units j..i-1 costs the sum of its units' *body* costs plus the cost of
what is attached at its cut -- the local head and loss of the stage output of unit i-1 (for SCPL
the projection head, whose size depends on where the cut is: an early cut sees a large feature
map), or the classifier on the last stage. So each unit has two costs: ``body[i]`` and
``head[i]`` (paid only if a stage ends after unit i).

Costs come from timing or parameter counts:

* ``time``: build the model with one unit per stage (K = number of units), time every op with the
  recorder on the sequential executor, once under BP (F+B+U of the body only) and once under the
  method (SCPL adds L, the head's backward and update); body = BP time, head = method - BP.
* ``params``: body = the unit's parameters, head = the parameters attached at its cut.

The result is a partition list (units per stage) for ``build_model(..., partition=...)`` /
``--partition``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scpl.errors import ConfigError

BY = ("time", "params")


@dataclass
class UnitCosts:
    """Per-unit body cost and the cost of a cut after each unit (seconds or parameters)."""

    body: list[float]
    head: list[float]
    by: str = "time"

    def stage_cost(self, start: int, stop: int) -> float:
        """Cost of a stage holding units ``start .. stop-1``."""
        return float(sum(self.body[start:stop])) + float(self.head[stop - 1])

    def stage_costs(self, partition: Sequence[int]) -> list[float]:
        out, start = [], 0
        for p in partition:
            out.append(self.stage_cost(start, start + p))
            start += p
        return out

    @property
    def totals(self) -> list[float]:
        """Cost of each unit as its own stage."""
        return [b + h for b, h in zip(self.body, self.head, strict=True)]


def partition_min_max(costs: Sequence[float] | UnitCosts, num_stages: int) -> list[int]:
    """Contiguous split into ``num_stages`` non-empty stages minimising the largest stage cost
    (exact dynamic programme, O(K n^2)). ``costs`` is a list of additive unit costs or a
    :class:`UnitCosts` (body + cut cost). Ties are broken by the smaller sum of squared stage
    costs (the more even split), then by the earlier cut."""
    if not isinstance(costs, UnitCosts):
        costs = UnitCosts(list(costs), [0.0] * len(costs))
    n = len(costs.body)
    if not 1 <= num_stages <= n:
        raise ConfigError(
            f"cannot split {n} units into {num_stages} stages; choose --stages between 1 and {n}"
        )
    if any(c < 0 for c in costs.body + costs.head):
        raise ConfigError("unit costs must be >= 0")
    inf = (float("inf"), float("inf"))
    # best[k][i]: (max stage cost, sum of squares) of the first i units in k stages.
    best = [[inf] * (n + 1) for _ in range(num_stages + 1)]
    cut = [[0] * (n + 1) for _ in range(num_stages + 1)]
    best[0][0] = (0.0, 0.0)
    for k in range(1, num_stages + 1):
        for i in range(k, n - (num_stages - k) + 1):
            for j in range(k - 1, i):
                prev = best[k - 1][j]
                if prev[0] == float("inf"):
                    continue
                g = costs.stage_cost(j, i)
                cand = (max(prev[0], g), prev[1] + g * g)
                if cand < best[k][i]:
                    best[k][i], cut[k][i] = cand, j
    sizes, i = [], n
    for k in range(num_stages, 0, -1):
        j = cut[k][i]
        sizes.append(i - j)
        i = j
    return sizes[::-1]


def group_costs(costs: Sequence[float] | UnitCosts, partition: Sequence[int]) -> list[float]:
    """Cost per stage of a partition."""
    if not isinstance(costs, UnitCosts):
        costs = UnitCosts(list(costs), [0.0] * len(costs))
    return costs.stage_costs(partition)


def num_units(model: str, input_shape: tuple[int, ...], num_classes: int = 10) -> int:
    """How many units (cut points + 1) a model has (convnet: one per stage, so 1 here)."""
    from scpl.models import build_model

    return sum(build_model(model, input_shape, num_classes, 1, 0.125).partition)


def unit_costs(
    model: str,
    by: str = "time",
    input_shape: tuple[int, ...] = (3, 32, 32),
    num_classes: int = 10,
    width: float = 1.0,
    method: str = "scpl",
    batch_size: int = 16,
    steps: int = 2,
    warmup: int = 1,
    device: str = "cpu",
    measure=None,
) -> UnitCosts:
    """Body and cut costs of every unit (see the module docstring). ``measure(method, n,
    partition)`` may supply op costs (e.g. a cache); default :func:`measure_op_costs`."""
    from scpl.methods import MethodConfig, build_method
    from scpl.models import build_model
    from scpl.perf.emulate import stage_totals
    from scpl.perf.measure import measure_op_costs

    if by not in BY:
        raise ConfigError(f"--by {by!r}: choose one of {', '.join(BY)}")
    n = num_units(model, input_shape, num_classes)
    ones = [1] * n
    if by == "params":
        m = build_model(model, input_shape, num_classes, n, width, ones)
        units = build_method(method, MethodConfig()).attach(m)
        body = [float(sum(p.numel() for p in st.parameters())) for st in m.stages]
        total = [float(sum(p.numel() for p in u.parameters())) for u in units]
        return UnitCosts(body, [t - b for t, b in zip(total, body, strict=True)], by)

    def _measure(meth: str) -> dict:
        if measure is not None:
            return measure(meth, n, ones)
        return measure_op_costs(
            model,
            meth,
            n,
            width,
            input_shape,
            num_classes,
            batch_size,
            steps,
            warmup,
            partition=ones,
            device=device,
        )

    bp = stage_totals(_measure("bp"), n)
    if build_method(method).local:
        full = stage_totals(_measure(method), n)
        head = [max(0.0, f - b) for f, b in zip(full, bp, strict=True)]
    else:
        head = [0.0] * n
    return UnitCosts(bp, head, by)


def balance(
    model: str, num_stages: int, by: str = "time", costs: UnitCosts | None = None, **kw
) -> tuple[list[int], UnitCosts]:
    """The min-max partition of ``model`` into ``num_stages`` stages and the unit costs used."""
    costs = costs if costs is not None else unit_costs(model, by, **kw)
    return partition_min_max(costs, num_stages), costs


# -- auto partition: the full per-stage cost model ---------------------------------------------

AUTO_BY = ("flops", "time")
"""What ``--partition auto`` balances: FLOP counts on a model device (no timing), or op costs
measured on the device at hand."""


class StageCosts(UnitCosts):
    """Stage costs from a function ``ops(start, stop) -> {op: seconds}`` that prices a stage of
    units ``start .. stop-1`` as a whole: its body, the head and loss at its cut, its update
    and its transfers (see :mod:`scpl.perf.costmodel`). ``body`` lists each unit alone."""

    def __init__(self, num_units: int, ops, by: str) -> None:
        self._ops = ops
        self._cache: dict[tuple[int, int], dict[str, float]] = {}
        super().__init__(
            [self.stage_cost(i, i + 1) for i in range(num_units)], [0.0] * num_units, by
        )

    def stage_ops(self, start: int, stop: int) -> dict[str, float]:
        key = (start, stop)
        if key not in self._cache:
            self._cache[key] = dict(self._ops(start, stop))
        return self._cache[key]

    def stage_cost(self, start: int, stop: int) -> float:
        return float(sum(self.stage_ops(start, stop).values()))

    def partition_ops(self, partition: Sequence[int]) -> list[dict[str, float]]:
        out, start = [], 0
        for p in partition:
            out.append(self.stage_ops(start, start + p))
            start += p
        return out


def flop_stage_costs(prof, local: bool = True, device=None) -> StageCosts:
    """The FLOP cost model of a :class:`~scpl.perf.costmodel.Profile` as stage costs."""
    from scpl.perf.costmodel import DEVICE, stage_ops

    dev = device or DEVICE
    return StageCosts(prof.num_units, lambda a, b: stage_ops(prof, a, b, local, dev), "flops")


def time_stage_costs(costs: UnitCosts, out_bytes: Sequence[float], device=None) -> StageCosts:
    """Measured unit costs (:func:`unit_costs` by time) plus the transfer of the activation
    leaving each cut over the model device's link."""
    from scpl.perf.costmodel import DEVICE

    dev = device or DEVICE
    n = len(costs.body)

    def ops(a: int, b: int) -> dict[str, float]:
        d = {"body": float(sum(costs.body[a:b])), "head": float(costs.head[b - 1])}
        if b < n:
            d["send_act"] = out_bytes[b - 1] / dev.link_bytes_per_s
        return d

    return StageCosts(n, ops, "time")


def auto_stage_costs(
    model: str,
    num_stages: int,
    by: str = "flops",
    method: str = "scpl",
    head: str = "mlp",
    input_shape: tuple[int, ...] = (3, 32, 32),
    num_classes: int = 10,
    width: float = 1.0,
    batch_size: int = 32,
    proj_dim: int = 1024,
    model_kwargs: dict | None = None,
    device: str = "cpu",
    steps: int = 2,
) -> StageCosts:
    """Per-stage costs of any contiguous split of ``model`` (see :class:`StageCosts`), by
    FLOPs (:func:`scpl.perf.costmodel.profile_model`) or by op costs measured on ``device``."""
    from scpl.methods import build_method
    from scpl.perf.costmodel import num_units, profile_model

    if by not in AUTO_BY:
        raise ConfigError(f"--balance-by {by!r}: choose one of {', '.join(AUTO_BY)}")
    local = build_method(method).local
    kw = dict(model_kwargs or {})
    if by == "flops":
        prof = profile_model(
            model,
            method if local else "scpl",
            input_shape,
            num_classes,
            width,
            batch_size,
            head,
            proj_dim,
            num_stages,
            kw,
        )
        return flop_stage_costs(prof, local)
    from scpl.models import build_model
    from scpl.perf.emulate import stage_totals
    from scpl.perf.measure import measure_op_costs

    n = num_units(model, input_shape, num_stages, num_classes, kw)
    ones = [1] * n
    m = build_model(model, tuple(input_shape), num_classes, n, width, ones, **kw)
    out_bytes = [4.0 * batch_size * math.prod(s) for s in m.stage_shapes]

    def measured(meth: str) -> list[float]:
        c = measure_op_costs(
            model,
            meth,
            n,
            width,
            tuple(input_shape),
            num_classes,
            batch_size,
            steps,
            1,
            ones,
            device=device,
            head=head,
            proj_dim=proj_dim,
            model_kwargs=kw,
        )
        return stage_totals(c, n)

    bp = measured("bp")
    full = measured(method) if local else bp
    head_c = [max(0.0, f - b) for f, b in zip(full, bp, strict=True)]
    return time_stage_costs(UnitCosts(bp, head_c, "time"), out_bytes)


def auto_partition(model: str, num_stages: int, by: str = "flops", **kw) -> list[int]:
    """The contiguous split of ``model`` into ``num_stages`` stages whose slowest stage (body,
    head and loss at its cut, update, activation transfer) is fastest under the cost model
    ``by`` (``--partition auto --balance-by flops|time``)."""
    return partition_min_max(auto_stage_costs(model, num_stages, by, **kw), num_stages)


def split_report(costs: StageCosts, splits: dict[str, Sequence[int]], unit: str = "ms") -> str:
    """A per-stage table (ops, total) of each named split, and the speed of each relative to
    the first (the slowest stage sets the pipeline's pace)."""
    scale = 1e3 if unit == "ms" else 1.0
    lines = []
    first = None
    for name, part in splits.items():
        ops = costs.partition_ops(part)
        worst = max(sum(o.values()) for o in ops)
        first = first if first is not None else worst
        lines.append(
            f"{name}: --partition {','.join(map(str, part))}  slowest stage "
            f"{worst * scale:.3f} {unit}  speed x{first / worst:.3f} vs {next(iter(splits))}"
        )
        kinds = sorted({k for o in ops for k in o}, key=_op_order)
        lines.append("  stage | " + " | ".join(kinds) + " | total")
        for s, o in enumerate(ops):
            vals = " | ".join(f"{o.get(k, 0.0) * scale:.3f}" for k in kinds)
            lines.append(f"  {s} | {vals} | {sum(o.values()) * scale:.3f}")
    return "\n".join(lines)


def _op_order(kind: str) -> int:
    order = ("body", "head", "F", "L", "B", "U", "send_act", "send_grad")
    return order.index(kind) if kind in order else len(order)


def balance_text(
    model: str,
    num_stages: int,
    by: str = "flops",
    method: str = "scpl",
    head: str = "mlp",
    input_shape: tuple[int, ...] = (3, 32, 32),
    width: float = 1.0,
    batch_size: int = 32,
    num_classes: int = 10,
    model_kwargs: dict | None = None,
    device: str = "cpu",
    steps: int = 2,
) -> str:
    """What `scpl balance --by flops|time` prints: the paper (default) split and the auto split
    per stage (op costs and total), ending with the ``--partition`` flag of the auto split."""
    from scpl.models import build_model

    kw = dict(model_kwargs or {})
    costs = auto_stage_costs(
        model,
        num_stages,
        by,
        method=method,
        head=head,
        input_shape=tuple(input_shape),
        num_classes=num_classes,
        width=width,
        batch_size=batch_size,
        model_kwargs=kw,
        device=device,
        steps=steps,
    )
    paper = build_model(model, tuple(input_shape), num_classes, num_stages, width, **kw).partition
    auto = partition_min_max(costs, num_stages)
    source = (
        "FLOPs on the model device (scpl.perf.costmodel.DEVICE)"
        if by == "flops"
        else f"op costs measured on {device} (+ transfers over the model device's link)"
    )
    lines = [
        f"# {model} K={num_stages} {method} head={head} width={width} batch {batch_size}: "
        f"{len(costs.body)} units; ms per mini-batch from {source}",
        split_report(costs, {"paper": paper, "auto": auto}),
        f"--partition {','.join(map(str, auto))}",
    ]
    return "\n".join(lines)
