"""`scpl experiment`: rows x models x seeds -> tables (accuracy, parameters, seconds), curves."""

import csv
import dataclasses
import json

from scpl.cli import main
from scpl.studies.experiment import EXPERIMENTS, resolve_experiment


def test_smoke_experiment_writes_tables_and_resumes(tmp_path, capsys):
    out = tmp_path / "exp"
    argv = ["experiment", "smoke", "--trials", "2", "--out", str(out), "--set", "max_steps=3"]
    assert main(argv + ["--set", "test_every_epoch=true"]) == 0
    table = (out / "table.md").read_text()
    assert "| | convnet |" in table and "±" in table
    assert "Parameters, training / inference" in table and "Seconds per epoch" in table
    rows = list(csv.DictReader(open(out / "table.csv")))
    assert {r["row"] for r in rows} == {"bp", "scpl"}
    assert all(r["n"] == "2" for r in rows)
    # SCPL's heads are training-only; BP trains exactly what it infers with.
    by = {r["row"]: r for r in rows}
    assert by["bp"]["params_training"] == by["bp"]["params_inference"]
    assert int(by["scpl"]["params_training"]) > int(by["scpl"]["params_inference"])
    assert float(by["scpl"]["train_s_per_epoch"]) > 0 and float(by["scpl"]["test_s"]) > 0
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert len(runs) == 4
    # Learning curves: test accuracy per epoch, recorded for every run; selection stays on val.
    assert all(len(r["epochs"]) == 2 and "test_acc" in r["epochs"][0] for r in runs)
    curves = list(csv.DictReader(open(out / "curves.csv")))
    assert len(curves) == 4 * 2 and (out / "curves.png").stat().st_size > 1000
    meta = table.split("```")[1]
    assert '"commit"' in meta and '"seeds"' in meta and '"cpu_count"' in meta
    # Re-running continues instead of repeating finished runs.
    assert main(argv + ["--set", "test_every_epoch=true"]) == 0
    assert len((out / "runs.jsonl").read_text().splitlines()) == 4


def test_a_recorded_run_with_other_settings_is_trained_again(tmp_path, capsys):
    out = tmp_path / "exp"
    argv = ["experiment", "smoke", "--trials", "1", "--out", str(out), "--methods", "scpl"]
    argv += ["--set", "max_steps=2", "--set", "epochs=1"]
    assert main(argv) == 0
    capsys.readouterr()
    # Same label, other computation (e.g. a default changed since): never reused as is.
    assert main([*argv, "--set", "lr=0.002"]) == 0
    assert "settings changed" in capsys.readouterr().out
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert [r["config"]["lr"] for r in runs] == [0.003, 0.002]


def test_identical_runs_are_reused_from_a_sibling_experiment(tmp_path, capsys):
    first, second = tmp_path / "a", tmp_path / "b"
    base = ["--trials", "1", "--set", "max_steps=2", "--set", "epochs=1"]
    assert main(["experiment", "smoke", "--out", str(first), *base]) == 0
    capsys.readouterr()
    # A one-cell experiment from the recipe itself: its scpl run has the same settings.
    assert main(["experiment", "smoke", "--out", str(second), "--methods", "scpl", *base]) == 0
    assert "reused a" in capsys.readouterr().out
    assert not (second / "runs").exists()  # nothing was trained again
    rec = json.loads((second / "runs.jsonl").read_text())
    assert rec["row"] == "scpl" and rec["from"] == "a"


def test_recipe_as_experiment_and_row_selection(tmp_path, capsys):
    exp = resolve_experiment("smoke")
    assert exp is EXPERIMENTS["smoke"]
    one = resolve_experiment("paper-cifar10-vgg-bp")
    assert one.models == ("vgg",) and list(one.rows) == ["bp"]
    assert main(["experiment", "fmnist-ablate-head", "--rows", "nope", "--out", str(tmp_path)]) == 2
    assert "this experiment has" in capsys.readouterr().err
    assert main(["experiment", "fmnist", "--methods", "dfa", "--out", str(tmp_path)]) == 2
    assert "unknown method 'dfa'; choose one of" in capsys.readouterr().err


