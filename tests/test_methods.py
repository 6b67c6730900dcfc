"""Methods: gradient isolation between stages, BP end to end, heads, parameter counts,
inference without heads, and a deterministic sequential executor."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import scpl
from scpl.errors import ConfigError
from scpl.methods import METHODS, MethodConfig, build_method, count_parameters
from scpl.methods.base import make_head
from scpl.models import build_model
from scpl.parallel import OptimConfig

SHAPE = (3, 16, 16)
CLASSES = 5
WIDTH = 0.125
LOCAL = ["scpl", "early-exit"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one thread avoids OpenMP spin-wait stalls on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_units(model_name: str, method: str, seed: int = 0, **cfg):
    torch.manual_seed(seed)
    model = build_model(model_name, SHAPE, CLASSES, num_stages=4, width=WIDTH)
    cfg.setdefault("proj_dim", 32)
    m = build_method(method, MethodConfig(**cfg))
    return model, m, m.attach(model)


def batch(n: int = 12, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *SHAPE, generator=g)
    y = torch.arange(n) % CLASSES  # every class at least twice: SupCon has positives
    return x, y


def local_losses(units, x, y, scales=None, detach=True):
    """The sequential local step by hand: each unit sees the previous output, detached."""
    scales = scales or [1.0] * len(units)
    losses, h = [], x
    for unit, s in zip(units, scales, strict=True):
        out = unit(h.detach() if detach else h)
        loss, terms = unit.loss(out, y)
        assert loss is not None and terms
        losses.append(loss * s)
        h = out
    return losses


def grads(unit: nn.Module) -> list[torch.Tensor | None]:
    return [None if p.grad is None else p.grad.clone() for p in unit.parameters()]


def zero(units) -> None:
    for p in units.parameters():
        p.grad = None


def test_registry_has_the_paper_methods():
    assert {"bp", "scpl", "early-exit"} <= set(METHODS.names())


@pytest.mark.parametrize("method", ["bp", *LOCAL])
def test_locality_flags(method):
    _, m, units = make_units("convnet", method)
    assert m.local == (method != "bp")
    assert all(u.detach_input == m.local for u in units)
    assert [u.index for u in units] == list(range(4))
    assert [u.is_last for u in units] == [False, False, False, True]


@pytest.mark.parametrize("model_name", ["convnet", "vgg", "resnet18"])
@pytest.mark.parametrize("method", LOCAL)
def test_stage_loss_reaches_only_its_own_unit(model_name, method):
    _, _, units = make_units(model_name, method)
    units.train()
    x, y = batch()
    for stage in range(len(units)):
        zero(units)
        local_losses(units, x, y)[stage].backward()
        for m, unit in enumerate(units):
            g = grads(unit)
            if m == stage:
                assert all(t is not None for t in g), f"unit {stage}: a parameter got no gradient"
                assert any(t.abs().sum() > 0 for t in g)
                assert all(torch.isfinite(t).all() for t in g)
            else:
                assert all(t is None for t in g), f"stage {stage}'s loss reached unit {m}"


@pytest.mark.parametrize("model_name", ["convnet", "vgg", "resnet18"])
@pytest.mark.parametrize("method", LOCAL)
def test_scaling_a_later_loss_leaves_earlier_gradients_unchanged(model_name, method):
    _, _, units = make_units(model_name, method)
    units.train()
    x, y = batch()
    zero(units)
    sum(local_losses(units, x, y)).backward()
    base = [grads(u) for u in units]
    for stage in range(1, len(units)):
        scales = [1.0] * len(units)
        scales[stage] = 3.0
        zero(units)
        sum(local_losses(units, x, y, scales)).backward()
        for m in range(stage):
            assert all(torch.equal(a, b) for a, b in zip(base[m], grads(units[m]), strict=True)), (
                f"scaling stage {stage}'s loss changed unit {m}'s gradients"
            )
        assert not all(
            torch.equal(a, b) for a, b in zip(base[stage], grads(units[stage]), strict=True)
        )


def test_scaling_check_detects_gradient_crossing():
    """Negative control: without the detach, a later loss does change earlier gradients."""
    _, _, units = make_units("convnet", "scpl")
    units.train()
    x, y = batch()
    zero(units)
    sum(local_losses(units, x, y, detach=False)).backward()
    before = grads(units[0])
    zero(units)
    sum(local_losses(units, x, y, [1.0, 1.0, 1.0, 3.0], detach=False)).backward()
    assert not all(torch.equal(a, b) for a, b in zip(before, grads(units[0]), strict=True))


@pytest.mark.parametrize("model_name", ["convnet", "vgg", "resnet18"])
def test_bp_single_loss_reaches_every_parameter(model_name):
    model, _, units = make_units(model_name, "bp")
    units.train()
    x, y = batch()
    h, total = x, None
    for unit in units:
        h = unit(h)
        loss, terms = unit.loss(h, y)
        if unit.is_last:
            assert set(terms) == {"ce"}
            total = loss
        else:
            assert loss is None and terms == {}
    total.backward()
    named = dict(model.named_parameters())
    assert sum(1 for _ in units.parameters()) == len(named)
    for name, p in named.items():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} got a zero gradient"


@pytest.mark.parametrize("model_name", ["convnet", "vgg", "resnet18"])
def test_count_parameters(model_name):
    model, _, bp = make_units(model_name, "bp")
    n_model = sum(p.numel() for p in model.parameters())
    c_bp = count_parameters(bp)
    assert c_bp == {"effective": n_model, "affiliated": 0, "training": n_model}
    for method in LOCAL:
        _, _, units = make_units(model_name, method)
        c = count_parameters(units)
        assert c["effective"] == c_bp["effective"]
        assert c["affiliated"] > 0
        assert c["training"] == c["effective"] + c["affiliated"]
        assert c["training"] == sum(p.numel() for p in units.parameters())


@pytest.mark.parametrize("method", ["bp", *LOCAL])
def test_units_share_no_parameters(method):
    _, _, units = make_units("resnet18", method)
    seen: set[int] = set()
    for unit in units:
        ids = {id(p) for p in unit.parameters()}
        assert not ids & seen
        seen |= ids


def test_last_supcon_switch():
    _, _, units = make_units("convnet", "scpl", last_supcon=False)
    assert "head" not in units[-1].aux
    assert all("head" in u.aux for u in units[:-1])
    x, y = batch()
    *_, last = local_losses(units, x, y)
    out = units[-1](units[-2](units[-3](units[0](x))))
    assert set(units[-1].loss(out, y)[1]) == {"ce"}
    assert torch.isfinite(last)


def test_scpl_loss_terms():
    _, _, units = make_units("convnet", "scpl")
    x, y = batch()
    h = x
    for unit in units:
        h = unit(h)
        total, terms = unit.loss(h, y)
        want = {"supcon", "ce"} if unit.is_last else {"supcon"}
        assert set(terms) == want
        assert torch.allclose(total, sum(terms.values()))


@pytest.mark.parametrize("model_name", ["convnet", "resnet18"])
def test_scpl_local_ce_is_a_pooled_classifier_per_hidden_stage_and_stays_local(model_name):
    torch.manual_seed(0)
    model = build_model(model_name, SHAPE, CLASSES, num_stages=4, width=WIDTH)
    units = build_method("scpl", MethodConfig(proj_dim=32, local_ce=0.5)).attach(model)
    assert "local_ce" not in units[-1].aux
    for unit in units[:-1]:
        clf = unit.aux["local_ce"]
        linear = [m for m in clf.modules() if isinstance(m, nn.Linear)]
        assert len(linear) == 1 and linear[0].out_features == CLASSES  # light: one Linear
    units.train()
    x, y = batch()
    h = x
    for unit in units:
        h = unit(h)
        total, terms = unit.loss(h, y)
        assert set(terms) == ({"supcon", "ce"} if unit.is_last else {"supcon", "local_ce"})
        assert torch.allclose(total, sum(terms.values()))
    for stage in range(len(units)):
        zero(units)
        local_losses(units, x, y)[stage].backward()
        for m, unit in enumerate(units):
            got = [g is not None for g in grads(unit)]
            assert all(got) if m == stage else not any(got), (stage, m)
    with pytest.raises(ConfigError, match="local-ce"):
        build_method("scpl", MethodConfig(local_ce=-1.0))
    assert isinstance(make_head("pool-linear", 32, CLASSES), nn.Linear)  # flat (text) features


@pytest.mark.parametrize("model_name", ["convnet", "vgg"])
def test_heads_have_documented_shapes(model_name):
    model = build_model(model_name, SHAPE, CLASSES, num_stages=4, width=WIDTH)
    dims = [math.prod(s) for s in model.stage_shapes]
    assert dims == [model.feature_dim(i) for i in range(4)]
    for kind in ("identity", "linear", "mlp"):
        units = build_method("scpl", MethodConfig(head=kind)).attach(model)
        for unit, dim in zip(units, dims, strict=True):
            assert unit.feature_dim == dim
            head = unit.aux["head"]
            if kind == "identity":
                assert isinstance(head, nn.Identity)
                out_dim = dim
            elif kind == "linear":
                assert isinstance(head, nn.Linear)
                assert (head.in_features, head.out_features) == (dim, 1024)
                out_dim = 1024
            else:
                assert isinstance(head, nn.Sequential) and len(head) == 3
                first, act, second = head
                assert isinstance(first, nn.Linear) and isinstance(second, nn.Linear)
                assert isinstance(act, nn.ReLU)
                assert (first.in_features, first.out_features) == (dim, 512)
                assert (second.in_features, second.out_features) == (512, 1024)
                out_dim = 1024
            z = head(torch.randn(3, dim))
            assert z.shape == (3, out_dim)


def test_early_exit_heads_are_classifiers():
    model = build_model("convnet", SHAPE, CLASSES, num_stages=4, width=WIDTH)
    for kind, cls in (("identity", nn.Linear), ("linear", nn.Linear), ("mlp", nn.Sequential)):
        units = build_method("early-exit", MethodConfig(head=kind)).attach(model)
        assert len(units[-1].aux) == 0
        for unit in units[:-1]:
            head = unit.aux["exit"]
            assert isinstance(head, cls)
            assert head(torch.randn(2, unit.feature_dim)).shape == (2, CLASSES)


@pytest.mark.parametrize("method", LOCAL)
def test_unknown_head(method):
    model = build_model("convnet", SHAPE, CLASSES, width=WIDTH)
    with pytest.raises(ConfigError) as err:
        build_method(method, MethodConfig(head="transformer")).attach(model)
    for kind in ("identity", "linear", "mlp"):
        assert kind in str(err.value)


def test_scpl_rejects_bad_options():
    with pytest.raises(ConfigError, match="supcon-norm"):
        build_method("scpl", MethodConfig(supcon_norm="nope"))
    with pytest.raises(ConfigError, match="temperature"):
        build_method("scpl", MethodConfig(temperature=0.0))
    with pytest.raises(ConfigError, match="local-loss"):
        build_method("scpl", MethodConfig(local_loss="simclr"))
    with pytest.raises(ConfigError, match="bp"):
        build_method("backprop")


@pytest.mark.parametrize("model_name", ["convnet", "vgg", "resnet18"])
@pytest.mark.parametrize("method", LOCAL)
def test_inference_uses_no_head_parameters(model_name, method):
    model, _, units = make_units(model_name, method)
    x, _ = batch()
    units.eval()

    def infer():
        with torch.no_grad():
            h = x
            for unit in units:
                h = unit(h)
            return units[-1].predict(h)

    before = infer()
    assert torch.equal(before, model.eval()(x))
    n_aux = 0
    with torch.no_grad():
        for unit in units:
            for p in unit.affiliated_parameters():
                p.fill_(float("nan"))
                n_aux += 1
    assert n_aux > 0
    after = infer()
    assert torch.isfinite(after).all()
    assert torch.equal(before, after)


def train_sequential(method: str, steps: int = 3):
    torch.manual_seed(123)
    model = build_model("convnet", SHAPE, CLASSES, num_stages=4, width=WIDTH)
    optim = OptimConfig(lr=1e-2, total_steps=steps, schedule="cosine")
    metrics = []
    with scpl.pipeline(
        model, method, executor="sequential", devices="cpu", optimizer=optim, proj_dim=32
    ) as pipe:
        initial = [{k: v.clone() for k, v in s.items()} for s in pipe.unit_states()]
        for step in range(steps):
            x, y = batch(16, seed=step)
            pipe.step(x, y)
            pipe.flush()
            metrics.append(pipe.metrics())
        final = [{k: v.clone() for k, v in s.items()} for s in pipe.unit_states()]
    return initial, final, metrics


@pytest.mark.parametrize("method", ["scpl", "bp"])
def test_sequential_executor_is_deterministic(method):
    init_a, a, metrics_a = train_sequential(method)
    init_b, b, metrics_b = train_sequential(method)
    assert len(a) == len(b) == 4
    for i in range(4):
        assert a[i].keys() == b[i].keys()
        for k in a[i]:
            assert torch.equal(init_a[i][k], init_b[i][k])
            assert torch.equal(a[i][k], b[i][k]), f"stage {i}: {k}"
        # Training actually moved every stage's body.
        moved = [
            not torch.equal(init_a[i][k], a[i][k])
            for k in a[i]
            if k.startswith("body.") and a[i][k].is_floating_point()
        ]
        assert any(moved), f"stage {i} did not change"
    assert metrics_a == metrics_b
    keys = set(metrics_a[0])
    assert "stage3/ce" in keys
    if method == "scpl":
        assert {f"stage{i}/supcon" for i in range(4)} <= keys
    assert all(math.isfinite(v) for m in metrics_a for v in m.values())


# -- --local-loss: SCPL's other local objectives (Nøkland & Eidnes 2019) ----------------------
# Mutants these fail on: the predsim weights swapped (0.01 sim + 0.99 CE), predsim's classifier
# also on the last stage, --local-loss ignored (SupCon always), the pred head dropped from the
# units (and so from the cost model's pricing).
@pytest.mark.parametrize("local_loss", ["supcon", "sim", "supcon+sim", "predsim"])
def test_scpl_local_loss_terms_match_their_definitions(local_loss):
    from scpl.methods.similarity import sim_loss
    from scpl.methods.supcon import supcon_loss

    _, _, units = make_units("convnet", "scpl", local_loss=local_loss)
    units.train()
    x, y = batch()
    h = x
    for unit in units:
        h = unit(h)
        total, terms = unit.loss(h, y)
        z = unit.aux["head"](unit.features(h))
        want = {}
        if local_loss in ("supcon", "supcon+sim"):
            want["supcon"] = supcon_loss(z, y, 0.1)
        if local_loss in ("sim", "supcon+sim"):
            want["sim"] = sim_loss(z, y, CLASSES)
        if local_loss == "predsim":
            want["sim"] = 0.99 * sim_loss(z, y, CLASSES)
            if not unit.is_last:  # the last stage's classifier is its prediction term
                linear = [m for m in unit.aux["pred"].modules() if isinstance(m, nn.Linear)]
                assert len(linear) == 1 and linear[0].out_features == CLASSES
                want["pred"] = 0.01 * F.cross_entropy(unit.aux["pred"](unit.features(h)), y)
        assert ("pred" in unit.aux) == (local_loss == "predsim" and not unit.is_last)
        if unit.is_last:
            want["ce"] = F.cross_entropy(unit.predict(h), y)
        assert set(terms) == set(want)
        for k, v in want.items():
            assert torch.equal(terms[k], v), k
        assert torch.equal(total, sum(terms.values()))


@pytest.mark.parametrize("local_loss", ["sim", "supcon+sim", "predsim"])
def test_scpl_local_losses_stay_local(local_loss):
    """Each stage's objective trains all of its own unit (heads included) and nothing else."""
    _, _, units = make_units("convnet", "scpl", local_loss=local_loss)
    units.train()
    x, y = batch()
    for stage in range(len(units)):
        zero(units)
        local_losses(units, x, y)[stage].backward()
        for m, unit in enumerate(units):
            got = [g is not None and bool(torch.isfinite(g).all()) for g in grads(unit)]
            assert all(got) if m == stage else not any(g is not None for g in grads(unit))


