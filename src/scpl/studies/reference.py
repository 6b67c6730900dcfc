"""An independent reference of a training step: SCPL and BP written out in plain float64 PyTorch.

Every executor drives the same ``StageRunner`` with the methods' own loss code and the same
optimizer construction, so executor-vs-executor parity cannot see a bug they share (an extra
optimizer step, a temperature applied twice, the anchor counted as its own positive, the LR
scheduler stepped before the optimizer). This module re-implements one training step from the
papers' definitions and shares nothing with the engine but the model's stage bodies (what a
network *is*), its ``features`` pooling and the seed:

* its own SupCon: a plain loop over anchors (``paper``: mean over the anchors with positives of
  the mean over positives; ``reference``: divide by |P(i)| + 1 and average over all anchors);
* its own projection heads, built from the stage's output shape and the head settings (they draw
  their initial weights from the global RNG right after the model, as a method's ``attach``
  does, so a differently built head shows as a mismatch);
* its own Adam (written out, with bias correction) and its own cosine learning rate (closed
  form), the rate of update t being the schedule's value after t - 1 updates;
* micro-batches: every micro-batch's loss weighted by 1/m, gradients summed, one update per
  mini-batch (SCPL: each stage on its own detached inputs; BP: one graph through all stages).

Everything runs in float64, so a float32 engine matches it within float rounding, not bitwise:
compare with :func:`compare_states` (``rtol``/``atol`` sized for a few Adam steps).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from scpl.errors import ConfigError

REFERENCE_METHODS = ("scpl", "bp")
REFERENCE_HEADS = ("identity", "linear", "mlp", "mlp-pool")
HEAD_HIDDEN = 512
"""Hidden width of the mlp heads (the paper's)."""
POOL_SIDE = 2
"""mlp-pool: a C x H x W stage output is average-pooled to C x 2 x 2 before the mlp."""
NOISE = 1e-3
"""An entry whose gradient is below NOISE x its tensor's largest at some step is left out of
the comparison: Adam's update of it (about lr * g / |g|) is set by rounding. Such gradients are
zero in exact arithmetic (a key bias under softmax attention, a shift that a later BatchNorm
removes) or nearly cancelling sums; a wrong step, loss or rate moves every other entry."""


@dataclass
class ReferenceConfig:
    """What one reference run trains: the method and its settings, the optimizer and the LR
    schedule, and the micro-batches per mini-batch."""

    method: str = "scpl"
    head: str = "mlp"
    proj_dim: int = 1024
    temperature: float = 0.1
    supcon_norm: str = "paper"
    last_stage: str = "ce+supcon"
    lr: float = 1e-3
    lr_min: float = 1e-5
    weight_decay: float = 0.0
    decoupled: bool = False
    """AdamW: the weights shrink by lr x weight_decay before the Adam update."""
    total_steps: int = 0
    schedule: str = "constant"
    num_micro: int = 1
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    def check(self) -> None:
        """ConfigError for what the reference does not implement."""
        if self.method not in REFERENCE_METHODS:
            raise ConfigError(
                f"the independent reference implements {', '.join(REFERENCE_METHODS)}, "
                f"not {self.method!r}"
            )
        if self.head not in REFERENCE_HEADS:
            raise ConfigError(f"the independent reference has no head {self.head!r}")
        if self.last_stage not in ("ce+supcon", "ce", "detached"):
            raise ConfigError(f"the independent reference has no last stage {self.last_stage!r}")
        if self.schedule not in ("constant", "cosine"):
            raise ConfigError(f"the independent reference has no lr schedule {self.schedule!r}")


def supcon_reference(z: torch.Tensor, y: torch.Tensor, temperature: float, norm: str):
    """Supervised contrastive loss by a loop over anchors (Khosla et al. 2020; Delog-SCL Eq. 2):
    for anchor i, -1/|P(i)| sum_{p in P(i)} log(exp(z_i.z_p / t) / sum_{a != i} exp(z_i.z_a / t)),
    P(i) = the other samples with i's label."""
    z = z / z.norm(dim=1, keepdim=True)
    n = z.shape[0]
    labels = y.tolist()
    terms, anchors = [], 0
    for i in range(n):
        others = [j for j in range(n) if j != i]
        sims = torch.stack([z[i].dot(z[j]) / temperature for j in others])
        log_den = torch.logsumexp(sims, dim=0)
        pos = [k for k, j in enumerate(others) if labels[j] == labels[i]]
        if norm == "reference":
            anchors += 1  # every anchor counts; one without positives adds 0
        if not pos:
            continue
        total = -sum(sims[k] - log_den for k in pos)
        if norm == "paper":
            terms.append(total / len(pos))
            anchors += 1
        elif norm == "reference":
            terms.append(total / (len(pos) + 1))  # the public code's mask counts the anchor
        else:
            raise ConfigError(f"unknown SupCon normalisation {norm!r}")
    if not terms:
        return z.sum() * 0.0
    return sum(terms) / anchors


class _Head(nn.Module):
    """A projection head from the stage's per-sample output shape and feature size (the model's
    pooled features: a flattened map, or a text stage's masked mean): identity, linear, mlp, or
    mlp-pool (average-pool a C x H x W map to C x 2 x 2, then the mlp)."""

    def __init__(self, kind: str, shape: Sequence[int], dim: int, proj_dim: int) -> None:
        super().__init__()
        self.pool = None
        if kind == "mlp-pool" and len(shape) == 3 and math.prod(shape) == dim:
            c, h, w = shape
            self.pool = (min(POOL_SIDE, h), min(POOL_SIDE, w))
            dim = c * self.pool[0] * self.pool[1]
        self.shape = tuple(shape)
        self.layers = nn.ModuleList()
        if kind == "linear":
            self.layers.append(nn.Linear(dim, proj_dim))
        elif kind in ("mlp", "mlp-pool"):
            self.layers.append(nn.Linear(dim, HEAD_HIDDEN))
            self.layers.append(nn.Linear(HEAD_HIDDEN, proj_dim))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            f = F.adaptive_avg_pool2d(f.view(-1, *self.shape), self.pool).flatten(1)
        for i, layer in enumerate(self.layers):
            f = layer(f)
            if i < len(self.layers) - 1:
                f = torch.relu(f)
        return f


def _to64(x):
    if isinstance(x, tuple | list):
        return tuple(_to64(t) for t in x)
    return x.double() if torch.is_tensor(x) and x.is_floating_point() else x


def _detach(x):
    if isinstance(x, tuple):
        return tuple(t.detach() if torch.is_tensor(t) else t for t in x)
    return x.detach()


def _chunks(x, y: torch.Tensor, m: int) -> list:
    if m == 1:
        return [(x, y)]
    n = y.shape[0]
    if n % m:
        raise ConfigError(f"{m} micro-batches do not divide the batch of {n}")
    k = n // m
    out = []
    for j in range(m):
        sl = slice(j * k, (j + 1) * k)
        xj = (
            tuple(t[sl] if torch.is_tensor(t) and t.shape[:1] == (n,) else t for t in x)
            if isinstance(x, tuple)
            else x[sl]
        )
        out.append((xj, y[sl]))
    return out


class _Adam:
    """Adam (Kingma & Ba), written out: L2 weight decay added to the gradient (or, decoupled,
    the weights multiplied by 1 - lr x decay first: AdamW), bias-corrected moments, ``eps``
    outside the square root."""

    def __init__(self, params: list[nn.Parameter], cfg: ReferenceConfig) -> None:
        self.params = params
        self.cfg = cfg
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = 0
        self.noisy = [torch.zeros_like(p, dtype=torch.bool) for p in params]

    @torch.no_grad()
    def step(self, lr: float) -> None:
        b1, b2 = self.cfg.betas
        self.t += 1
        for p, m, v, noisy in zip(self.params, self.m, self.v, self.noisy, strict=True):
            if p.grad is None:
                continue
            a = p.grad.abs()
            noisy |= a <= NOISE * a.max()
            wd = self.cfg.weight_decay
            if wd and self.cfg.decoupled:
                p.mul_(1 - lr * wd)
            g = p.grad + wd * p if wd and not self.cfg.decoupled else p.grad
            m.mul_(b1).add_((1 - b1) * g)
            v.mul_(b2).add_((1 - b2) * g * g)
            m_hat = m / (1 - b1**self.t)
            v_hat = v / (1 - b2**self.t)
            p.sub_(lr * m_hat / (v_hat.sqrt() + self.cfg.eps))
            p.grad = None


def learning_rate(cfg: ReferenceConfig, updates_done: int) -> float:
    """The learning rate of the update that follows ``updates_done`` updates."""
    if cfg.schedule == "constant":
        return cfg.lr
    t = max(1, cfg.total_steps)
    return cfg.lr_min + (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * updates_done / t)) / 2


