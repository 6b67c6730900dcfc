"""Tables and plots of a budget study (:mod:`scpl.studies.budgets`): curves.json, curves.md,
curves_time.png."""

from __future__ import annotations

import json
import math
from pathlib import Path

from scpl.atomic import atomic_write
from scpl.parallel.base import wsd_decay_start
from scpl.report.accuracy import mean_std

CURVE_FIELDS = (
    "model",
    "dataset",
    "contender",
    "method",
    "seed",
    "budget_epochs",
    "steps",
    "sim_seconds",
    "test_acc",
    "val_acc",
)


# Marks a table cell where, for at least one seed, the epoch chosen on validation ended before
# that run's decay began (see picked_before_decay).
BEFORE_DECAY = "‡"


def picked_before_decay(summary: dict, epochs: list[dict]) -> bool:
    """Whether a WSD run's epoch chosen on validation ended before its decay began and no
    decayed epoch got back to its validation score (``summary``: the run's summary.json;
    ``epochs``: its metrics.jsonl epoch records, ``step`` and ``val_acc``). Then its number is a
    constant-phase number (overfitting, or a constant rate too high for that length). A tie
    does not count: the pick is the earliest of equal scores. False for other schedules and for
    runs without decay steps."""
    cfg = summary.get("config") or {}
    if cfg.get("lr_schedule") != "wsd" or not summary.get("best_epoch"):
        return False
    steps = summary["steps"]
    start = wsd_decay_start(steps, cfg["decay_fraction"])
    end = min(summary["best_epoch"] * summary["steps_per_epoch"], steps)
    if start >= steps or end > start:
        return False
    return not any(e["step"] > start and e["val_acc"] >= summary["best_val_acc"] for e in epochs)


def by_cell(records: list[dict]) -> dict[tuple, list[dict]]:
    """Records grouped by (model, contender, budget)."""
    out: dict[tuple, list[dict]] = {}
    for r in records:
        out.setdefault((r["model"], r["contender"], r["budget_epochs"]), []).append(r)
    return out


def crossover(records: list[dict], model: str, local: str) -> str:
    """The smallest budget at which contender ``local`` is at or above every BP contender at
    equal simulated time (means over seeds), or 'none up to B'."""
    cells = by_cell([r for r in records if r["model"] == model])
    bps = sorted(
        {
            r["contender"]
            for r in records
            if r["model"] == model and r["method"] == "bp" and r["equal_time"]
        }
    )
    budgets = sorted({b for (_, c, b) in cells if c == local})
    for b in budgets:
        if not all((model, c, b) in cells for c in bps):
            continue
        mine = _mean(cells[(model, local, b)])
        if bps and all(mine >= _mean(cells[(model, c, b)]) for c in bps):
            return f"{b:g}"
    return f"none up to {budgets[-1]:g}" if budgets else "–"


def best_within(records: list[dict]) -> list[dict]:
    """Each record replaced by the best run its seed could have chosen within the same time:
    among that (model, contender, seed)'s budgets up to this one, the run with the highest
    validation accuracy (the longer on ties), keeping this budget and its simulated time.

    Why: a user with B's time may train any shorter length, and picks it on validation, as the
    epoch inside a run is picked. Without this, a contender whose constant learning rate starts
    to hurt late (more steps, lower accuracy) is scored below what it reached earlier.
    """
    runs: dict[tuple, list[dict]] = {}
    for r in records:
        runs.setdefault((r["model"], r["contender"], r["seed"]), []).append(r)
    out = []
    for r in records:
        earlier = [
            x
            for x in runs[(r["model"], r["contender"], r["seed"])]
            if x["budget_epochs"] <= r["budget_epochs"]
        ]
        pick = max(earlier, key=lambda x: (x["val_acc"], x["budget_epochs"]))
        out.append(
            r
            | {
                "test_acc": pick["test_acc"],
                "val_acc": pick["val_acc"],
                "picked_budget": pick["budget_epochs"],
                "picked_before_decay": pick.get("picked_before_decay", False),
            }
        )
    return out


