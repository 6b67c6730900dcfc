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
    from scpl.config import add_config_arguments

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

    p = sub.add_parser("list", help="list registered models, methods, datasets, executors, recipes")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("bench", help="benchmarks that print tables")
    p.add_argument(
        "--step-ratio",
        action="store_true",
        help="one-device seconds per step of each method vs BP (round-robin timing)",
    )
    p.add_argument("--model", default="vgg")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--input-shape", default="3,32,32")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("params", help="effective vs affiliated parameter counts per method")
    p.add_argument("--model", default=None, help="one model (default: all vision models)")
    p.add_argument("--dataset", default="cifar10", help="sets input shape and classes [cifar10]")
    p.add_argument("--stages", type=int, default=4)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--head", default="mlp")
    p.add_argument("--methods", default=None, help="comma-separated (default: all)")
    p.set_defaults(func=cmd_params)
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    from scpl.common import dist_env
    from scpl.config import make_config
    from scpl.train import train

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


def launch_torchrun(nproc: int) -> int:
    """Re-run this command under torchrun with ``nproc`` processes on this host."""
    import os
    import subprocess

    argv = sys.argv[1:]
    cleaned: list[str] = []
    skip = False
    for a in argv:  # drop --nproc N / --nproc=N so the children do not relaunch
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        cleaned.append(a)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "scpl.cli",
        *cleaned,
    ]
    print("scpl: launching " + " ".join(cmd[1:]), file=sys.stderr)
    return subprocess.call(
        cmd, env=dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    )


def cmd_bench(args: argparse.Namespace) -> int:
    from scpl.bench import print_table, step_ratio
    from scpl.common import resolve_device

    shape = tuple(int(v) for v in args.input_shape.split(","))
    dev = str(resolve_device(args.device))
    rows = step_ratio(
        args.model,
        batch_size=args.batch_size,
        input_shape=shape,
        width=args.width,
        rounds=args.rounds,
        device=dev,
    )
    print_table(
        rows,
        f"step time per method: {args.model} width {args.width}, batch {args.batch_size}, "
        f"input {shape}, device {dev}, {args.rounds} rounds (median)",
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from scpl.config import RECIPES
    from scpl.data import DATASETS
    from scpl.methods import METHODS
    from scpl.models import MODELS
    from scpl.parallel import EXECUTORS, SCHEDULES

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
    print("recipes:")
    paper = [r for r in RECIPES if r.startswith("paper-")]
    for r in sorted(set(RECIPES) - set(paper)):
        print(f"  {r}")
    print(f"  paper-<dataset>-<model>-<method>  ({len(paper)} recipes, e.g. {paper[0]})")
    return 0


def cmd_params(args: argparse.Namespace) -> int:
    from scpl.data import DATASETS
    from scpl.methods import METHODS, MethodConfig, build_method, count_parameters
    from scpl.models import MODELS, build_model

    spec = DATASETS.get(args.dataset)
    models = [args.model] if args.model else [m for m in MODELS.names()]
    methods = args.methods.split(",") if args.methods else METHODS.names()
    print(
        f"# parameters on {args.dataset} {spec.input_shape}, {spec.num_classes} classes, "
        f"K={args.stages}, width={args.width}, head={args.head}"
    )
    print(
        f"| {'model':10s} | {'method':10s} | {'training':>12s} | {'inference (effective)':>22s} | {'affiliated':>12s} |"
    )
    print(f"|{'-' * 12}|{'-' * 12}|{'-' * 14}|{'-' * 24}|{'-' * 14}|")
    for name in models:
        for meth in methods:
            model = build_model(name, spec.input_shape, spec.num_classes, args.stages, args.width)
            units = build_method(meth, MethodConfig(head=args.head)).attach(model)
            c = count_parameters(units)
            print(
                f"| {name:10s} | {meth:10s} | {c['training']:12,d} | {c['effective']:22,d} | {c['affiliated']:12,d} |"
            )
    _ = METHODS
    return 0


if __name__ == "__main__":
    sys.exit(main())