@dataclass
class ReferenceResult:
    """Per-stage float64 states after the last step (``body.*``, ``classifier.*`` and the head's
    parameters in creation order as ``head.<i>``) and per-step loss terms
    (``{"stage{s}/supcon": ..., "stage{K-1}/ce": ...}``, micro-batch means)."""

    states: list[dict[str, torch.Tensor]]
    losses: list[dict[str, float]]
    noisy: list[dict[str, torch.Tensor]]
    """Per stage and parameter (keys as in ``states``): entries left out of the comparison
    (see :data:`NOISE`)."""


def reference_train(model, batches: Sequence, cfg: ReferenceConfig) -> ReferenceResult:
    """Train a copy of ``model`` (a staged model just built from the seed: the heads draw their
    initial weights next) for ``len(batches)`` steps by the reference recipe of ``cfg``."""
    cfg.check()
    K = model.num_stages
    scpl = cfg.method == "scpl"
    heads: list[_Head | None] = []
    for s in range(K):
        hidden_head = scpl and (s < K - 1 or cfg.last_stage != "ce")
        heads.append(
            _Head(cfg.head, model.stage_shapes[s], model.feature_dim(s), cfg.proj_dim)
            if hidden_head
            else None
        )
    model = copy.deepcopy(model).double().train()
    heads = [h.double() if h is not None else None for h in heads]
    stages = [model.stages[s] for s in range(K)]
    named: list[list[tuple[str, nn.Parameter]]] = []
    for s in range(K):
        named.append([(f"body.{k}", p) for k, p in stages[s].named_parameters()])
        if heads[s] is not None:
            named[s] += [(f"head.{i}", p) for i, p in enumerate(heads[s].parameters())]
    named[-1] += [(f"classifier.{k}", p) for k, p in model.classifier.named_parameters()]
    optims = [_Adam([p for _, p in ps], cfg) for ps in named]
    losses = []
    for t, (x, y) in enumerate(batches):
        lr = learning_rate(cfg, t)
        micro = _chunks(_to64(x), y, cfg.num_micro)
        if scpl:
            step = _scpl_step(model, stages, heads, micro, cfg)
        else:
            step = _bp_step(model, stages, micro, cfg)
        for opt in optims:
            opt.step(lr)
        losses.append(step)
    states = []
    for s in range(K):
        st = {f"body.{k}": v.detach().clone() for k, v in stages[s].state_dict().items()}
        if heads[s] is not None:
            st.update(
                {f"head.{i}": p.detach().clone() for i, p in enumerate(heads[s].parameters())}
            )
        if s == K - 1:
            st.update(
                {
                    f"classifier.{k}": v.detach().clone()
                    for k, v in model.classifier.state_dict().items()
                }
            )
        states.append(st)
    noisy = [
        {k: n for (k, _), n in zip(ps, opt.noisy, strict=True)}
        for ps, opt in zip(named, optims, strict=True)
    ]
    return ReferenceResult(states, losses, noisy)


