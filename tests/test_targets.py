"""`scpl bench --targets`: the output contract, the exit status, and the row check, which runs
each row's schedule on the row's own network against the independent reference
(:mod:`scpl.studies.reference`) and so catches a schedule that trains wrongly, however fast.

Mutants caught: a schedule without backwards (scpl), BP updating before its backwards (gpipe),
and ``_local_order`` putting U first in every stage (every local schedule, including the
``sequential`` order the old check compared with, so that check passed it); a missed target
exiting 0."""

from __future__ import annotations

import argparse
import json

import pytest

import scpl.studies.targets as targets_mod
from scpl.cli.studies import cmd_targets
from scpl.parallel import schedules
from scpl.studies.targets import NEEDS, Net, RowModel, emulated_row, quick_options, run_targets

COSTS = {s: {"F": 2e-3, "L": 5e-4, "B": 4e-3, "U": 5e-4} for s in range(3)}
SMALL = RowModel(Net("convnet", (1, 16, 16), 10), (1, 1, 1), "mlp-pool")
"""The rows' own network in these tests: a 3-stage ConvNet (the check runs it at width 0.125)."""


def _skip_backward(order):
    # Faster than SCPL (no backward at all), and wrong: the stages never learn.
    return lambda K, m, local: [(s, op) for s, op in order(K, m, local) if op.kind != "B"]


def _u_first(order):
    # Each stage steps its optimizer before its backward: gradients land a step late.
    def wrong(*args, **kw):
        out = []
        steps = order(*args, **kw)
        for s in sorted({st for st, _ in steps}):
            ops = [op for st, op in steps if st == s]
            u = [op for op in ops if op.kind == "U"]
            out += [(s, op) for op in u + [op for op in ops if op.kind != "U"]]
        return out

    return wrong


def test_row_check_passes_a_correct_schedule():
    opts = quick_options()
    assert emulated_row("scpl", "scpl", "scpl", COSTS, 1, opts, verify=SMALL)["verified"] is True
    bp = RowModel(SMALL.net, SMALL.partition, "-")
    row = emulated_row("1f1b", "pipedream-1f1b", "bp", COSTS, 4, opts, verify=bp)
    assert row["verified"] is True


@pytest.mark.parametrize(
    "schedule,method,m,wrong",
    [("scpl", "scpl", 1, _skip_backward), ("gpipe", "bp", 4, _u_first)],
)
def test_row_check_catches_a_wrong_schedule(monkeypatch, schedule, method, m, wrong):
    monkeypatch.setitem(schedules.ORDERS, schedule, wrong(schedules.ORDERS[schedule]))
    own = RowModel(SMALL.net, SMALL.partition, SMALL.head if method == "scpl" else "-")
    row = emulated_row("wrong", schedule, method, COSTS, m, quick_options(), verify=own)
    assert row["verified"] is False and row["mismatches"]
    assert row["samples_per_s"] > 0  # it ran, and posted a number: the check is what fails it


def test_row_check_catches_update_first_in_local_order(monkeypatch):
    """The mutant the old check (row vs the ``sequential`` schedule) passed: both orders come
    from ``_local_order``."""
    monkeypatch.setattr(schedules, "_local_order", _u_first(schedules._local_order))
    row = emulated_row("wrong", "scpl", "scpl", COSTS, 1, quick_options(), verify=SMALL)
    assert row["verified"] is False


@pytest.mark.parametrize("report_only,code", [(False, 1), (True, 0)])
def test_targets_exit_status_on_a_missed_target(monkeypatch, tmp_path, report_only, code):
    missed = [{"name": n, "value": 0.0, "need": 1.0, "met": n != "rows-verified"} for n in NEEDS]
    monkeypatch.setattr(targets_mod, "run_targets", lambda opts: missed)
    args = argparse.Namespace(quick=True, out=str(tmp_path), report_only=report_only)
    assert cmd_targets(args) == code
    met = [dict(t, met=True) for t in missed]
    monkeypatch.setattr(targets_mod, "run_targets", lambda opts: met)
    assert cmd_targets(argparse.Namespace(quick=True, out=str(tmp_path), report_only=False)) == 0


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
