"""WSD learning rate and budget branching (``scpl experiment --budgets``).

The spine: a budget's result branched from a longer run's constant phase is bitwise the result
of a fresh ``--lr-schedule wsd --train-steps T`` run (CPU).

Mutants this module catches (each applied by hand and seen to fail):
- the branch checkpoint taken at the decay start instead of one step before it (the stored LR
  for the next update is the trunk's constant one: ``test_branch_equals_fresh_run`` fails);
- the WSD factor saved as a callable object in LambdaLR's state (the resumed branch decays
  with the trunk's length: ``test_branch_equals_fresh_run`` fails);
- ``train_steps`` ignored by the epoch loop (``test_train_steps_stops_mid_epoch`` fails);
- a resume whose length change moves the decay before the checkpoint accepted
  (``test_resume_past_constant_phase_is_refused`` fails);
- ``--plan`` counting every budget's trunk from step 0 or forgetting the branch points a trunk
  passes, a study folder of other settings accepted, a save inside an epoch dropping that
  epoch's seconds, the best-run-within-the-time table picking on test accuracy, from longer
  budgets or from another seed, cells trained seed by seed instead of equal epochs first, the
  time-to-BP table taking the last budget that reaches BP or the raw accuracy, a run picked
  before its decay left unmarked (each named in its test's docstring).
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from scpl.errors import ConfigError
from scpl.parallel.base import OptimConfig, wsd_decay_start, wsd_factor
from scpl.studies.budgets import branch_step, parse_budgets, train_branches
from scpl.training.config import TrainConfig
from scpl.training.loop import train


def _cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(
        model="convnet",
        method="scpl",
        dataset="digits",
        stages=2,
        width=0.125,
        batch_size=32,
        max_steps=6,
        epochs=1,
        lr=3e-3,
        lr_min=1e-5,
        lr_schedule="wsd",
        decay_fraction=0.25,
        executor="sequential",
        augment="none",
        progress=False,
        tensorboard=False,
        threads=1,
        head="linear",
        proj_dim=16,
        out=str(tmp_path / "x"),
    )
    return TrainConfig(**{**base, **kw})


def _final(run_dir) -> list:
    return torch.load(run_dir / "final.rank0.pt", weights_only=True)


def _assert_same(a: list, b: list) -> None:
    assert len(a) == len(b)
    for ua, ub in zip(a, b, strict=True):
        assert ua.keys() == ub.keys()
        for k in ua:
            assert torch.equal(ua[k], ub[k]), k


def test_wsd_factor_shape():
    cfg = OptimConfig(lr=1.0, lr_min=0.1, total_steps=10, schedule="wsd", decay_fraction=0.2)
    f = wsd_factor(cfg)
    assert wsd_decay_start(10, 0.2) == 8
    assert [f(i) for i in range(8)] == [1.0] * 8
    assert f(8) == pytest.approx(0.55) and f(9) == pytest.approx(0.1)  # lr_min at the last
    warm = wsd_factor(dataclasses.replace(cfg, warmup_steps=4))
    assert [warm(i) for i in range(4)] == [0.25, 0.5, 0.75, 1.0]
    sq = wsd_factor(dataclasses.replace(cfg, decay_shape="1-sqrt"))
    assert sq(8) == pytest.approx(0.1 + 0.9 * (1 - 0.5**0.5))


def test_parse_budgets():
    assert parse_budgets("1,10@1,2", 3) == [(1.0, 3), (2.0, 3), (10.0, 1)]
    with pytest.raises(ConfigError):
        parse_budgets("1,x", 3)
    with pytest.raises(ConfigError):
        parse_budgets("0", 3)


def test_train_steps_stops_mid_epoch(tmp_path):
    s = train(_cfg(tmp_path, train_steps=8, epochs=50), echo=lambda *a: None)
    assert s["steps"] == 8
    epochs = [
        json.loads(x)
        for x in (tmp_path / "x" / "metrics.jsonl").read_text().splitlines()
        if '"epoch"' in x and '"kind": "epoch"' in x
    ]
    assert [e["step"] for e in epochs] == [6, 8]


@pytest.mark.parametrize("total", [9, 10])  # branch at an epoch's end (6) and inside one (7)
def test_branch_equals_fresh_run(tmp_path, total):
    fresh = train(_cfg(tmp_path, train_steps=total, out=str(tmp_path / "fresh")), echo=print)
    assert branch_step(total, 0.25) in (6, 7)
    got = train_branches(
        _cfg(tmp_path), [total], tmp_path / "study", "custom", planned=[20], echo=print
    )[total]
    assert (tmp_path / "study" / "trunk" / "branches").is_dir()  # it really branched
    assert got["test_acc"] == fresh["test_acc"]
    assert got["best_val_acc"] == fresh["best_val_acc"]
    _assert_same(_final(tmp_path / "fresh"), _final(tmp_path / "study" / f"steps-{total}"))
    # The trunk's own length (20 steps) branches from the same trunk and is a fresh run too.
    longest = train_branches(
        _cfg(tmp_path), [20], tmp_path / "study", "custom", planned=[total], echo=print
    )[20]
    fresh20 = train(_cfg(tmp_path, train_steps=20, out=str(tmp_path / "fresh20")), echo=print)
    assert longest["test_acc"] == fresh20["test_acc"]
    _assert_same(_final(tmp_path / "fresh20"), _final(tmp_path / "study" / "steps-20"))
    # A finished budget is read back, not trained again.
    again = train_branches(_cfg(tmp_path), [total], tmp_path / "study", "custom", echo=print)
    assert again[total]["train_seconds"] == got["train_seconds"]


def test_branch_inside_an_epoch_keeps_its_training_time(tmp_path):
    """A budget branched inside the trunk's first epoch reports the trunk's seconds too
    (mutant: a save inside an epoch storing only the finished epochs' seconds -- the branch
    point holds 0 and the summary only the branch's own part)."""
    from scpl.training.checkpoint import branch_point_path, load_checkpoint

    got = train_branches(_cfg(tmp_path), [7], tmp_path / "study", "custom", echo=print)[7]
    p = branch_step(7, 0.25)
    assert 0 < p < 6  # inside the first epoch (6 steps)
    kept = load_checkpoint(branch_point_path(tmp_path / "study" / "trunk", p, 0))
    assert kept["train_seconds"] > 0
    assert got["train_seconds"] > kept["train_seconds"]


def test_resume_past_constant_phase_is_refused(tmp_path):
    cfg = _cfg(tmp_path, train_steps=12, checkpoint_every=10)
    train(cfg, echo=lambda *a: None)  # checkpoints at 10 (decay starts at 9) and 12
    for p in (tmp_path / "x" / "checkpoints").glob("ckpt-000000012*"):
        p.unlink()
    with pytest.raises(ConfigError, match="constant phase"):
        train(dataclasses.replace(cfg, train_steps=30, resume=str(tmp_path / "x")), echo=print)


def test_budget_added_after_the_trunk_passed_it(tmp_path):
    """A budget whose branch point the trunk has passed is recomputed from the newest kept
    state before it (the trunk keeps its progress) and still equals a fresh run. Mutant: the
    fill starts from the trunk's latest state (past the point): the result differs."""
    train_branches(_cfg(tmp_path), [20], tmp_path / "study", "custom", echo=print)
    fresh = train(_cfg(tmp_path, train_steps=10, out=str(tmp_path / "fresh")), echo=print)
    got = train_branches(_cfg(tmp_path), [10], tmp_path / "study", "custom", echo=print)[10]
    assert got["test_acc"] == fresh["test_acc"]
    _assert_same(_final(tmp_path / "fresh"), _final(tmp_path / "study" / "steps-10"))
    assert not (tmp_path / "study" / "trunk-fill").exists()


def _rec(contender, method, seed, budget, acc):
    return dict(
        model="m",
        contender=contender,
        method=method,
        seed=seed,
        budget_epochs=budget,
        test_acc=acc,
        equal_epochs=True,
        equal_time=False,
        devices=1 if method == "bp" else 4,
    )


def test_gap_table_pairs_seeds_and_calls_the_trend():
    """Gaps are paired by seed (mutant: unpaired differences of means would give the same mean
    but a std from the seeds' spread, 2.0 here instead of 0); the trend is 'closing' only when
    the last change exceeds the noise, and no call is made on one seed."""
    from scpl.report.budgets import gap_trend, gaps

    recs = []
    for seed, base in ((0, 0.80), (1, 0.84)):  # seeds far apart, gaps equal within a budget
        recs += [_rec("BP", "bp", seed, 1, base), _rec("S", "scpl", seed, 1, base - 0.03)]
        recs += [_rec("BP", "bp", seed, 2, base + 0.02), _rec("S", "scpl", seed, 2, base + 0.01)]
    g = gaps(recs, "m", "S", "BP")
    assert g[1] == pytest.approx([-3.0, -3.0]) and g[2] == pytest.approx([-1.0, -1.0])
    assert "closing" in gap_trend(g) and "not" not in gap_trend(g)
    assert "not closing" in gap_trend({1: [-1.0, -2.0], 2: [-1.2, -1.6]})
    assert "widening" in gap_trend({1: [-1.0, -1.0], 2: [-2.0, -2.0]})
    assert "no call" in gap_trend({1: [-3.0, -2.0], 2: [-1.0]})


def test_gap_table_compares_at_the_same_width(tmp_path):
    """A width-sweep row is compared with BP at its own width (mutant: every row against the
    first BP row, which would print -6.00 here instead of -1.00)."""
    from scpl.report.budgets import _gap_table

    recs = []
    for w, base in ((0.25, 0.80), (0.5, 0.85)):
        tag = "" if w == 0.25 else f" width {w}"
        for seed in (0, 1):
            for b in (1, 2):
                recs.append({**_rec(f"BP{tag}", "bp", seed, b, base), "width": w})
                recs.append({**_rec(f"S{tag}", "scpl", seed, b, base - 0.01), "width": w})
    rows = {ln.split(" | ")[0].strip("| "): ln for ln in _gap_table(recs, "m", [1, 2])}
    assert "BP width 0.5" in rows["S width 0.5"] and "-1.00" in rows["S width 0.5"]
    assert "-6.00" not in "\n".join(rows.values())


def test_budget_study_keeps_earlier_cells(tmp_path):
    """A second invocation over other rows keeps the first one's cells in curves.json
    (mutant: records of this invocation only -- the bp row would vanish)."""
    from scpl.studies.budgets import run_budget_study

    quiet = lambda *a, **k: None  # noqa: E731
    run_budget_study("smoke", 1, tmp_path, "1", rows=("bp",), echo=quiet)
    run_budget_study("smoke", 1, tmp_path, "1", rows=("scpl",), echo=quiet)
    got = json.loads((tmp_path / "curves.json").read_text())["records"]
    assert sorted(r["row"] for r in got) == ["bp", "scpl"]
    run_budget_study("smoke", 1, tmp_path, "1", rows=("scpl",), echo=quiet)  # read back
    assert len(json.loads((tmp_path / "curves.json").read_text())["records"]) == 2


def test_plan_counts_shared_trunk_and_finished_cells(tmp_path):
    """``--plan`` counts each (row, seed) trunk once across budgets and nothing for finished
    cells of the same settings, and trains nothing (mutants: every budget's trunk counted from
    step 0 -- budget 2's count is too large)."""
    from scpl.studies.budget_plan import format_plan, plan_budget_study
    from scpl.studies.budgets import run_budget_study

    quiet = lambda *a, **k: None  # noqa: E731
    before = plan_budget_study("smoke", 1, tmp_path, "1,2", rows=("bp",))
    assert not (tmp_path / "runs").exists()
    assert [c["budget_epochs"] for c in before] == [1, 2]
    frac = TrainConfig().decay_fraction
    (t1, t2) = (c["steps"] for c in before)
    p1, p2 = branch_step(t1, frac), branch_step(t2, frac)
    assert 0 < p1 < p2
    # Budget 1: trunk to p1 and its decay; budget 2: the trunk's rest to p2 and its decay.
    assert [c["steps_left"] for c in before] == [t1, (p2 - p1) + (t2 - p2)]
    run_budget_study("smoke", 1, tmp_path, "1", rows=("bp",), echo=quiet)
    after = plan_budget_study("smoke", 1, tmp_path, "1,2", rows=("bp",))
    assert [c["steps_left"] for c in after] == [0, (p2 - p1) + (t2 - p2)]
    assert after[1]["seconds_left"] > 0  # priced at the speed the finished cell measured
    text = format_plan(after)
    assert "| 1 | 1/1 | 0 |" in text and "Still to train" in text


def test_study_refuses_a_folder_of_other_settings(tmp_path):
    """A study (or its plan) asked for other settings in a folder that holds runs of the row
    refuses with one line naming the folder and the setting, and deletes nothing (mutant: no
    check -- the finished branch folder was deleted to seed the new run, which then failed
    with a misleading "--resume" message)."""
    from scpl.studies.budget_plan import plan_budget_study
    from scpl.studies.budgets import run_budget_study

    quiet = lambda *a, **k: None  # noqa: E731
    run_budget_study("smoke", 1, tmp_path, "1", rows=("bp",), echo=quiet)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for fn in (run_budget_study, plan_budget_study):
        with pytest.raises(ConfigError, match=r"other settings \(lr 0\.003 -> 0\.05\).*--out"):
            fn("smoke", 1, tmp_path, "1", rows=("bp",), overrides={"lr": 0.05})
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_plan_matches_the_steps_a_study_trains(tmp_path):
    """With --time-to-accuracy, BP on one device and the BP pipeline share one trunk and branch
    from it out of order; the plan counts what the study really trains: the trunk once, to its
    last branch point, plus every branch's decay (mutant: branch points the trunk passes on
    the way not remembered -- a budget-2 cell counts a recomputation that never happens)."""
    from scpl.studies.budget_plan import plan_budget_study
    from scpl.studies.budgets import run_budget_study

    quiet = lambda *a, **k: None  # noqa: E731
    plan = plan_budget_study("smoke", 1, tmp_path, "1,2", num_devices=2, rows=("bp",))
    assert len({c["contender"] for c in plan}) == 2  # BP on one device, the pipeline
    frac = TrainConfig().decay_fraction
    points = [branch_step(c["steps"], frac) for c in plan]
    assert points != sorted(points)  # the trunk's branch points come out of order
    # Lines of one row whose lengths match train one run (one steps-<T> folder).
    branches = {c["steps"]: c["steps"] - p for c, p in zip(plan, points, strict=True)}
    trained = max(points) + sum(branches.values())
    assert sum(c["steps_left"] for c in plan) == trained
    run_budget_study("smoke", 1, tmp_path, "1,2", 2, rows=("bp",), echo=quiet)
    trunk = _final_step(tmp_path)
    assert trunk == max(points)
    assert all(
        c["steps_left"] == 0
        for c in plan_budget_study("smoke", 1, tmp_path, "1,2", num_devices=2, rows=("bp",))
    )


def _final_step(study) -> int:
    from scpl.studies.experiment import newest_checkpoint

    (trunk,) = study.glob("runs/*/trunk")
    kept = [int(p.name.split("-")[1].split(".")[0]) for p in trunk.glob("branches/ckpt-*.pt")]
    ck = newest_checkpoint(trunk)
    return max([*kept, ck["step"] if ck else 0])


def test_best_within_picks_on_validation_among_shorter_budgets():
    """Each budget takes its seed's run, among budgets up to it, with the best validation
    accuracy. Mutants: picking on test accuracy (budget 2 would report 0.95, not 0.80); looking
    at longer budgets too (budget 1 would take budget 5's run); pooling seeds (seed 1 would take
    seed 0's run)."""
    from scpl.report.budgets import best_within, crossover

    def rec(seed, b, val, test, contender="P", method="bp"):
        return {**_rec(contender, method, seed, b, test), "val_acc": val, "equal_time": True}

    recs = [
        rec(0, 1, 0.85, 0.80),
        rec(0, 2, 0.84, 0.95),  # better test, worse validation: not chosen
        rec(0, 5, 0.90, 0.88),
        rec(1, 1, 0.70, 0.70),
        rec(1, 2, 0.75, 0.74),
        rec(1, 5, 0.60, 0.61),
    ]
    got = {(r["seed"], r["budget_epochs"]): r for r in best_within(recs)}
    assert got[(0, 1)]["test_acc"] == 0.80 and got[(0, 2)]["test_acc"] == 0.80
    assert got[(0, 2)]["picked_budget"] == 1 and got[(0, 5)]["test_acc"] == 0.88
    assert got[(1, 5)]["test_acc"] == 0.74 and got[(1, 5)]["picked_budget"] == 2
    # A local contender that passes a BP contender only because that one got worse with more
    # steps: no crossover once BP may keep its earlier, better run.
    recs = [rec(0, 1, 0.9, 0.90), rec(0, 2, 0.8, 0.70)]
    recs += [rec(0, 1, 0.5, 0.85, "S", "scpl"), rec(0, 2, 0.5, 0.80, "S", "scpl")]
    assert crossover(recs, "m", "S") == "2"
    assert crossover(best_within(recs), "m", "S") == "none up to 2"


def test_equal_epoch_cells_come_first_within_a_budget(tmp_path):
    """Within a budget the study trains every seed's equal-epoch cells before the longer
    equal-time ones, so the equal-steps comparison is complete first (mutant: seed by seed,
    the pipeline's seed-0 cell would come before BP's seed-1 cell)."""
    from scpl.studies.budget_plan import plan_budget_study

    plan = plan_budget_study("smoke", 2, tmp_path, "1,2", num_devices=2, rows=("bp",))
    order = [(c["budget_epochs"], "1 device" in c["contender"], c["seed"]) for c in plan]
    assert order == [(b, one, s) for b in (1, 2) for one in (True, False) for s in (0, 1)]


def test_time_to_bp_finds_the_first_budget_that_reaches_bp():
    """Each equal-time contender gets the smallest budget whose best run within the time
    reaches BP-on-one-device's accuracy at budget B, and B / b. Mutants: the last budget that
    reaches it (the pipeline would show 4 for BP's 2-epoch accuracy, not 1); the contender's
    raw accuracy at each budget instead of its best run within the time (S's 2-epoch run has
    the better test score but the worse validation score, and would count as reaching it)."""
    from scpl.report.budgets import time_to_bp

    def rec(c, method, devices, b, val, test):
        r = {**_rec(c, method, 0, b, test), "val_acc": val, "equal_time": True}
        return r | {"devices": devices}

    recs = [rec("BP", "bp", 1, b, a, a) for b, a in ((1, 0.80), (2, 0.84), (4, 0.86))]
    recs += [rec("P", "bp", 4, b, a, a) for b, a in ((1, 0.87), (2, 0.85), (4, 0.80))]
    recs += [rec("S", "scpl", 4, 1, 0.9, 0.80), rec("S", "scpl", 4, 2, 0.8, 0.86)]
    rows = {ln.split(" | ")[0].strip("| "): ln for ln in time_to_bp(recs, "m")}
    assert rows["P"].split(" | ")[1:] == ["1 (>= 1.0x)", "1 (>= 2.0x)", "1 (>= 4.0x) |"]
    assert rows["S"].split(" | ")[1:] == ["1 (>= 1.0x)", "not up to 2", "not up to 2 |"]


def test_cells_picked_before_the_decay_are_marked(tmp_path):
    """A run whose epoch chosen on validation ended before its decay began is flagged, and its
    cell in every table carries the mark (so a reader sees a constant-phase number, not a
    decayed one). Mutants: ``best_epoch`` read as 0-based (epoch 9 of 100-step epochs would end
    at step 800, the decay start of a 1000-step run: a false mark), ``<`` for ``<=`` (an
    epoch ending exactly at the decay start is unmarked), the schedule ignored (a cosine run
    marked), a run without decay steps marked, a decayed epoch that ties the pick ignored, the
    best-within table dropping the pick's flag, read_records not recomputing the flag for a
    record written without it."""
    from scpl.report.budgets import (
        BEFORE_DECAY,
        best_within,
        picked_before_decay,
        write_budget_report,
    )
    from scpl.studies.budgets import read_records

    def summ(best, steps=1000, sched="wsd", frac=0.2):
        cfg = {"lr_schedule": sched, "decay_fraction": frac}
        return {"best_epoch": best, "best_val_acc": 0.9, "steps_per_epoch": 100, "steps": steps,
                "config": cfg}  # fmt: skip

    later = [{"step": s, "val_acc": 0.89} for s in (900, 1000)]
    assert wsd_decay_start(1000, 0.2) == 800
    assert picked_before_decay(summ(8), later)  # ends at step 800: all at the constant rate
    assert not picked_before_decay(summ(9), later)
    assert not picked_before_decay(summ(10, steps=950), later)  # the last, short epoch
    assert not picked_before_decay(summ(3, sched="cosine"), later)
    assert not picked_before_decay(summ(10, frac=0.0), later)  # no decay to come back from
    assert not picked_before_decay(summ(8), [*later, {"step": 1000, "val_acc": 0.9}])  # a tie
    # A record written without the flag (before it existed) gets it from its run folder.
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps(summ(8) | {"config": summ(8)["config"]}))
    (run / "metrics.jsonl").write_text("".join(json.dumps(e | {"kind": "epoch"}) + "\n"
                                               for e in later))  # fmt: skip
    old = {**_rec("P", "bp", 0, 1, 0.9), "run": str(run), "width": 0.25}
    (tmp_path / "runs.jsonl").write_text(json.dumps(old) + "\n")
    assert read_records(tmp_path / "runs.jsonl")[0]["picked_before_decay"] is True
    recs = [
        {**_rec("P", "bp", 0, b, a), "val_acc": a, "sim_seconds": b, "picked_before_decay": f}
        for b, a, f in ((1, 0.9, True), (2, 0.8, False))
    ]
    assert [r["picked_before_decay"] for r in best_within(recs)] == [True, True]
    write_budget_report(recs, tmp_path / "out", {"title": "t"})
    md = (tmp_path / "out" / "curves.md").read_text()
    assert f"90.00 ± 0.00 (1){BEFORE_DECAY}" in md and "80.00 ± 0.00 (1) |" in md
    assert md.count(BEFORE_DECAY) == 2  # the cell and the footnote