def time_to_bp(records: list[dict], model: str) -> list[str]:
    """Table: for each equal-time contender, the smallest budget whose best run within the time
    (:func:`best_within`, mean over seeds) reaches what BP on one device reaches in B epochs,
    and the speed-up B / b to that accuracy.

    Why: where accuracy saturates, more steps at equal time cannot show a gain, but reaching
    the same accuracy sooner still can."""
    best = by_cell(best_within([r for r in records if r["model"] == model and r["equal_time"]]))
    one = [c for (_, c, _), rs in best.items() if rs[0]["method"] == "bp" and rs[0]["devices"] == 1]
    if not one:
        return []
    base = one[0]
    targets = sorted((b, _mean(rs)) for (_, c, b), rs in best.items() if c == base)
    others = list(dict.fromkeys(c for (_, c, _) in best if c != base))
    lines = [
        "",
        f"#### Time to {base}'s accuracy (the smallest budget whose best run within the time "
        "reaches it, mean over seeds; in brackets the speed-up B / b, at least that much since "
        "the budgets are coarse)",
        "",
        "| contender | " + " | ".join(f"{100 * a:.2f} ({b:g} ep)" for b, a in targets) + " |",
        "|---|" + "---|" * len(targets),
    ]
    for c in others:
        mine = sorted((b, _mean(rs)) for (_, cc, b), rs in best.items() if cc == c)
        row = []
        for b_target, acc in targets:
            hit = next((b for b, a in mine if a >= acc), None)
            if hit is None:
                row.append(f"not up to {mine[-1][0]:g}" if mine else "–")
            else:
                row.append(f"{hit:g} (>= {b_target / hit:.1f}x)")
        lines.append(f"| {c} | " + " | ".join(row) + " |")
    return lines


def _mean(rs: list[dict]) -> float:
    return sum(r["test_acc"] for r in rs) / len(rs)


def gaps(records: list[dict], model: str, contender: str, base: str) -> dict[float, list[float]]:
    """Per budget: ``contender`` minus ``base`` test accuracy (points), one value per seed both
    ran (paired: same seed, same data order)."""
    acc = {
        (r["contender"], r["budget_epochs"], r["seed"]): 100 * r["test_acc"]
        for r in records
        if r["model"] == model
    }
    out: dict[float, list[float]] = {}
    for (c, b, seed), a in sorted(acc.items()):
        if c == contender and (base, b, seed) in acc:
            out.setdefault(b, []).append(a - acc[(base, b, seed)])
    return out


def gap_trend(by_budget: dict[float, list[float]]) -> str:
    """Whether a gap is still closing at the longest budget: its change from the budget
    before, against the noise of the two (std of the paired differences)."""
    bs = sorted(by_budget)
    if len(bs) < 2:
        return "–"
    (m0, s0), (m1, s1) = (mean_std(by_budget[b]) for b in bs[-2:])
    noise = math.sqrt(sum(0.0 if math.isnan(s) else s * s for s in (s0, s1)))
    change = m1 - m0
    if len(by_budget[bs[-1]]) < 2 or len(by_budget[bs[-2]]) < 2:
        return f"{change:+.2f} (1 seed: no call)"
    if abs(change) <= noise:
        return f"{change:+.2f}, within noise ±{noise:.2f}: not closing"
    return f"{change:+.2f}: {'closing' if change > 0 else 'widening'} (noise ±{noise:.2f})"


def _gap_table(records: list[dict], model: str, budgets: list[float]) -> list[str]:
    """Each local contender at equal epochs minus BP on one device, per budget."""
    rs = [r for r in records if r["model"] == model and r["equal_epochs"]]
    # Each local contender against BP on one device at the same width (a width sweep's rows).
    bases = {}
    for r in rs:
        if r["method"] == "bp" and r["devices"] == 1:
            bases.setdefault(r.get("width"), r["contender"])
    local = {r["contender"]: r.get("width") for r in rs if r["method"] != "bp"}
    local = {c: bases[w] for c, w in local.items() if w in bases}
    if not local:
        return []
    lines = [
        "",
        "### Gap to BP on one device at equal epochs (points, paired by seed; same width)",
        "",
        "| contender | vs | "
        + " | ".join(f"{b:g} ep" for b in budgets)
        + " | last change: still closing? |",
        "|---|---|" + "---|" * (len(budgets) + 1),
    ]
    for c, base in local.items():
        g = gaps(records, model, c, base)
        cells = []
        for b in budgets:
            if b not in g:
                cells.append("–")
                continue
            m, s = mean_std(g[b])
            cells.append(f"{m:+.2f}" + (f" ± {s:.2f}" if len(g[b]) > 1 else "") + f" ({len(g[b])})")
        lines.append(f"| {c} | {base} | " + " | ".join(cells) + f" | {gap_trend(g)} |")
    return lines


def _table(records: list[dict], model: str, which: str, budgets: list[float]) -> list[str]:
    cells = by_cell(records)
    names = []
    for r in records:
        if r["model"] == model and r[which] and r["contender"] not in names:
            names.append(r["contender"])
    lines = [
        "| contender | " + " | ".join(f"{b:g} ep" for b in budgets) + " |",
        "|---|" + "---|" * len(budgets),
    ]
    for c in names:
        row = []
        for b in budgets:
            rs = cells.get((model, c, b), [])
            if not rs:
                row.append("–")
                continue
            m, s = mean_std([100 * r["test_acc"] for r in rs])
            mark = BEFORE_DECAY if any(r.get("picked_before_decay") for r in rs) else ""
            row.append(f"{m:.2f} ± {s:.2f} ({len(rs)}){mark}")
        lines.append(f"| {c} | " + " | ".join(row) + " |")
    return lines


