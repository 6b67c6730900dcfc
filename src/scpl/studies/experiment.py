"""Trials, tables and curves: run a grid of (model, row) runs over N seeds, where a row is a
method or an ablation setting, and write

- ``table.md`` / ``table.csv``: test accuracy as mean ± std in the shape of the SCPL paper's
  Tables 6-8 (rows × models, † where a row beats BP), training vs inference parameters
  (Delog-SCL Table 5) and train/test seconds per epoch (Delog-SCL Table 7);
- ``curves.csv`` / ``curves.png``: test accuracy vs epoch per row (Delog-SCL Figures 4-5);
- ``runs.jsonl``: one record per run (resumable: finished runs are not repeated).

Each run's epoch is selected on the validation split; the test split only gives the number.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from scpl.errors import ConfigError
from scpl.provenance import git_commit, hardware, num_cpus
from scpl.training.config import TrainConfig, field_class
from scpl.training.recipes import RECIPES, make_config


@dataclass
class Experiment:
    """A grid of runs sharing one base recipe: rows × models × seeds."""

    recipe: str
    """Base recipe of every run."""
    models: tuple[str, ...]
    """Table columns."""
    rows: dict[str, dict]
    """Table rows: label -> config overrides (a method, a head, a batch size, ...)."""
    overrides: dict = field(default_factory=dict)
    """Overrides shared by every run."""
    per_model: dict = field(default_factory=dict)
    """Model -> overrides (e.g. a narrower VGG on CPU)."""
    baseline: str | None = "bp"
    """Row whose mean the † marks compare against (None: no marks)."""
    title: str = ""
    """What the experiment reproduces (paper table / figure)."""


def method_rows(methods, per_method: dict | None = None) -> dict[str, dict]:
    """Rows that differ by method (the paper's accuracy tables)."""
    per_method = per_method or {}
    return {m: {"method": m, **per_method.get(m, {})} for m in methods}


METHODS_ALL = ("bp", "early-exit", "al", "scpl")
# CPU scale (our committed results): Fashion-MNIST, reduced widths, a few short "epochs"
# (--max-steps mini-batches each, reshuffled every epoch) so model selection and learning curves
# have several points. Same batch, augmentation and schedule for every method.
_FMNIST = dict(
    dataset="fashion-mnist",
    epochs=4,
    max_steps=60,
    batch_size=128,
    test_every_epoch=True,
    threads=1,
)
_FMNIST_WIDTH = {"convnet": dict(width=0.25), "vgg": dict(width=0.125)}

EXPERIMENTS: dict[str, Experiment] = {
    "fmnist": Experiment(
        "default",
        ("convnet", "vgg"),
        method_rows(METHODS_ALL),
        _FMNIST,
        _FMNIST_WIDTH,
        title="Fashion-MNIST, reduced width: BP / Early Exit / AL / SCPL (CPU scale of Tables 6-8)",
    ),
    "fmnist-ablate-flow": Experiment(
        "default",
        ("convnet", "vgg"),
        {
            "multiple short gradient flows (scpl)": {"method": "scpl"},
            "single gradient flow (bp)": {"method": "bp"},
        },
        _FMNIST,
        _FMNIST_WIDTH,
        baseline="single gradient flow (bp)",
        title="Multiple short vs one long gradient flow, identical settings (Delog-SCL Fig. 4)",
    ),
    "fmnist-ablate-head": Experiment(
        "default",
        ("convnet",),
        {h: {"method": "scpl", "head": h} for h in ("identity", "linear", "mlp")},
        _FMNIST,
        _FMNIST_WIDTH,
        baseline=None,
        title="SCPL projection head: identity / linear / MLP (Delog-SCL Table 9)",
    ),
    "fmnist-ablate-batch": Experiment(
        "default",
        ("convnet",),
        # Same number of training samples per epoch for every batch size.
        {
            f"batch {b}": {"method": "scpl", "batch_size": b, "max_steps": 60 * 128 // b}
            for b in (32, 64, 128, 256)
        },
        _FMNIST,
        _FMNIST_WIDTH,
        baseline=None,
        title="SCPL batch size at a fixed sample budget (Delog-SCL Table 8)",
    ),
    # Longer budget (whole epochs) for the BP vs SCPL curve: does SCPL close the gap?
    "fmnist-long": Experiment(
        "default",
        ("convnet",),
        method_rows(("bp", "scpl")),
        {**_FMNIST, "epochs": 4, "max_steps": 0},
        _FMNIST_WIDTH,
        title="Fashion-MNIST convnet, 4 full epochs: BP vs SCPL test accuracy per epoch",
    ),
    # Seconds-long version executed by the tests.
    "smoke": Experiment(
        "smoke", ("convnet",), method_rows(("bp", "scpl")), dict(epochs=2, max_steps=6)
    ),
}

# The paper's experiments at paper settings (GPU scale; `--smoke` runs each for a few steps).
for _ds in ("cifar10", "cifar100", "tiny-imagenet"):
    EXPERIMENTS[f"paper-{_ds}"] = Experiment(
        f"paper-{_ds}-vgg-scpl",
        ("convnet", "vgg", "resnet18"),
        method_rows(METHODS_ALL, {"bp": {"batch_size": 128}}),
        title=f"{_ds}: BP / Early Exit / AL / SCPL (SCPL appendix Tables 7-8, Delog-SCL Tables 2-4)",
    )
for _ds in ("ag-news", "imdb"):
    EXPERIMENTS[f"paper-{_ds}"] = Experiment(
        f"paper-{_ds}-lstm-scpl",
        ("lstm", "transformer"),
        method_rows(METHODS_ALL),
        title=f"{_ds}: BP / Early Exit / AL / SCPL (SCPL appendix Table 6)",
    )
EXPERIMENTS.update(
    {
        "paper-ablate-head": Experiment(
            "paper-cifar10-vgg-scpl",
            ("vgg", "resnet18"),
            {h: {"head": h} for h in ("identity", "linear", "mlp")},
            baseline=None,
            title="CIFAR-10 projection heads (Delog-SCL Table 9)",
        ),
        "paper-ablate-batch": Experiment(
            "paper-cifar10-vgg-scpl",
            ("convnet", "vgg", "resnet18"),
            {f"batch {b}": {"batch_size": b} for b in (128, 256, 512, 1024)},
            baseline=None,
            title="CIFAR-10 SCPL batch size (Delog-SCL Table 8)",
        ),
        "paper-ablate-flow": Experiment(
            "paper-cifar10-vgg-scpl",
            ("vgg",),
            {
                "multiple short gradient flows (scpl)": {"method": "scpl"},
                "single gradient flow (bp)": {"method": "bp"},
            },
            dict(test_every_epoch=True),
            baseline="single gradient flow (bp)",
            title="CIFAR-10 multiple short vs one long gradient flow (Delog-SCL Fig. 4)",
        ),
        "paper-curves": Experiment(
            "paper-cifar100-convnet-scpl",
            ("convnet",),
            method_rows(("bp", "scpl"), {"bp": {"batch_size": 128}}),
            dict(test_every_epoch=True),
            title="CIFAR-100 vanilla ConvNet test accuracy vs epoch, BP vs SCPL (Delog-SCL Fig. 5)",
        ),
    }
)


def resolve_experiment(name: str) -> Experiment:
    """A named experiment, or a recipe turned into a one-cell experiment."""
    if name in EXPERIMENTS:
        return EXPERIMENTS[name]
    if name in RECIPES:
        r = RECIPES[name]
        model, method = r.get("model", "vgg"), r.get("method", "scpl")
        return Experiment(name, (model,), {method: {}}, baseline=None, title=f"recipe {name}")
    raise ConfigError(
        f"unknown experiment {name!r}; choose one of: {', '.join(sorted(EXPERIMENTS))}, "
        "or a recipe name (`scpl list --recipes`)"
    )


def run_experiment(
    name: str,
    trials: int,
    out_dir: Path,
    overrides: dict | None = None,
    methods: tuple[str, ...] | None = None,
    models: tuple[str, ...] | None = None,
    echo=print,
    rows: tuple[str, ...] | None = None,
    reuse: bool = True,
) -> dict:
    """Run every (model, row, seed); write runs.jsonl, tables and curves; return the table.

    ``methods`` keeps rows whose method is listed; ``rows`` keeps rows by label. With ``reuse``,
    a run whose settings equal a finished run of a sibling experiment (same parent dir) is
    taken from there instead of being trained again.
    """
    from scpl.training.loop import train

    exp = resolve_experiment(name)
    if trials < 1:
        raise ConfigError(f"--trials {trials} must be >= 1")
    models = models or exp.models
    selected = _select_rows(exp, methods, rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs_path = out_dir / "runs.jsonl"
    done = _done_runs(runs_path)  # an interrupted experiment continues where it stopped
    siblings = _sibling_runs(out_dir) if reuse else {}
    for model in models:
        for label in selected:
            for seed in range(trials):
                key = (model, label, seed)
                if key in done:
                    continue
                values = {
                    **exp.overrides,
                    **exp.per_model.get(model, {}),
                    **exp.rows[label],
                    **(overrides or {}),
                    "model": model,
                    "seed": seed,
                    "progress": False,
                    "out": str(out_dir / "runs" / f"{model}-{_slug(label)}-s{seed}"),
                    "overwrite": True,  # not in runs.jsonl: leftovers of an interrupted attempt
                }
                cfg = make_config(exp.recipe, values)
                same = siblings.get(_computation_key(dataclasses.asdict(cfg)))
                if same is not None:
                    echo(f"experiment {name}: {model} {label} seed {seed} (reused {same['from']})")
                    rec = {**same, "model": model, "row": label}
                else:
                    echo(f"experiment {name}: {model} {label} seed {seed}")
                    s = train(cfg, recipe=exp.recipe, echo=lambda *a, **k: None)
                    rec = _record(model, label, seed, cfg, s)
                with open(runs_path, "a") as f:
                    f.write(json.dumps(rec) + "\n")
                done[key] = rec
    runs = [r for k, r in done.items() if k[0] in models and k[1] in selected]
    table = summarise(runs, models, selected)
    table["baseline"] = exp.baseline if exp.baseline in selected else None
    meta = _meta(name, exp, trials)
    write_tables(table, out_dir, meta)
    write_curves(runs, models, selected, out_dir, exp.title or name)
    return table


def _select_rows(exp: Experiment, methods, rows) -> list[str]:
    from scpl.methods import METHODS

    labels = list(exp.rows)
    if rows:
        unknown = [r for r in rows if r not in exp.rows]
        if unknown:
            raise ConfigError(
                f"unknown row(s) {unknown}; this experiment has: {', '.join(map(repr, labels))}"
            )
        labels = [r for r in labels if r in rows]
    if methods:
        for m in methods:
            METHODS.get(m)  # an unknown name is the registry's one-line error
        default_method = RECIPES[exp.recipe].get("method", "scpl")
        labels = [r for r in labels if exp.rows[r].get("method", default_method) in methods]
    return labels


def _slug(label: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-." else "-" for c in label.lower())
    return "-".join(p for p in keep.split("-") if p)


def _record(model: str, label: str, seed: int, cfg: TrainConfig, s: dict) -> dict:
    """One run's line in runs.jsonl, with its per-epoch curve read back from metrics.jsonl."""
    epochs = []
    metrics = Path(s["out_dir"]) / "metrics.jsonl"
    if metrics.exists():
        for line in metrics.read_text().splitlines():
            m = json.loads(line)
            if m.get("kind") == "epoch":
                keep = ("epoch", "val_acc", "test_acc", "epoch_train_seconds", "val_seconds")
                epochs.append({k: m[k] for k in keep if k in m})
    return {
        "model": model,
        "row": label,
        "method": cfg.method,
        "seed": seed,
        "test_acc": s["test_acc"],
        "best_epoch": s["best_epoch"],
        "val_acc": s["best_val_acc"],
        "samples_per_s": s["samples_per_s"],
        "train_seconds": s["train_seconds"],
        "test_seconds": s.get("test_seconds"),
        "steps_per_epoch": s.get("steps_per_epoch"),
        "params": s["params"],
        "epochs": epochs,
        "versions": s.get("versions", {}),
        "config": dataclasses.asdict(cfg),
    }


def _computation_key(config: dict) -> str:
    # Fields added to TrainConfig after a run was recorded take their defaults, so older runs
    # stay comparable.
    full = {f.name: f.default for f in dataclasses.fields(TrainConfig)} | config
    # A run that differs only in cosmetic fields (where and how it reports) is the same run.
    kept = {k: v for k, v in full.items() if field_class(k) != "cosmetic"}
    return json.dumps(kept, sort_keys=True)


def _sibling_runs(out_dir: Path) -> dict[str, dict]:
    """Finished runs of the other experiments next to ``out_dir``, by what they computed."""
    found: dict[str, dict] = {}
    parent = out_dir.resolve().parent
    if not parent.is_dir():
        return found
    for path in sorted(parent.glob("*/runs.jsonl")):
        if path.parent == out_dir.resolve():
            continue
        for r in _done_runs(path).values():
            if "config" in r:
                found.setdefault(_computation_key(r["config"]), {**r, "from": path.parent.name})
    return found


def _done_runs(path: Path) -> dict:
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                r.setdefault("row", r["method"])  # runs.jsonl before rows existed
                done[(r["model"], r["row"], r["seed"])] = r
    return done


def _mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return float("nan"), float("nan")
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(runs: list[dict], models, rows) -> dict:
    """mean ± std of test accuracy (in %), seconds per epoch and parameters per (row, model)."""
    cells = {}
    for label in rows:
        for model in models:
            rs = [r for r in runs if r["model"] == model and r["row"] == label]
            if not rs:
                continue
            acc = _mean_std([100 * r["test_acc"] for r in rs])
            # Seconds per training epoch: each epoch's own time when recorded, else the average.
            per_epoch = []
            for r in rs:
                ep = [
                    e["epoch_train_seconds"]
                    for e in r.get("epochs", [])
                    if "epoch_train_seconds" in e
                ]
                n_ep = r["config"].get("epochs", 1) if "config" in r else 1
                per_epoch.append(statistics.mean(ep) if ep else r["train_seconds"] / n_ep)
            train_s = _mean_std(per_epoch)
            test_s = _mean_std([r.get("test_seconds") for r in rs])
            cells[(label, model)] = {
                "mean": acc[0],
                "std": acc[1],
                "n": len(rs),
                "train_s": train_s,
                "test_s": test_s,
                "samples_per_s": statistics.mean(r["samples_per_s"] for r in rs),
                "steps_per_epoch": rs[0].get("steps_per_epoch"),
                "params": rs[0]["params"],
                "best_epochs": [r["best_epoch"] for r in rs],
            }
    return {"models": list(models), "rows": list(rows), "cells": cells}


def _meta(name: str, exp: Experiment, trials: int) -> dict:
    return {
        "experiment": name,
        "title": exp.title,
        "trials": trials,
        "seeds": list(range(trials)),
        "command": "scpl " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["experiment"] else "",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "host": platform.node(),
        "platform": platform.platform(),
        "cpu_count": num_cpus(),
        "hardware": hardware(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "commit": git_commit(),
    }


def _fmt_ms(ms: tuple[float, float], digits: int = 1) -> str:
    if math.isnan(ms[0]):
        return "–"
    return f"{ms[0]:.{digits}f} ± {ms[1]:.{digits}f}"


def write_tables(table: dict, out_dir: Path, meta: dict) -> None:
    """table.md (accuracy, parameters, seconds per epoch) and table.csv."""
    models, rows, cells = table["models"], table["rows"], table["cells"]
    baseline = table.get("baseline")

    def grid(cell_text) -> list[str]:
        """A rows × models Markdown table; ``cell_text(label, model, cell)`` fills a cell."""
        out = ["| | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
        for label in rows:
            texts = []
            for model in models:
                c = cells.get((label, model))
                texts.append("–" if c is None else cell_text(label, model, c))
            out.append(f"| {label} | " + " | ".join(texts) + " |")
        return out

    def accuracy(label: str, model: str, c: dict) -> str:
        base = cells.get((baseline, model)) if baseline else None
        dagger = " †" if base and label != baseline and c["mean"] > base["mean"] else ""
        text = f"{c['mean']:.2f} ± {c['std']:.2f}{dagger}"
        # Like the paper: the winner among the non-baseline rows in bold.
        others = [cells[(r, model)]["mean"] for r in rows if r != baseline and (r, model) in cells]
        if baseline and label != baseline and len(others) > 1 and c["mean"] == max(others):
            text = f"**{text}**"
        return text

    lines = [f"# {meta.get('title') or meta['experiment']}", ""]
    lines += [
        f"Test accuracy (%), mean ± std over {meta['trials']} seed(s); each run's epoch chosen on "
        "the validation split"
        + (f"; † = higher mean than {baseline}" if baseline else "")
        + ("; bold = best of the others." if baseline and len(rows) > 2 else "."),
        "",
        *grid(accuracy),
        "",
        "Parameters, training / inference (Delog-SCL Table 5: heads, local classifiers, AL's "
        "bridges and encoders are training-only; AL's decoders are also used at inference):",
        "",
        *grid(lambda label, model, c: _params(c["params"])),
        "",
        "Seconds per epoch, train / test (mean ± std over seeds; Delog-SCL Table 7). Train: one "
        "training epoch as run (steps per epoch below); test: one pass over the test split:",
        "",
        *grid(
            lambda label, model, c: (
                f"{_fmt_ms(c['train_s'])} / {_fmt_ms(c['test_s'], 2)} "
                f"({c['steps_per_epoch']} steps, {c['samples_per_s']:.0f} samples/s)"
            )
        ),
    ]
    lines += ["", "```", json.dumps(meta, indent=1), "```"]
    (out_dir / "table.md").write_text("\n".join(lines) + "\n")
    with open(out_dir / "table.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "row",
                "model",
                "mean_acc",
                "std_acc",
                "n",
                "train_s_per_epoch",
                "train_s_std",
                "test_s",
                "test_s_std",
                "steps_per_epoch",
                "samples_per_s",
                "params_training",
                "params_inference",
                "params_affiliated",
                "best_epochs",
            ]
        )
        for (label, model), c in cells.items():
            p = c["params"]
            w.writerow(
                [
                    label,
                    model,
                    f"{c['mean']:.4f}",
                    f"{c['std']:.4f}",
                    c["n"],
                    f"{c['train_s'][0]:.3f}",
                    f"{c['train_s'][1]:.3f}",
                    f"{c['test_s'][0]:.3f}",
                    f"{c['test_s'][1]:.3f}",
                    c["steps_per_epoch"],
                    f"{c['samples_per_s']:.2f}",
                    p.get("training", p["effective"] + p["affiliated"]),
                    p["effective"],
                    p["affiliated"],
                    " ".join(map(str, c["best_epochs"])),
                ]
            )


def _params(p: dict) -> str:
    training = p.get("training", p["effective"] + p["affiliated"])
    return f"{training / 1e6:.2f}M / {p['effective'] / 1e6:.2f}M"


def write_curves(runs: list[dict], models, rows, out_dir: Path, title: str) -> None:
    """curves.csv (every run's test/val accuracy per epoch) and curves.png (mean ± std)."""
    points = [
        (r["model"], r["row"], r["seed"], e)
        for r in runs
        for e in r.get("epochs", [])
        if "test_acc" in e
    ]
    if not points:
        return
    with open(out_dir / "curves.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "row", "seed", "epoch", "test_acc", "val_acc"])
        for model, label, seed, e in points:
            w.writerow([model, label, seed, e["epoch"] + 1, e["test_acc"], e.get("val_acc")])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.8), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        for label in rows:
            by_epoch: dict[int, list[float]] = {}
            for m, lab, _, e in points:
                if m == model and lab == label:
                    by_epoch.setdefault(e["epoch"] + 1, []).append(100 * e["test_acc"])
            if not by_epoch:
                continue
            xs = sorted(by_epoch)
            mean = [statistics.mean(by_epoch[x]) for x in xs]
            std = [statistics.stdev(by_epoch[x]) if len(by_epoch[x]) > 1 else 0.0 for x in xs]
            (line,) = ax.plot(xs, mean, marker="o", label=label)
            ax.fill_between(
                xs,
                [m - s for m, s in zip(mean, std, strict=True)],
                [m + s for m, s in zip(mean, std, strict=True)],
                color=line.get_color(),
                alpha=0.2,
            )
        ax.set_title(model)
        steps = {r.get("steps_per_epoch") for r in runs if r["model"] == model}
        per = f" ({steps.pop()} steps each)" if len(steps) == 1 and None not in steps else ""
        ax.set_xlabel(f"epoch{per}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(
        f"{title}\n(mean ± std over seeds; test accuracy recorded, not used for selection)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(out_dir / "curves.png", dpi=110)
    plt.close(fig)


__all__ = [
    "EXPERIMENTS",
    "Experiment",
    "method_rows",
    "resolve_experiment",
    "run_experiment",
    "TrainConfig",
]
