"""What a budget study has done and what it still has to train: ``scpl experiment NAME
--budgets ... --plan``.

A converged study runs for hours or days and across interruptions, so before (re)starting one
a user wants to know what is left and roughly how long it takes. This walks the same cells, in
the same order, as :func:`scpl.studies.budgets.run_budget_study` and, without training
anything (nor touching a file: it may run beside the study), counts the steps each one still
needs: none for a finished run; the rest of a branch that holds a checkpoint of its own;
otherwise the trunk's advance to the branch point (shared by every line and budget of one
(row, seed), so counted once; the trunk keeps each branch point it passes) plus the branch's
own decay. Hours come from the speed this machine measured on the contender's finished runs
(``train_seconds / steps``); a contender with none yet shows "?".
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from scpl.studies.budgets import (
    Cell,
    branch_base,
    branch_run,
    branch_step,
    check_trunk_settings,
    finished_summary,
    kept_points,
    model_cells,
    read_records,
    resolve_study,
    saved_trunk_key,
    trunk_key,
    trunk_state,
)
from scpl.studies.experiment import (
    computation_key,
    newest_checkpoint,
)


class _Walk:
    """What the walk has planned so far: how far each trunk will be, the branch points it will
    hold, and the branch runs already counted."""

    def __init__(self) -> None:
        self.at: dict[Path, int] = {}
        self.points: dict[Path, set[int]] = {}
        self.counted: set[Path] = set()

    def trunk(self, cell: Cell, base) -> tuple[int, set[int]]:
        if cell.root not in self.at:
            trunk = cell.root / "trunk"
            self.at[cell.root] = trunk_state(trunk, trunk_key(base), tidy=False) or 0
            self.points[cell.root] = set(kept_points(trunk))
        return self.at[cell.root], self.points[cell.root]


def cell_work(cell: Cell, walk: _Walk) -> tuple[int, str]:
    """(steps still to train, what they are) for ``cell``, given what the cells before it in
    the walk will have trained (``walk``, updated)."""
    base = branch_base(cell.cfg)
    run_dir, want = branch_run(base, cell.root, cell.total)
    if run_dir in walk.counted:
        return 0, "counted above"
    walk.counted.add(run_dir)
    if finished_summary(run_dir, computation_key(dataclasses.asdict(want))) is not None:
        return 0, "done"
    check_trunk_settings(cell.root / "trunk", base)
    ck = newest_checkpoint(run_dir, tidy=False)  # read only: the study may be running
    if ck is not None and saved_trunk_key(ck) == trunk_key(want) and ck["step"] > 0:
        return cell.total - ck["step"], f"branch resumes at step {ck['step']}"
    frac = base.decay_fraction
    p = branch_step(cell.total, frac)
    if p == 0:
        return cell.total, "fresh run (shares nothing with the trunk)"
    at, points = walk.trunk(cell, base)
    if p in points:
        advance, how = 0, "trunk holds the branch point"
    elif p > at:
        # The trunk keeps every branch point of its (row, seed) that it passes on the way.
        advance, how = p - at, f"trunk {at} -> {p}"
        walk.at[cell.root] = p
        points |= {q for q in (branch_step(t, frac) for t in cell.need) if at < q <= p}
    else:  # the trunk passed the point without keeping it: recomputed from the kept one before
        earlier = max([q for q in points if q < p], default=0)
        advance, how = p - earlier, f"trunk state recomputed {earlier} -> {p}"
        points.add(p)
    return advance + cell.total - p, f"{how}, branch {p} -> {cell.total}"


def _speeds(records: list[dict]) -> dict[tuple[str, str], float]:
    """Seconds per step of each (model, contender), the slowest its finished runs measured:
    runs branched before 2026-12-05 under-report (a save inside an epoch did not count that
    epoch's time so far), the more so the shorter the budget."""
    per: dict[tuple[str, str], float] = {}
    for r in records:
        if r.get("train_seconds") and r.get("steps"):
            key = (r["model"], r["contender"])
            per[key] = max(per.get(key, 0.0), r["train_seconds"] / r["steps"])
    return per


def plan_budget_study(
    name: str,
    trials: int,
    out_dir: Path,
    budgets: str,
    num_devices: int | None = None,
    overrides: dict | None = None,
    methods: tuple[str, ...] | None = None,
    models: tuple[str, ...] | None = None,
    rows: tuple[str, ...] | None = None,
) -> list[dict]:
    """One record per cell of the study (the arguments of ``run_budget_study``), in training
    order: its steps, the steps still to train, what they are and the estimated seconds."""
    exp, plan, labels = resolve_study(name, trials, budgets, methods, rows)
    speeds = _speeds(read_records(Path(out_dir) / "budget_runs.jsonl"))
    walk = _Walk()
    out = []
    for model in models or exp.models:
        _, cells = model_cells(exp, name, model, plan, labels, overrides, num_devices, out_dir)
        for cell in cells:
            left, what = cell_work(cell, walk)
            speed = speeds.get((model, cell.line.label))
            out.append(
                {
                    "model": model,
                    "contender": cell.line.label,
                    "seed": cell.seed,
                    "budget_epochs": cell.budget,
                    "steps": cell.total,
                    "steps_left": left,
                    "work": what,
                    "seconds_left": None if speed is None else left * speed,
                }
            )
    return out


def format_plan(cells: list[dict]) -> str:
    """Markdown: per budget, cells done and steps/hours left; then the cells still to train."""

    def hours(rows: list[dict]) -> str:
        if any(r["seconds_left"] is None and r["steps_left"] for r in rows):
            known = sum(r["seconds_left"] or 0 for r in rows)
            return f">= {known / 3600:.1f}" if known else "?"
        return f"{sum(r['seconds_left'] or 0 for r in rows) / 3600:.1f}"

    lines = [
        "| model | budget | cells done | steps left | hours left (this machine) |",
        "|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, float], list[dict]] = {}
    for c in cells:
        groups.setdefault((c["model"], c["budget_epochs"]), []).append(c)
    for (model, b), rows in groups.items():
        done = sum(r["steps_left"] == 0 for r in rows)
        left = sum(r["steps_left"] for r in rows)
        lines.append(f"| {model} | {b:g} | {done}/{len(rows)} | {left} | {hours(rows)} |")
    total = sum(c["steps_left"] for c in cells)
    lines.append(
        f"| all | | {sum(c['steps_left'] == 0 for c in cells)}/{len(cells)} | "
        f"{total} | {hours(cells)} |"
    )
    todo = [c for c in cells if c["steps_left"]]
    if todo:
        lines += ["", "Still to train, in order:", ""]
        lines += [
            f"- {c['model']} {c['contender']} seed {c['seed']} budget {c['budget_epochs']:g} "
            f"({c['steps']} steps): {c['steps_left']} steps left ({c['work']})"
            for c in todo
        ]
    return "\n".join(lines) + "\n"
