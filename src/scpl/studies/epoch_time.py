"""``scpl epoch-time``: training time per epoch against batch size (paper appendix, Figs. 5-12).

For every batch size N the op costs (F, L, B, U of each stage) of the method each schedule runs
are taken on ONE device -- timed on this machine with the recorder (``--emulate measured``,
:func:`scpl.perf.emulate.measure_op_costs`) or proportional to FLOPs (``--emulate flops``, a
compute-bound device, :func:`scpl.perf.emulate.flop_op_costs`) -- and turned into two numbers:

* ``measured_one_device_s``: steps_per_epoch x the method's one-device step time (the sum of
  its op costs over all stages, i.e. one op at a time on one device);
* ``projected_K_s``: the discrete-event simulator (:mod:`scpl.perf.simulate`) running the
  schedule on K devices with those costs (per micro-batch for the GPipe schedules, plus an
  optional ``--transfer`` cost): the first ``sim_batches`` mini-batches are simulated from an
  empty pipeline, the rest of the epoch is added at the simulated steady-state rate (the
  training loop evaluates after every epoch, so each epoch starts with an empty pipeline).

``sequential`` runs BP one op at a time (BP on one device), ``nmp``/``gpipe`` BP split over K
devices, ``scpl``/``scpl-gpipe`` the local-loss method (``--method``, default scpl).

N is the mini-batch size drawn from the dataset (steps_per_epoch = train_size // N). Vision
models are trained with two-view augmentation by every method (as the training loop does with
the paper recipes), so a step processes ``inputs_per_step`` = 2N inputs; text models take N.
Only shapes and sizes are used: no data file is read.
"""

from __future__ import annotations

import csv
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from scpl.errors import ConfigError
from scpl.provenance import git_commit, hardware

Costs = dict[int, dict[str, float]]
CostsFor = Callable[[int, str], Costs]  # (inputs per step, method) -> mini-batch op costs

# Training-set sizes of the registered datasets (the real, full training split; the training
# loop holds out --val-fraction of it for validation). text-csv: only known once read.
TRAIN_SIZES = {
    "cifar10": 50000,
    "cifar100": 50000,
    "tiny-imagenet": 100000,
    "fashion-mnist": 60000,
    "digits": 1437,  # 80% of 1797
    "synthetic": 2048,
    "ag-news": 120000,
    "dbpedia": 560000,
    "imdb": 25000,
    "sst2": 67349,
    "bbc-news": 1780,  # 80% of 2225
}
DEFAULT_SCHEDULES = ("sequential", "nmp", "gpipe", "scpl", "scpl-gpipe")
SOURCES = ("measured", "flops")
CSV_COLUMNS = (
    "model",
    "dataset",
    "schedule",
    "method",
    "batch_size",
    "K",
    "micro_batches",
    "steps_per_epoch",
    "measured_one_device_s",
    "projected_K_s",
    "speedup_vs_bp_one_device",
    "speedup_vs_nmp",
    "inputs_per_step",
    "timed_inputs",
    "train_size",
    "width",
    "cost_source",
    "transfer",
    "stage_step_ms",
)


@dataclass
class EpochTimeOptions:
    model: str = "vgg"
    dataset: str = "cifar100"
    stages: int = 4
    batch_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)
    schedules: tuple[str, ...] = DEFAULT_SCHEDULES
    method: str = "scpl"  # the local-loss method of scpl / scpl-gpipe
    width: float = 0.25
    micro_batches: int = 0  # 0: K (gpipe / scpl-gpipe only)
    emulate: str = "measured"  # measured (timed on --device) | flops (FLOP-proportional)
    tflops: float = 1.0  # --emulate flops: the device's speed
    transfer: str = ""  # e.g. send_act=1ms,recv_act=1ms (per mini-batch message)
    train_size: int = 0  # 0: the dataset's training-set size (TRAIN_SIZES)
    augment: str = ""  # "": two-view for images (paper), none for text
    head: str = ""  # "": mlp for images, identity for text (paper recipes)
    proj_dim: int = 1024
    input_shape: tuple[int, ...] = ()  # (): the dataset's (text: (max_len,))
    vocab_size: int = 30000  # text models (the training default)
    embed_dim: int = 300  # text models (GloVe 300-d, paper)
    rounds: int = 2  # timed steps per (batch size, method), round-robin; shortest per op
    warmup: int = 1
    max_inputs: int = 0  # time steps of at most this many inputs, extrapolate larger (0: no cap)
    sim_batches: int = 32
    device: str = "cpu"
    threads: int = 1
    out: str = ""  # "": docs/results/epoch-time/<model>-<dataset>[-flops]
    command: str = ""


