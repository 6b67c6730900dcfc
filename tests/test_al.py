"""Associated Learning (``--method al``): tuple activations (s_l, t_l), local losses that stay in
their stage, inference through b_K and h_K .. h_1 without target encoders, executor parity,
parameter accounting, and a short training run on digits."""

from __future__ import annotations

import gc
import math

import pytest
import torch
from torch import nn

import scpl
from parity_utils import assert_states_equal, run_executor
from scpl.errors import ConfigError
from scpl.methods import METHODS, MethodConfig, build_method, count_parameters
from scpl.methods.al import AL, T_DIM, ALOut, ALUnit
from scpl.models import build_model
from scpl.parallel import OptimConfig
from scpl.parallel.runner import detach_act

SHAPE = (1, 8, 8)
CLASSES = 10
T = 16  # target size t_dim in the small tests (--proj-dim)
IMAGE_MODELS = ["convnet", "vgg", "resnet18"]
TEXT_MODELS = ["lstm", "transformer"]
TEXT_KW = {
    "lstm": dict(vocab_size=50, embed_dim=24),
    "transformer": dict(vocab_size=50, embed_dim=24, dropout=0.0),
}
TEXT_LEN = 12


def make(model_name: str, stages: int = 4, seed: int = 0, head: str = "mlp", method=None):
    torch.manual_seed(seed)
    if model_name in TEXT_MODELS:
        model = build_model(model_name, (TEXT_LEN,), CLASSES, stages, 0.125, **TEXT_KW[model_name])
    else:
        model = build_model(model_name, SHAPE, CLASSES, stages, 0.125)
    meth = method or build_method("al", MethodConfig(head=head, proj_dim=T))
    return model, meth.attach(model)


