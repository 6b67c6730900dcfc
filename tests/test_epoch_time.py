"""`scpl epoch-time`: seconds per epoch vs batch size (tiny models; no data files are read)."""

import csv

import pytest

from scpl.cli import main
from scpl.errors import ConfigError
from scpl.perf.simulate import project_epoch
from scpl.studies.epoch_time import EpochTimeOptions, epoch_time


def _read(out):
    with open(out / "epoch_time.csv") as f:
        return list(csv.DictReader(f))


def _check(out, schedules, sizes, train_size):
    for name in ("epoch_time.csv", "epoch_time.md", "epoch_time.png"):
        assert (out / name).stat().st_size > 0
    rows = _read(out)
    assert {(r["schedule"], int(r["batch_size"])) for r in rows} == {
        (s, n) for s in schedules for n in sizes
    }
    assert len(rows) == len(schedules) * len(sizes)
    for r in rows:
        assert int(r["steps_per_epoch"]) == train_size // int(r["batch_size"])
        assert float(r["measured_one_device_s"]) > 0
        assert float(r["projected_K_s"]) > 0
        assert float(r["speedup_vs_bp_one_device"]) > 0
    md = (out / "epoch_time.md").read_text()
    assert "| batch size |" in md and "torch" in md
    return rows


def test_vision_measured_two_view(tmp_path):
    opts = EpochTimeOptions(
        model="convnet",
        dataset="digits",
        stages=2,
        batch_sizes=(4, 8),
        schedules=("sequential", "scpl"),
        width=0.125,
        proj_dim=32,
        rounds=1,
        train_size=96,
        out=str(tmp_path),
    )
    rows = epoch_time(opts, log=lambda s: None)
    _check(tmp_path, opts.schedules, opts.batch_sizes, 96)
    assert {r["inputs_per_step"] for r in rows} == {8, 16}  # two-view: 2N inputs
    # sequential = BP one op at a time on one device
    for r in (r for r in rows if r["schedule"] == "sequential"):
        assert r["method"] == "bp"
        assert r["projected_K_s"] == pytest.approx(r["measured_one_device_s"])
        assert r["speedup_vs_bp_one_device"] == pytest.approx(1.0)


def test_text_lstm_measured(tmp_path):
    opts = EpochTimeOptions(
        model="lstm",
        dataset="sst2",
        stages=2,
        batch_sizes=(4, 8),
        schedules=("nmp", "scpl"),
        width=0.125,
        vocab_size=200,
        embed_dim=16,
        rounds=1,
        out=str(tmp_path),
    )
    rows = epoch_time(opts, log=lambda s: None)
    _check(tmp_path, opts.schedules, opts.batch_sizes, 67349)
    assert {r["inputs_per_step"] for r in rows} == {4, 8}  # text: N inputs, no augmentation
    assert {r["method"] for r in rows} == {"bp", "scpl"}


def test_equal_stages_scpl_beats_sequential(tmp_path):
    """Behaviour, not timing: with equal per-stage costs the simulated K-device SCPL epoch is
    about K times shorter than BP one op at a time."""

    def equal(inputs, method):
        f = 1e-3 * inputs
        return {s: {"F": f, "L": f / 4, "B": 2 * f, "U": 1e-4} for s in range(4)}

    opts = EpochTimeOptions(
        model="convnet",
        dataset="digits",
        stages=4,
        batch_sizes=(4, 8),
        schedules=("sequential", "nmp", "gpipe", "scpl", "scpl-gpipe"),
        width=0.125,
        train_size=400,
        out=str(tmp_path),
    )
    rows = epoch_time(opts, costs_for=equal, log=lambda s: None)
    _check(tmp_path, opts.schedules, opts.batch_sizes, 400)
    for n in opts.batch_sizes:
        t = {r["schedule"]: r["projected_K_s"] for r in rows if r["batch_size"] == n}
        assert t["scpl"] < t["gpipe"] < t["nmp"] <= t["sequential"]
        assert t["sequential"] / t["scpl"] > 3.0  # close to K = 4 (fill and drain aside)
    assert "given op costs" in (tmp_path / "epoch_time.md").read_text()


