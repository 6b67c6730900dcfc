"""Typed run configuration, named recipes, and command-line overrides.

A run is a recipe (a named set of overrides of :class:`TrainConfig`'s defaults) plus any
``--field value`` flags. Every field's docstring is its ``--help`` text.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import os
import tempfile
import textwrap
from dataclasses import dataclass, fields
from typing import Any

from scpl.errors import ConfigError


@dataclass
class TrainConfig:
    """Everything a training run needs."""

    model: str = "vgg"
    """Registered model name (see `scpl list`)."""
    method: str = "scpl"
    """Learning method: bp, scpl, early-exit, al."""
    dataset: str = "fashion-mnist"
    """Registered dataset name."""
    data_dir: str | None = None
    """Directory holding the dataset files (else $SCPL_DATA, system dirs, cache, download)."""
    download: bool = True
    """Download a missing dataset from its canonical source into the cache."""
    glove: str | None = None
    """Text: GloVe-format embedding file (e.g. glove.6B.300d.txt); none = random init."""
    embed_dim: int = 300
    """Text: embedding size (must match the GloVe file)."""
    freeze_embeddings: bool = False
    """Text: keep the (GloVe) embedding fixed."""
    vocab_size: int = 30000
    """Text: vocabulary size built from the training split (incl. <pad> and <unk>)."""
    max_len: int = 0
    """Text: tokens kept per document (0 = the dataset's default: AG News 60, IMDB 350, ...)."""
    stages: int = 4
    """Number of stages K the model is split into (the paper uses 4)."""
    partition: str | None = None
    """Units per stage, comma-separated (e.g. 2,2,1,1); default is the paper's split."""
    width: float = 1.0
    """Channel-width multiplier (e.g. 0.25 for quick CPU runs)."""
    epochs: int = 200
    """Training epochs."""
    batch_size: int = 128
    """Mini-batch size N (two-view augmentation feeds 2N inputs)."""
    eval_batch_size: int = 512
    """Batch size for validation and test."""
    lr: float = 1e-3
    """Initial learning rate (Adam)."""
    lr_min: float = 1e-5
    """Final learning rate of the cosine schedule."""
    lr_schedule: str = "cosine"
    """cosine (stepped per iteration) or constant."""
    weight_decay: float = 0.0
    """Adam weight decay."""
    head: str = "mlp"
    """Projection head of hidden stages: identity, linear or mlp."""
    proj_dim: int = 1024
    """Output size of linear/mlp projection heads."""
    temperature: float = 0.1
    """SupCon temperature."""
    supcon_norm: str = "paper"
    """SupCon normalisation: paper (1/|P(i)|) or reference (1/(|P(i)|+1))."""
    last_supcon: bool = True
    """SCPL: add a SupCon term on the last stage next to its cross-entropy."""
    augment: str = "two-view"
    """Vision augmentation: none, basic, strong or two-view (2N inputs)."""
    val_fraction: float = 0.1
    """Share of the training set held out for model selection."""
    test_every_epoch: bool = False
    """Also measure test accuracy after every epoch, for learning curves (recorded only: the
    reported epoch is still chosen on the validation split)."""
    seed: int = 0
    """Random seed (data order, init, augmentation)."""
    device: str = "auto"
    """Device when --devices is not given: auto (one GPU per stage if there are enough, else
    cuda:0 or cpu for all), cpu, cuda, cuda:N."""
    devices: str = ""
    """Comma-separated device per stage (e.g. cuda:0,cuda:1,cuda:2,cuda:3 or cpu); one entry
    is used for every stage."""
    executor: str = "local"
    """Who runs the stages: sequential (one op at a time, the reference), local (a thread per
    stage in this process), dist (a process per stage over torch.distributed)."""
    schedule: str = "auto"
    """Op order: sequential, scpl, scpl-gpipe, nmp, gpipe; auto = scpl for local-loss methods
    and nmp for BP (scpl-gpipe / gpipe with --micro-batches > 1)."""
    micro_batches: int = 1
    """Micro-batches per mini-batch for the gpipe and scpl-gpipe schedules."""
    queue_depth: int = 2
    """Activations in flight per link between stages (bounded queues)."""
    dist_timeout: float = 60.0
    """dist: seconds any rank waits for a peer before the run stops with an error naming it."""
    nproc: int = 0
    """dist executor on one host: start this many processes (one per stage) via torchrun."""
    max_steps: int = 0
    """Stop each epoch after this many steps (0 = full epoch); for smoke runs."""
    log_every: int = 50
    """Steps between metric syncs / log lines."""
    threads: int = 0
    """torch CPU threads (0 = PyTorch default)."""
    out: str = "runs/{recipe}-{model}-{method}-{dataset}-s{seed}"
    """Output directory (fields in braces are filled in)."""
    nan_guard: str = "stop"
    """Before every update check losses and gradients: stop (error naming stage, step and loss
    term), skip (drop the batch's update), or interval (only check logged means; no per-step
    host sync)."""
    checkpoint_every: int = 0
    """Also checkpoint every N steps (0 = only at epoch ends)."""
    resume: str | None = None
    """Continue the run whose output dir is given (bitwise the same as not stopping)."""
    progress: bool = True
    """Show a progress bar."""
    tensorboard: bool = True
    """Also write TensorBoard scalars when tensorboard is installed."""
    smoke: bool = False
    """Shrink the run to seconds for testing: the same model, method, schedule, executor, head,
    augmentation, stages and optimiser on a tiny synthetic stand-in of the dataset (same input
    shape and classes), width 1/16, batch 16, 1 epoch of 2 steps, no progress bar or
    TensorBoard. These sizes win over other flags; --out still applies (default: a temp dir)."""

    def validate(self) -> None:
        """Raise ConfigError for values that cannot work, saying how to fix them."""
        for name in ("epochs", "batch_size", "eval_batch_size", "stages"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"--{name.replace('_', '-')} must be >= 1 (got {getattr(self, name)})"
                )
        if self.method == "scpl" and self.batch_size < 2:
            raise ConfigError(
                f"--batch-size {self.batch_size} is too small for a contrastive loss: "
                "SupCon needs at least 2 samples; use --batch-size 2 or more"
            )
        if self.lr <= 0 or self.lr_min < 0:
            raise ConfigError("--lr must be > 0 and --lr-min >= 0")
        if self.nan_guard not in ("stop", "skip", "interval"):
            raise ConfigError(f"--nan-guard {self.nan_guard!r}: choose stop, skip or interval")
        if self.lr_schedule not in ("cosine", "constant"):
            raise ConfigError(f"--lr-schedule {self.lr_schedule!r}: choose cosine or constant")

    def resolved_schedule(self, local: bool) -> str:
        """The schedule name after resolving 'auto' for the method."""
        if self.schedule != "auto":
            return self.schedule
        if local:
            return "scpl-gpipe" if self.micro_batches > 1 else "scpl"
        return "gpipe" if self.micro_batches > 1 else "nmp"

    def partition_list(self) -> list[int] | None:
        if not self.partition:
            return None
        try:
            return [int(p) for p in self.partition.split(",")]
        except ValueError:
            raise ConfigError(
                f"--partition {self.partition!r} must be comma-separated integers, e.g. 2,2,1,1"
            ) from None


# Named recipes: overrides of TrainConfig defaults. "paper-*" recipes use the paper's settings;
# "*-smoke" versions run a few steps on tiny data and are executed by the tests.
RECIPES: dict[str, dict[str, Any]] = {
    "default": dict(
        model="vgg", method="scpl", dataset="fashion-mnist", width=0.25, epochs=1, batch_size=128
    ),
    "smoke-text": dict(
        model="lstm",
        method="scpl",
        dataset="bbc-news",
        width=0.25,
        embed_dim=64,
        epochs=1,
        batch_size=32,
        max_steps=8,
        head="identity",
        augment="none",
        lr_schedule="constant",
        max_len=64,
        vocab_size=5000,
        log_every=4,
    ),
    "smoke": dict(
        model="convnet",
        method="scpl",
        dataset="digits",
        width=0.125,
        epochs=2,
        batch_size=32,
        max_steps=15,
        augment="none",
        lr=3e-3,
        log_every=5,
    ),
}
_PAPER_VISION = dict(epochs=200, lr=1e-3, lr_min=1e-5, augment="two-view", head="mlp", width=1.0)
for _ds in ("cifar10", "cifar100", "tiny-imagenet"):
    for _model in ("convnet", "vgg", "resnet18"):
        for _method in ("bp", "early-exit", "al", "scpl"):
            # Paper: BP at batch 128, SCPL at 1024 (Early Exit and AL follow the local methods).
            bs = 128 if _method == "bp" else 1024
            RECIPES[f"paper-{_ds}-{_model}-{_method}"] = dict(
                _PAPER_VISION, dataset=_ds, model=_model, method=_method, batch_size=bs
            )


# NLP (paper A.1): Adam 1e-3 fixed, 50 epochs, identity heads, no augmentation, GloVe 300-d.
_PAPER_TEXT = dict(
    epochs=50,
    lr=1e-3,
    lr_schedule="constant",
    augment="none",
    head="identity",
    batch_size=256,
    embed_dim=300,
)
for _ds in ("ag-news", "imdb", "dbpedia", "sst2"):
    for _model in ("lstm", "transformer"):
        for _method in ("bp", "early-exit", "al", "scpl"):
            RECIPES[f"paper-{_ds}-{_model}-{_method}"] = dict(
                _PAPER_TEXT, dataset=_ds, model=_model, method=_method
            )


# --smoke: a tiny synthetic stand-in of the run's dataset (same input shape and classes). Four
# training samples per class and a 1/4 validation share leave one validation sample per class
# (the stratified split rounds per class), and at least 2 batches of 16 for training.
SMOKE_BATCH = 16
SMOKE_VAL_FRACTION = 0.25


def smoke_overrides(values: dict[str, Any]) -> dict[str, Any]:
    """Config values that shrink a run (recipe + overrides in ``values``) to seconds."""
    from scpl.data import dataset_spec  # imports torch: only when a smoke run is asked for

    spec = dataset_spec(values.get("dataset", TrainConfig.dataset))
    # text-csv learns its classes from the files; any count exercises the same code.
    classes = spec.num_classes or 2
    n_train, n_test = max(3 * SMOKE_BATCH, 4 * classes), 2 * SMOKE_BATCH
    if spec.kind == "text":
        dataset = f"synthetic-text:{classes}:{n_train}:{n_test}"
    else:
        shape = "x".join(map(str, spec.input_shape))
        dataset = f"synthetic:{shape}:{classes}:{n_train}:{n_test}"
    return dict(
        dataset=dataset,
        data_dir=None,
        download=False,
        glove=None,
        embed_dim=16,
        vocab_size=64,
        max_len=16,
        width=0.0625,
        proj_dim=32,
        batch_size=SMOKE_BATCH,
        epochs=1,
        max_steps=2,
        val_fraction=SMOKE_VAL_FRACTION,
        checkpoint_every=0,
        progress=False,
        tensorboard=False,
        out=os.path.join(tempfile.gettempdir(), "scpl-smoke", "{recipe}-{model}-{method}-s{seed}"),
    )


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


def add_config_arguments(parser: argparse.ArgumentParser, cls: type = TrainConfig) -> None:
    """Add one ``--field`` flag per dataclass field; unset flags stay None (recipe wins)."""
    docs = field_docs(cls)
    for f in fields(cls):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        help_ = f"{docs.get(f.name, '')} [default: {default}]"
        typ = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "str")
        if typ.startswith("bool"):
            parser.add_argument(
                flag, type=_parse_bool, nargs="?", const=True, default=None, help=help_
            )
        elif typ.startswith("int"):
            parser.add_argument(flag, type=int, default=None, help=help_)
        elif typ.startswith("float"):
            parser.add_argument(flag, type=float, default=None, help=help_)
        else:
            parser.add_argument(flag, type=str, default=None, help=help_)


