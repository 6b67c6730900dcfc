"""Accuracy at many training budgets for about the cost of the longest: ``scpl experiment NAME
--budgets 1,2,5,10``.

A WSD learning rate (warm-up, stable, decay; Hägele et al. 2024) is constant until the last
``--decay-fraction`` of a run, so a run of T steps and a run of T' > T steps compute the same
updates up to T's decay start. Per (model, row, seed) one *trunk* run trains the constant phase
once and keeps its state where each budget's decay starts (one step before it: the LR the
checkpoint stores for the next update is then still the constant one); each budget *branches*
from there and decays over its own last steps. Every budget's result is bitwise the result of a
fresh ``--lr-schedule wsd --train-steps T`` run (``tests/test_budgets.py``), at about
0.8 x the longest run + 0.2 x the sum of all budgets.

Budgets are in BP epochs (one epoch of BP at its batch). Each row of the experiment gets them
as *equal epochs* (its own epochs at its own batch: equal steps when batches match); with
``--time-to-accuracy --devices-sim K`` the BP pipeline and every local method also get them as
*equal simulated time* on K devices: budget x BP's one-device epoch time / the contender's
simulated step time, in its own steps (:mod:`scpl.studies.time_to_accuracy` prices the steps).

Work runs budget by budget (all seeds and rows of the smallest budget first), so an
interrupted study has its small budgets done; every finished run is appended to
``budget_runs.jsonl`` and the tables are rewritten at once. A run is reused only if its
settings are the ones asked for; an interrupted trunk or branch resumes from its checkpoint.
Writes ``curves.json`` (one record per model, dataset, contender, seed, budget), ``curves.md``
(equal-epochs and equal-time tables, the crossover budget) and ``curves_time.png``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from scpl.atomic import atomic_write
from scpl.errors import ConfigError
from scpl.parallel.base import wsd_decay_start
from scpl.report.budgets import picked_before_decay, write_budget_report
from scpl.studies.experiment import (
    LEGACY_VALUES,
    computation_key,
    newest_checkpoint,
    pin_threads,
    read_jsonl,
    resolve_experiment,
    run_meta,
    select_rows,
    slug,
)
from scpl.training.checkpoint import branch_point_path, checkpoint_path, load_checkpoint
from scpl.training.config import TrainConfig, resume_safe
from scpl.training.recipes import make_config


def parse_budgets(text: str, trials: int) -> list[tuple[float, int]]:
    """``"1,2,5,10@1"`` -> [(1, trials), (2, trials), (5, trials), (10, 1)]: budgets in BP
    epochs, each with the number of seeds it gets (``@N``; default ``--trials``)."""
    out = []
    for part in text.split(","):
        b, _, n = part.strip().partition("@")
        try:
            budget, seeds = float(b), int(n) if n else trials
        except ValueError:
            raise ConfigError(
                f"--budgets {text!r}: use comma-separated BP epochs, each optionally @SEEDS, "
                "e.g. 1,2,5,10@1"
            ) from None
        if not budget > 0 or seeds < 1:
            raise ConfigError(f"--budgets {text!r}: budgets must be > 0 and seeds >= 1")
        out.append((budget, min(seeds, trials)))
    return sorted(out)


def branch_step(total: int, decay_fraction: float) -> int:
    """Where a WSD run of ``total`` steps branches from the trunk: one step before its decay
    starts (0: it shares nothing with the trunk and trains from scratch)."""
    return max(0, wsd_decay_start(total, decay_fraction) - 1)


@dataclass
class Line:
    """One contender of the study: a row trained at a speed (steps per BP-epoch of time)."""

    label: str
    row: str
    method: str
    steps_per_budget: float
    """Its training steps per budget unit (one BP epoch)."""
    sec_per_step: float
    """Simulated seconds of one of its steps (on its devices)."""
    equal_time: bool
    """Its budget is BP's one-device time (else: equal epochs)."""
    equal_epochs: bool
    """Its budget is epochs at its own batch."""
    devices: int = 1
    schedule: str = ""

    def steps(self, budget: float) -> int:
        return max(1, round(budget * self.steps_per_budget))


