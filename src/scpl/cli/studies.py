"""`scpl bench`, `scpl profile` and `scpl epoch-time`: their flags, turned into the options of
the study modules (:mod:`scpl.studies`)."""

from __future__ import annotations

import argparse
import sys

from scpl.cli.args import ints, names, options_from


def add_study_commands(sub) -> None:
    """Add the bench, profile, epoch-time and probe subcommands to ``sub`` (argparse subparsers)."""
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
        "epoch-time",
        help="seconds per epoch vs batch size of each schedule (one-device op costs, simulated "
        "K devices; paper Figs. 5-12)",
    )
    add_epoch_time_arguments(p)
    p.set_defaults(func=cmd_epoch_time)

    p = sub.add_parser(
        "probe",
        help="linear probe of every stage's output of finished runs: where local learning "
        "keeps or loses what the classifier needs",
    )
    p.add_argument("runs", nargs="+", help="run folders (with summary.json and final.rank0.pt)")
    p.add_argument("--train-samples", type=int, default=10000, help="probe training samples")
    p.add_argument("--pool", type=int, default=4, help="average-pool maps to POOL x POOL first")
    p.add_argument("--out", default=None, help="also write the table (.md) and JSON here")
    p.set_defaults(func=cmd_probe)


def cmd_probe(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from scpl.studies.probe import probe_run, probe_table

    results = [probe_run(Path(r), args.train_samples, args.pool) for r in args.runs]
    table = probe_table(results)
    print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "probe.md").write_text(table + "\n")
        (out / "probe.json").write_text(json.dumps(results, indent=1))
    return 0


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
        "--targets",
        action="store_true",
        help="only: SCPL vs one-device BP and the best BP pipeline on VGG, ResNet-18, LSTM and "
        "Transformer (FLOP cost model, auto split, light head; emulated, every pipelined row "
        "checked on its own network against an independent reference) -> DIR/targets.json "
        "(~5-8 min); exits 1 when a target is missed",
    )
    g.add_argument(
        "--report-only",
        action="store_true",
        help="with --targets: exit 0 even when a target is missed (write the report only)",
    )
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
    if getattr(args, "targets", False):
        return cmd_targets(args)
    from scpl.common import resolve_device
    from scpl.perf.measure import step_ratio
    from scpl.report.tables import print_table
    from scpl.studies.bench import BenchOptions, run_bench

    shape = ints(args.input_shape, "--input-shape", "3,32,32")
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
        kw["stages"] = ints(args.stages, "--stages")
    if args.measure_stages:
        kw["vgg_stages"] = ints(args.measure_stages, "--measure-stages")
    parts = None
    if args.parts:
        parts = names(args.parts)
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


def cmd_targets(args: argparse.Namespace) -> int:
    """`scpl bench --targets [--quick] [--out DIR]`: the real-model headline targets."""
    from scpl.studies.targets import TargetsOptions, quick_options, run_targets

    opts = quick_options(out=args.out) if args.quick else TargetsOptions(out=args.out)
    targets = run_targets(opts)  # one intra-op thread: bitwise checks and steady timings
    for t in targets:
        v = "not run" if t["value"] is None else f"{t['value']:.3f}"
        print(f"{t['name']:42s} {v:>8s}  need {t['need']}  {'met' if t['met'] else 'NOT met'}")
    print(f"wrote {args.out}/targets.json, targets.md, targets-detail.json")
    missed = [t["name"] for t in targets if not t["met"]]
    if missed and not args.report_only:
        print(
            f"scpl: error: targets missed: {', '.join(missed)} (--report-only exits 0)",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_soak(steps: int) -> int:
    """Resident memory over ``steps`` small training steps, for each single-process executor."""
    from scpl.perf.soak import soak
    from scpl.report.perf import SOAK_HEADER, soak_row

    print(f"# soak: resident memory over {steps} steps (4-stage SCPL convnet, batch 16)")
    print("\n".join(SOAK_HEADER))
    for executor in ("sequential", "local"):
        print(soak_row(executor, steps, soak(executor, steps)))
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
    shape = ints(args.input_shape, "--input-shape", "3,32,32")
    opts = options_from(
        ProfileOptions,
        args,
        schedules=names(args.schedule),
        input_shape=shape,
        model_kwargs={"vocab_size": args.vocab_size} if len(shape) == 1 else {},
    )
    profile(opts)
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

    opts = options_from(
        EpochTimeOptions,
        args,
        batch_sizes=ints(args.batch_sizes, "--batch-sizes"),
        schedules=names(args.schedules),
        device=str(resolve_device(args.device)),
        out=args.out or "",
        command="scpl " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["epoch-time"] else "",
    )
    epoch_time(opts)
    return 0
