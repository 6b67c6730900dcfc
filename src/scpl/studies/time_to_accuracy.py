"""Accuracy per unit of wall time on K devices: ``scpl experiment NAME --time-to-accuracy
--devices-sim K``.

What users buy SCPL for is accuracy per second on K devices, so this puts every method's
validation curve on a time axis:

1. **Step time.** Priced as ``scpl bench --targets`` prices it (:mod:`scpl.perf.pricing`): the
   FLOP cost model's op costs of one training step (F, L, B from FLOPs, U from the parameters
   each stage updates, activation and gradient transfers; the run's head and batch of 2N inputs
   under two-view augmentation) through the discrete-event simulator: BP on one device (every
   op in a row), the best BP pipeline on K devices (``nmp``, ``gpipe`` and ``pipedream-1f1b`` at
   every m up to 4K that divides the batch, on BP's own best split: the fastest steady state),
   and each local method on K devices (``scpl`` schedule, on the split its runs train, with
   ``--partition auto`` resolved as training resolves it). Only ratios of step times matter;
   they are reported as seconds of the model device (:data:`scpl.perf.costmodel.DEVICE`).
2. **Equal budget.** The budget is BP's one-device run: its steps times its step time. Because a
   cosine schedule ties accuracy to the run's own length, the accuracy at equal wall time comes
   from runs *whose schedule ends at that budget*: a contender s times faster per step than BP
   on one device trains for s x BP's steps (same epochs, more steps per epoch), never from
   reading a longer run's curve. Every contender uses the experiment's shared settings (same
   batch, augmentation, width); a row's own overrides other than its method are not used.
3. **Tables.** Per contender: simulated seconds per step, speed-up, steps at the budget, test
   accuracy at the budget (mean ± std over seeds; epoch chosen on validation), and the simulated
   time at which its validation curve (one point per epoch) first reaches each accuracy level.

Writes ``time_to_accuracy.md`` / ``.csv`` / ``.json`` next to the experiment's tables.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from scpl.errors import ConfigError
from scpl.perf.pricing import SIM_BATCHES, simulated_step  # noqa: F401  (re-exported)
from scpl.report.accuracy import mean_std
from scpl.studies.experiment import resolve_experiment, run_meta, train_runs
from scpl.training.config import TrainConfig
from scpl.training.recipes import make_config

LOCAL_METHODS = ("early-exit", "al", "scpl")


@dataclass
class Contender:
    """One way of spending the budget: a method on some devices with a schedule."""

    label: str
    method: str
    schedule: str
    devices: int
    micro: int
    sec_per_step: float
    """Simulated seconds per training step."""
    partition: list[int] | None = None
    """The split it is priced on (units per stage)."""


def _shape(cfg: TrainConfig):
    """(input shape, views, model kwargs, classes) of ``cfg``'s data as the pricing sees it."""
    from scpl.data import dataset_spec
    from scpl.data.augment import num_views

    spec = dataset_spec(cfg.dataset)
    if spec.kind == "image":
        return tuple(spec.input_shape), num_views(cfg.augment), {}, spec.num_classes or 2
    kw = {"vocab_size": cfg.vocab_size, "embed_dim": cfg.embed_dim}
    return (cfg.max_len or 64,), 1, kw, spec.num_classes or 2


def _method_options(cfg) -> dict:
    """The run's MethodConfig fields other than the head and projection (passed on their own)."""
    import dataclasses

    from scpl.training.build import method_config

    opts = dataclasses.asdict(method_config(cfg))
    return {k: v for k, v in opts.items() if k not in ("head", "proj_dim")}