def trunk_key(cfg: TrainConfig) -> str:
    """What a trunk computes, whatever its length (budgets of one trunk differ only in it)."""
    return computation_key(
        dataclasses.asdict(dataclasses.replace(cfg, train_steps=0, epochs=1, lr_schedule="wsd"))
    )


def train_branches(
    cfg: TrainConfig, totals: list[int], root: Path, recipe: str, planned=(), echo=print
) -> dict[int, dict]:
    """Train WSD runs of every length in ``totals`` (steps) from one trunk in ``root/trunk``;
    return each length's summary (its folder is ``root/steps-<T>``). ``planned``: lengths of
    later calls, whose branch points the trunk keeps too."""
    from scpl.training.loop import train

    root = Path(root)
    base = branch_base(cfg)
    frac = base.decay_fraction
    points = sorted({branch_step(t, frac) for t in {*totals, *planned}} - {0})
    out: dict[int, dict] = {}
    for total in sorted(totals):
        run_dir, want = branch_run(base, root, total)
        key = computation_key(dataclasses.asdict(want))
        summary = finished_summary(run_dir, key)
        if summary is None:
            check_trunk_settings(root / "trunk", base)
            p = branch_step(total, frac)
            if not _has_checkpoint(run_dir, want):
                if p == 0:  # nothing to share: a fresh run
                    want = dataclasses.replace(want, overwrite=True)
                    summary = train(want, recipe=recipe, echo=_quiet)
                    out[total] = summary
                    continue
                _advance_trunk(base, root / "trunk", p, max(points), points, recipe, echo)
                _seed_branch(root / "trunk", p, run_dir)
            echo(f"  budget run of {total} steps (branch at step {p})")
            summary = train(dataclasses.replace(want, resume=str(run_dir)), recipe, _quiet)
        out[total] = summary
    return out


def branch_base(cfg: TrainConfig) -> TrainConfig:
    """What every trunk and branch of ``cfg`` trains (a WSD run, threads pinned)."""
    return dataclasses.replace(pin_threads(cfg), lr_schedule="wsd", progress=False, resume=None)


def branch_run(base: TrainConfig, root: Path, total: int) -> tuple[Path, TrainConfig]:
    """The folder and config of the WSD run of ``total`` steps under ``root``."""
    run_dir = Path(root) / f"steps-{total}"
    return run_dir, dataclasses.replace(base, train_steps=total, out=str(run_dir), overwrite=False)


def check_trunk_settings(trunk: Path, base: TrainConfig) -> None:
    """Refuse a (row, seed) folder whose trunk trained other settings (say, an earlier
    ``--set lr=...`` into the same ``--out``): its branch points must not seed these runs, and
    its finished runs must not be deleted to make room."""
    ck = newest_checkpoint(trunk, tidy=False)  # read only: --plan may run beside the study
    if ck is None:
        points = sorted((trunk / "branches").glob("ckpt-*.rank0.pt"))
        ck = load_checkpoint(points[0]) if points else None
    if ck is None or saved_trunk_key(ck) == trunk_key(base):
        return
    saved = LEGACY_VALUES | ck.get("config", {})
    now, default = dataclasses.asdict(base), dataclasses.asdict(TrainConfig())
    length = ("train_steps", "epochs", "lr_schedule")
    diff = [
        f"{k} {saved.get(k, default[k])!r} -> {now[k]!r}"
        for k in now
        if not resume_safe(k) and k not in length and saved.get(k, default[k]) != now[k]
    ]
    raise ConfigError(
        f"{trunk.parent} holds this row's runs with other settings ({'; '.join(diff) or '?'}); "
        "a study folder keeps one setting per row and seed: pass another --out for these (or "
        "delete that folder)"
    )