def method_of(schedule: str, method: str = "scpl") -> str:
    """The method a schedule runs here: ``method`` on the local-loss schedules, BP on the others
    (sequential is the one-device BP reference)."""
    from scpl.parallel import SCHEDULES

    return method if SCHEDULES.get(schedule).local else "bp"


@dataclass
class Setup:
    """What the options resolve to (validated)."""

    kind: str  # image | text
    input_shape: tuple[int, ...]
    num_classes: int
    train_size: int
    views: int  # inputs per sample per step (2: two-view augmentation)
    head: str
    model_kwargs: dict
    micro: int
    out: Path


def resolve(opts: EpochTimeOptions) -> Setup:
    """Check every name and number; one-line ConfigErrors that list valid choices."""
    from scpl.data.augment import AUGMENTS
    from scpl.data.base import dataset_spec
    from scpl.methods import METHODS, build_method
    from scpl.models import MODELS
    from scpl.parallel import SCHEDULES

    builder = MODELS.get(opts.model)
    spec = dataset_spec(opts.dataset)  # name or name:PARAMS (e.g. synthetic:3x32x32:10)
    for s in opts.schedules:
        SCHEDULES.get(s)
    if not opts.schedules:
        raise ConfigError(f"--schedules is empty; choose from {', '.join(SCHEDULES.names())}")
    METHODS.get(opts.method)
    if not build_method(opts.method).local:
        raise ConfigError(
            f"--method {opts.method!r} has no local losses; scpl schedules need one of "
            f"{', '.join(n for n in METHODS.names() if build_method(n).local)}"
        )
    kind = getattr(builder, "kind", "image")
    if spec.kind != kind:
        from scpl.training.loop import models_of_kind

        raise ConfigError(
            f"model {opts.model!r} takes {kind} data but {opts.dataset!r} is a {spec.kind} "
            f"dataset; pick a {spec.kind} model ({', '.join(models_of_kind(spec.kind))})"
        )
    if opts.emulate not in SOURCES:
        raise ConfigError(f"--emulate {opts.emulate!r}: choose one of {', '.join(SOURCES)}")
    if opts.stages < 1:
        raise ConfigError(f"--stages {opts.stages} must be >= 1")
    if not opts.batch_sizes or min(opts.batch_sizes) < 1:
        raise ConfigError("--batch-sizes must be positive integers, e.g. 32,64,128,256,512")
    if opts.rounds < 1 or opts.warmup < 0 or opts.sim_batches < 2:
        raise ConfigError("--rounds must be >= 1 (and warmup >= 0, sim batches >= 2)")
    if opts.max_inputs < 0:
        raise ConfigError(f"--max-inputs {opts.max_inputs} must be >= 0 (0: no cap)")
    if opts.tflops <= 0:
        raise ConfigError(f"--tflops {opts.tflops} must be positive")
    train_size = (
        opts.train_size or getattr(spec, "train_size", 0) or TRAIN_SIZES.get(opts.dataset, 0)
    )
    if train_size < 1:
        raise ConfigError(
            f"the training-set size of {opts.dataset!r} is not known without reading it; "
            "pass --train-size N"
        )
    for n in opts.batch_sizes:
        if train_size // n < 1:
            raise ConfigError(f"batch size {n} exceeds the {train_size} training samples; lower it")
    augment = opts.augment or ("two-view" if kind == "image" else "none")
    if augment not in AUGMENTS:
        raise ConfigError(f"unknown --augment {augment!r}; choose one of: {', '.join(AUGMENTS)}")
    if kind == "text" and augment != "none":
        raise ConfigError("text models take no augmentation; use --augment none")
    shape = tuple(opts.input_shape) or tuple(spec.input_shape)
    num_classes = spec.num_classes or 2
    micro = opts.micro_batches or opts.stages
    if micro < 1:
        raise ConfigError(f"--micro-batches {micro} must be >= 1")
    if any(SCHEDULES.get(s).micro_batches for s in opts.schedules if s != "sequential"):
        bad = [n for n in opts.batch_sizes if n % micro]
        if bad:
            raise ConfigError(
                f"--micro-batches {micro} does not divide batch size(s) "
                f"{','.join(map(str, bad))}; choose a divisor"
            )
    kw = {"vocab_size": opts.vocab_size, "embed_dim": opts.embed_dim} if kind == "text" else {}
    suffix = "-flops" if opts.emulate == "flops" else ""
    out = Path(opts.out or f"docs/results/epoch-time/{opts.model}-{opts.dataset}{suffix}")
    return Setup(
        kind,
        shape,
        num_classes,
        train_size,
        2 if augment == "two-view" else 1,
        opts.head or ("mlp" if kind == "image" else "identity"),
        kw,
        micro,
        out,
    )


