"""Text reports of the perf tools: `scpl balance` (a split minimising the slowest stage) and
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
    """Unit cost: time (measured step time) or params (parameter count)."""
    method: str = "scpl"
    """Method whose step is timed."""
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


def balance_report(opts: BalanceOptions, shape: tuple[int, ...]) -> str:
    """Unit costs, the model's default split and the balanced one, ending with the
    ``--partition`` flag that selects it."""
    import torch

    from scpl.errors import ConfigError
    from scpl.models import build_model
    from scpl.perf.balance import partition_min_max, unit_costs

    if opts.by not in ("time", "params"):
        raise ConfigError(f"--by {opts.by!r}: choose time or params")
    torch.set_num_threads(1)
    costs = unit_costs(
        opts.model,
        opts.by,
        shape,
        width=opts.width,
        method=opts.method,
        batch_size=opts.batch_size,
        steps=opts.steps,
        device=opts.device,
    )
    part = partition_min_max(costs, opts.stages)
    default = build_model(opts.model, shape, 10, opts.stages, opts.width).partition
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
    for label, p in (("default split:", default), ("balanced split:", part)):
        lines.append(
            f"{label:16s} {','.join(map(str, p)):12s} stage costs {show(costs.stage_costs(p))}"
        )
    lines.append(f"--partition {','.join(map(str, part))}")
    return "\n".join(lines)


def soak_report(steps: int, echo=print) -> None:
    """Resident memory over ``steps`` small training steps for each single-process executor,
    one Markdown row per executor as it finishes."""
    from scpl.perf.soak import soak

    echo(f"# soak: resident memory over {steps} steps (4-stage SCPL convnet, batch 16)")
    echo("| executor | steps | RSS start MiB | RSS end MiB | max rise % | drift % | seconds |")
    echo("|---|---|---|---|---|---|---|")
    for executor in ("sequential", "local"):
        r = soak(executor, steps)
        echo(
            f"| {executor} | {steps} | {r['rss_start_mb']:.1f} | {r['rss_end_mb']:.1f} | "
            f"{r['max_rise_pct']:.2f} | {r['drift_pct']:.2f} | {r['seconds']:.0f} |"
        )
