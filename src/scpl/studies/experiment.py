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

import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from scpl.errors import ConfigError
from scpl.provenance import git_commit, hardware, num_cpus
from scpl.report.accuracy import summarise, write_curves, write_tables
from scpl.studies.catalogue import (
    EXPERIMENTS,
    METHODS_ALL,
    Experiment,
    method_rows,
    resolve_experiment,
)
from scpl.training.config import TrainConfig, field_class
from scpl.training.recipes import RECIPES, make_config


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
    exp = resolve_experiment(name)
    if trials < 1:
        raise ConfigError(f"--trials {trials} must be >= 1")
    models = models or exp.models
    selected = select_rows(exp, methods, rows)
    runs = train_runs(exp, name, trials, out_dir, models, selected, overrides, reuse, echo)
    table = summarise(runs, models, selected)
    table["baseline"] = exp.baseline if exp.baseline in selected else None
    meta = run_meta(name, exp, trials)
    write_tables(table, out_dir, meta)
    write_curves(runs, models, selected, out_dir, exp.title or name)
    return table


def train_runs(
    exp: Experiment,
    name: str,
    trials: int,
    out_dir: Path,
    models,
    labels,
    overrides: dict | None = None,
    reuse: bool = True,
    echo=print,
) -> list[dict]:
    """Train (or take from runs.jsonl / a sibling experiment) every (model, row, seed) of
    ``exp`` for the given row labels; return their records."""
    from scpl.training.loop import train

    out_dir.mkdir(parents=True, exist_ok=True)
    runs_path = out_dir / "runs.jsonl"
    done = _done_runs(runs_path)  # an interrupted experiment continues where it stopped
    siblings = _sibling_runs(out_dir) if reuse else {}
    for model in models:
        for label in labels:
            for seed in range(trials):
                key = (model, label, seed)
                values = {
                    **exp.overrides,
                    **exp.per_model.get(model, {}),
                    **exp.rows[label],
                    **(overrides or {}),
                    "model": model,
                    "seed": seed,
                    "progress": False,
                    "out": str(out_dir / "runs" / f"{model}-{slug(label)}-s{seed}"),
                    "overwrite": True,  # not in runs.jsonl: leftovers of an interrupted attempt
                }
                cfg = pin_threads(make_config(exp.recipe, values))
                wanted = computation_key(dataclasses.asdict(cfg))
                if key in done:
                    recorded = done[key].get("config")
                    if recorded is None or computation_key(recorded) == wanted:
                        continue
                    # A default or the experiment changed since this run: its number would
                    # describe other settings, so the run is trained again and replaces it.
                    echo(f"experiment {name}: {model} {label} seed {seed}: settings changed")
                same = siblings.get(wanted)
                if same is not None:
                    echo(f"experiment {name}: {model} {label} seed {seed} (reused {same['from']})")
                    rec = {**same, "model": model, "row": label}
                else:
                    run_dir = Path(cfg.out)
                    if resumable(run_dir, wanted):
                        # An interrupted attempt of this very run: continue it (bitwise).
                        echo(f"experiment {name}: {model} {label} seed {seed} (resumed)")
                        cfg = dataclasses.replace(cfg, resume=str(run_dir), overwrite=False)
                    else:
                        echo(f"experiment {name}: {model} {label} seed {seed}")
                    s = train(cfg, recipe=exp.recipe, echo=lambda *a, **k: None)
                    rec = _record(model, label, seed, cfg, s)
                append_record(runs_path, rec)
                done[key] = rec
    return [r for k, r in done.items() if k[0] in models and k[1] in labels]


def pin_threads(cfg: TrainConfig) -> TrainConfig:
    """The config with its thread count made explicit: a run's checkpoint records the count it
    used (it changes the bits), so an experiment asks for that count by name."""
    if cfg.threads:
        return cfg
    return dataclasses.replace(cfg, threads=torch.get_num_threads())


def select_rows(exp: Experiment, methods, rows) -> list[str]:
    """The row labels of ``exp`` kept by ``--rows`` (labels) and ``--methods`` (a row's method)."""
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


def slug(label: str) -> str:
    """A row label as a folder-name part (lower case, runs of other characters as one dash)."""
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


# What runs recorded before a TrainConfig field existed computed with, where that differs from
# the field's default (init: PyTorch's defaults; local_ce: SupCon only).
LEGACY_VALUES = {"init": "torch", "local_ce": 0.0}


def computation_key(config: dict) -> str:
    """What a run config computes, as a string: equal keys, bitwise the same run."""
    # Fields added to TrainConfig after a run was recorded take the value such runs computed
    # with (their default, or LEGACY_VALUES), so older runs stay comparable.
    full = {f.name: f.default for f in dataclasses.fields(TrainConfig)} | LEGACY_VALUES | config
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
                found.setdefault(computation_key(r["config"]), {**r, "from": path.parent.name})
    return found


def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSON-lines file (none if it does not exist). A line torn by a crash
    mid-append is skipped: that record is simply not there yet."""
    out = []
    if path.exists():
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def _done_runs(path: Path) -> dict:
    done = {}
    for r in read_jsonl(path):
        r.setdefault("row", r["method"])  # runs.jsonl before rows existed
        done[(r["model"], r["row"], r["seed"])] = r
    return done


def append_record(path: Path, rec: dict) -> None:
    """Append one line to runs.jsonl in a single write (O_APPEND) and fsync it, so a crash
    leaves either the whole record or a torn last line that readers skip."""
    data = (json.dumps(rec) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        with open(path, "rb") as f:  # a torn line before ours would swallow our record
            if f.seek(0, os.SEEK_END) > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    data = b"\n" + data
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def newest_checkpoint(run_dir: Path, tidy: bool = True) -> dict | None:
    """The newest complete checkpoint of ``run_dir`` (rank 0), or None if it has none that can
    be read (an interrupted run then starts afresh). ``tidy=False``: read only (see
    :func:`~scpl.training.checkpoint.latest_checkpoint`)."""
    from scpl.training.checkpoint import latest_checkpoint, load_checkpoint

    if not (Path(run_dir) / "checkpoints").is_dir():
        return None
    try:
        return load_checkpoint(latest_checkpoint(run_dir, 0, None, tidy))
    except Exception:  # none complete, unreadable
        return None


def resumable(run_dir: Path, key: str) -> bool:
    """Does ``run_dir`` hold a checkpoint of the run whose computation key is ``key``?"""
    ck = newest_checkpoint(run_dir)
    return ck is not None and computation_key(ck.get("config", {})) == key


def run_meta(name: str, exp: Experiment, trials: int) -> dict:
    """Provenance of an experiment's tables: command, date, host, hardware, torch, commit."""
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


# The names these functions had before they were public (kept for existing importers).
_computation_key, _select_rows, _slug = computation_key, select_rows, slug

__all__ = [
    "EXPERIMENTS",
    "METHODS_ALL",
    "Experiment",
    "method_rows",
    "resolve_experiment",
    "run_experiment",
    "TrainConfig",
]
