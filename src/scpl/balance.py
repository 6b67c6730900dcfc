"""Stage balancing: split a model's units into K contiguous stages so the slowest stage is as fast
as possible (a pipeline runs at the pace of its slowest stage).

Per-unit costs come from timing (build the model with one unit per stage, time each stage's
F/L/B/U with the recorder on the sequential executor) or from parameter counts. The result is a
partition list (units per stage) for ``build_model(..., partition=...)`` / ``--partition``.
"""

from __future__ import annotations

from collections.abc import Sequence

from scpl.errors import ConfigError

BY = ("time", "params")


def partition_min_max(costs: Sequence[float], num_stages: int) -> list[int]:
    """Contiguous split of ``costs`` into ``num_stages`` non-empty groups minimising the largest
    group sum (exact dynamic programme, O(K n^2)). Ties are broken by the smaller sum of squared
    group sums (the more even split), then by the earlier cut."""
    n = len(costs)
    if not 1 <= num_stages <= n:
        raise ConfigError(
            f"cannot split {n} units into {num_stages} stages; choose --stages between 1 and {n}"
        )
    if any(c < 0 for c in costs):
        raise ConfigError("unit costs must be >= 0")
    prefix = [0.0]
    for c in costs:
        prefix.append(prefix[-1] + float(c))
    inf = (float("inf"), float("inf"))
    # best[k][i]: (max group sum, sum of squares) of the first i units in k groups.
    best = [[inf] * (n + 1) for _ in range(num_stages + 1)]
    cut = [[0] * (n + 1) for _ in range(num_stages + 1)]
    best[0][0] = (0.0, 0.0)
    for k in range(1, num_stages + 1):
        for i in range(k, n - (num_stages - k) + 1):
            for j in range(k - 1, i):
                prev = best[k - 1][j]
                if prev[0] == float("inf"):
                    continue
                g = prefix[i] - prefix[j]
                cand = (max(prev[0], g), prev[1] + g * g)
                if cand < best[k][i]:
                    best[k][i], cut[k][i] = cand, j
    sizes, i = [], n
    for k in range(num_stages, 0, -1):
        j = cut[k][i]
        sizes.append(i - j)
        i = j
    return sizes[::-1]


def group_costs(costs: Sequence[float], partition: Sequence[int]) -> list[float]:
    """Sum of unit costs per stage."""
    out, start = [], 0
    for p in partition:
        out.append(float(sum(costs[start : start + p])))
        start += p
    return out


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
) -> list[float]:
    """Cost of each unit: seconds per training step (F+L+B+U, medians) of the unit run as its own
    stage under ``method`` (``by='time'``; a unit's local head is included, so a merged stage is
    slightly over-estimated), or its parameter count (``by='params'``)."""
    from scpl.emulate import measure_op_costs, stage_totals
    from scpl.models import build_model

    if by not in BY:
        raise ConfigError(f"--by {by!r}: choose one of {', '.join(BY)}")
    n = num_units(model, input_shape, num_classes)
    if by == "params":
        m = build_model(model, input_shape, num_classes, n, width, [1] * n)
        return [float(sum(p.numel() for p in st.parameters())) for st in m.stages]
    costs = measure_op_costs(
        model,
        method,
        n,
        width,
        input_shape,
        num_classes,
        batch_size,
        steps,
        warmup,
        partition=[1] * n,
        device=device,
    )
    return stage_totals(costs, n)


def balance(
    model: str,
    num_stages: int,
    by: str = "time",
    costs: Sequence[float] | None = None,
    **kw,
) -> tuple[list[int], list[float]]:
    """The min-max partition of ``model`` into ``num_stages`` stages and the unit costs used."""
    costs = list(costs) if costs is not None else unit_costs(model, by, **kw)
    return partition_min_max(costs, num_stages), costs
