"""Any contiguous partition of every model's units trains, and the pipelined run equals the
sequential reference bitwise (local losses and BP)."""

from __future__ import annotations

import random

import pytest

from parity_utils import TEXT_MODELS, assert_states_equal, run_executor
from scpl.models import MODELS, build_model


def _units(model: str) -> int:
    if model in TEXT_MODELS:
        return 4  # embedding + 3 layers at K=4 (the default depth)
    return sum(build_model(model, (1, 8, 8), 10, 4, 0.125).partition)


def _partitions(n: int, k: int, count: int, seed: int) -> list[list[int]]:
    """``count`` distinct random compositions of n into k positive parts (plus the extremes)."""
    rng = random.Random(seed)
    out = {tuple([n - k + 1] + [1] * (k - 1)), tuple([1] * (k - 1) + [n - k + 1])}
    while len(out) < count + 2 and len(out) < _count(n, k):
        cuts = sorted(rng.sample(range(1, n), k - 1))
        b = [0, *cuts, n]
        out.add(tuple(b[i + 1] - b[i] for i in range(k)))
    return [list(p) for p in sorted(out)]


def _count(n: int, k: int) -> int:
    from math import comb

    return comb(n - 1, k - 1)


CASES = []
for _name in sorted(MODELS.names()):
    _n = _units(_name)
    if (
        _name not in TEXT_MODELS
        and sum(build_model(_name, (1, 8, 8), 10, 3, 0.125).partition) != _n
    ):
        continue  # one unit per stage (convnet): its only partition is the default
    _k = 3 if _name in TEXT_MODELS else 4
    if _n <= _k:
        _k = max(2, _n - 1)
    for _i, _p in enumerate(_partitions(_n, _k, 1, seed=len(_name))):
        CASES.append((_name, _p))


@pytest.mark.parametrize("model,partition", CASES, ids=lambda v: str(v))
def test_any_partition_trains_and_matches_sequential(model, partition):
    kw = dict(model=model, stages=len(partition), partition=partition, steps=2)
    if model in TEXT_MODELS:
        kw["num_layers"] = sum(partition) - 1
    ref, _, ref_acc, _ = run_executor("sequential", "sequential", **kw)
    got, metrics, acc, _ = run_executor("local", "scpl", **kw)
    assert_states_equal(ref, got)
    assert acc == ref_acc
    assert all(v == v for v in metrics.values())  # finite, trained
    ref, *_ = run_executor("sequential", "sequential", method="bp", **kw)
    got, *_ = run_executor("local", "nmp", method="bp", **kw)
    assert_states_equal(ref, got)


def test_partition_changes_only_the_grouping():
    """The same seed gives the same parameters whatever the partition (units are built first)."""
    import torch

    torch.manual_seed(0)
    a = build_model("resnet18", (3, 32, 32), 10, 4, 0.125)
    torch.manual_seed(0)
    b = build_model("resnet18", (3, 32, 32), 10, 3, 0.125, [1, 4, 4])
    pa = [p for p in a.parameters()]
    pb = [p for p in b.parameters()]
    assert len(pa) == len(pb) and all(torch.equal(x, y) for x, y in zip(pa, pb, strict=True))
