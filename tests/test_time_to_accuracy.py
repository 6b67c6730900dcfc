"""Time to accuracy: simulated step times per contender, runs whose schedule ends at BP's
one-device budget, and the tables."""

from __future__ import annotations

import csv
import json

import pytest

from scpl.cli import main
from scpl.studies.time_to_accuracy import Contender, budget_rows, contenders, summarise_budget
from scpl.training.recipes import make_config


def _c(label, method, t):
    return Contender(label, method, "scpl", 4, 1, t)


def test_budget_rows_end_every_schedule_at_the_budget():
    cands = [_c("bp1", "bp", 1.0), _c("pipe", "bp", 0.5), _c("scpl", "scpl", 0.25)]
    rows = budget_rows(cands, epochs=4, steps=40, spe_full=100)
    assert rows["bp1"] == {"method": "bp", "epochs": 4, "max_steps": 10}
    assert rows["pipe"] == {"method": "bp", "epochs": 4, "max_steps": 20}
    assert rows["scpl"] == {"method": "scpl", "epochs": 4, "max_steps": 40}
    # When an epoch runs out of data, the run gets more epochs instead.
    rows = budget_rows(cands, epochs=4, steps=40, spe_full=25)
    assert rows["scpl"]["epochs"] * rows["scpl"]["max_steps"] >= 160
    assert rows["scpl"]["max_steps"] <= 25


def test_summary_times_each_level_on_the_contenders_clock():
    cands = [_c("bp1", "bp", 1.0), _c("scpl", "scpl", 0.5)]
    rows = {"bp1": {"epochs": 2, "max_steps": 10}, "scpl": {"epochs": 2, "max_steps": 20}}
    runs = [
        {"row": "bp1", "test_acc": 0.8, "steps_per_epoch": 10,
         "epochs": [{"epoch": 0, "val_acc": 0.6}, {"epoch": 1, "val_acc": 0.8}]},
        {"row": "scpl", "test_acc": 0.85, "steps_per_epoch": 20,
         "epochs": [{"epoch": 0, "val_acc": 0.8}, {"epoch": 1, "val_acc": 0.9}]},
    ]  # fmt: skip
    res = summarise_budget(cands, runs, rows, (0.8, 0.9))
    bp, sc = res["contenders"]
    assert bp["reach"]["0.8"]["seconds"] == 20 * 1.0 and bp["reach"]["0.9"]["seconds"] is None
    assert sc["reach"]["0.8"]["seconds"] == 20 * 0.5 and sc["reach"]["0.9"]["seconds"] == 20.0
    assert sc["speedup"] == 2.0 and sc["steps"] == 40 and sc["test_acc"][0] == 85.0


def test_contenders_simulate_bp_one_device_best_pipeline_and_local_methods():
    cfg = make_config("smoke", {"stages": 2})
    cands = contenders(cfg, ["bp", "scpl", "early-exit"], 2)
    labels = [c.label for c in cands]
    assert labels[0] == "BP, 1 device" and labels[1].startswith("BP, best pipeline")
    assert labels[2:] == ["Early Exit, 2 devices", "SCPL, 2 devices"]
    assert all(c.sec_per_step > 0 for c in cands)
    # A pipeline never beats K x one device (no free lunch from the simulator).
    assert cands[1].sec_per_step >= cands[0].sec_per_step / 2 - 1e-12


def test_cli_time_to_accuracy_smoke(tmp_path, capsys):
    out = tmp_path / "tta"
    argv = ["experiment", "smoke", "--time-to-accuracy", "--devices-sim", "2", "--trials", "1"]
    assert main([*argv, "--smoke", "--out", str(out), "--levels", "0.1,0.2"]) == 0
    text = (out / "time_to_accuracy.md").read_text()
    assert "BP, 1 device" in text and "SCPL, 2 devices" in text and "time to val 0.1" in text
    rows = list(csv.DictReader(open(out / "time_to_accuracy.csv")))
    assert {r["contender"] for r in rows} >= {"BP, 1 device", "SCPL, 2 devices"}
    assert json.loads((out / "time_to_accuracy.json").read_text())["convnet"]["levels"] == [
        0.1,
        0.2,
    ]
    with pytest.raises(SystemExit):
        main(["experiment", "smoke", "--time-to-accuracy", "--devices-sim"])
    assert main([*argv, "--levels", "80", "--out", str(out)]) == 2
    assert "--levels" in capsys.readouterr().err


def test_each_local_method_is_priced_with_its_own_config():
    """SCPL's runs use its light head; pricing it with BP's config (the paper's MLP head on the
    flattened maps) would make its simulated step slower than it really is."""
    base = {"stages": 2, "model": "vanilla-convnet"}
    bp_cfg = make_config("smoke", {**base, "method": "bp"})
    own = {m: make_config("smoke", {**base, "method": m}) for m in ("bp", "scpl")}
    assert (own["scpl"].head, bp_cfg.head) == ("mlp-pool", "mlp")
    as_bp = contenders(bp_cfg, ["bp", "scpl"], 2)[-1]
    as_own = contenders(bp_cfg, ["bp", "scpl"], 2, own.__getitem__)[-1]
    assert as_own.label == as_bp.label == "SCPL, 2 devices"
    assert as_own.sec_per_step < as_bp.sec_per_step


def test_pricing_is_bench_targets_cost_function():
    """One cost function (issue 22, item 6): BP pipelines on BP's own best split with m up to
    4K, every contender paying its updates (U) and transfers, and ``--partition auto`` priced on
    the split training resolves. Mutants caught: BP priced on the model's default split; m
    capped at 8; U or send_act dropped from the costs; auto priced on the default split."""
    from scpl.perf.balance import auto_partition
    from scpl.perf.pricing import bp_split, micro_counts
    from scpl.studies.time_to_accuracy import run_costs, run_partition, run_profile

    assert micro_counts(4, 64) == [2, 4, 8, 16] and micro_counts(4, 24) == [2, 4, 8]
    base = {"stages": 4, "model": "vanilla-convnet", "dataset": "digits"}
    cfg = make_config("smoke", {**base, "method": "bp"})
    cands = contenders(cfg, ["bp", "scpl"], 4)
    assert cands[1].partition == bp_split(run_profile(cfg, "bp"), 4)
    for method in ("bp", "scpl"):
        costs = run_costs(make_config("smoke", {**base, "method": method}), method)
        assert all(costs[s]["U"] > 0 for s in costs)
        assert all(costs[s]["send_act"] > 0 for s in range(3))
    auto = make_config("smoke", {**base, "method": "scpl", "partition": "auto"})
    want = auto_partition(
        "vanilla-convnet", 4, auto.balance_by, method="scpl", head=auto.head,
        input_shape=(1, 8, 8), num_classes=10, width=auto.width, batch_size=auto.batch_size,
        proj_dim=auto.proj_dim, model_kwargs={},
    )  # fmt: skip
    assert run_partition(auto, "scpl") == want
    got = contenders(auto, ["bp", "scpl"], 4, lambda m: auto)[-1]
    assert got.partition == want
