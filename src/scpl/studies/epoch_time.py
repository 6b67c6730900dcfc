"""``scpl epoch-time``: training time per epoch against batch size (paper appendix, Figs. 5-12).

For every batch size N the op costs (F, L, B, U of each stage) of the method each schedule runs
are taken on ONE device -- timed on this machine with the recorder (``--emulate measured``,
:func:`scpl.perf.measure.measure_round_robin`) or proportional to FLOPs (``--emulate flops``, a
compute-bound device, :func:`scpl.perf.measure.flop_op_costs`) -- and turned into two numbers:

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

import sys
import time
from collections.abc import Callable
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
    from scpl.perf.harness import method_for

    return "bp" if schedule == "sequential" else method_for(schedule, method)


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
    from scpl.data.augment import AUGMENTS, num_views
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
        from scpl.models.base import models_of_kind

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
        num_views(augment),
        opts.head or ("mlp" if kind == "image" else "identity"),
        kw,
        micro,
        out,
    )


def cost_source(opts: EpochTimeOptions, setup: Setup):
    """The sweep's :class:`~scpl.perf.costs.CostSource`: work-op costs of one mini-batch on one
    device, timed (``measured``, round-robin up front, see :func:`epoch_time`) or FLOP-proportional.
    Steps over ``opts.max_inputs`` inputs are extrapolated from a step of ``max_inputs``: F, L
    and B scale with the inputs, U does not (a contrastive loss's N x N similarities grow
    faster, but are a small part of L and B)."""
    from scpl.perf.costs import CostSource
    from scpl.perf.measure import Workload

    w = Workload(
        opts.model,
        opts.width,
        setup.input_shape,
        head=setup.head,
        proj_dim=opts.proj_dim,
        num_classes=setup.num_classes,
        model_kwargs=setup.model_kwargs,
        device=opts.device,
        tflops=opts.tflops,
    )
    return CostSource(opts.emulate, w, max_batch=opts.max_inputs)


def timed_inputs(opts: EpochTimeOptions, inputs: int) -> int:
    """How many inputs the step that stands for ``inputs`` is timed (or FLOP-counted) with."""
    return min(inputs, opts.max_inputs) if opts.max_inputs else inputs


def sweep_pairs(opts: EpochTimeOptions, setup: Setup) -> list[tuple[int, str]]:
    """The (timed inputs per step, method) pairs the sweep needs (BP always: the reference)."""
    methods = list(dict.fromkeys(["bp", *(method_of(s, opts.method) for s in opts.schedules)]))
    pairs = [(timed_inputs(opts, n * setup.views), m) for n in opts.batch_sizes for m in methods]
    return list(dict.fromkeys(pairs))


def epoch_rows(opts: EpochTimeOptions, setup: Setup, costs_for: CostsFor, log=print) -> list[dict]:
    """One row per (batch size, schedule); see the module docstring."""
    from scpl.parallel import SCHEDULES
    from scpl.perf.emulate import parse_emulate, stage_totals
    from scpl.perf.simulate import project_epoch

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
    from scpl.report.tables import grid_table

    scheds = list(dict.fromkeys(r["schedule"] for r in rows))
    sizes = list(dict.fromkeys(r["batch_size"] for r in rows))
    cell = {(r["batch_size"], r["schedule"]): r for r in rows}
    methods = list(dict.fromkeys(r["method"] for r in rows))

    def one_dev(n, meth):
        r = next(r for r in rows if r["batch_size"] == n and r["method"] == meth)
        return _g(r["measured_one_device_s"])

    out = grid_table(
        f"Projected seconds per epoch on K={opts.stages} devices (simulator; `sequential` = BP "
        "one op at a time on one device):",
        "batch size",
        sizes,
        scheds,
        lambda n, s: _g(cell[(n, s)]["projected_K_s"]),
    )
    out += grid_table(
        "Seconds per epoch on one device (sum of the method's op costs):",
        "batch size",
        sizes,
        methods,
        one_dev,
    )
    out += grid_table(
        "Speedup of each projected K-device schedule vs BP on one device:",
        "batch size",
        sizes,
        scheds,
        lambda n, s: f"{cell[(n, s)]['speedup_vs_bp_one_device']:.2f}x",
    )
    return "\n".join(out)


def write_png(rows: list[dict], path: Path, opts: EpochTimeOptions, setup: Setup) -> None:
    from scpl.report.plots import epoch_time_plot

    xlabel = "batch size N" + (" (two-view: 2N inputs per step)" if setup.views == 2 else "")
    big = sorted({r["batch_size"] for r in rows if r["timed_inputs"] < r["inputs_per_step"]})
    if big:
        xlabel += (
            f"; N >= {big[0]}: costs extrapolated from a {opts.max_inputs}-input step (memory)"
        )
    what = (
        "CPU-measured op costs, simulated K devices"
        if opts.emulate == "measured" and opts.device.startswith("cpu")
        else f"{opts.device}-measured op costs, simulated K devices"
        if opts.emulate == "measured"
        else f"FLOP-proportional op costs ({opts.tflops:g} TFLOP/s), simulated K devices"
    )
    epoch_time_plot(
        rows,
        path,
        stages=opts.stages,
        method=opts.method,
        one_device="measured" if opts.emulate == "measured" else "FLOP model",
        title=f"Training time per epoch: {opts.model} on {opts.dataset}, K={opts.stages}, "
        f"width {opts.width:g}\n{what}",
        xlabel=xlabel,
    )


def epoch_time(
    opts: EpochTimeOptions, costs_for: CostsFor | None = None, log: Callable | None = None
) -> list[dict]:
    """Run the sweep, write epoch_time.csv/.md/.png under the output dir, print the tables.
    ``costs_for`` replaces the measurement (tests: given op costs)."""
    import torch

    from scpl.report.tables import write_csv

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
        source = cost_source(opts, setup)
        if opts.emulate == "measured":
            pairs = sweep_pairs(opts, setup)
            log(
                f"epoch-time: timing {len(pairs)} (inputs, method) pairs on {opts.device}: "
                f"{opts.warmup} warm-up + {opts.rounds} round(s) each, round-robin"
            )
            source.time_round_robin(opts.stages, pairs, opts.rounds, opts.warmup, log)

        def costs_for(inputs: int, method: str) -> Costs:
            return source.costs(opts.stages, method, inputs)

    rows = epoch_rows(opts, setup, costs_for, log)
    seconds = time.perf_counter() - t0
    out = setup.out
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "epoch_time.csv", CSV_COLUMNS)
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


__all__ = ["EpochTimeOptions", "TRAIN_SIZES", "epoch_time", "epoch_rows"]
