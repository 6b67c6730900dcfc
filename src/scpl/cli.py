"""The `scpl` command: train, list, params."""

from __future__ import annotations

import argparse
import sys

from scpl.errors import ScplError


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except ScplError as e:
        if args.debug:
            raise
        print(f"scpl: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("scpl: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    from scpl.training.config import add_config_arguments

    parser = argparse.ArgumentParser(
        prog="scpl", description="Decoupled local losses and pipeline model parallelism."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("train", help="train a model (a named recipe plus --field overrides)")
    p.add_argument("recipe", nargs="?", default="default", help="recipe name (see `scpl list`)")
    p.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    add_config_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "experiment",
        help="run rows x models x seeds; write mean ± std tables, parameters, seconds, curves",
        description="Run every (model, row, seed) of a named experiment (or of one recipe), "
        "select each run's epoch on validation, and write table.md/table.csv (accuracy mean ± "
        "std with † where a row beats BP, training/inference parameters, train/test seconds "
        "per epoch), curves.csv/curves.png (test accuracy per epoch) and runs.jsonl. "
        "Finished runs are not repeated; identical runs of sibling experiments are reused.",
    )
    p.add_argument("name", help="experiment name or recipe (see `scpl list`)")
    p.add_argument("--trials", type=int, default=3, help="seeds per (model, row) [3]")
    p.add_argument("--out", default=None, help="output dir [docs/results/<name>]")
    p.add_argument("--methods", default=None, help="comma-separated subset of methods")
    p.add_argument("--models", default=None, help="comma-separated subset of models")
    p.add_argument("--rows", default=None, help="comma-separated subset of row labels")
    p.add_argument(
        "--smoke", action="store_true", help="every run shrunk to a few steps (for testing)"
    )
    p.add_argument(
        "--no-reuse",
        action="store_true",
        help="train every run even if a sibling experiment already ran the same settings",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a config field for every run (repeatable)",
    )
    p.set_defaults(func=cmd_experiment)

    p = sub.add_parser("list", help="list registered models, methods, datasets, executors, recipes")
    p.add_argument("--recipes", action="store_true", help="list every recipe name")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser(
        "bench",
        help="pipeline benchmarks (emulated devices, simulator, balancing, real compute)",
        description="Without a part flag: every part (about 5 minutes on 2 vCPUs). Tables are "
        "printed and written as CSV/JSON/Markdown (+ Gantt PNGs) under --out.",
    )
    add_bench_arguments(p)
    p.add_argument(
        "--soak",
        type=int,
        default=0,
        metavar="STEPS",
        help="only the long-run memory check: resident memory over STEPS steps per executor",
    )
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "profile",
        help="timeline of a short run: Gantt PNG + Chrome/Perfetto trace (emulated, real or simulated)",
    )
    add_profile_arguments(p)
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser(
        "balance", help="split a model into K stages minimising the slowest stage (--partition)"
    )
    p.add_argument("--model", default="vgg")
    p.add_argument("--stages", type=int, default=4)
    p.add_argument("--by", choices=("time", "params"), default="time", help="unit cost [time]")
    p.add_argument("--method", default="scpl", help="method whose step is timed [scpl]")
    p.add_argument("--width", type=float, default=0.5, help="width multiplier for timing [0.5]")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--input-shape", default="3,32,32")
    p.add_argument("--steps", type=int, default=2, help="timed steps per unit (median) [2]")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_balance)

    p = sub.add_parser("params", help="effective vs affiliated parameter counts per method")
    p.add_argument("--model", default=None, help="one model (default: all vision models)")
    p.add_argument("--dataset", default="cifar10", help="sets input shape and classes [cifar10]")
    p.add_argument("--stages", type=int, default=4)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--head", default="mlp")
    p.add_argument("--methods", default=None, help="comma-separated (default: all)")
    p.add_argument("--out", default=None, help="also write params.md and params.csv here")
    p.set_defaults(func=cmd_params)
    p = sub.add_parser(
        "epoch-time",
        help="seconds per epoch vs batch size of each schedule (one-device op costs, simulated "
        "K devices; paper Figs. 5-12)",
    )
    add_epoch_time_arguments(p)
    p.set_defaults(func=cmd_epoch_time)
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    from scpl.common import dist_env
    from scpl.launch import launch_torchrun
    from scpl.training.loop import train
    from scpl.training.recipes import make_config

    cfg = make_config(args.recipe, args)
    if cfg.executor == "dist" and cfg.nproc and not dist_env().is_distributed:
        return launch_torchrun(cfg.nproc)
    s = train(cfg, recipe=args.recipe)
    if dist_env().rank != 0:
        return 0
    print(
        f"result recipe={args.recipe} model={cfg.model} method={cfg.method} dataset={cfg.dataset} "
        f"test_acc={s['test_acc']:.4f} best_epoch={s['best_epoch']} val_acc={s['best_val_acc']:.4f} "
        f"samples_per_s={s['samples_per_s']:.1f} train_s={s['train_seconds']:.1f} out={s['out_dir']}"
    )
    return 0


