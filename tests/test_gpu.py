"""CUDA checks; skipped cleanly on machines without a GPU (CI has none)."""

from __future__ import annotations

import pytest
import torch

from parity_utils import assert_states_equal, make_batches, make_units
from scpl.parallel import EXECUTORS, ExecutorOptions, OptimConfig

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _run(executor: str, schedule: str, devices: list[torch.device]):
    units, meth = make_units("convnet", "scpl", 4)
    ex = EXECUTORS.get(executor)(
        units,
        meth.local,
        OptimConfig(lr=1e-2, total_steps=10),
        devices,
        ExecutorOptions(schedule=schedule),
        "scpl",
    )
    try:
        for x, y in make_batches(3):
            ex.submit(x.to(devices[0]), y.to(devices[0]))
        ex.flush()
        return [{k: v.detach().cpu().clone() for k, v in s.items()} for s in ex.unit_states()]
    finally:
        ex.close()


def test_local_executor_on_cuda_matches_sequential_on_the_same_device():
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    dev = [torch.device("cuda", 0)]
    assert_states_equal(_run("sequential", "sequential", dev), _run("local", "scpl", dev))


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")
def test_local_executor_across_two_gpus_runs():
    torch.backends.cudnn.deterministic = True
    devs = [torch.device("cuda", i % 2) for i in range(4)]
    states = _run("local", "scpl", devs)
    assert len(states) == 4