def run_profile(cfg: TrainConfig, method: str):
    """The FLOP cost model's profile of ``cfg``'s model under ``method`` (its head and
    projection), at the batch the stages really see (2N inputs under two views)."""
    from scpl.methods import METHODS
    from scpl.perf.costmodel import profile_model

    shape, views, kw, classes = _shape(cfg)
    local = METHODS.get(method).local
    return profile_model(
        cfg.model,
        method if local else "scpl",  # BP's costs use the body and the classifier only
        shape,
        classes,
        cfg.width,
        cfg.batch_size * views,
        cfg.head,
        cfg.proj_dim,
        cfg.stages,
        kw,
        seed=cfg.seed,
        # Every method option (SCPL's extra classifiers, similarity losses, lookahead depth,
        # AL's bridge input, ...): priced as trained.
        method_options=_method_options(cfg) if local else None,
    )


def run_partition(cfg: TrainConfig, method: str) -> list[int]:
    """The split ``cfg``'s runs train: ``--partition`` as given, the model's default, or for
    ``auto`` the split the training loop resolves (same cost model and arguments)."""
    from scpl.models import build_model

    shape, _, kw, classes = _shape(cfg)
    if (cfg.partition or "").strip() == "auto":
        from scpl.perf.balance import auto_partition

        return auto_partition(
            cfg.model,
            cfg.stages,
            cfg.balance_by,
            method=method,
            head=cfg.head,
            input_shape=shape,
            num_classes=classes,
            width=cfg.width,
            batch_size=cfg.batch_size,
            proj_dim=cfg.proj_dim,
            model_kwargs=kw,
        )
    given = cfg.partition_list()
    if given is not None:
        return given
    return list(build_model(cfg.model, shape, classes, cfg.stages, cfg.width, **kw).partition)


def run_costs(cfg: TrainConfig, method: str):
    """Mini-batch op costs {stage: {op: s}} of ``cfg``'s model under ``method`` on the split
    its runs train (F, L, B, U and transfers of the FLOP cost model)."""
    from scpl.methods import METHODS
    from scpl.perf.costmodel import stage_op_costs

    local = METHODS.get(method).local
    return stage_op_costs(run_profile(cfg, method), run_partition(cfg, method), local)


def contenders(
    cfg: TrainConfig, methods: list[str], num_devices: int, cfg_of=None
) -> list[Contender]:
    """BP on one device, the fastest BP pipeline on K devices and every local method of
    ``methods`` on K devices, with their simulated step times (``cfg.stages`` must be K),
    priced by :mod:`scpl.perf.pricing` (the cost function of ``scpl bench --targets``).

    ``cfg_of(method)`` gives the config a method's runs really use (its own run defaults, e.g.
    SCPL's light head, filled in); by default every method is priced with ``cfg``."""
    from scpl.perf.pricing import best_bp_pipeline, local_pipeline, one_device

    shape, views, _, _ = _shape(cfg)
    inputs = cfg.batch_size * views
    bp = run_profile(cfg, "bp")
    one = one_device(bp)
    out = [Contender("BP, 1 device", "bp", "one device", 1, 1, one.sec_per_step, one.partition)]
    if num_devices > 1:
        b = best_bp_pipeline(bp, num_devices, inputs)
        name = b.schedule if b.micro == 1 else f"{b.schedule}, m={b.micro}"
        label = f"BP, best pipeline ({name}), {num_devices} devices"
        out.append(
            Contender(label, "bp", b.schedule, num_devices, b.micro, b.sec_per_step, b.partition)
        )
    for method in LOCAL_METHODS:
        if method in methods:
            own = cfg_of(method) if cfg_of is not None else cfg
            p = local_pipeline(run_profile(own, method), run_partition(own, method))
            label = f"{METHOD_NAMES.get(method, method)}, {num_devices} devices"
            out.append(
                Contender(label, method, "scpl", num_devices, 1, p.sec_per_step, p.partition)
            )
    return out


METHOD_NAMES = {"early-exit": "Early Exit", "al": "AL", "scpl": "SCPL", "bp": "BP"}


