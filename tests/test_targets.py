"""`scpl bench --targets`: the output contract, and the row check that catches a schedule which
trains wrongly (however fast it is)."""

from __future__ import annotations

import json

import pytest

from scpl.parallel import schedules
from scpl.studies.targets import NEEDS, emulated_row, quick_options, run_targets

COSTS = {s: {"F": 2e-3, "L": 5e-4, "B": 4e-3, "U": 5e-4} for s in range(3)}


def _skip_backward(order):
    # Faster than SCPL (no backward at all), and wrong: the stages never learn.
    return lambda K, m, local: [(s, op) for s, op in order(K, m, local) if op.kind != "B"]


def _update_first(order):
    # Each stage steps its optimizer before its backward: gradients land a step late.
    def wrong(K, m, local):
        out = []
        for s in range(K):
            ops = [op for st, op in order(K, m, local) if st == s]
            u = [op for op in ops if op.kind == "U"]
            out += [(s, op) for op in u + [op for op in ops if op.kind != "U"]]
        return out

    return wrong


def test_row_check_passes_a_correct_schedule():
    opts = quick_options()
    assert emulated_row("scpl", "scpl", "scpl", COSTS, 1, opts)["verified"] is True
    row = emulated_row("1f1b", "pipedream-1f1b", "bp", COSTS, 4, opts)
    assert row["verified"] is True


@pytest.mark.parametrize(
    "schedule,method,m,wrong",
    [("scpl", "scpl", 1, _skip_backward), ("gpipe", "bp", 4, _update_first)],
)
def test_row_check_catches_a_wrong_schedule(monkeypatch, schedule, method, m, wrong):
    monkeypatch.setitem(schedules.ORDERS, schedule, wrong(schedules.ORDERS[schedule]))
    row = emulated_row("wrong", schedule, method, COSTS, m, quick_options())
    assert row["verified"] is False
    assert row["samples_per_s"] > 0  # it ran, and posted a number: the check is what fails it


def test_targets_json_has_exactly_the_issue_names(tmp_path):
    targets = run_targets(quick_options(out=str(tmp_path), models=("lstm",)), log=lambda s: None)
    doc = json.loads((tmp_path / "targets.json").read_text())
    assert doc == targets
    assert (
        [t["name"] for t in doc]
        == list(NEEDS)
        == [
            "vgg-flops-K4-scpl-vs-bp",
            "vgg-flops-K4-scpl-vs-gpipe",
            "vgg-K4-activation-memory-scpl-vs-1f1b",
            "resnet18-flops-K4-scpl-vs-bp",
            "lstm-flops-K4-scpl-vs-bp",
            "transformer-flops-K4-scpl-vs-bp",
            "vgg-measured-K4-scpl-vs-bp",
            "step-ratio-scpl-vs-bp",
            "rows-verified",
        ]
    )
    assert all(set(t) == {"name", "value", "need", "met"} for t in doc)
    by = {t["name"]: t for t in doc}
    assert by["lstm-flops-K4-scpl-vs-bp"]["value"] > 0
    assert (
        by["vgg-flops-K4-scpl-vs-bp"]["value"] is None and not by["vgg-flops-K4-scpl-vs-bp"]["met"]
    )
    assert by["rows-verified"]["value"] == 1.0 and by["rows-verified"]["met"]
    assert "Per-stage breakdown" in (tmp_path / "targets.md").read_text()
