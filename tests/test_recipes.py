"""Every paper recipe runs end to end in its --smoke version (tiny synthetic stand-in data of
the recipe's input shape and class count), and the smoke mechanism keeps what makes the recipe
itself: model, method, schedule, executor, head, augmentation, stages, optimiser.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile

import pytest

from scpl.cli import main
from scpl.data import dataset_spec
from scpl.errors import ConfigError
from scpl.training.loop import train
from scpl.training.recipes import RECIPES, make_config

PAPER = [r for r in RECIPES if r.startswith("paper-")]


def test_paper_recipes_cover_every_method():
    for ds in ("cifar10", "cifar100", "tiny-imagenet"):
        for model in ("vanilla-convnet", "vgg", "resnet18"):
            for method in ("bp", "early-exit", "al", "scpl"):
                r = RECIPES[f"paper-{ds}-{model}-{method}"]
                # The paper trains BP at batch 128 and the local methods at 1024.
                assert r["batch_size"] == (128 if method == "bp" else 1024)
    for ds in ("ag-news", "imdb", "dbpedia", "sst2"):
        for model in ("lstm", "transformer"):
            for method in ("bp", "early-exit", "al", "scpl"):
                assert RECIPES[f"paper-{ds}-{model}-{method}"]["method"] == method
    assert len(PAPER) == 3 * 3 * 4 + 4 * 2 * 4


@pytest.mark.parametrize("recipe", PAPER)
def test_paper_recipe_smoke(recipe, tmp_path):
    out = tmp_path / "run"
    cfg = make_config(recipe, {"smoke": True, "out": str(out), "threads": 1})
    s = train(cfg, recipe=recipe, echo=lambda *a, **k: None)
    assert math.isfinite(s["test_acc"]) and 0.0 <= s["test_acc"] <= 1.0
    assert json.loads((out / "summary.json").read_text())["test_acc"] == s["test_acc"]
    # Checkpoints of the paper's full-size projection heads are large; do not keep them.
    shutil.rmtree(out)


@pytest.mark.parametrize(
    "recipe, dataset",
    [
        ("paper-cifar10-vgg-scpl", "synthetic:3x32x32:10:"),
        ("paper-cifar100-resnet18-al", "synthetic:3x32x32:100:"),
        ("paper-tiny-imagenet-vanilla-convnet-bp", "synthetic:3x32x32:200:"),
        ("default", "synthetic:1x28x28:10:"),
        ("paper-dbpedia-lstm-early-exit", "synthetic-text:14:"),
        ("paper-sst2-transformer-scpl", "synthetic-text:2:"),
    ],
)
def test_smoke_keeps_the_recipe_and_the_data_shape(recipe, dataset):
    full, smoke = make_config(recipe), make_config(recipe, {"smoke": True})
    assert smoke.dataset.startswith(dataset)
    spec, real = dataset_spec(smoke.dataset), dataset_spec(full.dataset)
    assert (spec.kind, spec.num_classes) == (real.kind, real.num_classes)
    if real.kind == "image":
        assert spec.input_shape == real.input_shape
    for name in ("model", "method", "schedule", "executor", "head", "augment", "stages", "lr"):
        assert getattr(smoke, name) == getattr(full, name), name
    assert smoke.epochs == 1 and smoke.max_steps <= 2 and smoke.width < full.width
    assert smoke.glove is None and not smoke.progress and not smoke.tensorboard
    assert smoke.out.startswith(tempfile.gettempdir())  # never under the repository's runs/


def test_smoke_applies_to_experiment_style_overrides(tmp_path):
    # An experiment passes its own dataset and batch size next to smoke: both are shrunk.
    cfg = make_config(
        "paper-cifar10-vgg-scpl",
        {"smoke": True, "dataset": "cifar100", "batch_size": 128, "out": str(tmp_path)},
    )
    assert cfg.dataset.startswith("synthetic:3x32x32:100:") and cfg.batch_size == 16
    assert cfg.out == str(tmp_path)


def test_cli_smoke_prints_the_result_line(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main(
        [
            "train",
            "paper-cifar10-vanilla-convnet-scpl",
            "--smoke",
            "--threads",
            "1",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(
        "result recipe=paper-cifar10-vanilla-convnet-scpl model=vanilla-convnet method=scpl"
    )
    assert "dataset=synthetic:3x32x32:10:" in line and f"out={out}" in line
    assert (out / "summary.json").is_file()


@pytest.mark.parametrize(
    "name",
    [
        "synthetic:3x32:10",
        "synthetic:3x32x32",
        "synthetic:3x32x32:ten",
        "synthetic:3x32x32:10:64",
        "synthetic:3x0x32:10",
        "synthetic-text:two",
        "synthetic-text:2:64",
    ],
)
def test_ill_formed_synthetic_spec_is_a_config_error(name):
    with pytest.raises(ConfigError, match=r"ill-formed; use synthetic(-text)?:") as e:
        dataset_spec(name)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="ill-formed"):
        make_config("default", {"dataset": name, "smoke": True})


def test_parameters_on_a_plain_dataset_and_unknown_names(capsys):
    with pytest.raises(ConfigError, match="takes no parameters; use --dataset cifar10"):
        dataset_spec("cifar10:3x32x32:10")
    with pytest.raises(ConfigError, match="unknown dataset 'nope'"):
        dataset_spec("nope:1")
    rc = main(["train", "--dataset", "synthetic:3x32:10", "--smoke"])
    assert rc == 2 and "ill-formed" in capsys.readouterr().err


def test_synthetic_specs_give_the_asked_shape_sizes_and_lengths():
    from scpl.data import load_dataset

    b = load_dataset("synthetic:1x28x28:10:64:32", val_fraction=0.0)
    assert b.input_shape == (1, 28, 28) and b.num_classes == 10
    assert (len(b.train), len(b.test)) == (64, 32)
    t = load_dataset("synthetic-text:3:60:20", val_fraction=0.0)
    assert t.kind == "text" and t.num_classes == 3 and (len(t.train), len(t.test)) == (60, 20)
    lengths = t.train.lengths
    assert int(lengths.min()) >= 1 and len(set(lengths.tolist())) > 1  # variable lengths
    # Padding exactly past each document's length.
    pos = lengths.new_tensor(range(t.train.x.shape[1]))[None, :]
    assert bool(((t.train.x == 0) == (pos >= lengths[:, None])).all())
    assert int(t.train.x.max()) < len(t.extra["vocab"])


def test_method_run_defaults_light_heads_and_paper_recipes_keep_the_papers():
    scpl = make_config("default", {"method": "scpl"})
    assert (scpl.head, scpl.proj_dim, scpl.local_ce) == ("mlp-pool", 128, 0.0)
    assert make_config("default", {"method": "early-exit"}).head == "mlp-pool"
    assert make_config("default", {"method": "al"}).head == "mlp"  # AL's own bridge
    assert make_config("default", {"method": "scpl", "head": "mlp"}).head == "mlp"  # flag wins
    for ds in ("cifar10", "ag-news"):
        model = "vgg" if ds == "cifar10" else "lstm"
        paper = make_config(f"paper-{ds}-{model}-scpl")
        assert (
            paper.proj_dim == 1024
            and paper.local_ce == 0.0
            and paper.head == ("mlp" if ds == "cifar10" else "identity")
        )


def test_method_preset_sits_between_recipe_and_flags(monkeypatch):
    """--preset overrides the recipe and the method's defaults, never an explicit flag.
    Mutants: preset applied before the recipe (a paper recipe's head mlp would win), preset
    over the user's flag, an unknown preset silently ignored."""
    from scpl.errors import ConfigError
    from scpl.methods.local import SCPL
    from scpl.training.recipes import make_config

    monkeypatch.setattr(SCPL, "presets", {"x": {"head": "man", "lr": 5e-3}})
    cfg = make_config("default", {"method": "scpl", "preset": "x"})
    assert (cfg.head, cfg.lr) == ("man", 5e-3)
    cfg = make_config("paper-cifar10-vgg-scpl", {"preset": "x"})
    assert cfg.head == "man"
    cfg = make_config("default", {"method": "scpl", "preset": "x", "head": "mlp"})
    assert (cfg.head, cfg.lr) == ("mlp", 5e-3)
    with pytest.raises(ConfigError, match="unknown --preset 'y'.*presets: x"):
        make_config("default", {"method": "scpl", "preset": "y"})
    with pytest.raises(ConfigError, match="for --method bp"):
        make_config("default", {"method": "bp", "preset": "x"})


def test_scpl_presets_paper_and_best():
    """paper-* recipes keep the paper's form unless a preset is asked for; --preset paper
    gives that form on any recipe; --preset best is the measured best variant."""
    from scpl.methods.local import SCPL
    from scpl.training.recipes import make_config

    paper = make_config("paper-cifar10-vgg-scpl", {})
    fields = SCPL.presets["paper"]
    assert {k: getattr(paper, k) for k in fields} == fields
    assert {k: getattr(make_config("default", {"preset": "paper"}), k) for k in fields} == fields
    best = make_config("paper-cifar10-vgg-scpl", {"preset": "best"})
    assert {k: getattr(best, k) for k in SCPL.presets["best"]} == SCPL.presets["best"]
