"""SCPL's --local-recon: each hidden stage reconstructs its own input (scpl.methods.recon).

Mutants these fail on: the term computed on the stage's output instead of its input (shape
or value differs from the hand computation), the weight ignored, the input not handed to
the loss by the runner (no recon term logged), the last stage given a decoder."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from parity_utils import assert_states_equal, make_batches, make_pipeline, run_dist, run_executor
from scpl.errors import ConfigError

RECON = {"local_recon": 0.5}


@pytest.mark.parametrize("model", ["convnet", "vanilla-convnet"])
def test_parity_recon_local_executor(model):
    ref, ref_m, ref_acc, _ = run_executor(
        "sequential", "sequential", model=model, stages=3, method_options=RECON
    )
    got, m, acc, _ = run_executor("local", "scpl", model=model, stages=3, method_options=RECON)
    assert_states_equal(ref, got)
    assert (m, acc) == (ref_m, ref_acc)
    assert "stage0/recon" in m and "stage1/recon" in m and "stage2/recon" not in m


def test_parity_dist_recon(tmp_path):
    ref, ref_m, ref_acc, _ = run_executor(
        "sequential", "sequential", stages=2, method_options=RECON
    )
    results = run_dist(2, tmp_path, schedule="scpl", stages=2, method_options=RECON)
    assert_states_equal(ref, [r["state"] for r in results])
    assert all(r["acc"] == ref_acc for r in results)


def test_recon_term_by_hand():
    """The logged term is weight x MSE(decoder(stage output), stage input), recomputed here
    from the units' own modules on the first batch (before any update)."""
    pipe = make_pipeline("sequential", "sequential", stages=3, method_options=RECON)
    units = [r.unit for r in pipe.executor.runners]
    x, y = make_batches(1)[0]
    with torch.no_grad():
        h0 = units[0](x)
        h1 = units[1](h0)
        want = []
        for u, inp, out in ((units[0], x, h0), (units[1], h0, h1)):
            dec = u.aux["recon"]
            pred = dec.conv(out)
            if pred.shape[-2:] != inp.shape[-2:]:
                pred = F.interpolate(pred, size=inp.shape[-2:], mode="bilinear")
            want.append(0.5 * F.mse_loss(pred, inp).item())
    pipe.step(x, y)
    got = pipe.metrics()
    pipe.close()
    assert got["stage0/recon"] == pytest.approx(want[0], rel=1e-5)
    assert got["stage1/recon"] == pytest.approx(want[1], rel=1e-5)
    assert "recon" not in units[2].aux


def test_recon_needs_image_stages():
    with pytest.raises(ConfigError, match="--local-recon"):
        make_pipeline(
            "sequential",
            "sequential",
            model="lstm",
            stages=3,
            input_shape=(12,),
            vocab_size=50,
            embed_dim=24,
            method_options=RECON,
        ).close()