def _advance_trunk(base, trunk: Path, point: int, last: int, points, recipe, echo) -> None:
    """Train the trunk (a WSD run whose decay starts after ``last``) until its state after
    ``point`` is kept, resuming from the newest usable state."""
    from scpl.training.loop import train

    if branch_point_path(trunk, point, 0).exists():
        return
    # A trunk of ``last + 2`` steps branches at ``last``: its constant phase covers every point.
    length = _length_for(last, base.decay_fraction)
    cfg = dataclasses.replace(base, train_steps=length, out=str(trunk))
    key = trunk_key(cfg)
    start = trunk_state(trunk, key)
    if start is not None and start > point:
        echo(f"  trunk is at step {start}: recomputing its state at step {point}")
        _fill_point(cfg, trunk, point, recipe)
        return
    echo(
        f"  trunk: training to step {point}"
        if start is None
        else f"  trunk: resuming at step {start} to step {point}"
    )
    run = (
        dataclasses.replace(cfg, overwrite=True)
        if start is None
        else dataclasses.replace(cfg, resume=str(trunk))
    )
    train(run, recipe, _quiet, branch_steps=tuple(points), stop_step=point)
    if not branch_point_path(trunk, point, 0).exists():
        raise ConfigError(f"trunk {trunk} did not reach step {point}; delete it and run again")


def _length_for(point: int, frac: float) -> int:
    """The shortest WSD run whose branch step is at least ``point``."""
    n = point + 2
    while branch_step(n, frac) < point:
        n += 1
    return n


def trunk_state(trunk: Path, key: str, tidy: bool = True) -> int | None:
    """The step the trunk resumes from (None: start afresh); ``tidy=False``: read only."""
    ck = newest_checkpoint(trunk, tidy)
    if ck is None or saved_trunk_key(ck) != key:
        return None  # none, or another computation: never reuse it
    return ck["step"]


def saved_trunk_key(ck: dict) -> str:
    """The trunk key of the run a checkpoint was saved by (fields it predates take the values
    such runs computed with: :func:`computation_key`)."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    saved = {k: v for k, v in ck.get("config", {}).items() if k in names}
    return computation_key(saved | {"train_steps": 0, "epochs": 1, "lr_schedule": "wsd"})


def kept_points(trunk: Path) -> list[int]:
    """The steps whose state the trunk keeps for branches (sorted)."""
    return sorted(
        int(p.name.split("-")[1].split(".")[0])
        for p in (trunk / "branches").glob("ckpt-*.rank0.pt")
    )


def _fill_point(cfg: TrainConfig, trunk: Path, point: int, recipe: str) -> None:
    """Recompute the trunk's state after ``point`` when the trunk is already past it (a budget
    added later): from the newest kept state before it, in a scratch folder, so the trunk
    keeps its progress."""
    from scpl.training.loop import train

    earlier = [s for s in kept_points(trunk) if s < point]
    fill = trunk.parent / "trunk-fill"
    if fill.exists():
        shutil.rmtree(fill)
    cfg = dataclasses.replace(cfg, out=str(fill))
    if earlier:
        _seed_branch(trunk, earlier[-1], fill)
        cfg = dataclasses.replace(cfg, resume=str(fill))
    else:
        cfg = dataclasses.replace(cfg, overwrite=True)
    train(cfg, recipe, _quiet, branch_steps=(point,), stop_step=point)
    shutil.copy2(branch_point_path(fill, point, 0), branch_point_path(trunk, point, 0))
    shutil.rmtree(fill)


def _seed_branch(trunk: Path, point: int, run_dir: Path) -> None:
    """Start a branch folder from the trunk's state after ``point``."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    (run_dir / "checkpoints").mkdir(parents=True)
    shutil.copy2(branch_point_path(trunk, point, 0), checkpoint_path(run_dir, point, 0))


def finished_summary(run_dir: Path, key: str) -> dict | None:
    path = run_dir / "summary.json"
    if not path.exists():
        return None
    s = json.loads(path.read_text())
    return s if computation_key(s.get("config", {})) == key else None


def _has_checkpoint(run_dir: Path, want: TrainConfig) -> bool:
    """Does a branch folder hold a checkpoint of ``want``'s computation? (A branch's
    checkpoints hold the trunk's length until its first save of its own.)"""
    ck = newest_checkpoint(run_dir)
    return ck is not None and saved_trunk_key(ck) == trunk_key(want)