def test_bad_set_and_unknown_experiment_are_one_line_errors(tmp_path, capsys):
    assert main(["experiment", "nope", "--out", str(tmp_path)]) == 2
    assert "choose one of" in capsys.readouterr().err
    assert main(["experiment", "smoke", "--out", str(tmp_path), "--set", "epochs"]) == 2
    assert "FIELD=VALUE" in capsys.readouterr().err


def test_every_experiment_resolves_its_runs():
    """Every row of every experiment makes a valid config (paper settings included)."""
    from scpl.training.recipes import make_config

    for name, exp in EXPERIMENTS.items():
        for label, row in exp.rows.items():
            for model in exp.models:
                values = {**exp.overrides, **exp.per_model.get(model, {}), **row, "model": model}
                cfg = make_config(exp.recipe, values)
                assert cfg.model == model, (name, label)


def test_paper_experiment_runs_as_smoke(tmp_path, capsys):
    """A paper-scale experiment (CIFAR-10 VGG, paper settings) shrunk by --smoke to seconds."""
    out = tmp_path / "flow"
    assert (
        main(["experiment", "paper-ablate-flow", "--smoke", "--trials", "1", "--out", str(out)])
        == 0
    )
    rows = {r["row"] for r in csv.DictReader(open(out / "table.csv"))}
    assert rows == {"multiple short gradient flows (scpl)", "single gradient flow (bp)"}
    assert (out / "curves.png").exists()
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    # The CIFAR-10 shape and classes, on a synthetic stand-in.
    assert all(r["config"]["dataset"].startswith("synthetic:3x32x32:10") for r in runs)


def test_an_interrupted_run_resumes_bitwise_and_a_torn_record_is_skipped(tmp_path, capsys):
    """An experiment continues an interrupted run from its checkpoint instead of starting it
    over, with the same result as an uninterrupted one; a torn last line of runs.jsonl (a crash
    mid-append) is skipped, not a crash. Mutants: always overwrite (no "(resumed)"); resume a
    checkpoint of other settings (the result differs from the uninterrupted run)."""
    import dataclasses

    from scpl.studies.experiment import _computation_key, resumable
    from scpl.training.loop import train
    from scpl.training.recipes import make_config

    argv = ["experiment", "smoke", "--trials", "1", "--methods", "scpl", "--set", "max_steps=4"]
    assert main(argv + ["--out", str(tmp_path / "a")]) == 0
    whole = json.loads((tmp_path / "a" / "runs.jsonl").read_text())
    # The same run, stopped after 5 of its 8 steps, in the folder the experiment will use.
    cfg = make_config("smoke", {**whole["config"], "out": str(tmp_path / "b/runs/convnet-scpl-s0")})
    cfg = dataclasses.replace(cfg, overwrite=True, checkpoint_every=1)
    assert train(cfg, recipe="smoke", echo=lambda *a: None, stop_step=5) is None
    assert resumable(tmp_path / "b/runs/convnet-scpl-s0", _computation_key(whole["config"]))
    (tmp_path / "b" / "runs.jsonl").write_text('{"model": "convnet", "row": "sc')  # torn
    capsys.readouterr()
    assert main(argv + ["--out", str(tmp_path / "b"), "--no-reuse"]) == 0
    assert "(resumed)" in capsys.readouterr().out
    lines = (tmp_path / "b" / "runs.jsonl").read_text().splitlines()
    resumed = json.loads(lines[-1])
    assert resumed["test_acc"] == whole["test_acc"] and resumed["val_acc"] == whole["val_acc"]
    assert resumed["epochs"][-1]["val_acc"] == whole["epochs"][-1]["val_acc"]


def test_runs_on_other_data_are_never_reused():
    """Issue 24 case 7: two runs that differ only in --data-dir (or --threads, which changes
    the bits) are different runs for an experiment's reuse and resume key. Mutant: data_dir or
    threads classed cosmetic again (the keys agree and a run on other data is reused)."""
    from scpl.studies.experiment import computation_key
    from scpl.training.config import TrainConfig

    base = dataclasses.asdict(TrainConfig())
    assert computation_key({**base, "data_dir": "/a"}) != computation_key({**base, "data_dir": "/b"})
    assert computation_key({**base, "threads": 1}) != computation_key({**base, "threads": 2})
    assert computation_key({**base, "out": "/a"}) == computation_key({**base, "out": "/b"})