def budget_rows(cands: list[Contender], epochs: int, steps: int, spe_full: int) -> dict[str, dict]:
    """Experiment rows that spend BP's one-device budget: each contender trains for
    budget / its step time steps over the same number of epochs (more steps per epoch; more
    epochs only when an epoch would run out of data)."""
    budget = steps * cands[0].sec_per_step
    rows = {}
    for c in cands:
        want = max(1, round(budget / c.sec_per_step))
        n_ep = max(epochs, math.ceil(want / spe_full))
        per = max(1, math.ceil(want / n_ep))
        rows[c.label] = {"method": c.method, "epochs": n_ep, "max_steps": per}
    return rows


def run_time_to_accuracy(
    name: str,
    trials: int,
    out_dir: Path,
    num_devices: int,
    overrides: dict | None = None,
    methods: tuple[str, ...] | None = None,
    models: tuple[str, ...] | None = None,
    levels: tuple[float, ...] | None = None,
    reuse: bool = True,
    echo=print,
) -> dict:
    """Train the equal-budget runs of experiment ``name`` (see the module docstring) and write
    time_to_accuracy.md/.csv/.json to ``out_dir``; return the result per model."""
    from scpl.data import load_dataset

    exp = resolve_experiment(name)
    if num_devices < 1:
        raise ConfigError(f"--devices-sim {num_devices} must be >= 1, e.g. 4")
    if trials < 1:
        raise ConfigError(f"--trials {trials} must be >= 1")
    default_method = make_config(exp.recipe).method
    row_methods = [r.get("method", default_method) for r in exp.rows.values()]
    wanted = [m for m in row_methods if methods is None or m in methods]
    if "bp" not in wanted:
        wanted = ["bp", *wanted]  # the budget is BP's
    result = {}
    for model in models or exp.models:
        values = {**exp.overrides, **exp.per_model.get(model, {}), **(overrides or {})}
        values.update(model=model, stages=num_devices)
        cfg = make_config(exp.recipe, {**values, "method": "bp"})
        data = load_dataset(cfg.dataset, cfg.data_dir, cfg.download, cfg.val_fraction, cfg.seed)
        spe_full = max(1, len(data.train) // cfg.batch_size)
        spe = min(spe_full, cfg.max_steps) if cfg.max_steps else spe_full
        # Each method is priced with the head, projection and lr its runs will really use.
        cands = contenders(
            cfg,
            wanted,
            num_devices,
            lambda m, values=values: make_config(exp.recipe, {**values, "method": m}),
        )
        rows = budget_rows(cands, cfg.epochs, spe * cfg.epochs, spe_full)
        sub = replace(exp, rows=rows, overrides={**exp.overrides, "stages": num_devices})
        echo(
            f"time-to-accuracy {name} {model}: "
            + "; ".join(f"{c.label} {c.sec_per_step * 1e3:.3g} ms/step" for c in cands)
        )
        runs = train_runs(sub, name, trials, out_dir, (model,), list(rows), overrides, reuse, echo)
        result[model] = summarise_budget(cands, runs, rows, levels)
    meta = run_meta(name, exp, trials) | {"devices_sim": num_devices}
    write_time_to_accuracy(result, out_dir, meta)
    return result


def summarise_budget(cands, runs, rows, levels) -> dict:
    """Per contender: step time, speed-up, steps, test accuracy (mean ± std) and the simulated
    time its validation curve first reaches each level (mean over seeds that reach it)."""
    by = {c.label: [r for r in runs if r["row"] == c.label] for c in cands}
    if levels is None:
        # Default levels: fractions of BP's best validation accuracy on one device.
        bp_best = [max(e["val_acc"] for e in r["epochs"]) for r in by[cands[0].label]]
        top = sum(bp_best) / len(bp_best) if bp_best else 0.0
        levels = tuple(round(f * top, 3) for f in (0.9, 0.95, 0.99))
    out = []
    for c in cands:
        rs = by[c.label]
        acc = mean_std([100 * r["test_acc"] for r in rs])
        reach = {}
        for lv in levels:
            times = []
            for r in rs:
                spe = r.get("steps_per_epoch") or rows[c.label]["max_steps"]
                hit = [e for e in r["epochs"] if e.get("val_acc", -1) >= lv]
                if hit:
                    times.append((hit[0]["epoch"] + 1) * spe * c.sec_per_step)
            reach[f"{lv:g}"] = {"seconds": sum(times) / len(times) if times else None}
            reach[f"{lv:g}"]["reached"] = f"{len(times)}/{len(rs)}"
        out.append(
            {
                **asdict(c),
                "speedup": cands[0].sec_per_step / c.sec_per_step,
                "steps": rows[c.label]["epochs"] * rows[c.label]["max_steps"],
                "test_acc": acc,
                "n": len(rs),
                "reach": reach,
            }
        )
    return {"levels": list(levels), "contenders": out}


def write_time_to_accuracy(result: dict, out_dir: Path, meta: dict) -> None:
    """time_to_accuracy.md (one table per model), .csv and .json."""
    k = meta["devices_sim"]
    lines = [
        f"# Time to accuracy on {k} simulated devices: {meta.get('title') or meta['experiment']}",
        "",
        "Step times: the FLOP cost model of `scpl bench --targets` (F, L, B, Adam updates, "
        "transfers; BP pipelines on BP's own best split, m up to 4K) through the pipeline "
        "simulator (relative units: seconds of the model device). Every row trains until BP's one-device "
        "budget is spent (its own schedule ends there). Accuracy: test, mean ± std over "
        f"{meta['trials']} seed(s), epoch chosen on validation. Time to level: simulated "
        "seconds until the validation accuracy first reaches it (mean over the seeds that do).",
        "",
    ]
    rows_csv = []
    for model, res in result.items():
        lv = [f"{x:g}" for x in res["levels"]]
        lines += [
            f"## {model}",
            "",
            "| contender | s/step | speed-up | steps | test acc (%) | "
            + " | ".join(f"time to val {x}" for x in lv)
            + " |",
            "|---|---|---|---|---|" + "---|" * len(lv),
        ]
        for c in res["contenders"]:
            cells = []
            for x in lv:
                r = c["reach"][x]
                cells.append(
                    "–" if r["seconds"] is None else f"{r['seconds']:.3g} ({r['reached']})"
                )
            m, s = c["test_acc"]
            lines.append(
                f"| {c['label']} | {c['sec_per_step']:.3g} | {c['speedup']:.2f}x | {c['steps']} "
                f"| {m:.2f} ± {s:.2f} | " + " | ".join(cells) + " |"
            )
            rows_csv.append(
                [model, c["label"], c["method"], c["schedule"], c["devices"], c["micro"]]
                + [f"{c['sec_per_step']:.6g}", f"{c['speedup']:.4f}", c["steps"]]
                + [f"{m:.4f}", f"{s:.4f}", c["n"]]
                + [c["reach"][x]["seconds"] for x in lv]
            )
        lines.append("")
    lines += ["```", json.dumps(meta, indent=1), "```"]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "time_to_accuracy.md").write_text("\n".join(lines) + "\n")
    with open(out_dir / "time_to_accuracy.csv", "w", newline="") as f:
        w = csv.writer(f)
        first = next(iter(result.values()), {"levels": []})
        w.writerow(
            ["model", "contender", "method", "schedule", "devices", "micro", "sec_per_step"]
            + ["speedup", "steps", "test_acc", "test_acc_std", "n"]
            + [f"time_to_{x:g}" for x in first["levels"]]
        )
        w.writerows(rows_csv)
    (out_dir / "time_to_accuracy.json").write_text(json.dumps(result, indent=1, default=str))


__all__ = [
    "Contender",
    "contenders",
    "run_costs",
    "run_time_to_accuracy",
    "simulated_step",
    "write_time_to_accuracy",
]