def _shape(text: str) -> tuple[int, ...]:
    from scpl.errors import ConfigError

    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(
            f"--input-shape {text!r} must be comma-separated integers, e.g. 3,32,32"
        ) from None


def _ints(text: str, flag: str) -> tuple[int, ...]:
    from scpl.errors import ConfigError

    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(
            f"{flag} {text!r} must be comma-separated integers, e.g. 1,2,4,8"
        ) from None


def _names(text: str) -> tuple[str, ...]:
    """Comma-separated names, blanks dropped."""
    return tuple(s.strip() for s in text.split(",") if s.strip())


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    from scpl.studies.bench import EQUAL_SPEC, PARTS

    g = p.add_argument_group("what to run (default: every part)")
    g.add_argument(
        "--step-ratio",
        action="store_true",
        help="only: one-device seconds per step of each method vs BP (round-robin timing)",
    )
    g.add_argument(
        "--project",
        action="store_true",
        help="only: project K-device throughput of every schedule from op costs measured on one "
        "device (simulator)",
    )
    g.add_argument(
        "--balance",
        choices=("time", "params"),
        action="append",
        help="only: paper split vs the split balanced by measured time or parameter count "
        "(repeatable)",
    )
    g.add_argument("--parts", default=None, help=f"comma-separated subset of {','.join(PARTS)}")
    g.add_argument(
        "--quick", action="store_true", help="seconds: equal stages, K=1,2, a few mini-batches"
    )
    g = p.add_argument_group("emulated pipeline")
    g.add_argument(
        "--emulate",
        default=None,
        help=f"per-op device time of the equal-stage suite, e.g. 'F=10ms,L=2ms,B=20ms,U=1ms' or "
        f"per stage '0:F=10ms;1:F=12ms' [{EQUAL_SPEC}]",
    )
    g.add_argument(
        "--transfer",
        default="",
        help="transfer cost added to every suite, e.g. send_act=1ms,recv_act=1ms",
    )
    g.add_argument("--stages", default=None, help="K values of the equal suite [1,2,4,8]")
    g.add_argument("--steps", type=int, default=None, help="mini-batches per run [12]")
    g = p.add_argument_group("measured model (vgg suite, --project, --balance, real compute)")
    g.add_argument("--model", default="vgg")
    g.add_argument(
        "--width", type=float, default=None, help="real-compute rows [0.25; --step-ratio: 1.0]"
    )
    g.add_argument("--batch-size", type=int, default=128, help="real-compute rows [128]")
    g.add_argument("--input-shape", default="3,32,32")
    g.add_argument(
        "--measure-stages", default=None, help="K values of the vgg/flops/project suites [1,2,4]"
    )
    g.add_argument("--measure-width", type=float, default=None, help="op-cost timing width [0.5]")
    g.add_argument("--measure-batch", type=int, default=None, help="op-cost timing batch [32]")
    g.add_argument(
        "--stage-ms",
        type=float,
        default=None,
        help="vgg suite: scale measured costs so the slowest stage takes this long [50]",
    )
    g.add_argument("--rounds", type=int, default=3)
    g.add_argument("--device", default="cpu")
    g.add_argument("--threads", type=int, default=1, help="torch intra-op threads [1]")
    g.add_argument("--out", default="runs/bench", help="output directory [runs/bench]")


