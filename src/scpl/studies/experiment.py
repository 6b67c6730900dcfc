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
from dataclasses import dataclass, field
from pathlib import Path

import torch

from scpl.errors import ConfigError
from scpl.provenance import git_commit, hardware, num_cpus
from scpl.report.accuracy import summarise, write_curves, write_tables
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
    augment="two-view",  # what the committed results were measured with
    epochs=4,
    max_steps=60,
    batch_size=128,
    test_every_epoch=True,
    threads=1,
)
# SCPL in the paper's form (MLP head, 1024-d, SupCon only) and the light head.
_SCPL_PAPER_FORM = {"method": "scpl", "head": "mlp", "proj_dim": 1024, "local_ce": 0.0}
_LIGHT = {"head": "mlp-pool", "proj_dim": 128}
# The methods with their run defaults, and SCPL with a local cross-entropy beside SupCon on
# its hidden stages (an ablation: within the noise over 3 seeds, so not a default).
_TARGET_ROWS = {
    **method_rows(METHODS_ALL),
    "scpl-local-ce": {"method": "scpl", "local_ce": 0.3},
}
_FMNIST_WIDTH = {"convnet": dict(width=0.25), "vgg": dict(width=0.125)}
_FMNIST_PAPER_WIDTH = {"vanilla-convnet": dict(width=0.25), "vgg": dict(width=0.125)}

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
    # Issue 14: the paper's networks, the authors' augmentation, the last stage, AL's defaults.
    "fmnist-paper-nets": Experiment(
        "default",
        ("vanilla-convnet", "vgg"),
        method_rows(METHODS_ALL),
        _FMNIST,
        _FMNIST_PAPER_WIDTH,
        title="Fashion-MNIST, the paper's vanilla ConvNet and VGG (reduced width): all methods",
    ),
    "fmnist-ablate-augment": Experiment(
        "default",
        ("vanilla-convnet",),
        {
            f"{m} {a}": {"method": m, "augment": a}
            for m in ("bp", "scpl")
            for a in ("two-view", "two-view-ref")
        },
        {**_FMNIST, "epochs": 5, "lr": 3e-3},  # the settings of fmnist-targets
        _FMNIST_PAPER_WIDTH,
        baseline=None,
        title="Two strong views (Khosla) vs the authors' weak + strong views",
    ),
    "fmnist-ablate-last": Experiment(
        "default",
        ("vanilla-convnet",),
        {ls: {"method": "scpl", "last_stage": ls} for ls in ("ce+supcon", "ce", "detached")},
        _FMNIST,
        _FMNIST_PAPER_WIDTH,
        baseline=None,
        title="SCPL's last stage: CE + SupCon (Delog-SCL text) / CE / detached (authors' code)",
    ),
    # What closes SCPL's early gap (LOG.md 2026-12-02): one seed, 4 x 60 steps, each row
    # changes one thing from the row above it (the paper's form first).
    "fmnist-ablate-gap": Experiment(
        "default",
        ("vanilla-convnet",),
        {
            "bp, torch init": {"method": "bp", "init": "torch"},
            "bp": {"method": "bp"},
            "bp, lr 2e-3": {"method": "bp", "lr": 2e-3},
            "bp, lr 3e-3": {"method": "bp", "lr": 3e-3},
            "early-exit": {"method": "early-exit", "head": "mlp"},
            "early-exit, mlp-pool, lr 3e-3": {"method": "early-exit", "lr": 3e-3},
            "scpl, torch init": {**_SCPL_PAPER_FORM, "init": "torch"},
            "scpl": _SCPL_PAPER_FORM,
            "scpl, last ce": {**_SCPL_PAPER_FORM, "last_stage": "ce"},
            "scpl, last detached": {**_SCPL_PAPER_FORM, "last_stage": "detached"},
            "scpl, lr 2e-3": {**_SCPL_PAPER_FORM, "lr": 2e-3},
            "scpl, mlp-pool": {**_SCPL_PAPER_FORM, "head": "mlp-pool"},
            "scpl, mlp-pool 128": {**_SCPL_PAPER_FORM, **_LIGHT},
            "scpl, mlp-pool 128, lr 3e-3": {**_SCPL_PAPER_FORM, **_LIGHT, "lr": 3e-3},
            "scpl, mlp-pool 128, lr 5e-3": {**_SCPL_PAPER_FORM, **_LIGHT, "lr": 5e-3},
            "scpl, mlp-pool 128, lr 3e-3, tau 0.2": {
                **_SCPL_PAPER_FORM,
                **_LIGHT,
                "lr": 3e-3,
                "temperature": 0.2,
            },
            **{
                f"scpl, mlp-pool 128, lr 3e-3, local ce {w}": {
                    **_SCPL_PAPER_FORM,
                    **_LIGHT,
                    "lr": 3e-3,
                    "local_ce": w,
                }
                for w in (0.1, 0.3, 1.0)
            },
        },
        {**_FMNIST, "augment": "two-view-ref"},
        _FMNIST_PAPER_WIDTH,
        baseline="bp",
        title="Closing SCPL's early gap: init, lr, head, temperature, last stage, local CE",
    ),
    # Issue 14's targets: equal steps (this table) and equal simulated wall time on 4 devices
    # (`--time-to-accuracy --out docs/results/fmnist-targets-tta`, which reuses the BP runs).
    # Every method: He init, light heads, lr 3e-3 (BP and SCPL both gain from it, LOG.md).
    "fmnist-targets": Experiment(
        "default",
        ("vanilla-convnet", "vgg"),
        _TARGET_ROWS,
        {**_FMNIST, "augment": "two-view-ref", "epochs": 5, "lr": 3e-3},
        _FMNIST_PAPER_WIDTH,
        title="Fashion-MNIST targets: BP / Early Exit / AL / SCPL at equal steps (5 x 60 steps)",
    ),
    "bbc-targets": Experiment(
        "bbc-news",
        ("lstm",),
        _TARGET_ROWS,
        dict(test_every_epoch=True, threads=1),
        title="BBC News LSTM targets: BP / Early Exit / AL / SCPL at equal steps",
    ),
    # Issue 21's converged study: `--budgets` (BP epochs; WSD runs branched from one trunk per
    # row and seed) at the targets' settings over real epochs; `--rows` picks the paper's batch
    # regime (SCPL at batch 1024 against BP at 128, equal epochs).
    "fmnist-converged": Experiment(
        "default",
        ("vanilla-convnet", "vgg"),
        {
            **method_rows(("bp", "early-exit", "scpl")),
            "scpl batch 1024": {"method": "scpl", "batch_size": 1024},
        },
        {**_FMNIST, "augment": "two-view-ref", "lr": 3e-3, "max_steps": 0,
         "test_every_epoch": False, "checkpoint_every": 100},
        {"vanilla-convnet": dict(width=0.25), "vgg": dict(width=0.25)},
        title="Fashion-MNIST at converged budgets: BP / Early Exit / SCPL (WSD budgets)",
    ),
    # Issue 23's levers on the same budgets: SCPL's local objective (Nøkland & Eidnes 2019
    # similarity matching, predsim), its local cross-entropy, and width (for BP and SCPL).
    "fmnist-levers": Experiment(
        "default",
        ("vanilla-convnet",),
        {
            **method_rows(("bp", "early-exit", "scpl")),
            **{f"scpl {ll}": {"method": "scpl", "local_loss": ll}
               for ll in ("sim", "supcon+sim", "predsim")},
            "scpl local ce 0.3": {"method": "scpl", "local_ce": 0.3},
            **{f"{m} width {w}": {"method": m, "width": w}
               for m in ("bp", "scpl") for w in (0.5, 1.0)},
        },
        {**_FMNIST, "augment": "two-view-ref", "lr": 3e-3, "max_steps": 0,
         "test_every_epoch": False, "checkpoint_every": 100},
        {"vanilla-convnet": dict(width=0.25)},
        title="Fashion-MNIST vanilla ConvNet: SCPL's local-learning levers at WSD budgets",
    ),
    "bbc-levers": Experiment(
        "bbc-news",
        ("lstm",),
        {
            **method_rows(("bp", "early-exit", "scpl")),
            **{f"scpl {ll}": {"method": "scpl", "local_loss": ll}
               for ll in ("sim", "supcon+sim", "predsim")},
        },
        dict(threads=1, checkpoint_every=100),
        title="BBC News LSTM: SCPL's local-learning levers at WSD budgets",
    ),
    "bbc-converged": Experiment(
        "bbc-news",
        ("lstm",),
        method_rows(("bp", "early-exit", "al", "scpl")),
        dict(threads=1, checkpoint_every=100),
        title="BBC News LSTM at converged budgets (the paper's text budget is 50 epochs)",
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
        ("vanilla-convnet", "vgg", "resnet18"),
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
            ("vanilla-convnet", "vgg", "resnet18"),
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
            "paper-cifar100-vanilla-convnet-scpl",
            ("vanilla-convnet",),
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
    exp = resolve_experiment(name)
    if trials < 1:
        raise ConfigError(f"--trials {trials} must be >= 1")
    models = models or exp.models
    selected = _select_rows(exp, methods, rows)
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
                    "out": str(out_dir / "runs" / f"{model}-{_slug(label)}-s{seed}"),
                    "overwrite": True,  # not in runs.jsonl: leftovers of an interrupted attempt
                }
                cfg = pin_threads(make_config(exp.recipe, values))
                wanted = _computation_key(dataclasses.asdict(cfg))
                if key in done:
                    recorded = done[key].get("config")
                    if recorded is None or _computation_key(recorded) == wanted:
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


# What runs recorded before a TrainConfig field existed computed with, where that differs from
# the field's default (init: PyTorch's defaults; local_ce: SupCon only).
LEGACY_VALUES = {"init": "torch", "local_ce": 0.0}


def _computation_key(config: dict) -> str:
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
                found.setdefault(_computation_key(r["config"]), {**r, "from": path.parent.name})
    return found


def _done_runs(path: Path) -> dict:
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                # A line torn by a crash mid-append: that run is simply not done yet.
                continue
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


def resumable(run_dir: Path, key: str) -> bool:
    """Does ``run_dir`` hold a checkpoint of the run whose computation key is ``key``?"""
    from scpl.training.checkpoint import latest_checkpoint, load_checkpoint

    if not (run_dir / "checkpoints").is_dir():
        return False
    try:
        ck = load_checkpoint(latest_checkpoint(run_dir, 0, None))
    except Exception:  # none complete, unreadable: the run starts afresh
        return False
    return _computation_key(ck.get("config", {})) == key


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


__all__ = [
    "EXPERIMENTS",
    "Experiment",
    "method_rows",
    "resolve_experiment",
    "run_experiment",
    "TrainConfig",
]