def write_budget_report(records: list[dict], out_dir: Path, meta: dict) -> None:
    """curves.json (every record, accuracies as fractions), curves.md, curves_time.png."""
    out_dir = Path(out_dir)
    payload = {"meta": meta, "records": records}
    with atomic_write(out_dir / "curves.json", mode="w") as f:
        f.write(json.dumps(payload, indent=1, default=str))
    lines = [
        f"# Accuracy at each budget: {meta.get('title') or meta.get('experiment')}",
        "",
        "Budgets in BP epochs. Every run: WSD learning rate (constant, then a decay over the "
        "last part of its own length), branched from one constant-LR trunk per (row, seed). "
        "Test accuracy (%) of the epoch chosen on validation, mean ± std (seeds).",
        "",
    ]
    if any(r.get("picked_before_decay") for r in records):
        lines += [
            f"{BEFORE_DECAY}: for at least one seed the epoch chosen on validation ended before "
            "that run's decay began: it was best in its constant phase and the decay never got "
            "back there (its later epochs overfit, or the constant rate is too high for that "
            "length; the run's training loss tells which).",
            "",
        ]
    best = best_within(records)  # every model's, once
    for model in sorted({r["model"] for r in records}):
        budgets = sorted({r["budget_epochs"] for r in records if r["model"] == model})
        lines += [
            f"## {model}",
            "",
            "### Equal epochs (each row's own epochs at its own batch)",
            "",
        ]
        lines += _table(records, model, "equal_epochs", budgets)
        lines += _gap_table(records, model, budgets)
        timed = [r for r in records if r["model"] == model and r["equal_time"]]
        if any(r["method"] != "bp" for r in timed) and any(r["method"] == "bp" for r in timed):
            k = max(r["devices"] for r in timed)
            lines += [
                "",
                f"### Equal simulated time on {k} devices (budget = BP's one-device time)",
                "",
            ]
            lines += _table(records, model, "equal_time", budgets)
            lines += [
                "",
                "#### The same, each seed's best run within the time (its budget <= B with the "
                "best validation accuracy)",
                "",
            ]
            lines += _table(best, model, "equal_time", budgets)
            lines += [
                "",
                "| local contender | crossover budget (>= every BP contender) | "
                "the same, best run within the time |",
                "|---|---|---|",
            ]
            for c in sorted({r["contender"] for r in timed if r["method"] != "bp"}):
                lines.append(
                    f"| {c} | {crossover(records, model, c)} | {crossover(best, model, c)} |"
                )
            lines += time_to_bp(records, model)
        lines.append("")
    lines += ["```", json.dumps(meta, indent=1, default=str), "```"]
    with atomic_write(out_dir / "curves.md", mode="w") as f:
        f.write("\n".join(lines) + "\n")
    plot_time_curves(records, out_dir / "curves_time.png")


def plot_time_curves(records: list[dict], path: Path) -> None:
    """Test accuracy against simulated time (log x), one line per contender, ± band."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plots are optional
        return
    models = sorted({r["model"] for r in records})
    if not models:
        return
    fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 4.5), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        cells = by_cell([r for r in records if r["model"] == model])
        for c in dict.fromkeys(r["contender"] for r in records if r["model"] == model):
            pts = sorted(
                (
                    sum(r["sim_seconds"] for r in rs) / len(rs),
                    *mean_std([100 * r["test_acc"] for r in rs]),
                )
                for (_, cc, _), rs in cells.items()
                if cc == c
            )
            xs, ms, ss = zip(*pts, strict=True)
            style = "--" if "equal epochs" in c else "-"
            ax.plot(xs, ms, style, marker="o", label=c)
            ax.fill_between(
                xs,
                [m - (0 if math.isnan(s) else s) for m, s in zip(ms, ss, strict=True)],
                [m + (0 if math.isnan(s) else s) for m, s in zip(ms, ss, strict=True)],
                alpha=0.2,
            )
        ax.set_xscale("log")
        ax.set_xlabel("simulated training time (s, log)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(model)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


__all__ = [
    "BEFORE_DECAY",
    "CURVE_FIELDS",
    "best_within",
    "crossover",
    "gap_trend",
    "gaps",
    "picked_before_decay",
    "plot_time_curves",
    "time_to_bp",
    "write_budget_report",
]