def measure_sweep(
    opts: EpochTimeOptions, setup: Setup, pairs: Sequence[tuple[int, str]], log=print
) -> dict[tuple[int, str], Costs]:
    """Time every (inputs per step, method) pair on one device, round-robin.

    One sequential executor with a recorder per pair (the real model, as
    :func:`scpl.perf.emulate.measure_op_costs` builds it); after ``opts.warmup`` steps each, the
    pairs take turns, one training step at a time, for ``opts.rounds`` rounds, so that load from
    other processes hits every pair alike. On a CPU with one intra-op thread each timed step's
    op spans are scaled by the step's thread CPU time / wall time, which removes the time the
    step waited for a core other processes held (the sequential executor runs every op in
    this thread); each op's cost is then its shortest value over the rounds. Work ops only:
    one-device transfers are in-process hand-offs, not link costs."""
    import torch

    from scpl.methods import MethodConfig, build_method
    from scpl.models import build_model
    from scpl.parallel import EXECUTORS, ExecutorOptions, OptimConfig
    from scpl.perf.emulate import WORK_OPS, synthetic_batch

    dev = torch.device(opts.device)
    K = opts.stages
    runs = {}
    scale: dict[tuple, float] = {}  # (pair, batch) -> CPU time / wall time of that step
    try:
        for inputs, method in pairs:
            torch.manual_seed(0)
            m = build_model(
                opts.model,
                setup.input_shape,
                setup.num_classes,
                K,
                opts.width,
                None,
                **setup.model_kwargs,
            )
            meth = build_method(method, MethodConfig(head=setup.head, proj_dim=opts.proj_dim))
            ex = EXECUTORS.get("sequential")(
                meth.attach(m),
                meth.local,
                OptimConfig(total_steps=1000),
                [dev],
                ExecutorOptions("sequential", record=True),
                method,
            )
            g = torch.Generator().manual_seed(0)
            vocab = setup.model_kwargs.get("vocab_size", 1000)
            x, y = synthetic_batch(setup.input_shape, inputs, setup.num_classes, g, vocab)
            x = tuple(t.to(dev) for t in x) if isinstance(x, tuple) else x.to(dev)
            runs[(inputs, method)] = (ex, x, y.to(dev))

        cpu_clock = dev.type == "cpu" and torch.get_num_threads() == 1

        def step(ex, x, y) -> float:
            t0, c0 = time.perf_counter(), time.thread_time()
            ex.submit(x, y)
            ex.collect()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
            return min(1.0, cpu / wall) if cpu_clock and wall > 0 else 1.0

        t = time.perf_counter()
        for ex, x, y in runs.values():
            for _ in range(opts.warmup):
                step(ex, x, y)
        log(f"  warm-up: {len(runs)} (batch, method) pairs [{time.perf_counter() - t:.1f}s]")
        for r in range(opts.rounds):
            t = time.perf_counter()
            for key, (ex, x, y) in runs.items():
                scale[(key, opts.warmup + r)] = step(ex, x, y)
            busy = statistics.fmean(v for (_, b), v in scale.items() if b == opts.warmup + r)
            log(
                f"  round {r + 1}/{opts.rounds} [{time.perf_counter() - t:.1f}s; this thread had "
                f"a core {100 * busy:.0f}% of the time]"
            )
    finally:
        for ex, _, _ in runs.values():
            ex.close()
    out = {}
    for key, (ex, _, _) in runs.items():
        c: Costs = {}
        for e in ex.recorder.events:
            if e.batch >= opts.warmup and e.kind in WORK_OPS:
                d = c.setdefault(e.stage, {})
                v = (e.end - e.start) * scale.get((key, e.batch), 1.0)
                d[e.kind] = min(d.get(e.kind, float("inf")), v)
        out[key] = c
    return out


