"""CUDA checks; skipped cleanly on machines without a GPU (CI has none).

scripts/gpu_check.sh runs these (and tests/test_host_sync.py's CUDA cases) on a GPU host.
"""

from __future__ import annotations

import pytest
import torch

from parity_utils import assert_states_equal, make_batches, make_pipeline

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _run(executor, schedule, devices, steps=3, sync_debug=False, precision="fp32", stages=4):
    dev0 = torch.device(devices[0])
    batches = [(x.to(dev0), y.to(dev0)) for x, y in make_batches(steps)]
    with make_pipeline(
        executor, schedule, stages=stages, devices=devices, precision=precision
    ) as pipe:
        pipe.step(*batches[0])  # warm-up: optimizer state, cuDNN plans
        pipe.flush()
        if sync_debug:
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
        try:
            for x, y in batches[1:]:
                pipe.step(x, y)
        finally:
            pipe.flush()
            torch.cuda.set_sync_debug_mode(0)
        metrics = pipe.metrics()
        states = [{k: v.detach().cpu().clone() for k, v in s.items()} for s in pipe.unit_states()]
    return states, metrics


@pytest.fixture(autouse=True)
def _deterministic():
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def test_local_executor_on_cuda_matches_sequential_on_the_same_device():
    dev = ["cuda:0"]
    ref, ref_m = _run("sequential", "sequential", dev)
    got, got_m = _run("local", "scpl", dev)
    assert_states_equal(ref, got)
    assert got_m == ref_m


def test_local_four_stages_on_one_gpu_under_sync_debug_mode():
    """Four worker streams on cuda:0, no host sync allowed in the steady state, and still
    bitwise equal to the sequential reference: the stream hand-offs are ordered right."""
    dev = ["cuda:0"]
    ref, _ = _run("sequential", "sequential", dev, steps=6)
    got, _ = _run("local", "scpl", dev, steps=6, sync_debug=True)
    assert_states_equal(ref, got)


def test_bf16_on_cuda_runs_and_matches_across_executors():
    dev = ["cuda:0"]
    ref, ref_m = _run("sequential", "sequential", dev, precision="bf16")
    got, got_m = _run("local", "scpl", dev, precision="bf16")
    assert_states_equal(ref, got)
    assert all(v == v for v in got_m.values())  # finite


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")
def test_local_executor_across_two_gpus_matches_one():
    devs = [f"cuda:{i % 2}" for i in range(4)]
    one, _ = _run("local", "scpl", ["cuda:0"])
    two, _ = _run("local", "scpl", devs)
    assert_states_equal(one, two)