def cmd_bench(args: argparse.Namespace) -> int:
    if getattr(args, "soak", 0):
        return cmd_soak(args.soak)
    from scpl.common import resolve_device
    from scpl.studies.bench import BenchOptions, print_table, run_bench, step_ratio

    shape = _shape(args.input_shape)
    dev = str(resolve_device(args.device))
    if args.step_ratio:
        width = args.width if args.width is not None else 1.0
        rows = step_ratio(
            args.model,
            batch_size=args.batch_size,
            input_shape=shape,
            width=width,
            rounds=args.rounds,
            device=dev,
        )
        print_table(
            rows,
            f"step time per method: {args.model} width {width}, batch {args.batch_size}, "
            f"input {shape}, device {dev}, {args.rounds} rounds (median)",
        )
        if not (args.project or args.balance):
            return 0
    kw: dict = {}
    for flag, key in (
        ("emulate", "emulate"),
        ("steps", "steps"),
        ("width", "real_width"),
        ("measure_width", "vgg_width"),
        ("measure_batch", "vgg_batch"),
        ("stage_ms", "vgg_stage_ms"),
    ):
        if getattr(args, flag) is not None:
            kw[key] = getattr(args, flag)
    if args.emulate is not None and args.emulate.strip().lower() == "measured":
        from scpl.errors import ConfigError

        raise ConfigError(
            "scpl bench: measured op costs are the 'vgg' suite (--measure-width, --measure-batch, "
            "--stage-ms) and --project; --emulate sets the equal-stage suite"
        )
    if args.stages:
        kw["stages"] = _ints(args.stages, "--stages")
    if args.measure_stages:
        kw["vgg_stages"] = _ints(args.measure_stages, "--measure-stages")
    parts = None
    if args.parts:
        parts = _names(args.parts)
    elif args.project or args.balance:
        parts = (("project",) if args.project else ()) + (("balance",) if args.balance else ())
    if parts:
        kw["parts"] = parts
    if args.balance:
        kw["balance"] = tuple(dict.fromkeys(args.balance))
    kw.update(
        model=args.model,
        input_shape=shape,
        real_batch=args.batch_size,
        rounds=args.rounds,
        device=dev,
        threads=args.threads,
        out=args.out,
        command="scpl " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["bench"] else "",
    )
    opts = BenchOptions.quick(**kw) if args.quick else BenchOptions(**kw)
    run_bench(opts)
    return 0


def add_profile_arguments(p: argparse.ArgumentParser) -> None:
    from scpl.studies.bench import EQUAL_SPEC

    p.add_argument(
        "--schedule",
        default="scpl",
        help="schedule, or several comma-separated for side-by-side panels (e.g. nmp,scpl) [scpl]",
    )
    p.add_argument("--method", default="scpl", help="method of local-loss schedules [scpl]")
    p.add_argument("--model", default="convnet")
    p.add_argument("--stages", type=int, default=4)
    p.add_argument("--micro-batches", type=int, default=0, help="gpipe schedules [K]")
    p.add_argument("--steps", type=int, default=6, help="mini-batches [6]")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--width", type=float, default=0.125)
    p.add_argument("--input-shape", default="1,8,8", help="C,H,W or, for text models, T [1,8,8]")
    p.add_argument("--vocab-size", type=int, default=2000, help="text models [2000]")
    p.add_argument("--executor", default="local", choices=("local", "sequential"))
    p.add_argument(
        "--emulate",
        default=EQUAL_SPEC,
        help="per-op device time SPEC (e.g. 'F=10ms,B=20ms;3:B=30ms'), 'measured' (time the "
        "model's ops on one device, then run a tiny proxy with those durations), 'flops' (op "
        "costs proportional to the model's FLOPs, a compute-bound device at 1 TFLOP/s) or "
        f"'none' (real compute) [{EQUAL_SPEC}]",
    )
    p.add_argument(
        "--scale-ms",
        type=float,
        default=0.0,
        help="with --emulate measured/flops: scale so the slowest stage takes this long [as is]",
    )
    p.add_argument(
        "--simulate", action="store_true", help="no run: the simulator's timeline for the costs"
    )
    p.add_argument("--queue-depth", type=int, default=2)
    p.add_argument(
        "--torch-profiler", action="store_true", help="also write torch.profiler's Chrome trace"
    )
    p.add_argument("--out", default="runs/profile")
    p.add_argument("--name", default="", help="file name stem [<schedules>-K<K>]")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads [1]")


def cmd_profile(args: argparse.Namespace) -> int:
    import torch

    from scpl.studies.profile import ProfileOptions, profile

    torch.set_num_threads(args.threads)
    shape = _shape(args.input_shape)
    opts = ProfileOptions(
        schedules=_names(args.schedule),
        model=args.model,
        method=args.method,
        stages=args.stages,
        micro_batches=args.micro_batches,
        steps=args.steps,
        batch_size=args.batch_size,
        width=args.width,
        input_shape=shape,
        executor=args.executor,
        emulate=args.emulate,
        scale_ms=args.scale_ms,
        simulate=args.simulate,
        queue_depth=args.queue_depth,
        torch_profiler=args.torch_profiler,
        out=args.out,
        name=args.name,
        device=args.device,
        model_kwargs={"vocab_size": args.vocab_size} if len(shape) == 1 else {},
    )
    profile(opts)
    return 0


