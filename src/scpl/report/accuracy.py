"""Accuracy tables and learning curves of an experiment's runs: test accuracy as mean ± std in
the shape of the SCPL paper's Tables 6-8 (rows x models, † where a row beats the baseline),
training vs inference parameters (Delog-SCL Table 5), train/test seconds per epoch (Delog-SCL
Table 7), and test accuracy vs epoch per row (Delog-SCL Figures 4-5)."""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path


def mean_std(values: list[float]) -> tuple[float, float]:
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
            acc = mean_std([100 * r["test_acc"] for r in rs])
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
            train_s = mean_std(per_epoch)
            test_s = mean_std([r.get("test_seconds") for r in rs])
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


__all__ = ["mean_std", "summarise", "write_curves", "write_tables"]
