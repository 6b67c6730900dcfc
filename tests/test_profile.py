"""Timelines (Gantt PNG, Chrome trace JSON) and the bench/profile commands, with tiny settings."""

from __future__ import annotations

import json

import pytest

from scpl.cli import main
from scpl.parallel.runner import Event
from scpl.perf.simulate import simulate
from scpl.report.timeline import split_waits, write_gantt, write_trace

COSTS = {s: {"F": 0.01, "L": 0.002, "B": 0.02, "U": 0.001, "recv_act": 0.001} for s in range(3)}
PNG = b"\x89PNG\r\n\x1a\n"


def test_gantt_and_trace(tmp_path):
    a = simulate("nmp", 3, COSTS, 3, local=False).events
    b = simulate("scpl", 3, COSTS, 3).events
    png = write_gantt([("nmp", a), ("scpl", b)], tmp_path / "g.png", "t", costs=COSTS)
    assert png.read_bytes()[:8] == PNG
    assert write_gantt(b, tmp_path / "one.png").read_bytes()[:8] == PNG
    doc = json.loads(write_trace([("nmp", a), ("scpl", b)], tmp_path / "t.json").read_text())
    xs = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    assert len(xs) == len(a) + len(b)
    assert all(isinstance(e["pid"], int) and e["tid"] in (0, 1, 2) for e in xs)
    assert all(e["dur"] >= 0 and e["ts"] >= 0 for e in xs)
    # pid = device: the simulator puts stage s on device sim<s>; two runs -> 6 processes.
    assert {e["pid"] for e in xs} == set(range(6))
    names = [e for e in doc["traceEvents"] if e["ph"] == "M" and e["name"] == "thread_name"]
    assert len(names) == 6


def test_split_waits():
    ev = [Event(1, "recv_act", 0, 0, 0.0, 5.0, "cpu"), Event(1, "F", 0, 0, 5.0, 6.0, "cpu")]
    out = split_waits(ev, {1: {"recv_act": 1.0}})
    assert [(e.kind, e.start, e.end) for e in out] == [
        ("wait", 0.0, 4.0),
        ("recv_act", 4.0, 5.0),
        ("F", 5.0, 6.0),
    ]


TINY = ["--emulate", "F=2ms,L=1ms,B=3ms,U=1ms"]


def test_bench_quick(tmp_path, capsys):
    out = tmp_path / "bench"
    rc = main(["bench", "--quick", "--stages", "2", "--steps", "3", *TINY, "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "pipeline throughput" in text and "targets" in text
    doc = json.loads((out / "bench.json").read_text())
    rows = doc["tables"]["pipeline"]
    assert {r["schedule"] for r in rows} == {"sequential", "scpl", "scpl-gpipe", "nmp", "gpipe"}
    assert all(r["samples_per_s"] > 0 for r in rows)
    assert (out / "pipeline.csv").read_text().startswith("suite,")
    assert (out / "bench.md").exists() and (out / "gantt-equal-K2.png").exists()


def test_bench_project_and_balance(tmp_path, capsys):
    out = tmp_path / "b"
    rc = main(
        ["bench", "--quick", "--project", "--balance", "params", "--steps", "3", "--out", str(out)]
    )
    assert rc == 0
    doc = json.loads((out / "bench.json").read_text())
    assert {r["schedule"] for r in doc["tables"]["project"]} >= {"scpl", "nmp"}
    assert [r["split"] for r in doc["tables"]["balance"]] == ["paper", "balanced-params"]


@pytest.mark.parametrize(
    "extra",
    [
        [*TINY, "--torch-profiler"],
        [*TINY, "--simulate"],
        ["--emulate", "measured", "--scale-ms", "8"],
    ],
)
def test_profile(tmp_path, extra):
    out = tmp_path / "p"
    args = ["profile", "--schedule", "nmp,scpl", "--stages", "2", "--steps", "2"]
    assert main([*args, "--out", str(out), "--name", "x", *extra]) == 0
    assert (out / "x.png").read_bytes()[:8] == PNG
    doc = json.loads((out / "x.trace.json").read_text())
    assert any(e["ph"] == "X" for e in doc["traceEvents"])
    if "--torch-profiler" in extra:
        for s in ("nmp", "scpl"):
            assert "traceEvents" in json.loads((out / f"x-{s}.torch.json").read_text())