def make_config(
    recipe: str, args: argparse.Namespace | dict | None = None, cls: type = TrainConfig
):
    """Recipe defaults, then explicit overrides (None means 'not given')."""
    if recipe not in RECIPES:
        plain = sorted(r for r in RECIPES if not r.startswith("paper-"))
        raise ConfigError(
            f"unknown recipe {recipe!r}; choose one of: {', '.join(plain)}, or "
            "paper-<dataset>-<model>-<method> (all listed by `scpl list --recipes`)"
        )
    values = dict(RECIPES[recipe])
    given = vars(args) if isinstance(args, argparse.Namespace) else dict(args or {})
    names = {f.name for f in fields(cls)}
    for k, v in given.items():
        if k in names and v is not None:
            values[k] = v
    if values.get("smoke"):
        # Computed from the final model/dataset, so an experiment's overrides are shrunk too.
        shrink = smoke_overrides(values)
        if given.get("out") is not None:
            del shrink["out"]
        values.update(shrink)
    unknown = set(values) - names
    if unknown:
        raise ConfigError(f"unknown config fields {sorted(unknown)}")
    cfg = cls(**values)
    cfg.validate()
    return cfg


def parse_overrides(items: list[str], cls: type = TrainConfig) -> dict:
    """Parse FIELD=VALUE strings into typed config overrides."""
    parser = argparse.ArgumentParser(add_help=False)
    add_config_arguments(parser, cls)
    argv: list[str] = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: use FIELD=VALUE, e.g. --set epochs=5")
        k, v = item.split("=", 1)
        argv += ["--" + k.strip().replace("_", "-"), v]
    try:
        ns, unknown = parser.parse_known_args(argv)
    except SystemExit:
        raise ConfigError(
            f"bad --set values {items}; see `scpl train --help` for the fields"
        ) from None
    if unknown:
        raise ConfigError(f"unknown config field in --set: {' '.join(unknown)}")
    return {k: v for k, v in vars(ns).items() if v is not None}
