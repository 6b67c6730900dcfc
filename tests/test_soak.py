"""Long-run memory: the soak runner samples resident memory over a run (tiny here; the bench
runs 10,000 steps). The check is for a leak-sized rise, not an exact figure."""

import pytest

from scpl.errors import ConfigError
from scpl.perf.soak import rss_mb, soak


@pytest.mark.parametrize("executor", ["sequential", "local"])
def test_soak_reports_flat_memory(executor):
    r = soak(executor, 60, num_samples=6)
    assert r["steps"] == 60 and len(r["samples"]) == 6
    assert r["rss_start_mb"] > 0
    assert abs(r["drift_pct"]) < 25  # a leak of graphs or activations would grow far faster


def test_soak_needs_enough_steps():
    with pytest.raises(ConfigError):
        soak("sequential", 5)


def test_rss_is_positive():
    assert rss_mb() > 0


def test_bench_soak_command(capsys):
    from scpl.cli import main

    assert main(["bench", "--soak", "40"]) == 0
    out = capsys.readouterr().out
    assert "| sequential | 40 |" in out and "| local | 40 |" in out