def test_two_view_labels_make_each_pair_of_views_a_positive():
    """Two-view augmentation feeds 2N inputs with the labels repeated: the sim target ties each
    input to its other view (and its class) with similarity 1."""
    from scpl.methods.similarity import label_similarity

    y = torch.tensor([0, 1, 2, 0])
    target = label_similarity(torch.cat([y, y]), 3)
    n = len(y)
    assert all(target[i, i + n] == 1 and target[i + n, i] == 1 for i in range(n))
    assert target[1, 2] == -0.5


def test_flop_costs_price_the_predsim_classifier():
    """predsim adds a pooled linear classifier to every hidden stage: the cost model prices it
    (L and B grow by that head's FLOPs, the last stage is unchanged); sim costs what SupCon
    costs (the same head, one B x B similarity matmul)."""
    from scpl.perf.measure import flop_op_costs

    kw = dict(model="vanilla-convnet", num_stages=4, width=0.25, input_shape=(1, 28, 28))
    kw.update(batch_size=32, head="mlp-pool", proj_dim=128)
    costs = {k: flop_op_costs(local_loss=k, **kw) for k in ("supcon", "sim", "predsim")}
    model = build_model("vanilla-convnet", (1, 28, 28), 10, num_stages=4, width=0.25)
    for s in range(4):
        shape = model.stage_shapes[s]
        pooled = shape[0] * min(2, shape[1]) * min(2, shape[2])
        extra = 2 * 32 * pooled * 10  # the classifier's forward matmul (pooling is not counted)
        d_l = (costs["predsim"][s]["L"] - costs["sim"][s]["L"]) * 1e12
        d_b = (costs["predsim"][s]["B"] - costs["sim"][s]["B"]) * 1e12
        if s < 3:
            assert d_l == pytest.approx(extra)
            assert d_b == pytest.approx(2 * extra)  # weight and input gradients
        else:
            assert d_l == d_b == 0
        assert costs["sim"][s] == costs["supcon"][s]


