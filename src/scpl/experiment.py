"""Trials and tables: run a grid of (model, method) runs over N seeds and write accuracy tables
as mean ± std in the shape of the SCPL paper's Tables 6-8 (methods × models, † where a method
beats BP). Each run's epoch is selected on the validation split; the test split gives the number.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from scpl.config import TrainConfig, make_config
from scpl.errors import ConfigError


@dataclass
class Experiment:
    """A grid of runs sharing one base recipe."""

    recipe: str
    models: tuple[str, ...]
    methods: tuple[str, ...]
    overrides: dict = field(default_factory=dict)
    # Per-method overrides (e.g. the paper trains BP at batch 128 and SCPL at 1024).
    per_method: dict = field(default_factory=dict)


EXPERIMENTS: dict[str, Experiment] = {
    # Reduced-width Fashion-MNIST table, runnable on a CPU (our committed results).
    "fmnist": Experiment(
        "default",
        ("convnet", "vgg"),
        ("bp", "early-exit", "al", "scpl"),
        dict(dataset="fashion-mnist", width=0.25, epochs=1, batch_size=128),
    ),
    # The paper's vision tables (GPU scale): CIFAR-10 / CIFAR-100, 200 epochs.
    **{
        f"paper-{ds}": Experiment(
            f"paper-{ds}-vgg-scpl",
            ("convnet", "vgg", "resnet18"),
            ("bp", "early-exit", "al", "scpl"),
            dict(dataset=ds),
            per_method={"bp": dict(batch_size=128)},
        )
        for ds in ("cifar10", "cifar100", "tiny-imagenet")
    },
    # Seconds-long version executed by the tests.
    "smoke": Experiment(
        "smoke",
        ("convnet",),
        ("bp", "scpl"),
        dict(epochs=2, max_steps=6),
    ),
}


def run_experiment(
    name: str,
    trials: int,
    out_dir: Path,
    overrides: dict | None = None,
    methods: tuple[str, ...] | None = None,
    models: tuple[str, ...] | None = None,
    echo=print,
) -> dict:
    """Run every (model, method, seed); write runs.jsonl, table.md and table.csv; return the table."""
    from scpl.methods import METHODS
    from scpl.train import train

    if name not in EXPERIMENTS:
        raise ConfigError(
            f"unknown experiment {name!r}; choose one of: {', '.join(sorted(EXPERIMENTS))}"
        )
    if trials < 1:
        raise ConfigError(f"--trials {trials} must be >= 1")
    exp = EXPERIMENTS[name]
    methods = tuple(m for m in (methods or exp.methods) if m in METHODS)
    models = models or exp.models
    out_dir.mkdir(parents=True, exist_ok=True)
    runs_path = out_dir / "runs.jsonl"
    done = _done_runs(runs_path)  # an interrupted experiment continues where it stopped
    for model in models:
        for method in methods:
            for seed in range(trials):
                key = (model, method, seed)
                if key in done:
                    continue
                values = {
                    **exp.overrides,
                    **exp.per_method.get(method, {}),
                    **(overrides or {}),
                    "model": model,
                    "method": method,
                    "seed": seed,
                    "progress": False,
                    "out": str(out_dir / "runs" / f"{model}-{method}-s{seed}"),
                }
                cfg = make_config(exp.recipe, values)
                echo(f"experiment {name}: {model} {method} seed {seed}")
                s = train(cfg, recipe=exp.recipe, echo=lambda *a, **k: None)
                rec = {
                    "model": model,
                    "method": method,
                    "seed": seed,
                    "test_acc": s["test_acc"],
                    "best_epoch": s["best_epoch"],
                    "val_acc": s["best_val_acc"],
                    "samples_per_s": s["samples_per_s"],
                    "train_seconds": s["train_seconds"],
                    "params": s["params"],
                    "config": dataclasses.asdict(cfg),
                }
                with open(runs_path, "a") as f:
                    f.write(json.dumps(rec) + "\n")
                done[key] = rec
    table = summarise(
        [r for k, r in done.items() if k[0] in models and k[1] in methods], models, methods
    )
    write_tables(table, out_dir, name, trials)
    return table


def _done_runs(path: Path) -> dict:
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                done[(r["model"], r["method"], r["seed"])] = r
    return done


def summarise(runs: list[dict], models, methods) -> dict:
    """mean ± std of test accuracy (in %) and time per (method, model)."""
    cells = {}
    for method in methods:
        for model in models:
            rs = [r for r in runs if r["model"] == model and r["method"] == method]
            if not rs:
                continue
            acc = [100 * r["test_acc"] for r in rs]
            secs = [r["train_seconds"] for r in rs]
            cells[(method, model)] = {
                "mean": statistics.mean(acc),
                "std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
                "n": len(acc),
                "seconds": statistics.mean(secs),
                "samples_per_s": statistics.mean(r["samples_per_s"] for r in rs),
                "params": rs[0]["params"],
            }
    return {"models": list(models), "methods": list(methods), "cells": cells}


def write_tables(table: dict, out_dir: Path, name: str, trials: int) -> None:
    models, methods, cells = table["models"], table["methods"], table["cells"]
    lines = [
        f"Test accuracy (%), mean ± std over {trials} seed(s); epoch chosen on validation; "
        "† = higher mean than BP.",
        "",
        "| method | " + " | ".join(models) + " |",
        "|---|" + "---|" * len(models),
    ]
    for method in methods:
        row = []
        for model in models:
            c = cells.get((method, model))
            if c is None:
                row.append("–")
                continue
            bp = cells.get(("bp", model))
            dagger = " †" if bp and method != "bp" and c["mean"] > bp["mean"] else ""
            row.append(f"{c['mean']:.2f} ± {c['std']:.2f}{dagger}")
        lines.append(f"| {method} | " + " | ".join(row) + " |")
    lines += [
        "",
        "Training seconds (mean) and samples/s:",
        "",
        "| method | " + " | ".join(models) + " |",
        "|---|" + "---|" * len(models),
    ]
    for method in methods:
        row = []
        for model in models:
            c = cells.get((method, model))
            row.append("–" if c is None else f"{c['seconds']:.1f} s, {c['samples_per_s']:.0f}/s")
        lines.append(f"| {method} | " + " | ".join(row) + " |")
    meta = {
        "experiment": name,
        "trials": trials,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "host": platform.node(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "commit": _commit(),
    }
    lines += ["", "```", json.dumps(meta, indent=1), "```"]
    (out_dir / "table.md").write_text("\n".join(lines) + "\n")
    with open(out_dir / "table.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "method",
                "model",
                "mean_acc",
                "std_acc",
                "n",
                "train_seconds",
                "samples_per_s",
                "params_effective",
                "params_affiliated",
            ]
        )
        for (method, model), c in cells.items():
            w.writerow(
                [
                    method,
                    model,
                    f"{c['mean']:.4f}",
                    f"{c['std']:.4f}",
                    c["n"],
                    f"{c['seconds']:.2f}",
                    f"{c['samples_per_s']:.2f}",
                    c["params"]["effective"],
                    c["params"]["affiliated"],
                ]
            )


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except Exception:
        return ""


__all__ = ["EXPERIMENTS", "Experiment", "run_experiment", "TrainConfig"]