def _scpl_step(model, stages, heads, micro, cfg) -> dict[str, float]:
    K, m = len(stages), len(micro)
    sums: dict[str, float] = {}
    inputs = [x for x, _ in micro]
    for s in range(K):
        outs = []
        for j, (_, y) in enumerate(micro):
            out = stages[s](_detach(inputs[j]))  # no gradient crosses a stage boundary
            terms = {}
            if heads[s] is not None:
                z = heads[s](model.features(s, out))
                terms["supcon"] = supcon_reference(z, y, cfg.temperature, cfg.supcon_norm)
            if s == K - 1:
                feats = _detach(out) if cfg.last_stage == "detached" else out
                terms["ce"] = F.cross_entropy(model.classifier(feats), y)
            (sum(terms.values()) / m).backward()
            for k, v in terms.items():
                key = f"stage{s}/{k}"
                sums[key] = sums.get(key, 0.0) + float(v.detach()) / m
            outs.append(_detach(out))
        inputs = outs
    return sums


def _bp_step(model, stages, micro, cfg) -> dict[str, float]:
    K, m = len(stages), len(micro)
    total = 0.0
    for x, y in micro:
        h = x
        for s in range(K):
            h = stages[s](h)
        ce = F.cross_entropy(model.classifier(h), y)
        (ce / m).backward()
        total += float(ce.detach()) / m
    return {f"stage{K - 1}/ce": total}