def cmd_balance(args: argparse.Namespace) -> int:
    import torch

    from scpl.models import build_model
    from scpl.perf.balance import partition_min_max, unit_costs

    torch.set_num_threads(1)
    shape = _shape(args.input_shape)
    costs = unit_costs(
        args.model,
        args.by,
        shape,
        width=args.width,
        method=args.method,
        batch_size=args.batch_size,
        steps=args.steps,
        device=args.device,
    )
    part = partition_min_max(costs, args.stages)
    default = build_model(args.model, shape, 10, args.stages, args.width).partition
    if args.by == "time":
        unit, show = "ms", lambda cs: ", ".join(f"{c * 1e3:.1f}" for c in cs)
    else:
        unit, show = "params", lambda cs: ", ".join(f"{int(c):,}" for c in cs)
    print(
        f"# {args.model}: {len(costs.body)} units, cost by {args.by} ({unit}); a stage costs its "
        "units' bodies plus the head/loss at its cut"
    )
    print(f"unit body costs: {show(costs.body)}")
    print(f"cut costs:       {show(costs.head)}")
    for label, p in (("default split:", default), ("balanced split:", part)):
        print(f"{label:16s} {','.join(map(str, p)):12s} stage costs {show(costs.stage_costs(p))}")
    print(f"--partition {','.join(map(str, part))}")
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from pathlib import Path

    from scpl.studies.experiment import run_experiment
    from scpl.training.recipes import parse_overrides

    # Smoke runs are for checking that an experiment runs, not for the results folder.
    out = Path(
        args.out or (f"runs/smoke/{args.name}" if args.smoke else f"docs/results/{args.name}")
    )
    overrides = parse_overrides(args.set)
    if args.smoke:
        overrides["smoke"] = True
    table = run_experiment(
        args.name,
        args.trials,
        out,
        overrides,
        tuple(args.methods.split(",")) if args.methods else None,
        tuple(args.models.split(",")) if args.models else None,
        rows=tuple(args.rows.split(",")) if args.rows else None,
        reuse=not args.no_reuse,
    )
    print((out / "table.md").read_text())
    extra = ", curves.csv, curves.png" if (out / "curves.png").exists() else ""
    print(f"wrote {out}/table.md, table.csv, runs.jsonl{extra} ({len(table['cells'])} cells)")
    return 0


def cmd_soak(steps: int) -> int:
    """Resident memory over ``steps`` small training steps, for each single-process executor."""
    from scpl.perf.soak import soak

    print(f"# soak: resident memory over {steps} steps (4-stage SCPL convnet, batch 16)")
    print("| executor | steps | RSS start MiB | RSS end MiB | max rise % | drift % | seconds |")
    print("|---|---|---|---|---|---|---|")
    for executor in ("sequential", "local"):
        r = soak(executor, steps)
        print(
            f"| {executor} | {steps} | {r['rss_start_mb']:.1f} | {r['rss_end_mb']:.1f} | "
            f"{r['max_rise_pct']:.2f} | {r['drift_pct']:.2f} | {r['seconds']:.0f} |"
        )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from scpl.data import DATASETS
    from scpl.methods import METHODS
    from scpl.models import MODELS
    from scpl.parallel import EXECUTORS, SCHEDULES
    from scpl.training.recipes import RECIPES

    for title, reg in (
        ("models", MODELS),
        ("methods", METHODS),
        ("datasets", DATASETS),
        ("executors", EXECUTORS),
        ("schedules", SCHEDULES),
    ):
        print(f"{title}:")
        for name in reg.names():
            print(f"  {name:16s} {reg.describe(name)}")
    from scpl.studies.experiment import EXPERIMENTS

    print("experiments:")
    for name, e in EXPERIMENTS.items():
        rows = "/".join(e.rows)
        print(f"  {name:20s} {'/'.join(e.models)} x {rows} (recipe {e.recipe})")
    print("recipes:")
    paper = [r for r in RECIPES if r.startswith("paper-")]
    for r in sorted(set(RECIPES) - set(paper)):
        print(f"  {r}")
    if getattr(args, "recipes", False):
        for r in sorted(paper):
            print(f"  {r}")
    else:
        print(
            f"  paper-<dataset>-<model>-<method>  ({len(paper)} recipes, e.g. {paper[0]}; --recipes lists all)"
        )
    return 0