def test_time_to_accuracy_prices_the_run_local_loss():
    from scpl.studies.time_to_accuracy import run_costs
    from scpl.training.recipes import make_config

    base = {"stages": 2, "model": "vanilla-convnet", "method": "scpl"}
    sup = run_costs(make_config("smoke", base), "scpl")
    pred = run_costs(make_config("smoke", {**base, "local_loss": "predsim"}), "scpl")
    assert pred[0]["L"] > sup[0]["L"] and pred[1] == sup[1]


def test_head_pool_sets_the_pooled_side_of_mlp_pool_heads():
    """--head-pool S pools each hidden stage's map to S x S (capped by the map) before the MLP,
    for SCPL's heads, the lookahead tail and Early Exit's exits; the FLOP model prices the wider
    first layer. Mutant caught: the option ignored (every head pooled to 2 x 2)."""
    from scpl.methods import MethodConfig, build_method
    from scpl.models import build_model
    from scpl.perf.costmodel import profile_model

    def first_linear(head):
        return next(m for m in head.modules() if isinstance(m, torch.nn.Linear))

    for method, key in (("scpl", "head"), ("early-exit", "exit")):
        for pool, want in ((2, 4), (3, 9), (64, 16)):  # stage 1 outputs a 4 x 4 map
            torch.manual_seed(0)
            model = build_model("convnet", (1, 8, 8), 10, 3, 0.125)
            units = build_method(
                method, MethodConfig(head="mlp-pool", proj_dim=8, head_pool=pool)
            ).attach(model)
            c = units[0].out_shape[0]
            assert first_linear(units[0].aux[key]).in_features == c * want, (method, pool)
    small, big = (
        profile_model(
            "convnet",
            "scpl",
            (1, 8, 8),
            10,
            0.125,
            4,
            "mlp-pool",
            8,
            method_options={"head_pool": p},
        )
        for p in (2, 4)
    )
    assert big.loss_fwd[0] > small.loss_fwd[0]