def compare_states(
    ref: ReferenceResult,
    got: Sequence[dict[str, torch.Tensor]],
    rtol: float = 1e-4,
    atol: float = 1e-7,
) -> list[str]:
    """Mismatches (empty when equal within tolerance) between reference states and an engine's
    unit states (``unit.state_dict()`` per stage: its ``aux.head.*`` entries are matched to the
    reference head's parameters in order), over the entries not marked noisy.

    A tensor matches when ||got - ref|| <= rtol ||ref|| + atol sqrt(n) (Frobenius norms). Not
    element by element: Adam's first updates are about lr * g / |g| per element, so an entry
    whose gradient is near zero (a cancelling sum) moves by a float32-rounding-dependent
    fraction of lr; such entries are few and vanish in the norm, while a wrong learning rate,
    loss or update moves every entry. Float32 against this float64 reference after a few steps
    at lr 1e-2: <= 1e-5 relative; a cosine rate one step off: >= 1e-3."""
    bad = []
    if len(ref.states) != len(got):
        return [f"{len(got)} stages, the reference has {len(ref.states)}"]
    for s, (r, g) in enumerate(zip(ref.states, got, strict=True)):
        head_keys = [k for k in g if k.startswith("aux.head.")]
        names = {k: k for k in g if not k.startswith("aux.")}
        names.update({k: f"head.{i}" for i, k in enumerate(head_keys)})
        extra = [k for k in g if k not in names]
        if extra or set(names.values()) != set(r):
            bad.append(f"stage {s}: keys {sorted(g)} do not match the reference's {sorted(r)}")
            continue
        for k, rk in names.items():
            a, b = g[k].detach().cpu(), r[rk]
            if a.shape != b.shape:
                bad.append(f"stage {s} {k}: shape {tuple(a.shape)} != {tuple(b.shape)}")
            elif not b.is_floating_point():  # counters (BatchNorm's num_batches_tracked)
                if not torch.equal(a, b):
                    bad.append(f"stage {s} {k}: {a.tolist()} != {b.tolist()}")
            else:
                noisy = ref.noisy[s].get(rk)
                if noisy is not None:
                    a, b = a[~noisy], b[~noisy]
                err = float((a.double() - b).norm())
                if err > rtol * float(b.norm()) + atol * math.sqrt(b.numel()):
                    rel = err / max(float(b.norm()), 1e-30)
                    bad.append(f"stage {s} {k}: relative difference {rel:.3g}")
    return bad


def compare_losses(
    ref: Sequence[dict[str, float]], got: Sequence[dict[str, float]], rtol: float = 1e-5
) -> list[str]:
    """Mismatches between per-step loss terms (relative tolerance)."""
    if len(ref) != len(got):
        return [f"{len(got)} steps, the reference has {len(ref)}"]
    bad = []
    for t, (r, g) in enumerate(zip(ref, got, strict=True)):
        if r.keys() != g.keys():
            bad.append(f"step {t}: terms {sorted(g)} != {sorted(r)}")
            continue
        for k in r:
            if not math.isclose(g[k], r[k], rel_tol=rtol, abs_tol=rtol):
                bad.append(f"step {t} {k}: {g[k]!r} != {r[k]!r}")
    return bad