def cmd_params(args: argparse.Namespace) -> int:
    """Training vs inference parameter counts per model and method (Delog-SCL Table 5)."""
    import csv
    from pathlib import Path

    from scpl.data import dataset_spec
    from scpl.methods import METHODS, MethodConfig, build_method, count_parameters
    from scpl.models import MODELS, build_model

    spec = dataset_spec(args.dataset)
    models = (
        [args.model]
        if args.model
        else [m for m in MODELS.names() if getattr(MODELS.get(m), "kind", "image") == spec.kind]
    )
    methods = args.methods.split(",") if args.methods else METHODS.names()
    title = (
        f"parameters on {args.dataset} {spec.input_shape}, {spec.num_classes} classes, "
        f"K={args.stages}, width={args.width}, head={args.head}"
    )
    rows = []
    for name in models:
        for meth in methods:
            model = build_model(name, spec.input_shape, spec.num_classes, args.stages, args.width)
            units = build_method(meth, MethodConfig(head=args.head)).attach(model)
            rows.append({"model": name, "method": meth, **count_parameters(units)})
    lines = [
        f"# {title}",
        "",
        "| model | method | training | inference (effective) | affiliated (training-only) |",
        "|---|---|---:|---:|---:|",
    ]
    lines += [
        f"| {r['model']} | {r['method']} | {r['training']:,} | {r['effective']:,} | "
        f"{r['affiliated']:,} |"
        for r in rows
    ]
    print("\n".join(lines))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "params.md").write_text("\n".join(lines) + "\n")
        with open(out / "params.csv", "w", newline="") as f:
            w = csv.DictWriter(f, ["model", "method", "training", "effective", "affiliated"])
            w.writeheader()
            w.writerows(rows)
        print(f"wrote {out}/params.md, params.csv")
    return 0


def add_epoch_time_arguments(p: argparse.ArgumentParser) -> None:
    from scpl.studies.epoch_time import DEFAULT_SCHEDULES

    p.add_argument("--model", default="vgg")
    p.add_argument("--dataset", default="cifar100", help="shapes and epoch size [cifar100]")
    p.add_argument("--stages", type=int, default=4, help="K [4]")
    p.add_argument("--batch-sizes", default="32,64,128,256,512", help="N values [32,...,512]")
    p.add_argument("--schedules", default=",".join(DEFAULT_SCHEDULES))
    p.add_argument("--method", default="scpl", help="local-loss method of scpl schedules [scpl]")
    p.add_argument("--width", type=float, default=0.25, help="model width multiplier [0.25]")
    p.add_argument("--micro-batches", type=int, default=0, help="gpipe schedules [K]")
    p.add_argument(
        "--emulate",
        default="measured",
        choices=("measured", "flops"),
        help="op costs timed on --device, or proportional to FLOPs (compute-bound) [measured]",
    )
    p.add_argument("--tflops", type=float, default=1.0, help="--emulate flops: device speed [1]")
    p.add_argument(
        "--transfer", default="", help="per-message transfer cost, e.g. send_act=1ms,recv_act=1ms"
    )
    p.add_argument("--train-size", type=int, default=0, help="samples per epoch [the dataset's]")
    p.add_argument("--augment", default="", help="[two-view for images, none for text]")
    p.add_argument("--head", default="", help="[mlp for images, identity for text]")
    p.add_argument("--proj-dim", type=int, default=1024)
    p.add_argument("--rounds", type=int, default=2, help="timed steps per measurement [2]")
    p.add_argument(
        "--max-inputs",
        type=int,
        default=0,
        help="run steps of at most this many inputs (memory); larger ones are extrapolated "
        "linearly (F/L/B scale, U does not) [no cap]",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads [1]")
    p.add_argument("--out", default=None, help="[docs/results/epoch-time/<model>-<dataset>]")


def cmd_epoch_time(args: argparse.Namespace) -> int:
    from scpl.common import resolve_device
    from scpl.studies.epoch_time import EpochTimeOptions, epoch_time

    epoch_time(
        EpochTimeOptions(
            model=args.model,
            dataset=args.dataset,
            stages=args.stages,
            batch_sizes=_ints(args.batch_sizes, "--batch-sizes"),
            schedules=_names(args.schedules),
            method=args.method,
            width=args.width,
            micro_batches=args.micro_batches,
            emulate=args.emulate,
            tflops=args.tflops,
            transfer=args.transfer,
            train_size=args.train_size,
            augment=args.augment,
            head=args.head,
            proj_dim=args.proj_dim,
            rounds=args.rounds,
            max_inputs=args.max_inputs,
            device=str(resolve_device(args.device)),
            threads=args.threads,
            out=args.out or "",
            command="scpl " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["epoch-time"] else "",
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