def batch(model_name: str, n: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % CLASSES
    if model_name in TEXT_MODELS:
        lengths = torch.randint(1, TEXT_LEN + 1, (n,), generator=g)
        tokens = torch.randint(2, 50, (n, TEXT_LEN), generator=g)
        tokens[torch.arange(TEXT_LEN).view(1, -1) >= lengths.view(-1, 1)] = 0
        return (tokens, lengths), y
    return torch.randn(n, *SHAPE, generator=g), y


def train_chain(units, x, y):
    """The sequential local step by hand: F, then what the runner sends (detached) onwards."""
    outs, h = [], x
    for unit in units:
        out = unit.forward_train(h, y)
        outs.append(out)
        h = detach_act(unit.to_next(out))
    return outs


def infer(units, x):
    with torch.no_grad():
        h = x
        for unit in units:
            h = unit(h)
        return units[-1].predict(h)


def test_registered_as_a_local_method():
    assert "al" in METHODS.names()
    m = build_method("al")
    assert m.local and m.name == "al"
    _, units = make("convnet")
    assert all(isinstance(u, ALUnit) and u.detach_input for u in units)


@pytest.mark.parametrize("model_name", IMAGE_MODELS + TEXT_MODELS)
def test_shapes_and_finite_losses(model_name):
    model, units = make(model_name)
    units.train()
    x, y = batch(model_name)
    n = y.shape[0]
    outs = train_chain(units, x, y)
    for i, (unit, out) in enumerate(zip(units, outs, strict=True)):
        assert isinstance(out, ALOut)
        s = out.s[0] if isinstance(out.s, tuple) else out.s
        assert tuple(s.shape[1:]) == model.stage_shapes[i] or model_name in TEXT_MODELS
        assert out.t.shape == (n, T)
        assert out.t_prev.shape == ((n, CLASSES) if i == 0 else (n, T))
        if i == 0:  # t_0 is the one-hot label
            assert torch.equal(out.t_prev, nn.functional.one_hot(y, CLASSES).float())
        sent = unit.to_next(out)
        assert isinstance(sent, tuple) and sent[-1] is out.t
        if model_name in TEXT_MODELS:  # (h, lengths, t): lengths travel with the activation
            assert len(sent) == 3 and sent[0].shape[:2] == (n, TEXT_LEN)
            assert torch.equal(sent[1], x[1])
        else:
            assert len(sent) == 2 and sent[0] is out.s
        loss, terms = unit.loss(out, y)
        assert set(terms) == {"assoc", "ae", "code_spread"}
        assert all(v.dim() == 0 and torch.isfinite(v) for v in terms.values())
        assert torch.allclose(loss, terms["assoc"] + terms["ae"])
    units.eval()
    logits = infer(units, x)
    assert logits.shape == (n, CLASSES) and torch.isfinite(logits).all()
    # Inference (plain tensors) and the training path's s_l agree in eval mode.
    with torch.no_grad():
        outs = train_chain(units, x, y)
        h = x
        for unit, out in zip(units, outs, strict=True):
            h = unit(h)
            a, b = (h[0], out.s[0]) if isinstance(h, tuple) else (h, out.s)
            assert torch.equal(a, b)


@pytest.mark.parametrize("model_name", ["convnet", "vgg", "resnet18", "lstm"])
def test_stage_loss_reaches_only_its_own_unit(model_name):
    _, units = make(model_name)
    units.train()
    x, y = batch(model_name)
    for stage in range(len(units)):
        for p in units.parameters():
            p.grad = None
        outs = train_chain(units, x, y)
        units[stage].loss(outs[stage], y)[0].backward()
        for m, unit in enumerate(units):
            named = dict(unit.named_parameters())
            if m == stage:
                # body (assoc), bridge (assoc), g and h (ae): every parameter learns
                missing = [k for k, p in named.items() if p.requires_grad and p.grad is None]
                assert not missing, f"stage {stage}: no gradient for {missing}"
                assert all(
                    torch.isfinite(p.grad).all() for p in named.values() if p.grad is not None
                )
            else:
                reached = [k for k, p in named.items() if p.grad is not None]
                assert not reached, f"stage {stage}'s loss reached unit {m}: {reached}"


def test_loss_terms_follow_the_papers():
    """assoc = MSE(b(s), sg(t)) trains body + bridge only; ae = MSE(h(t), t_prev) trains g, h."""
    _, units = make("convnet", stages=2)
    units.train()
    x, y = batch("convnet")
    out = train_chain(units, x, y)[1]
    unit = units[1]
    _, terms = unit.loss(out, y)
    z = unit.aux["bridge"](out.s.flatten(1))
    assert torch.equal(terms["assoc"], ((z - out.t.detach()) ** 2).mean())
    assert torch.equal(terms["ae"], ((unit.aux["h"](out.t) - out.t_prev) ** 2).mean())
    groups = {
        "assoc": ("body.", "aux.bridge."),
        "ae": ("aux.g.", "aux.h."),
    }
    for term, prefixes in groups.items():
        for p in unit.parameters():
            p.grad = None
        out = train_chain(units, x, y)[1]
        unit.loss(out, y)[1][term].backward()
        for k, p in unit.named_parameters():
            assert (p.grad is not None) == k.startswith(prefixes), (term, k)


def test_first_decoder_cross_entropy_variant():
    class ALce(AL):
        label_loss = "ce"

    _, units = make("convnet", stages=2, method=ALce(MethodConfig(proj_dim=T)))
    x, y = batch("convnet")
    out = train_chain(units, x, y)[0]
    _, terms = units[0].loss(out, y)
    rec = units[0].aux["h"](out.t)
    assert torch.equal(terms["ae"], nn.functional.cross_entropy(rec, y))
    _, terms = units[1].loss(train_chain(units, x, y)[1], y)  # later stages keep MSE
    assert terms["ae"] < 1.0

    class ALbad(AL):
        label_loss = "l1"

    with pytest.raises(ConfigError, match="label_loss"):
        ALbad()


@pytest.mark.parametrize("model_name", IMAGE_MODELS + ["transformer"])
def test_inference_uses_no_target_encoder_nor_hidden_bridges(model_name):
    model, units = make(model_name)
    x, _ = batch(model_name)
    units.eval()
    before = infer(units, x)
    with torch.no_grad():
        for unit in units:
            for p in unit.affiliated_parameters():  # g_l and b_1 .. b_{K-1}
                p.fill_(float("nan"))
        for p in model.classifier.parameters():  # the model's classifier is not used by AL
            p.fill_(float("nan"))
    after = infer(units, x)
    assert torch.isfinite(after).all()
    assert torch.equal(before, after)
    # ... while every decoder h_1 .. h_K is on the inference path.
    for unit in units:
        with torch.no_grad():
            w = unit.aux["h"][0].weight
            saved = w.clone()
            w.add_(1.0)
        assert not torch.equal(before, infer(units, x)), f"h of stage {unit.index} unused"
        with torch.no_grad():
            w.copy_(saved)


def test_last_unit_references_but_does_not_own_earlier_decoders():
    model, units = make("convnet")
    last = units[-1]
    own = {id(p) for p in last.parameters()}
    for unit in units[:-1]:
        assert not any(id(p) in own for p in unit.aux["h"].parameters())
    assert [d is u.aux["h"] for d, u in zip(last.decoders(), reversed(units), strict=True)] == [
        True
    ] * 4
    assert not any(k.startswith("classifier") for u in units for k in u.state_dict())
    # Units share no parameters: each stage's optimizer holds only its own.
    ids = [id(p) for u in units for p in u.parameters()]
    assert len(ids) == len(set(ids))
    assert not any(id(p) in set(ids) for p in model.classifier.parameters())


def test_missing_earlier_units_make_inference_fail_loudly():
    """What the dist executor does on the last rank: the other units are dropped."""
    _, units = make("convnet")
    x, _ = batch("convnet")
    units.eval()
    h = x
    for unit in units:
        h = unit(h)
    for i in range(len(units) - 1):
        units[i] = nn.Identity()
    gc.collect()
    with pytest.raises(ConfigError, match="decoder of stage 2"):
        units[-1].predict(h)


def test_heads_choose_the_bridge():
    _, mlp = make("convnet", head="mlp")
    assert [type(m) for m in mlp[0].aux["bridge"]] == [nn.Linear, nn.Sigmoid] * 2
    assert mlp[0].aux["bridge"][0].out_features == 5 * T
    for head in ("linear", "identity"):
        _, units = make("convnet", head=head)
        b = units[0].aux["bridge"]
        assert [type(m) for m in b] == [nn.Linear, nn.Sigmoid] and b[0].out_features == T
    with pytest.raises(ConfigError, match="head"):
        build_method("al", MethodConfig(head="conv"))
    # --proj-dim left at its default: the papers' 500-d targets.
    assert (
        build_method("al")
        .attach(build_model("convnet", SHAPE, CLASSES, 2, 0.125))[0]
        .aux["g"][0]
        .out_features
        == T_DIM
    )


def _digits_batches():
    from scpl.data import load_dataset

    d = load_dataset("digits")
    mean = torch.tensor(d.mean).view(1, -1, 1, 1)
    std = torch.tensor(d.std).view(1, -1, 1, 1)
    return d, lambda x: (x.float() / 255.0 - mean) / std


def _train_al_on_digits(model, steps: int, get, proj_dim: int = 64, head: str = "mlp"):
    """``steps`` sequential AL steps of batch 32 at AL's own run defaults (lr 3e-3, constant);
    returns (validation accuracy before, after, logged metrics)."""
    d = get.data
    lr = AL.config_defaults["lr"]
    assert AL.config_defaults["lr_schedule"] == "constant"
    g = torch.Generator().manual_seed(0)
    logged = []
    with scpl.pipeline(
        model,
        "al",
        executor="sequential",
        optimizer=OptimConfig(lr=lr),
        proj_dim=proj_dim,
        head=head,
    ) as pipe:
        before = pipe.evaluate([get(d.val)])
        for s in range(steps):
            idx = torch.randint(0, len(d.train), (32,), generator=g)
            pipe.step(*get(d.train, idx))
            if (s + 1) % 100 == 0:
                logged.append(pipe.metrics())
        after = pipe.evaluate([get(d.val)])
    return before, after, logged


class _DigitsImages:
    def __init__(self):
        self.data, self.norm = _digits_batches()

    def __call__(self, split, idx=None):
        x, y = (split.x, split.y) if idx is None else (split.x[idx], split.y[idx])
        return self.norm(x), y


def test_al_learns_digits_by_default_on_a_vision_model():
    """He-normal AL layers and AL's run defaults: >= 90% within 500 steps (the label codes
    spread apart instead of collapsing; with PyTorch's default init and the cosine schedule AL
    sat at chance on every vision model)."""
    torch.manual_seed(0)
    model = build_model("convnet", SHAPE, CLASSES, 4, 0.125)
    before, after, logged = _train_al_on_digits(model, 500, _DigitsImages())
    assert before < 0.3
    assert after >= 0.9, after
    last = logged[-1]
    assert {f"stage{i}/{t}" for i in range(4) for t in ("assoc", "ae", "code_spread")} == set(last)
    assert all(math.isfinite(v) for m in logged for v in m.values())
    assert min(last[f"stage{i}/code_spread"] for i in range(4)) > 0.5, last


class _DigitsRows:
    """Digits as text: each image row, binarised at half intensity, is one token of 256."""

    def __init__(self):
        self.data, _ = _digits_batches()

    def __call__(self, split, idx=None):
        x, y = (split.x, split.y) if idx is None else (split.x[idx], split.y[idx])
        bits = (x[:, 0] > 127).long() * (2 ** torch.arange(8))
        tokens = bits.sum(-1) + 2  # 0 and 1 are <pad> and <unk>
        return (tokens, torch.full((len(y),), 8)), y


@pytest.mark.slow
def test_al_learns_digits_by_default_on_a_text_model():
    """The same defaults on an LSTM reading 8 row tokens: >= 90% within 500 steps. The LSTM
    needs room for this encoding: at width 0.25 with 16-d embeddings AL reached 73% after 500
    steps, at width 1 with 64-d embeddings 93% (docs/LOG.md)."""
    torch.manual_seed(0)
    model = build_model("lstm", (8,), CLASSES, 4, 1.0, vocab_size=258, embed_dim=64)
    before, after, logged = _train_al_on_digits(
        model, 500, _DigitsRows(), proj_dim=MethodConfig.proj_dim, head="linear"
    )
    assert before < 0.3
    assert after >= 0.9, after
    assert min(logged[-1][f"stage{i}/code_spread"] for i in range(4)) > 0.5, logged[-1]


def test_he_normal_init_of_al_layers():
    _, units = make("convnet")
    for u in units:
        for name in ("g", "h", "bridge"):
            for m in u.aux[name].modules():
                if isinstance(m, nn.Linear):
                    assert torch.count_nonzero(m.bias) == 0
                    # He-normal: std sqrt(2 / fan_in) (3 sigma of sampling noise for small layers)
                    want = math.sqrt(2.0 / m.in_features)
                    assert (
                        abs(m.weight.std().item() - want)
                        < 3 * want / math.sqrt(m.weight.numel()) + 0.05 * want
                    )


def test_code_spread_reports_collapse():
    from scpl.methods.al import code_spread

    y = torch.tensor([0, 1, 2, 0, 1, 2])
    spread = torch.eye(3)[y] * 2.0  # three codes, pairwise distance 2*sqrt(2)
    assert code_spread(spread, y, 3).item() == pytest.approx(2 * math.sqrt(2))
    collapsed = torch.full((6, 5), 0.5)
    assert code_spread(collapsed, y, 3).item() == 0.0
    assert code_spread(spread[:1], y[:1], 3).item() == 0.0  # one class: nothing to compare


def test_method_run_defaults_fill_only_unset_fields():
    from scpl.training.recipes import make_config

    cfg = make_config("default", {"method": "al"})
    assert (cfg.lr, cfg.lr_schedule) == (3e-3, "constant")
    cfg = make_config("default", {"method": "al", "lr": 1e-3, "lr_schedule": "cosine"})
    assert (cfg.lr, cfg.lr_schedule) == (1e-3, "cosine")
    assert make_config("default", {"method": "scpl"}).lr_schedule == "cosine"
    # The paper's AL recipes keep the paper's settings.
    cfg = make_config("paper-cifar10-vgg-al")
    assert (cfg.lr, cfg.lr_schedule) == (1e-3, "cosine")
    cfg = make_config("paper-ag-news-lstm-al")
    assert (cfg.lr, cfg.lr_schedule) == (1e-3, "constant")


@pytest.mark.parametrize("stages", [2, 4])
def test_parity_local_scpl_equals_sequential(stages):
    ref, ref_metrics, ref_acc, _ = run_executor(
        "sequential", "sequential", method="al", stages=stages
    )
    got, metrics, acc, _ = run_executor("local", "scpl", method="al", stages=stages)
    assert_states_equal(ref, got)
    assert acc == ref_acc  # the last stage's predict runs h_K .. h_1 on the local executor too
    assert metrics == ref_metrics


def test_parity_scpl_gpipe_equals_sequential_with_micro_batches():
    ref, ref_metrics, ref_acc, _ = run_executor(
        "sequential", "sequential", method="al", num_micro=2
    )
    got, metrics, acc, _ = run_executor("local", "scpl-gpipe", method="al", num_micro=2)
    assert_states_equal(ref, got)
    assert acc == ref_acc
    assert metrics.keys() == ref_metrics.keys()


@pytest.mark.parametrize("model", ["resnet18", "lstm"])
def test_parity_local_other_models(model):
    ref, *_ = run_executor("sequential", "sequential", model=model, method="al", steps=2)
    got, *_ = run_executor("local", "scpl", model=model, method="al", steps=2)
    assert_states_equal(ref, got)


def _meta_counts(method: str) -> tuple[dict[str, int], nn.ModuleList, nn.Module]:
    with torch.device("meta"):  # shapes only: AL's VGG bridges alone hold ~270M parameters
        model = build_model("vgg", (3, 32, 32), 10, 4, 1.0)
        units = build_method(method, MethodConfig()).attach(model)
    return count_parameters(units), units, model


def numel(modules) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def test_parameter_counts_vgg_cifar():
    """Delog-SCL Table 5 shape: VGG on 3x32x32, K=4, paper sizes (t_dim 500, bridge 2500)."""
    bp, _, model = _meta_counts("bp")
    scpl, _, _ = _meta_counts("scpl")
    al, units, _ = _meta_counts("al")
    bodies = numel(model.stages)
    decoders = numel(u.aux["h"] for u in units)
    bridges = [numel([u.aux["bridge"]]) for u in units]
    encoders = numel(u.aux["g"] for u in units)
    assert bp["effective"] == bodies + numel([model.classifier]) and bp["affiliated"] == 0
    assert scpl["effective"] == bp["effective"]
    assert al["effective"] == bodies + bridges[-1] + decoders
    assert al["affiliated"] == encoders + sum(bridges[:-1])
    assert al["training"] == al["effective"] + al["affiliated"]
    # Sizes from the papers' code: g_1: 10->500, g_l: 500->500, h the reverse, b_K: 2048 (=
    # 512x2x2) -> 2500 -> 500.
    assert encoders == (10 * 500 + 500) + 3 * (500 * 500 + 500)
    assert decoders == (500 * 10 + 10) + 3 * (500 * 500 + 500)
    assert bridges[-1] == (2048 * 2500 + 2500) + (2500 * 500 + 500)
    rows = {"bp": bp, "scpl": scpl, "al": al}
    print("\n| method | training | effective | affiliated |")
    for name, c in rows.items():
        print(f"| {name} | {c['training']:,} | {c['effective']:,} | {c['affiliated']:,} |")


# -- --al-bridge pooled -------------------------------------------------------------------------


def test_pooled_bridge_reads_the_map_pooled_to_2x2():
    """--al-bridge pooled: each image stage's bridge average-pools its C x H x W map to C x 2 x 2
    before the papers' layers; the loss and inference both go through it; flat (the default)
    is unchanged; text features (already pooled) keep the flat bridge; a bad value is an error.
    Mutants: al_bridge ignored in ALUnit (pooled never built); the pool dropped from the last
    unit's predict path (loss pooled, inference flat); the value check removed."""
    model, flat = make("convnet")
    assert MethodConfig().al_bridge == "flat"
    assert isinstance(flat[0].aux["bridge"][0], nn.Linear)  # the papers' form by default
    meth = build_method("al", MethodConfig(proj_dim=T, al_bridge="pooled"))
    _, units = make("convnet", method=meth)
    units.train()
    x, y = batch("convnet")
    outs = train_chain(units, x, y)
    for unit, out in zip(units, outs, strict=True):
        b = unit.aux["bridge"]
        c, h, w = model.stage_shapes[unit.index]
        side = (min(2, h), min(2, w))  # a map smaller than 2 x 2 is not enlarged
        linears = [m for m in b if isinstance(m, nn.Linear)]
        assert isinstance(b[1], nn.AdaptiveAvgPool2d)
        assert linears[0].in_features == c * side[0] * side[1] <= unit.feature_dim
        assert linears[0].out_features == 5 * T
        # The associated loss reads the pooled map, through the papers' layers.
        z = nn.functional.adaptive_avg_pool2d(out.s, side).flatten(1)
        for m in b[3:]:
            z = m(z)
        _, terms = unit.loss(out, y)
        assert torch.equal(terms["assoc"], ((z - out.t.detach()) ** 2).mean())
    # Inference: b_K on the pooled map, then h_K .. h_1.
    units.eval()
    with torch.no_grad():
        h = x
        for unit in units:
            h = unit(h)
        side = tuple(min(2, n) for n in h.shape[2:])
        t = units[-1].aux["bridge"][3:](nn.functional.adaptive_avg_pool2d(h, side).flatten(1))
        for u in reversed(units):
            t = u.aux["h"](t)
    assert torch.equal(infer(units, x), t)
    _, text = make("lstm", method=build_method("al", MethodConfig(proj_dim=T, al_bridge="pooled")))
    assert [type(m) for m in text[0].aux["bridge"]] == [nn.Linear, nn.Sigmoid] * 2
    with pytest.raises(ConfigError, match="--al-bridge 'pool'"):
        build_method("al", MethodConfig(al_bridge="pool"))


def test_cost_model_prices_the_pooled_bridge():
    """flop_op_costs (and through it the time-to-accuracy pricing) sees the pooled bridge: the
    loss op of each stage (where the bridge runs) loses exactly the first bridge layer's FLOPs
    on the C*H*W - C*4 features pooling removes. Mutants: flop_op_costs not passing al_bridge
    to the method; run_costs not passing cfg.al_bridge."""
    from scpl.perf.measure import flop_op_costs
    from scpl.studies.time_to_accuracy import run_costs
    from scpl.training.recipes import make_config

    n, model = 8, build_model("convnet", SHAPE, CLASSES, 4, 0.125)
    kw = dict(width=0.125, input_shape=SHAPE, batch_size=n, proj_dim=T, flops_per_s=1.0)
    flat = flop_op_costs("convnet", "al", **kw)
    pooled = flop_op_costs("convnet", "al", **kw, al_bridge="pooled")
    assert flop_op_costs("convnet", "al", **kw, al_bridge="flat") == flat
    for s, (c, h, w) in enumerate(model.stage_shapes):
        removed = c * h * w - c * min(2, h) * min(2, w)
        assert flat[s]["L"] - pooled[s]["L"] == 2 * n * removed * 5 * T
        assert pooled[s]["F"] == flat[s]["F"]
    base = {"model": "vanilla-convnet", "stages": 2, "method": "al"}
    priced = {
        b: run_costs(make_config("smoke", {**base, "al_bridge": b}), "al")
        for b in ("flat", "pooled")
    }
    total = {b: sum(sum(ops.values()) for ops in c.values()) for b, c in priced.items()}
    assert total["pooled"] < total["flat"]


def _pooled_run(executor: str, schedule: str, num_micro: int = 1, steps: int = 3):
    from parity_utils import PARITY_OPTIM, make_batches, make_model

    pipe = scpl.pipeline(
        make_model("convnet", 4),
        "al",
        optimizer=OptimConfig(**PARITY_OPTIM),
        schedule=schedule,
        micro_batches=num_micro,
        executor=executor,
        head="mlp",
        proj_dim=32,
        al_bridge="pooled",
    )
    with pipe:
        assert isinstance(pipe.units[0].aux["bridge"][1], nn.AdaptiveAvgPool2d)
        for x, y in make_batches(steps, 16):
            pipe.step(x, y)
        pipe.flush()
        states = [{k: v.clone() for k, v in st.items()} for st in pipe.unit_states()]
        metrics = pipe.metrics()
        acc = pipe.evaluate(make_batches(1, 16, seed=7))
    return states, metrics, acc


@pytest.mark.parametrize(("schedule", "num_micro"), [("scpl", 1), ("scpl-gpipe", 2)])
def test_parity_pooled_bridge_local_equals_sequential(schedule, num_micro):
    """The pooled bridge keeps the pipelined executor bitwise equal to the sequential reference
    (weights, metrics, accuracy). Mutant: a dropout in the pooled bridge's prefix (draws from the
    shared RNG in whatever order the stage threads run)."""
    ref = _pooled_run("sequential", "sequential", num_micro)
    got = _pooled_run("local", schedule, num_micro)
    assert_states_equal(ref[0], got[0])
    assert got[2] == ref[2]
    assert got[1] == ref[1] if num_micro == 1 else got[1].keys() == ref[1].keys()


def test_al_bridge_flag_reaches_the_method():
    """--al-bridge is a result-changing TrainConfig field, filed under the method flags, that
    the training loop hands to AL. Mutant: the TrainConfig field under another name (the
    loop copies fields by name, so the flag would be silently dropped)."""
    from scpl.training.config import TrainConfig, field_class
    from scpl.training.flags import CONFIG_GROUPS
    from scpl.training.loop import method_config

    assert TrainConfig().al_bridge == "flat" and "al_bridge" in CONFIG_GROUPS["method"]
    assert field_class("al_bridge") == "result"
    assert method_config(TrainConfig(al_bridge="pooled")).al_bridge == "pooled"
