"""The `scpl` command line: argparse only. Each subcommand parses its flags and calls the module
that does the work (training/, studies/, perf/, report/); the study commands (bench, profile,
epoch-time) are in :mod:`scpl.cli.studies`."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import sys

from scpl.cli.args import Parser, ints, options_from
from scpl.cli.studies import add_study_commands
from scpl.errors import ScplError


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.refuse_unknown(unknown, getattr(args, "command", None))
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
    except OSError as e:  # a full disk, a read-only mount...: the system's reason in one line
        if args.debug:
            raise
        print(f"scpl: error: {os_error_line(e)}", file=sys.stderr)
        return 2


def os_error_line(e: OSError) -> str:
    """An OSError that no layer below turned into a message: what failed, where, and the fix."""
    where = f" ({e.filename})" if e.filename else ""
    what = f"{e.strerror or e}{where}"
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"{what}; free space or pass --out on another disk, then continue the run with "
            "--resume OUT_DIR (its last checkpoint) or start it again"
        )
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"{what}; make the folder writable or write somewhere else"
    return f"{what}; rerun with --debug for the traceback"


def build_parser() -> Parser:
    from scpl import __version__
    from scpl.report.params import ParamsOptions
    from scpl.report.perf import BalanceOptions
    from scpl.training.config import TrainConfig
    from scpl.training.flags import CONFIG_GROUPS, add_config_arguments
    from scpl.training.recipes import RECIPES

    parser = Parser(
        prog="scpl", description="Decoupled local losses and pipeline model parallelism."
    )
    parser.add_argument("--version", action="version", version=f"scpl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser(
        "train",
        usage="scpl train [RECIPE] [--FIELD VALUE ...]",
        help="train a model (a named recipe plus --field overrides)",
        description="Train a model: a named recipe plus --field overrides. The defaults shown "
        "are what a plain `scpl train` runs (the 'default' recipe over the config defaults); "
        "another recipe sets its own values (see `scpl list`).",
    )
    p.add_argument("recipe", nargs="?", default="default", help="recipe name (see `scpl list`)")
    p.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    add_config_arguments(p, TrainConfig, CONFIG_GROUPS, shown_defaults=RECIPES["default"])
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "report",
        help="tabulate finished runs: accuracy, best epoch, samples/s, wall time, differing config",
        description="One table of finished `scpl train` runs, read from each run's "
        "summary.json: test accuracy, the epoch chosen on validation, validation accuracy, "
        "samples/s, training wall seconds, and every config field that differs between them.",
    )
    p.add_argument(
        "runs",
        nargs="+",
        metavar="RUN_DIR",
        help="a run's output dir (or a summary.json, or a dir searched for runs' summary.json)",
    )
    p.add_argument("--format", choices=("markdown", "csv"), default="markdown")
    p.add_argument("--out", default=None, help="also write the table to this file")
    p.set_defaults(func=cmd_report)

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
    p.add_argument(
        "--budgets",
        default=None,
        metavar="B1,B2,...",
        help="train every (model, row, seed) at each budget in BP epochs (B@N: N seeds) with a "
        "WSD learning rate, branching every budget's decay from one constant-LR run; with "
        "--time-to-accuracy also at equal simulated time on K devices; writes curves.json/.md, "
        "curves_time.png and budget_runs.jsonl",
    )
    p.add_argument(
        "--plan",
        action="store_true",
        help="with --budgets: train nothing; print which cells are done and the steps (and hours, "
        "at the speed its finished runs measured) each still needs",
    )
    g = p.add_argument_group("time to accuracy (accuracy per simulated wall time on K devices)")
    g.add_argument(
        "--time-to-accuracy",
        action="store_true",
        help="instead of the table: BP on 1 device, the best BP pipeline and each local method on "
        "K simulated devices, each trained until BP's one-device time budget is spent; writes "
        "time_to_accuracy.md/.csv/.json",
    )
    g.add_argument("--devices-sim", type=int, default=4, metavar="K", help="devices K [4]")
    g.add_argument(
        "--levels",
        default=None,
        help="validation accuracies to time, e.g. 0.8,0.85 [90/95/99%% of BP's best]",
    )
    p.set_defaults(func=cmd_experiment)

    p = sub.add_parser("list", help="list registered models, methods, datasets, executors, recipes")
    p.add_argument("--recipes", action="store_true", help="list every recipe name")
    p.set_defaults(func=cmd_list)

    add_study_commands(sub)

    p = sub.add_parser(
        "balance", help="split a model into K stages minimising the slowest stage (--partition)"
    )
    add_config_arguments(p, BalanceOptions)
    p.set_defaults(func=cmd_balance)

    p = sub.add_parser("params", help="effective vs affiliated parameter counts per method")
    add_config_arguments(p, ParamsOptions)
    p.set_defaults(func=cmd_params)

    return parser


def cmd_list(args: argparse.Namespace) -> int:
    from scpl.report.catalogue import catalogue
    from scpl.studies.experiment import EXPERIMENTS

    print(catalogue(EXPERIMENTS, args.recipes))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from scpl.common import dist_env
    from scpl.errors import ConfigError
    from scpl.launch import launch_torchrun
    from scpl.training.loop import train
    from scpl.training.recipes import make_config

    if args.resume:  # the run's own settings, from its checkpoint (+ resume-safe flags)
        from scpl.training.checks import resume_config

        if args.overwrite:  # the saved config has overwrite=False: refuse it here, not ignore it
            raise ConfigError(
                "--resume continues a run and --overwrite deletes one; pass only one of them"
            )
        cfg, recipe = resume_config(args.resume, vars(args))
        if cfg.executor == "dist" and not cfg.nproc and not dist_env().is_distributed:
            # The ranks saved nproc=0 (the launcher drops --nproc): relaunch as many processes.
            cfg = dataclasses.replace(cfg, nproc=cfg.stages * cfg.data_parallel)
        if args.recipe not in ("default", recipe):
            raise ConfigError(
                f"--resume {args.resume} continues a run of recipe {recipe!r}, not "
                f"{args.recipe!r}: its settings come from its checkpoint; drop the recipe name, "
                "or start a new run with another --out"
            )
    else:
        cfg, recipe = make_config(args.recipe, args), args.recipe
    if cfg.executor == "dist" and cfg.nproc and not dist_env().is_distributed:
        return launch_torchrun(cfg.nproc, cfg, recipe)
    s = train(cfg, recipe=recipe)
    if dist_env().rank != 0:
        return 0
    print(
        f"result recipe={recipe} model={cfg.model} method={cfg.method} dataset={cfg.dataset} "
        f"test_acc={s['test_acc']:.4f} best_epoch={s['best_epoch']} val_acc={s['best_val_acc']:.4f} "
        f"samples_per_s={s['samples_per_s']:.1f} train_s={s['train_seconds']:.1f} out={s['out_dir']}"
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from scpl.report.runs import report_runs

    text = report_runs(args.runs, args.format)
    print(text, end="")
    if args.out:
        from scpl.errors import ScplError

        out = Path(args.out)
        if out.is_dir():
            raise ScplError(f"--out {out} is a folder; pass a file name, e.g. {out / 'report.md'}")
        try:
            out.write_text(text)
        except OSError as e:
            raise ScplError(
                f"could not write --out {out} ({e.strerror or e}); pass a file you can write"
            ) from None
    return 0


def cmd_params(args: argparse.Namespace) -> int:
    from scpl.report.params import ParamsOptions, parameter_rows, params_markdown, write_params

    opts = options_from(ParamsOptions, args)
    title, rows = parameter_rows(opts)
    print(params_markdown(title, rows))
    if opts.out:
        print(f"wrote {write_params(opts.out, title, rows)}/params.md, params.csv")
    return 0


def cmd_balance(args: argparse.Namespace) -> int:
    import torch

    from scpl.errors import ConfigError
    from scpl.models import build_model
    from scpl.perf.balance import AUTO_BY, balance_text, partition_min_max, unit_costs
    from scpl.report.perf import BalanceOptions, balance_table

    opts = options_from(BalanceOptions, args)
    if opts.by not in (*AUTO_BY, "params"):
        raise ConfigError(f"--by {opts.by!r}: choose {', '.join(AUTO_BY)} or params")
    shape = ints(opts.input_shape, "--input-shape", "3,32,32")
    torch.set_num_threads(1)
    common = dict(width=opts.width, method=opts.method, batch_size=opts.batch_size)
    common.update(steps=opts.steps, device=opts.device)
    if opts.by in AUTO_BY:
        print(
            balance_text(
                opts.model, opts.stages, opts.by, head=opts.head, input_shape=shape, **common
            )
        )
        return 0
    costs = unit_costs(opts.model, opts.by, shape, **common)
    default = build_model(opts.model, shape, 10, opts.stages, opts.width).partition
    print(balance_table(opts, costs, default, partition_min_max(costs, opts.stages)))
    return 0


def _levels(text: str | None) -> tuple[float, ...] | None:
    from scpl.errors import ConfigError

    if not text:
        return None
    try:
        levels = tuple(float(v) for v in text.split(","))
    except ValueError:
        levels = ()
    if not levels or not all(0 < v <= 1 for v in levels):
        raise ConfigError(f"--levels {text!r} must be accuracies in (0, 1], e.g. 0.8,0.85")
    return levels


def cmd_experiment(args: argparse.Namespace) -> int:
    from pathlib import Path

    from scpl.errors import ConfigError
    from scpl.studies.experiment import run_experiment
    from scpl.training.recipes import parse_overrides

    # Smoke runs are for checking that an experiment runs, not for the results folder.
    out = Path(
        args.out or (f"runs/smoke/{args.name}" if args.smoke else f"docs/results/{args.name}")
    )
    overrides = parse_overrides(args.set)
    if args.smoke:
        overrides["smoke"] = True
    if args.plan and not args.budgets:
        raise ConfigError("--plan shows what a budget study has left: add --budgets B1,B2,...")
    if args.budgets:
        # The same study either way: --plan walks the cells that running it would train.
        study = (
            args.name,
            args.trials,
            out,
            args.budgets,
            args.devices_sim if args.time_to_accuracy else None,
            overrides,
            tuple(args.methods.split(",")) if args.methods else None,
            tuple(args.models.split(",")) if args.models else None,
            tuple(args.rows.split(",")) if args.rows else None,
        )
    if args.budgets and args.plan:
        from scpl.studies.budget_plan import format_plan, plan_budget_study

        print(format_plan(plan_budget_study(*study)), end="")
        return 0
    if args.budgets:
        from scpl.studies.budgets import run_budget_study

        run_budget_study(*study)
        print((out / "curves.md").read_text())
        print(f"wrote {out}/curves.json, curves.md, curves_time.png and budget_runs.jsonl")
        return 0
    if args.time_to_accuracy:
        from scpl.studies.time_to_accuracy import run_time_to_accuracy

        run_time_to_accuracy(
            args.name,
            args.trials,
            out,
            args.devices_sim,
            overrides,
            tuple(args.methods.split(",")) if args.methods else None,
            tuple(args.models.split(",")) if args.models else None,
            _levels(args.levels),
            reuse=not args.no_reuse,
        )
        print((out / "time_to_accuracy.md").read_text())
        print(f"wrote {out}/time_to_accuracy.md, .csv, .json and runs.jsonl")
        return 0
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
