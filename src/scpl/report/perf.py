"""Text output of the perf tools: `scpl balance` (a split minimising the slowest stage) and
`scpl bench --soak` (resident memory over a long run)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class BalanceOptions:
    """What `scpl balance` splits and how it measures the units."""

    model: str = "vgg"
    """Registered model to split."""
    stages: int = 4
    """Number of stages K."""
    by: str = "time"
    """Cost model: flops (FLOP counts on a model device, no timing), time (op costs measured on
    --device) or params (parameter count per unit)."""
    method: str = "scpl"
    """Method whose stages are costed (heads, local losses, detached inputs)."""
    head: str = "mlp"
    """Projection head of hidden stages (flops and time): identity, linear, mlp, ..."""
    width: float = 0.5
    """Width multiplier used for timing."""
    batch_size: int = 32
    """Batch size used for timing."""
    input_shape: str = "3,32,32"
    """Per-sample input shape, comma-separated."""
    steps: int = 2
    """Timed steps per unit (the median counts)."""
    device: str = "cpu"
    """Device the units are timed on."""


def balance_table(opts: BalanceOptions, costs, default: list[int], balanced: list[int]) -> str:
    """Unit costs (:class:`scpl.perf.balance.UnitCosts`), the model's default split and the
    balanced one, ending with the ``--partition`` flag that selects the balanced split."""
    if opts.by == "time":
        unit, show = "ms", lambda cs: ", ".join(f"{c * 1e3:.1f}" for c in cs)
    else:
        unit, show = "params", lambda cs: ", ".join(f"{int(c):,}" for c in cs)
    lines = [
        f"# {opts.model}: {len(costs.body)} units, cost by {opts.by} ({unit}); a stage costs "
        "its units' bodies plus the head/loss at its cut",
        f"unit body costs: {show(costs.body)}",
        f"cut costs:       {show(costs.head)}",
    ]
    for label, p in (("default split:", default), ("balanced split:", balanced)):
        lines.append(
            f"{label:16s} {','.join(map(str, p)):12s} stage costs {show(costs.stage_costs(p))}"
        )
    lines.append(f"--partition {','.join(map(str, balanced))}")
    return "\n".join(lines)


SOAK_HEADER = (
    "| executor | steps | RSS start MiB | RSS end MiB | max rise % | drift % | seconds |",
    "|---|---|---|---|---|---|---|",
)


def soak_row(executor: str, steps: int, r: dict) -> str:
    """One Markdown row of a soak result (:func:`scpl.perf.soak.soak`)."""
    return (
        f"| {executor} | {steps} | {r['rss_start_mb']:.1f} | {r['rss_end_mb']:.1f} | "
        f"{r['max_rise_pct']:.2f} | {r['drift_pct']:.2f} | {r['seconds']:.0f} |"
    )