def test_project_epoch_extrapolates_steady_state():
    costs = {s: {"F": 1.0, "B": 1.0} for s in range(2)}
    # sequential: exactly steps x the sum of op costs, simulated or extrapolated
    assert project_epoch("sequential", "bp", 2, costs, 100, sim_batches=8) == pytest.approx(400)
    # scpl, 2 equal stages: one stage-time per batch once full, plus one fill
    assert project_epoch("scpl", "scpl", 2, costs, 100, sim_batches=8) == pytest.approx(201)
    assert project_epoch("scpl", "scpl", 2, costs, 5, sim_batches=8) == pytest.approx(11)


def test_flops_costs(tmp_path):
    opts = EpochTimeOptions(
        model="convnet",
        dataset="digits",
        stages=2,
        batch_sizes=(4, 8),
        schedules=("gpipe",),
        width=0.125,
        proj_dim=32,
        emulate="flops",
        train_size=64,
        out=str(tmp_path),
    )
    rows = epoch_time(opts, log=lambda s: None)
    _check(tmp_path, ("gpipe",), (4, 8), 64)
    assert rows[0]["cost_source"].startswith("flops") and rows[0]["micro_batches"] == 2


@pytest.mark.parametrize(
    "kw, needle",
    [
        ({"model": "nope"}, "unknown model 'nope'; choose one of: convnet"),
        ({"dataset": "nope"}, "unknown dataset 'nope'; choose one of: ag-news"),
        ({"schedules": ("scpl", "foo")}, "unknown schedule 'foo'; choose one of: gpipe"),
        ({"model": "lstm"}, "takes text data"),
        ({"dataset": "text-csv", "model": "lstm"}, "--train-size"),
        ({"micro_batches": 3}, "does not divide"),
    ],
)
def test_config_errors(kw, needle, tmp_path):
    with pytest.raises(ConfigError) as e:
        epoch_time(EpochTimeOptions(out=str(tmp_path), **kw), log=lambda s: None)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_cli(tmp_path, capsys):
    rc = main(
        [
            "epoch-time",
            "--model",
            "convnet",
            "--dataset",
            "digits",
            "--stages",
            "2",
            "--batch-sizes",
            "4",
            "--schedules",
            "scpl",
            "--width",
            "0.125",
            "--proj-dim",
            "16",
            "--rounds",
            "1",
            "--train-size",
            "40",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 0
    assert "Projected seconds per epoch" in capsys.readouterr().out
    assert [r["steps_per_epoch"] for r in _read(tmp_path)] == ["10"]
    assert main(["epoch-time", "--model", "nope", "--out", str(tmp_path)]) == 2


def test_max_inputs_extrapolates_linearly(tmp_path):
    """FLOPs are (nearly) linear in the batch, so a capped (extrapolated) sweep matches an
    uncapped one (the contrastive loss's N x N similarities are the small quadratic part)."""
    kw = dict(
        model="convnet",
        dataset="digits",
        stages=2,
        batch_sizes=(4, 8),
        schedules=("scpl",),
        width=0.125,
        proj_dim=32,
        emulate="flops",
        train_size=64,
    )
    full = epoch_time(EpochTimeOptions(out=str(tmp_path / "a"), **kw), log=lambda s: None)
    capped = epoch_time(
        EpochTimeOptions(out=str(tmp_path / "b"), max_inputs=8, **kw), log=lambda s: None
    )
    assert [r["timed_inputs"] for r in capped] == [8, 8]
    assert [r["timed_inputs"] for r in full] == [8, 16]
    for a, b in zip(full, capped, strict=True):
        assert b["projected_K_s"] == pytest.approx(a["projected_K_s"], rel=1e-2)
    assert "were not run (memory)" in (tmp_path / "b" / "epoch_time.md").read_text()
