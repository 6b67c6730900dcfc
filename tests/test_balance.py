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


# -- the FLOP cost model and --partition auto ---------------------------------------------------

COST_CASES = [
    ("vgg", (3, 16, 16), {}),
    ("resnet18", (3, 16, 16), {}),
    ("lstm", (12,), {"vocab_size": 50, "embed_dim": 24}),
    ("transformer", (12,), {"vocab_size": 50, "embed_dim": 24}),
]


@pytest.mark.parametrize("model,shape,kw", COST_CASES, ids=[c[0] for c in COST_CASES])
@pytest.mark.parametrize("method", ["scpl", "bp"])
def test_auto_partition_is_never_slower_than_the_paper_split(model, shape, kw, method):
    from scpl.perf.balance import auto_stage_costs

    for k in (2, 3, 4):
        costs = auto_stage_costs(
            model,
            k,
            "flops",
            method=method,
            head="mlp-pool",
            input_shape=shape,
            width=0.125,
            batch_size=8,
            proj_dim=16,
            model_kwargs=kw,
        )
        n = len(costs.body)
        paper = build_model(model, shape, 10, k, 0.125, **kw).partition
        auto = partition_min_max(costs, k)
        assert sum(auto) == n == sum(paper)
        assert max(costs.stage_costs(auto)) <= max(costs.stage_costs(paper)) + 1e-15
        best = min(max(costs.stage_costs(p)) for p in _compositions(n, k))
        assert max(costs.stage_costs(auto)) == pytest.approx(best)


def test_flop_profile_extrapolates_exactly():
    """Counts at the real batch equal the extrapolation from two small batches."""
    from scpl.perf.costmodel import _count, profile_model

    prof = profile_model("vgg", "scpl", (3, 8, 8), 10, 0.125, 6, "mlp-pool", 16)
    direct = _count("vgg", "scpl", 6, (3, 8, 8), 10, 0.125, 6, "mlp-pool", 16, {}, 0)
    for key in ("fwd", "bwd_in", "bwd_noin", "loss_fwd", "loss_bwd", "out_bytes"):
        assert getattr(prof, key) == pytest.approx(direct[key], rel=1e-9), key


def test_stage_costs_include_update_and_transfer():
    from scpl.perf.costmodel import profile_model, stage_op_costs

    prof = profile_model("vgg", "scpl", (3, 8, 8), 10, 0.125, 8, "mlp-pool", 16)
    local = stage_op_costs(prof, [2, 2, 1, 1], local=True)
    bp = stage_op_costs(prof, [2, 2, 1, 1], local=False)
    assert all(local[s]["U"] > 0 for s in range(4))
    assert [("send_act" in local[s]) for s in range(4)] == [True, True, True, False]
    assert [("send_grad" in bp[s]) for s in range(4)] == [False, True, True, True]
    assert "L" not in bp[0] and "L" in bp[3]
    # A detached stage input skips the input gradient: SCPL's stage 1 backward is cheaper.
    assert prof.bwd_noin[2] < prof.bwd_in[2]


def test_balance_cli_flops_prints_paper_and_auto(capsys):
    assert (
        main(
            [
                "balance",
                "--model",
                "vgg",
                "--stages",
                "4",
                "--by",
                "flops",
                "--width",
                "0.125",
                "--input-shape",
                "3,16,16",
                "--head",
                "mlp-pool",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "paper:" in out and "auto:" in out
    line = [ln for ln in out.splitlines() if ln.startswith("--partition ")][0]
    assert sum(int(v) for v in line.split()[1].split(",")) == 6


@pytest.mark.parametrize(
    "model,shape,kw",
    [("lstm", (12,), {"vocab_size": 50, "embed_dim": 8}), ("convnet", (1, 8, 8), {})],
)
def test_flop_profile_prices_al_on_text_and_vision(model, shape, kw):
    """AL's named training output wraps a text model's (h, lengths) tuple; the cost model still
    prices every stage and the classifier (it used to fail on the LSTM: the budget study's
    --time-to-accuracy could not run AL on BBC News)."""
    from scpl.perf.costmodel import profile_model

    prof = profile_model(model, "al", shape, 5, 0.125, 4, "mlp", 16, 4, kw)
    assert all(f > 0 for f in prof.fwd) and prof.bp_loss_fwd[-1] > 0


def test_al_bridge_names_the_heads_it_takes():
    from scpl.errors import ConfigError
    from scpl.methods.al import make_bridge

    with pytest.raises(ConfigError, match="--head mlp, linear or identity.*--al-bridge pooled"):
        make_bridge("mlp-pool", 8, 4)
