"""`scpl probe`: per-stage linear probes of a finished run.

Mutants: the probe fitted on the test features (random labels would then score far above
chance), the stages' outputs not chained (every probe would read the input), a run folder
without weights accepted silently."""

from __future__ import annotations

import pytest
import torch

from scpl.errors import ConfigError
from scpl.studies.probe import fit_probe, probe_run, probe_table


def test_fit_probe_separates_blobs_and_not_noise():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 20, generator=g) * 4
    y = torch.randint(0, 4, (800,), generator=g)
    x = centres[y] + torch.randn(800, 20, generator=g)
    assert fit_probe(x[:600], y[:600], x[600:], y[600:], 4) > 0.95
    noise = torch.randn(800, 200, generator=g)
    assert fit_probe(noise[:600], y[:600], noise[600:], y[600:], 4) < 0.45


def test_probe_a_finished_run(tmp_path):
    from scpl.training.loop import train
    from scpl.training.recipes import make_config

    out = tmp_path / "run"
    cfg = make_config("smoke", {"out": str(out), "epochs": 1, "max_steps": 6, "progress": False})
    train(cfg, recipe="smoke", echo=lambda *a, **k: None)
    r = probe_run(out, train_samples=300, pool=2)
    assert len(r["probe_acc"]) == cfg.stages
    assert all(0.0 <= a <= 1.0 for a in r["probe_acc"])
    assert len(set(r["probe_acc"])) > 1  # the stages' features differ
    assert "stage 1" in probe_table([r])
    with pytest.raises(ConfigError, match="no finished run"):
        probe_run(tmp_path)