def default_costs_for(
    opts: EpochTimeOptions, setup: Setup, pairs: Sequence[tuple[int, str]], log=print
) -> CostsFor:
    """(inputs per step, method) -> work-op costs of one mini-batch on one device: timed
    round-robin up front (:func:`measure_sweep`) or FLOP-proportional (computed on demand).
    Steps over ``opts.max_inputs`` inputs are extrapolated from a step of ``max_inputs``: F, L
    and B scale with the inputs, U does not (a contrastive loss's N x N similarities grow
    faster, but are a small part of L and B)."""
    from scpl.perf.emulate import flop_op_costs, scale_costs

    base: dict[tuple[int, str], Costs] = {}
    if opts.emulate == "measured":
        log(
            f"epoch-time: timing {len(pairs)} (inputs, method) pairs on {opts.device}: "
            f"{opts.warmup} warm-up + {opts.rounds} round(s) each, round-robin"
        )
        base.update(measure_sweep(opts, setup, pairs, log))

    def costs_for(inputs: int, method: str) -> Costs:
        timed = timed_inputs(opts, inputs)
        if opts.emulate == "flops" and (timed, method) not in base:
            base[(timed, method)] = flops(timed, method)
        c = base[(timed, method)]
        return c if timed == inputs else scale_costs(c, inputs / timed, ("F", "L", "B"))

    def flops(inputs: int, method: str) -> Costs:
        return flop_op_costs(
            opts.model,
            method,
            opts.stages,
            opts.width,
            setup.input_shape,
            setup.num_classes,
            batch_size=inputs,
            flops_per_s=opts.tflops * 1e12,
            head=setup.head,
            proj_dim=opts.proj_dim,
            model_kwargs=setup.model_kwargs,
        )

    return costs_for


def timed_inputs(opts: EpochTimeOptions, inputs: int) -> int:
    """How many inputs the step that stands for ``inputs`` is timed (or FLOP-counted) with."""
    return min(inputs, opts.max_inputs) if opts.max_inputs else inputs


def sweep_pairs(opts: EpochTimeOptions, setup: Setup) -> list[tuple[int, str]]:
    """The (timed inputs per step, method) pairs the sweep needs (BP always: the reference)."""
    methods = list(dict.fromkeys(["bp", *(method_of(s, opts.method) for s in opts.schedules)]))
    pairs = [(timed_inputs(opts, n * setup.views), m) for n in opts.batch_sizes for m in methods]
    return list(dict.fromkeys(pairs))


