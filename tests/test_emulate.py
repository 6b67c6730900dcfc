"""The --emulate spec parser: good specs give ExecutorOptions.emulate dicts, bad ones one-line
ConfigErrors (and exit code 2 from the CLI)."""

from __future__ import annotations

import pytest

from scpl.cli import main
from scpl.errors import ConfigError
from scpl.parallel.runner import Event
from scpl.perf.emulate import (
    costs_from_events,
    format_emulate,
    parse_duration,
    parse_emulate,
    per_micro,
)


def test_same_for_every_stage():
    em = parse_emulate("F=10ms,L=2ms,B=20ms,U=1ms", 2)
    assert em == {s: {"F": 0.01, "L": 0.002, "B": 0.02, "U": 0.001} for s in range(2)}


def test_per_stage_ranges_wildcards_and_overrides():
    em = parse_emulate("F=10ms,B=20ms; 2:B=30ms; 0-1:L=250us; *:U=0.5ms", 3)
    assert em[0] == {"F": 0.01, "B": 0.02, "L": 0.00025, "U": 0.0005}
    assert em[1] == em[0]
    assert em[2] == {"F": 0.01, "B": 0.03, "U": 0.0005}
    per = parse_emulate("0:F=10ms,B=20ms;1:F=12ms", 3)
    assert per == {0: {"F": 0.01, "B": 0.02}, 1: {"F": 0.012}}


def test_transfer_costs_and_aliases():
    em = parse_emulate("send_act=1ms,recv=2ms", 2)
    assert em[0] == {"send_act": 0.001, "recv_act": 0.002, "recv_grad": 0.002}
    assert set(parse_emulate("comm=1s", 1)[0]) == {"send_act", "recv_act", "send_grad", "recv_grad"}


@pytest.mark.parametrize("spec", [None, "", "none", "  NONE "])
def test_no_emulation(spec):
    assert parse_emulate(spec, 4) == {}


@pytest.mark.parametrize(
    "spec,needle",
    [
        ("F=10", "unit"),
        ("F=ten ms", "bad duration"),
        ("X=1ms", "unknown op"),
        ("F10ms", "OP=DURATION"),
        ("5:F=1ms", "does not exist"),
        ("a:F=1ms", "stage selector"),
        ("2-1:F=1ms", "does not exist"),
        ("F=-1ms", "bad duration"),
        ("1:", "no ops"),
        ("measured", "measured"),
    ],
)
def test_bad_specs_are_one_line_config_errors(spec, needle):
    with pytest.raises(ConfigError) as e:
        parse_emulate(spec, 2)
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_round_trip_and_micro_batches():
    em = parse_emulate("F=10ms,B=20ms,U=1ms,send_act=1ms;1:L=3ms", 2)
    back = parse_emulate(format_emulate(em), 2)
    assert back.keys() == em.keys()
    for s in em:
        assert back[s] == pytest.approx(em[s])
    micro = per_micro(em, 4)
    assert micro[0]["F"] == pytest.approx(0.0025) and micro[0]["U"] == 0.001
    assert micro[0]["send_act"] == pytest.approx(0.00025)
    assert parse_duration("1.5e1ms") == pytest.approx(0.015)


def test_costs_from_events():
    ev = [Event(0, "F", b, 0, 0.0, d, "cpu") for b, d in ((0, 9.0), (1, 1.0), (2, 3.0))] + [
        Event(1, "recv_act", b, 0, 0.0, d, "cpu") for b, d in ((1, 5.0), (2, 0.5))
    ]
    c = costs_from_events(ev, skip_batches=1)
    assert c == {0: {"F": 2.0}, 1: {"recv_act": 0.5}}  # mean of work ops, min of transfers
    assert costs_from_events(ev, 1, base={1: {"recv_act": 0.1}})[1]["recv_act"] == 0.1


def test_cli_bad_spec_exits_2_with_one_line(capsys):
    assert main(["profile", "--emulate", "F=10", "--stages", "2", "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("scpl: error: --emulate") and "\n" not in err


def _close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for s in a:
        assert a[s] == pytest.approx(b[s])


def test_cost_source_spec_flops_scaling_and_extrapolation():
    from scpl.perf.costs import CostSource
    from scpl.perf.emulate import scale_costs, stage_totals
    from scpl.perf.measure import Workload

    spec = CostSource("F=10ms,B=20ms", transfer="send_act=1ms")
    assert spec.costs(2, "bp") == {s: {"F": 0.01, "B": 0.02, "send_act": 0.001} for s in range(2)}
    w = Workload("convnet", 0.125, (1, 8, 8), 8, "linear", 16)
    scaled = CostSource("flops", w, slowest_ms=10.0)
    assert max(stage_totals(scaled.costs(2, "scpl"), 2)) == pytest.approx(0.01)
    raw = CostSource("flops", w)
    factor = 0.01 / max(stage_totals(raw.costs(2, "scpl"), 2))
    bp = scaled.costs(2, "bp")  # scaled by SCPL's factor, so the two stay comparable
    _close(bp, scale_costs(raw.costs(2, "bp"), factor))
    capped = CostSource("flops", w, max_batch=8)
    big = capped.costs(2, "scpl", 16)
    _close(big, scale_costs(raw.costs(2, "scpl", 8), 2.0, ("F", "L", "B")))


def test_which_method_a_schedule_runs():
    from scpl.perf.harness import method_for
    from scpl.studies.profile import resolve

    assert method_for("nmp") == "bp" and method_for("gpipe", "early-exit") == "bp"
    assert method_for("scpl", "bp") == "scpl" and method_for("scpl-gpipe", "al") == "al"
    assert method_for("sequential", "bp") == "bp"
    assert resolve("auto", "bp") == ("nmp", "bp") and resolve("auto", "al") == ("scpl", "al")