def _quiet(*args, **kwargs) -> None:
    pass


def study_lines(exp, name, model, labels, values, num_devices) -> tuple[list[Line], dict]:
    """Every contender of ``model`` (see the module docstring) and the configs of its rows."""
    from scpl.data import load_dataset
    from scpl.studies.time_to_accuracy import METHOD_NAMES, contenders

    base = make_config(exp.recipe, {**values, "method": "bp"})
    data = load_dataset(base.dataset, base.data_dir, base.download, base.val_fraction, base.seed)

    def spe(cfg: TrainConfig) -> int:
        full = max(1, len(data.train) // cfg.batch_size)
        return min(full, cfg.max_steps) if cfg.max_steps else full

    k = num_devices or base.stages
    bp = contenders(base, ["bp"], k)
    t_bp1, bp_epoch_steps = bp[0].sec_per_step, spe(base)
    lines: list[Line] = []
    configs = {}
    for label in labels:
        row_values = {**values, **exp.rows[label]}
        cfg = make_config(exp.recipe, row_values)
        configs[label] = cfg
        method = cfg.method
        cands = contenders(cfg, [method], k, lambda m, cfg=cfg: cfg)
        own = cands[0] if method == "bp" else cands[-1]
        pretty = label if label not in METHOD_NAMES else METHOD_NAMES[label]
        where = "1 device" if method == "bp" else f"{k} devices"
        same = own.sec_per_step * spe(cfg) == t_bp1 * bp_epoch_steps
        lines.append(
            Line(
                f"{pretty}, {where}" + ("" if same or not num_devices else ", equal epochs"),
                label,
                method,
                spe(cfg),
                own.sec_per_step,
                equal_time=same,
                equal_epochs=True,
                devices=own.devices,
                schedule=own.schedule,
            )
        )
        if not num_devices:
            continue
        timed = [c for c in cands if c.devices > 1] if method == "bp" else [own]
        for c in timed:
            if same and c is own:
                continue
            lines.append(
                Line(
                    c.label if method == "bp" else f"{pretty}, {k} devices, equal time",
                    label,
                    method,
                    t_bp1 * bp_epoch_steps / c.sec_per_step,
                    c.sec_per_step,
                    equal_time=True,
                    equal_epochs=False,
                    devices=c.devices,
                    schedule=c.schedule,
                )
            )
    return lines, configs


@dataclass
class Cell:
    """One (model, contender, seed, budget) of a study: a WSD run of ``total`` steps."""

    model: str
    line: Line
    seed: int
    budget: float
    cfg: TrainConfig
    root: Path
    """The (row, seed)'s folder: its trunk and one ``steps-<T>`` branch per length."""
    total: int
    need: set[int]
    """Every length the (row, seed)'s trunk will branch, so it keeps all their points."""


def model_cells(
    exp, name, model, plan, labels, overrides, num_devices, out_dir
) -> tuple[list[Line], list[Cell]]:
    """The contenders of ``model`` and its cells in training order: budget by budget (all
    seeds and rows of the smallest budget first); within a budget, the lines that train the
    budget's own epochs (all seeds) before the equal-time lines, which take 2-4x the steps:
    the equal-steps comparisons arrive first, at every seed."""
    values = {**exp.overrides, **exp.per_model.get(model, {}), **(overrides or {})}
    values.update(model=model, lr_schedule="wsd")
    if num_devices:
        values["stages"] = num_devices
    lines, configs = study_lines(exp, name, model, labels, values, num_devices)
    need: dict[tuple[str, int], set[int]] = {}
    for b, n in plan:
        for ln in lines:
            for seed in range(n):
                need.setdefault((ln.row, seed), set()).add(ln.steps(b))
    cells = [
        Cell(
            model,
            ln,
            seed,
            b,
            dataclasses.replace(configs[ln.row], seed=seed),
            Path(out_dir) / "runs" / f"{model}-{slug(ln.row)}-s{seed}",
            ln.steps(b),
            need[(ln.row, seed)],
        )
        for b, n in plan
        for timed in (False, True)
        for seed in range(n)
        for ln in lines
        if (ln.equal_time and not ln.equal_epochs) == timed
    ]
    return lines, cells


def resolve_study(name: str, trials: int, budgets: str, methods, rows):
    """(experiment, [(budget, seeds)], row labels) of a budget study's arguments."""
    exp = resolve_experiment(name)
    if trials < 1:
        raise ConfigError(f"--trials {trials} must be >= 1")
    return exp, parse_budgets(budgets, trials), select_rows(exp, methods, rows)


def run_budget_study(
    name: str,
    trials: int,
    out_dir: Path,
    budgets: str,
    num_devices: int | None = None,
    overrides: dict | None = None,
    methods: tuple[str, ...] | None = None,
    models: tuple[str, ...] | None = None,
    rows: tuple[str, ...] | None = None,
    echo=print,
) -> list[dict]:
    """Train every (model, row, seed) of experiment ``name`` at every budget (see the module
    docstring); write curves.json/.md/.png to ``out_dir``; return the curve records."""
    exp, plan, labels = resolve_study(name, trials, budgets, methods, rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs_path = out_dir / "budget_runs.jsonl"
    meta = run_meta(name, exp, trials) | {"budgets": budgets, "devices_sim": num_devices}
    # Cells an earlier invocation finished and this one does not train (other rows, seeds or
    # budgets) stay in the tables: a study grows over invocations. A cell trained again
    # replaces its record; one whose run folder is gone is dropped.
    records = read_records(runs_path)
    for model in models or exp.models:
        lines, cells = model_cells(exp, name, model, plan, labels, overrides, num_devices, out_dir)
        echo(
            f"budgets {name} {model}: "
            + "; ".join(f"{ln.label}: {ln.steps_per_budget:.1f} steps/budget" for ln in lines)
        )
        for cell in cells:
            ln, seed, b, cfg, total = cell.line, cell.seed, cell.budget, cell.cfg, cell.total
            echo(f"budgets {name}: {model} {ln.label} seed {seed} budget {b:g} ({total} steps)")
            s = train_branches(cfg, [total], cell.root, exp.recipe, cell.need, echo)[total]
            rec = {
                "model": model,
                "dataset": cfg.dataset,
                "contender": ln.label,
                "row": ln.row,
                "method": ln.method,
                "seed": seed,
                "budget_epochs": b,
                "steps": total,
                "sim_seconds": total * ln.sec_per_step,
                "test_acc": s["test_acc"],
                "val_acc": s["best_val_acc"],
                "picked_before_decay": picked_before_decay(s, run_epochs(s["out_dir"])),
                "width": cfg.width,
                "devices": ln.devices,
                "schedule": ln.schedule,
                "equal_time": ln.equal_time,
                "equal_epochs": ln.equal_epochs,
                "train_seconds": s.get("train_seconds"),
                "run": s["out_dir"],
            }
            records = [
                r
                for r in records
                if (r["model"], r["contender"], r["seed"], r["budget_epochs"])
                != (model, ln.label, seed, b)
            ] + [rec]
            # A finished run is read back, not retrained.
            with atomic_write(runs_path, mode="w") as f:
                f.write("".join(json.dumps(r) + "\n" for r in records))
            write_budget_report(records, out_dir, meta)
    return records


def run_epochs(run_dir: str | Path) -> list[dict]:
    """A run's epoch records (``step``, ``val_acc``, ...) from its metrics.jsonl."""
    return [r for r in read_jsonl(Path(run_dir) / "metrics.jsonl") if r.get("kind") == "epoch"]


def read_records(path: Path) -> list[dict]:
    """The records of ``budget_runs.jsonl`` whose run folders still hold their summary."""
    out = []
    for r in read_jsonl(path):
        spath = Path(r.get("run", "")) / "summary.json"
        if not spath.exists():
            continue
        summary = json.loads(spath.read_text())
        r.setdefault("width", summary["config"].get("width"))  # recorded before records had it
        r["picked_before_decay"] = picked_before_decay(summary, run_epochs(r["run"]))
        out.append(r)
    return out


__all__ = ["Line", "parse_budgets", "run_budget_study", "train_branches"]