def project_epoch(
    schedule: str,
    method: str,
    num_stages: int,
    costs: Costs,
    steps: int,
    micro: int = 1,
    transfer: Costs | None = None,
    sim_batches: int = 32,
) -> float:
    """Seconds for ``steps`` mini-batches of ``schedule`` on K devices, from an empty pipeline:
    the first ``sim_batches`` simulated, the rest at the simulated steady-state rate."""
    from scpl.methods import build_method
    from scpl.perf.emulate import per_micro
    from scpl.perf.simulate import simulate

    K = num_stages
    merged = {s: dict(costs.get(s, {})) for s in range(K)}
    for s, d in (transfer or {}).items():
        if s < K:
            merged[s].update(d)
    n = min(steps, sim_batches)
    local = build_method(method).local
    sim = simulate(schedule, K, per_micro(merged, micro), n, micro, local)
    total = sim.makespan
    if steps > n:
        total += (steps - n) / sim.steady_rate(min(n - 1, max(1, n // 2)))
    return total


def epoch_rows(opts: EpochTimeOptions, setup: Setup, costs_for: CostsFor, log=print) -> list[dict]:
    """One row per (batch size, schedule); see the module docstring."""
    from scpl.parallel import SCHEDULES
    from scpl.perf.emulate import parse_emulate, stage_totals

    K = opts.stages
    transfer = parse_emulate(opts.transfer, K)
    source = "cpu-measured" if opts.emulate == "measured" else f"flops@{opts.tflops:g}TFLOP/s"
    if opts.emulate == "measured" and not opts.device.startswith("cpu"):
        source = f"{opts.device}-measured"
    methods = list(dict.fromkeys(["bp", *(method_of(s, opts.method) for s in opts.schedules)]))
    rows = []
    for n in opts.batch_sizes:
        inputs = n * setup.views
        steps = setup.train_size // n
        costs = {m: costs_for(inputs, m) for m in methods}
        one_dev = {m: steps * sum(stage_totals(costs[m], K)) for m in methods}
        log(
            f"epoch-time: batch {n} ({inputs} inputs/step, {steps} steps/epoch): step "
            + ", ".join(f"{m} {sum(stage_totals(costs[m], K)) * 1e3:.1f} ms" for m in methods)
        )
        by_sched = {}
        for sched in opts.schedules:
            meth = method_of(sched, opts.method)
            m = setup.micro if SCHEDULES.get(sched).micro_batches and sched != "sequential" else 1
            proj = project_epoch(sched, meth, K, costs[meth], steps, m, transfer, opts.sim_batches)
            by_sched[sched] = proj
            rows.append(
                {
                    "model": opts.model,
                    "dataset": opts.dataset,
                    "schedule": sched,
                    "method": meth,
                    "batch_size": n,
                    "K": K,
                    "micro_batches": m,
                    "steps_per_epoch": steps,
                    "measured_one_device_s": one_dev[meth],
                    "projected_K_s": proj,
                    "speedup_vs_bp_one_device": one_dev["bp"] / proj,
                    "inputs_per_step": inputs,
                    "timed_inputs": timed_inputs(opts, inputs),
                    "train_size": setup.train_size,
                    "width": opts.width,
                    "cost_source": source,
                    "transfer": opts.transfer or "none",
                    "stage_step_ms": " ".join(
                        f"{t * 1e3:.2f}" for t in stage_totals(costs[meth], K)
                    ),
                }
            )
        nmp = by_sched.get("nmp")
        for r in rows[-len(opts.schedules) :]:
            r["speedup_vs_nmp"] = nmp / r["projected_K_s"] if nmp else float("nan")
    return rows


# ------------------------------------------------------------------------------------------
# Outputs
# ------------------------------------------------------------------------------------------


def _g(v: float) -> str:
    return f"{v:.0f}" if v >= 1000 else f"{v:.1f}" if v >= 10 else f"{v:.3g}"


def format_tables(rows: list[dict], opts: EpochTimeOptions) -> str:
    """Markdown: projected seconds per epoch (rows batch size, columns schedules), the
    one-device measured seconds per method, and speedups vs BP on one device."""
    scheds = list(dict.fromkeys(r["schedule"] for r in rows))
    sizes = list(dict.fromkeys(r["batch_size"] for r in rows))
    cell = {(r["batch_size"], r["schedule"]): r for r in rows}
    K = opts.stages
    methods = list(dict.fromkeys(r["method"] for r in rows))

    def table(title: str, cols: list[str], value) -> list[str]:
        lines = [title, "", "| batch size | " + " | ".join(cols) + " |"]
        lines.append("|---:|" + "---:|" * len(cols))
        for n in sizes:
            lines.append(f"| {n} | " + " | ".join(value(n, c) for c in cols) + " |")
        return lines + [""]

    def one_dev(n, meth):
        r = next(r for r in rows if r["batch_size"] == n and r["method"] == meth)
        return _g(r["measured_one_device_s"])

    out = table(
        f"Projected seconds per epoch on K={K} devices (simulator; `sequential` = BP one op at "
        "a time on one device):",
        scheds,
        lambda n, s: _g(cell[(n, s)]["projected_K_s"]),
    )
    out += table(
        "Seconds per epoch on one device (sum of the method's op costs):",
        methods,
        one_dev,
    )
    out += table(
        "Speedup of each projected K-device schedule vs BP on one device:",
        scheds,
        lambda n, s: f"{cell[(n, s)]['speedup_vs_bp_one_device']:.2f}x",
    )
    return "\n".join(out)


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(CSV_COLUMNS), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(
                {
                    k: (f"{v:.6g}" if isinstance(v, float) else v)
                    for k, v in r.items()
                    if k in CSV_COLUMNS
                }
            )


def write_png(rows: list[dict], path: Path, opts: EpochTimeOptions, setup: Setup) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scheds = list(dict.fromkeys(r["schedule"] for r in rows))
    colors = {
        "sequential": "#4C72B0",
        "nmp": "#DD8452",
        "gpipe": "#C44E52",
        "scpl": "#55A868",
        "scpl-gpipe": "#8172B3",
    }
    names = {
        "sequential": "BP, 1 device (sequential)",
        "nmp": f"BP split on {opts.stages} devices (nmp)",
        "gpipe": "GPipe",
        "scpl": opts.method.upper() if opts.method == "scpl" else opts.method,
        "scpl-gpipe": f"{opts.method.upper() if opts.method == 'scpl' else opts.method}+GPipe",
    }
    # Lines that coincide (sequential = BP one device; scpl-gpipe = scpl when one stage is the
    # bottleneck) stay visible: wide translucent lines under narrow ones, distinct markers.
    style = {
        "sequential": ("o", 4.0),
        "nmp": ("s", 2.0),
        "gpipe": ("^", 2.0),
        "scpl": ("D", 4.0),
        "scpl-gpipe": ("v", 1.5),
    }
    fig, ax = plt.subplots(figsize=(10, 5))
    for s in scheds:
        rs = [r for r in rows if r["schedule"] == s]
        label = names.get(s, s)
        if s in ("gpipe", "scpl-gpipe"):
            label += f" (m={rs[0]['micro_batches']})"
        ax.plot(
            [r["batch_size"] for r in rs],
            [r["projected_K_s"] for r in rs],
            "-" + style.get(s, ("o", 2.0))[0],
            color=colors.get(s),
            label=label if s == "sequential" else f"{label}, K={opts.stages} projected",
            lw=style.get(s, ("o", 2.0))[1],
            alpha=0.55 if style.get(s, ("o", 2.0))[1] > 3 else 1.0,
            ms=6,
        )
    one = "measured" if opts.emulate == "measured" else "FLOP model"
    for meth in dict.fromkeys(r["method"] for r in rows):
        rs = [r for r in rows if r["method"] == meth]
        seen: dict[int, float] = {}
        for r in rs:
            seen.setdefault(r["batch_size"], r["measured_one_device_s"])
        color = "#333333" if meth == "bp" else colors.get("scpl")
        ax.plot(
            list(seen),
            list(seen.values()),
            "--",
            color=color,
            lw=1.3,
            alpha=0.8,
            label=f"{meth.upper() if meth in ('bp', 'scpl') else meth}, 1 device ({one})",
        )
    ax.set_xscale("log", base=2)
    sizes = sorted({r["batch_size"] for r in rows})
    ax.set_xticks(sizes)
    ax.set_xticklabels([str(n) for n in sizes])
    ax.set_ylim(bottom=0)
    xlabel = "batch size N" + (" (two-view: 2N inputs per step)" if setup.views == 2 else "")
    big = sorted({r["batch_size"] for r in rows if r["timed_inputs"] < r["inputs_per_step"]})
    if big:
        xlabel += (
            f"; N >= {big[0]}: costs extrapolated from a {opts.max_inputs}-input step (memory)"
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("seconds per epoch")
    ax.grid(True, alpha=0.3)
    what = (
        "CPU-measured op costs, simulated K devices"
        if opts.emulate == "measured" and opts.device.startswith("cpu")
        else f"{opts.device}-measured op costs, simulated K devices"
        if opts.emulate == "measured"
        else f"FLOP-proportional op costs ({opts.tflops:g} TFLOP/s), simulated K devices"
    )
    ax.set_title(
        f"Training time per epoch: {opts.model} on {opts.dataset}, K={opts.stages}, "
        f"width {opts.width:g}\n{what}",
        fontsize=10,
    )
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def epoch_time(
    opts: EpochTimeOptions, costs_for: CostsFor | None = None, log: Callable | None = None
) -> list[dict]:
    """Run the sweep, write epoch_time.csv/.md/.png under the output dir, print the tables.
    ``costs_for`` replaces the measurement (tests: given op costs)."""
    import torch

    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    setup = resolve(opts)
    torch.set_num_threads(opts.threads)
    t0 = time.perf_counter()
    if opts.width < 1:
        log(
            f"epoch-time: note: width {opts.width:g} < 1 (reduced model, so that timing fits "
            "on a CPU); pass --width 1 for the paper's full-size model"
        )
    given = costs_for is not None
    if costs_for is None:
        costs_for = default_costs_for(opts, setup, sweep_pairs(opts, setup), log)
    rows = epoch_rows(opts, setup, costs_for, log)
    seconds = time.perf_counter() - t0
    out = setup.out
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "epoch_time.csv")
    write_png(rows, out / "epoch_time.png", opts, setup)
    tables = format_tables(rows, opts)
    what = (
        f"op costs timed on {opts.device}: every (N, method) pair ran {opts.warmup} warm-up "
        f"+ {opts.rounds} timed step(s), pairs taking turns step by step; each op's shortest "
        "span, spans scaled by the step's CPU/wall time (one thread) to remove waits for a core "
        "held by other processes"
        if opts.emulate == "measured"
        else f"op costs proportional to FLOPs (matmuls/convolutions; a {opts.tflops:g} TFLOP/s "
        "compute-bound device; U costs 0)"
    )
    if given:
        what = "given op costs"
    header = [
        f"# Training time per epoch vs batch size: {opts.model} on {opts.dataset}, K={opts.stages}",
        "",
        "```",
        opts.command or "(called from Python)",
        "```",
        "",
        f"- commit {git_commit() or '?'}, {time.strftime('%Y-%m-%d %H:%M:%S')}, {seconds:.0f} s",
        f"- hardware: {hardware()}; torch {torch.__version__}, {opts.threads} intra-op thread(s)",
        f"- model {opts.model} at width {opts.width:g}"
        + (" (reduced; the paper uses 1)" if opts.width < 1 else "")
        + f", input {setup.input_shape}, {setup.num_classes} classes, head {setup.head}"
        + (f" (proj {opts.proj_dim})" if setup.head != "identity" else "")
        + (
            f", vocab {opts.vocab_size}, embedding {opts.embed_dim}-d"
            if setup.kind == "text"
            else ""
        ),
        f"- costs: {what}; K devices simulated (scpl.perf.simulate), transfers "
        + (f"`{opts.transfer}` per mini-batch message" if opts.transfer else "free"),
        f"- N = mini-batch size drawn from the dataset; steps per epoch = {setup.train_size} // N"
        + (
            "; two-view augmentation (every method, as the training loop): a step processes "
            "2N inputs"
            if setup.views == 2
            else "; a step processes N inputs"
        )
        + "; augmentation and data loading themselves are not timed",
        *(
            [
                f"- steps of more than {opts.max_inputs} inputs were not run (memory): their "
                f"costs are those of a {opts.max_inputs}-input step with F/L/B scaled linearly "
                "(U unchanged); see `timed_inputs` in the CSV"
            ]
            if opts.max_inputs and any(r["timed_inputs"] < r["inputs_per_step"] for r in rows)
            else []
        ),
        "- one-device time = steps x the sum of the method's op costs; projected time = the "
        f"first {opts.sim_batches} mini-batches simulated from an empty pipeline, the rest of "
        f"the epoch at the steady-state rate; gpipe/scpl-gpipe use m={setup.micro} "
        "micro-batches (F/L/B split evenly, U once)",
        "- NOT GPU wall time: "
        + (
            "CPU op costs weigh small ops (optimizer, heads) more than a GPU would"
            if opts.emulate == "measured"
            else "FLOP costs are linear in N, so per-epoch times are (almost) flat in N"
        ),
        "",
    ]
    (out / "epoch_time.md").write_text("\n".join(header) + "\n" + tables)
    print(tables)
    log(f"epoch-time: wrote {out}/epoch_time.csv, .md, .png ({seconds:.0f} s)")
    return rows


__all__ = ["EpochTimeOptions", "TRAIN_SIZES", "epoch_time", "project_epoch", "epoch_rows"]
