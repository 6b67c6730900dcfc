"""Stage balancing: the min-max contiguous partition, with and without per-cut (head) costs."""

from __future__ import annotations

import itertools
import random

import pytest

from scpl.cli import main
from scpl.errors import ConfigError
from scpl.models import build_model
from scpl.perf.balance import UnitCosts, group_costs, partition_min_max, unit_costs


def _compositions(n, k):
    for cuts in itertools.combinations(range(1, n), k - 1):
        b = (0, *cuts, n)
        yield [b[i + 1] - b[i] for i in range(k)]


def test_known_optimum():
    assert partition_min_max([1, 2, 3, 4, 5, 6], 4) == [3, 1, 1, 1]
    assert partition_min_max([5, 1, 1, 1, 1, 5], 3) == [1, 4, 1]
    assert partition_min_max([1, 1, 1, 1], 1) == [4]
    assert partition_min_max([3, 3], 2) == [1, 1]


def test_matches_brute_force():
    rng = random.Random(0)
    for _ in range(30):
        n, k = rng.randint(2, 8), None
        k = rng.randint(1, n)
        body = [rng.uniform(0, 10) for _ in range(n)]
        head = [rng.uniform(0, 5) for _ in range(n)]
        uc = UnitCosts(body, head)
        best = min(max(uc.stage_costs(p)) for p in _compositions(n, k))
        got = partition_min_max(uc, k)
        assert sum(got) == n and len(got) == k and min(got) >= 1
        assert max(uc.stage_costs(got)) == pytest.approx(best)


def test_cut_costs_move_the_cut():
    # Cutting after unit 0 pays a big head: the best split avoids it.
    uc = UnitCosts([1, 1, 1, 1], [10, 0, 0, 0])
    assert partition_min_max(uc, 2) == [2, 2]
    assert partition_min_max([1, 1, 1, 1], 2) == [2, 2]
    assert group_costs(uc, [1, 3]) == [11, 3]


def test_bad_stage_count():
    with pytest.raises(ConfigError, match="between 1 and 3"):
        partition_min_max([1, 2, 3], 4)


def test_params_costs_give_a_valid_partition():
    uc = unit_costs("vgg", "params", (3, 32, 32), width=0.125)
    assert len(uc.body) == len(uc.head) == 6
    m = build_model("vgg", (3, 32, 32), 10, 6, 0.125, [1] * 6)
    assert sum(uc.body) == sum(p.numel() for p in m.stages.parameters())
    part = partition_min_max(uc, 4)
    build_model("vgg", (3, 32, 32), 10, 4, 0.125, part)  # usable as --partition


def test_balance_cli(capsys):
    assert main(["balance", "--model", "vgg", "--stages", "3", "--by", "params"]) == 0
    out = capsys.readouterr().out
    line = [ln for ln in out.splitlines() if ln.startswith("--partition ")][0]
    part = [int(v) for v in line.split()[1].split(",")]
    assert len(part) == 3 and sum(part) == 6
