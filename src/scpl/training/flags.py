"""Command-line flags from config dataclasses: one ``--field`` per field, its docstring as the
``--help`` text, filed under titled sections (:data:`CONFIG_GROUPS` for :class:`TrainConfig`).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
from dataclasses import fields

from scpl.training.config import TrainConfig


def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings of a dataclass (the string literal after each field)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for a, b in zip(body, body[1:], strict=False):
        if (
            isinstance(a, ast.AnnAssign)
            and isinstance(b, ast.Expr)
            and isinstance(b.value, ast.Constant)
        ):
            docs[a.target.id] = " ".join(str(b.value.value).split())  # type: ignore[attr-defined]
    return docs


def _parse_bool(s: str) -> bool:
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {s!r}")


# The --help section of every TrainConfig field (each field in exactly one group).
CONFIG_GROUPS: dict[str, tuple[str, ...]] = {
    "model": (
        "model",
        "stages",
        "partition",
        "balance_by",
        "width",
        "init",
        "glove",
        "embed_dim",
        "freeze_embeddings",
    ),
    "method": (
        "method",
        "preset",
        "head",
        "proj_dim",
        "temperature",
        "supcon_norm",
        "local_ce",
        "last_supcon",
        "last_stage",
        "local_loss",
        "local_recon",
        "man_momentum",
        "man_every",
        "head_pool",
        "lookahead_units",
        "al_bridge",
    ),
    "data": (
        "dataset",
        "data_dir",
        "download",
        "vocab_size",
        "max_len",
        "text_column",
        "label_column",
        "augment",
        "flip",
        "val_fraction",
        "seed",
    ),
    "optimisation": (
        "epochs",
        "batch_size",
        "eval_batch_size",
        "lr",
        "lr_min",
        "lr_schedule",
        "warmup_steps",
        "decay_fraction",
        "decay_shape",
        "weight_decay",
        "optimizer",
        "max_steps",
        "train_steps",
        "precision",
        "foreach",
    ),
    "pipeline": (
        "executor",
        "schedule",
        "micro_batches",
        "queue_depth",
        "device",
        "devices",
        "nproc",
        "data_parallel",
        "supcon_gather",
        "dist_timeout",
        "threads",
    ),
    "output": ("out", "log_every", "test_every_epoch", "progress", "tensorboard"),
    "reliability": ("nan_guard", "checkpoint_every", "resume", "overwrite", "smoke"),
}


def add_config_arguments(
    parser: argparse.ArgumentParser,
    cls: type = TrainConfig,
    groups: dict[str, tuple[str, ...]] | None = None,
    shown_defaults: dict | None = None,
) -> None:
    """Add one ``--field`` flag per dataclass field; unset flags stay None (recipe wins).

    ``groups`` files the flags under titled --help sections; ``shown_defaults`` replaces the
    dataclass defaults that --help shows (e.g. with a recipe's values)."""
    docs = field_docs(cls)
    sections = {title: parser.add_argument_group(title) for title in groups or {}}
    section = {name: sections[title] for title, names in (groups or {}).items() for name in names}
    for f in fields(cls):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        default = (shown_defaults or {}).get(f.name, default)
        help_ = f"{docs.get(f.name, '')} [default: {default}]"
        typ = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "str")
        target = section.get(f.name, parser)
        if typ.startswith("bool"):
            target.add_argument(
                flag, type=_parse_bool, nargs="?", const=True, default=None, help=help_
            )
        elif typ.startswith("int"):
            target.add_argument(flag, type=int, default=None, help=help_)
        elif typ.startswith("float"):
            target.add_argument(flag, type=float, default=None, help=help_)
        else:
            target.add_argument(flag, type=str, default=None, help=help_)
