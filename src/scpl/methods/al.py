"""Associated Learning (AL): Kao & Chen, Neural Computation 33(1), 2021 ("Associated Learning:
Decomposing End-to-End Backpropagation Based on Autoencoders and Target Propagation") and Wu et
al., ICLR 2022 ("Associated Learning: A Methodology to Decompose End-to-End Backpropagation on
CNN, RNN, and Transformer").

Per stage l (1-based, K stages) AL keeps two paths:

* features: ``s_l = f_l(s_{l-1})``, ``s_0 = x`` -- ``f_l`` is the model's own stage;
* targets: ``t_l = g_l(t_{l-1})``, ``t_0 = one_hot(y)`` -- ``g_l`` is Linear-Sigmoid;

plus a bridge ``b_l`` (pooled/flattened ``s_l`` -> the ``t_l`` space) and a decoder ``h_l``
(``t_l -> t_{l-1}``, Linear-Sigmoid). The local loss of stage l is (both terms weight 1)::

    L_l = assoc + ae,   assoc = MSE(b_l(s_l), sg(t_l)),   ae = MSE(h_l(t_l), t_{l-1})

MSE is the mean squared error over batch and dimensions (``F.mse_loss``, mean reduction) and
``sg`` stops the gradient. So ``f_l`` and ``b_l`` learn from the associated loss only, ``g_l`` and
``h_l`` from the autoencoder loss only, and ``t_{l-1}`` / ``s_{l-1}`` arrive detached. At stage 1
``t_0`` is the one-hot label; with ``AL.label_loss = "ce"`` the first decoder uses
``cross_entropy(h_1(t_1), y)`` instead (see below).

Inference (no target encoder)::

    x -> f_1 .. f_K -> b_K -> h_K -> .. -> h_1 -> class scores (sigmoid outputs; argmax)

Which form and why (the papers' reference code, read via the project's search tool):

* The authors' TensorFlow code of the NECO paper (github.com/SamYWK/Associated_Learning,
  ``models.py``): ``g`` = dense + sigmoid on ``stop_gradient(t_{l-1})``; ``h`` = dense + sigmoid,
  ``tf.losses.mean_squared_error(h(t_l), stop_gradient(t_{l-1}))`` and, at the first layer,
  against the one-hot label; bridge = Flatten-dense(5n, sigmoid)-dense(n, sigmoid) -- the
  "addition layer for bridge", i.e. the extra fully connected layer the Delog-SCL paper mentions;
  associated loss ``mean_squared_error(bridge(s_l), stop_gradient(t_l))``; inference applies the
  last bridge and then every ``h`` in reverse.
* The AL baseline in the SCPL / DeInfoReg authors' PyTorch code (``VGG_AL_Component``, next to
  ``VGG_SCPL``): the same, with ``n = 500``
  ("neuron_size"): ``g = Linear(in, 500)-Sigmoid``, ``b = Flatten-Linear(D, 2500)-Sigmoid-
  Linear(2500, 500)-Sigmoid``, ``h = Linear(500, in)-Sigmoid``, ``nn.MSELoss()`` for both terms,
  ``loss_b = MSE(b(s), t.detach())``, ``loss_ae = MSE(h(t), t_prev)``.
* Wu et al. (ICLR 2022 code, github.com/Hibb-bb/AL): the same losses (MSE with ``t`` detached;
  ``g``/``h`` Linear+Sigmoid for CNNs) but a single-layer bridge and cross-entropy on ``h_1``'s
  output against the label at the first layer.

We follow the NECO / SCPL-authors form (the SCPL authors' own AL baseline): MSE everywhere, weights 1, ``t_l`` detached in the associated loss, sigmoid
activations, ``t_dim = 500``, a two-layer bridge of hidden size ``5 * t_dim``. Options:

* ``--head mlp`` (default): the two-layer bridge above; ``--head linear`` (or ``identity``, which
  the NLP recipes pass and which cannot map features to targets): Linear(D, t_dim)-Sigmoid, as
  in Wu et al.
* ``--proj-dim``: the target size ``t_dim``; left at its default (1024, the SCPL head size) AL
  uses the papers' 500.
* ``AL.label_loss = "ce"`` (class attribute; a subclass may set it): Wu et al.'s cross-entropy
  at ``h_1``.
* ``--al-bridge pooled`` (default ``flat``, the papers' form): the bridge first average-pools the
  stage's C x H x W map to C x 2 x 2 (as SCPL's mlp-pool head), then applies the same layers.
  Why: on early, wide maps the flat bridge is nearly all of an AL step. On vanilla-convnet
  w=0.25, Fashion-MNIST, 256 inputs, its first Linear sees 6272 features (17M parameters at
  stage 1, 34M over the four bridges, against 10k in the stage bodies): the bridges are 92% of
  the step's FLOPs and about 84% of its CPU time (forward, backward and their Adam update);
  pooled cuts the step's FLOPs 4.3x. It is not the default because it learns less per step
  (Fashion-MNIST, 400 steps, t_dim 64, 3 seeds: 72.2 vs 75.6 %; digits 94.1 vs 96.6 %). On
  flat or text features (already pooled) it changes nothing.

The bridge reads the stage's flat local features ``model.features(l, s_l)`` -- the flattened map
for images (pooled to 2 x 2 first with ``--al-bridge pooled``), the masked mean over valid
positions for the text models (Wu et al. also pool the sequence before the bridge). The model's
classifier is not used by AL (predictions come from ``h_1``): it is not part of the units, so it
is neither trained, saved nor counted.

Parameters (``count_parameters``): effective (inference) = every stage body + ``b_K`` + every
``h_l``; affiliated (training only) = every ``g_l`` + the bridges ``b_1..b_{K-1}``.

Activations: the training forward returns ``ALOut(s_l, t_l, t_{l-1})``; what travels to the next
stage is the flat tuple ``(*s_l, t_l)`` (``s_l`` is a tensor for images, ``(h, lengths)`` for text),
which every executor detaches and moves like any tuple activation.

Inference needs every decoder in one process: the last unit holds weak references to the
earlier units' decoders ``h_1..h_{K-1}`` (plain Python references, not submodules, so its own
parameters, optimizer and state dict stay its own). That works with the sequential and local
executors. Under dist (one stage per process) each unit exports its decoder
(``inference_export``); the last rank keeps copies, linked with ``link_exports``, and the
executor sends every rank's current decoder weights to it before each evaluation, so dist AL
trains and evaluates exactly like the sequential executor.

Initialisation and defaults (why AL learns out of the box): with PyTorch's default Linear init
the stacked sigmoid/MSE label autoencoders collapse -- every t_l drifts to one code for all
classes (on digits the distance between class codes after 200 steps fell from 1.9 at stage 1 to
0.002 at stage 4, the deeper losses hit exactly 0), so every input decodes to one class and
accuracy sits at chance. The original AL code initialises its dense layers He-normal (zero
bias); so do we (g, h and the bridges; the stage bodies keep the model's init). AL also has its
own run defaults, :attr:`AL.config_defaults` (a constant learning rate of 3e-3), which a plain
``scpl train --method al`` uses unless the recipe or the user sets those fields; the paper
recipes keep the paper's settings.

Diagnostics: each stage also reports ``code_spread``, the mean distance between the class codes
of t_l present in the batch (class means of t_l; t_l depends on the label only). A spread near
0 means the label autoencoder of that stage collapsed: its codes no longer tell classes apart.
"""

from __future__ import annotations

import math
import weakref
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from scpl.errors import ConfigError
from scpl.methods.base import HEADS, METHODS, POOL_SIZE, Method, MethodConfig, StageUnit
from scpl.models.base import StagedModel

T_DIM = 500
"""Size of the target space t_l (the papers' "neuron_size" / lab_dim for CIFAR)."""
BRIDGE_HIDDEN_MULT = 5
"""The two-layer bridge's hidden size is this times t_dim (2500 at t_dim 500)."""
LABEL_LOSSES = ("mse", "ce")
BRIDGE_INPUTS = ("flat", "pooled")
"""--al-bridge: the flattened stage output (the papers) or the map average-pooled to 2 x 2."""


def he_normal_(module: nn.Module) -> nn.Module:
    """He-normal weights and zero biases for every Linear in ``module`` (the original AL code's
    initialiser; PyTorch's default lets the sigmoid label autoencoders collapse)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return module


@torch.no_grad()
def code_spread(t: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Mean pairwise distance between the class codes (class means of ``t``) present in the
    batch; 0 when fewer than two classes are present. Computed with masks over all class
    pairs, so the shape never depends on the data (no host sync per step)."""
    onehot = F.one_hot(y.to(t.device), num_classes).to(t.dtype)
    counts = onehot.sum(0)
    present = counts > 0
    means = (onehot.t() @ t.detach()) / counts.clamp(min=1)[:, None]
    dist = torch.cdist(means, means, compute_mode="donot_use_mm_for_euclid_dist")
    pairs = torch.triu(present[:, None] & present[None, :], diagonal=1)
    return (dist * pairs).sum() / pairs.sum().clamp(min=1)


class ALOut(NamedTuple):
    """Training output of one AL stage."""

    s: object  # stage output s_l (tensor, or (h, lengths) for text)
    t: torch.Tensor  # target code t_l = g_l(t_{l-1})
    t_prev: torch.Tensor  # t_{l-1} (one-hot labels at stage 1), detached


def target_dim(cfg: MethodConfig) -> int:
    """t_dim: the papers' 500 unless --proj-dim was changed from its default."""
    return T_DIM if cfg.proj_dim == MethodConfig.proj_dim else cfg.proj_dim


def make_bridge(
    kind: str, dim: int, t_dim: int, shape: tuple[int, ...] | None = None, pooled: bool = False
) -> nn.Sequential:
    """b_l: flat features -> t space. mlp: Linear(dim, 5t)-Sigmoid-Linear(5t, t)-Sigmoid (NECO /
    SCPL-authors code); linear / identity: Linear(dim, t)-Sigmoid (Wu et al. 2022). ``pooled``
    with a C x H x W per-sample ``shape``: the flat features are viewed as that map and
    average-pooled to C x POOL_SIZE x POOL_SIZE before those layers (--al-bridge pooled)."""
    pool: list[nn.Module] = []
    if pooled and shape is not None and len(shape) == 3 and math.prod(shape) == dim:
        c, h, w = shape
        side = (min(POOL_SIZE, h), min(POOL_SIZE, w))
        pool = [nn.Unflatten(1, tuple(shape)), nn.AdaptiveAvgPool2d(side), nn.Flatten()]
        dim = c * side[0] * side[1]
    if kind == "mlp":
        hidden = BRIDGE_HIDDEN_MULT * t_dim
        return nn.Sequential(
            *pool, nn.Linear(dim, hidden), nn.Sigmoid(), nn.Linear(hidden, t_dim), nn.Sigmoid()
        )
    if kind in ("linear", "identity"):
        return nn.Sequential(*pool, nn.Linear(dim, t_dim), nn.Sigmoid())
    raise ConfigError(
        f"AL's bridge takes --head mlp, linear or identity, not {kind!r} (for a pooled bridge "
        "on a conv net: --al-bridge pooled)"
    )


class ALUnit(StageUnit):
    """One AL stage: body f_l, aux g (target encoder), h (decoder), bridge b_l."""

    def __init__(
        self, index: int, model: StagedModel, cfg: MethodConfig, label_loss: str = "mse"
    ) -> None:
        super().__init__(index, model, detach_input=True)
        self.classifier = None  # AL predicts through h_1; the model's classifier is unused
        self.num_classes = model.num_classes
        self.label_loss = label_loss
        t_dim = target_dim(cfg)
        t_in = model.num_classes if index == 0 else t_dim
        self.aux["g"] = he_normal_(nn.Sequential(nn.Linear(t_in, t_dim), nn.Sigmoid()))
        self.aux["h"] = he_normal_(nn.Sequential(nn.Linear(t_dim, t_in), nn.Sigmoid()))
        pooled = cfg.al_bridge == "pooled"
        bridge = make_bridge(cfg.head, self.feature_dim, t_dim, self.out_shape, pooled)
        self.aux["bridge"] = he_normal_(bridge)
        # Weak references to h_{K-1} .. h_1 (last unit only, set by AL.attach); not submodules.
        object.__setattr__(self, "_earlier_decoders", ())

    # -- training -------------------------------------------------------------------------
    def forward_train(self, x, y: torch.Tensor) -> ALOut:
        if self.index == 0:
            s_in = x
            w = self.aux["g"][0].weight
            t_prev = F.one_hot(y, self.num_classes).to(device=w.device, dtype=w.dtype)
        else:
            *parts, t_prev = x  # (*s_{l-1}, t_{l-1}) from the previous stage's to_next
            s_in = parts[0] if len(parts) == 1 else tuple(parts)
        return ALOut(self(s_in), self.aux["g"](t_prev), t_prev)

    def to_next(self, out: ALOut) -> tuple:
        s = out.s if isinstance(out.s, tuple) else (out.s,)
        return (*s, out.t)

    def loss(self, out: ALOut, y: torch.Tensor):
        z = self.aux["bridge"](self.features(out.s))
        assoc = F.mse_loss(z, out.t.detach())
        rec = self.aux["h"](out.t)
        if self.index == 0 and self.label_loss == "ce":
            ae = F.cross_entropy(rec, y)
        else:
            ae = F.mse_loss(rec, out.t_prev)
        spread = code_spread(out.t, y, self.num_classes)
        return assoc + ae, {"assoc": assoc, "ae": ae, "code_spread": spread}

    # -- inference ------------------------------------------------------------------------
    def inference_export(self) -> nn.Module | None:
        """The decoder h_l: the last stage needs it at inference (see StageUnit)."""
        return None if self.is_last else self.aux["h"]

    def link_exports(self, modules: list[nn.Module]) -> None:
        self.set_earlier_decoders(modules)

    def set_earlier_decoders(self, decoders: list[nn.Module]) -> None:
        """Give the last unit h_1 .. h_{K-1} (weakly referenced: not registered, not owned)."""
        object.__setattr__(self, "_earlier_decoders", tuple(weakref.ref(d) for d in decoders))

    def decoders(self) -> list[nn.Module]:
        """h_l of this unit, then of the earlier units in reverse (h_K, .., h_1 on the last)."""
        chain = [self.aux["h"]]
        for i in range(len(self._earlier_decoders) - 1, -1, -1):
            h = self._earlier_decoders[i]()
            if h is None:
                raise ConfigError(
                    f"AL inference needs the decoder of stage {i} in this process, but that "
                    "stage's unit is gone (the dist executor keeps one stage per process); "
                    "evaluate AL with --executor sequential or local"
                )
            chain.append(h)
        return chain

    def predict(self, out) -> torch.Tensor:
        """Class scores: b_K(s_K), then h_K .. h_1 (each decoder on its own device)."""
        assert self.is_last, "predict() is only defined on the last stage"
        t = self.aux["bridge"](self.features(out))
        for h in self.decoders():
            t = h(t.to(h[0].weight.device))
        return t

    # -- parameter accounting ---------------------------------------------------------------
    def effective_parameters(self):
        """Inference: the stage body, the decoder h_l and, on the last stage, the bridge b_K."""
        yield from self.body.parameters()
        yield from self.aux["h"].parameters()
        if self.is_last:
            yield from self.aux["bridge"].parameters()

    def affiliated_parameters(self):
        """Training only: the target encoder g_l and the bridges of stages 1..K-1."""
        yield from self.aux["g"].parameters()
        if not self.is_last:
            yield from self.aux["bridge"].parameters()


@METHODS.register(
    "al", help="associated learning: bridge + target autoencoder per stage (Kao & Chen 2021)"
)
class AL(Method):
    """Associated Learning: each stage's loss is MSE(b_l(s_l), t_l) + MSE(h_l(t_l), t_{l-1});
    inference goes through b_K and the decoders h_K .. h_1. Stage inputs are detached."""

    name = "al"
    local = True
    label_loss = "mse"
    """Loss of the first decoder against the label: mse (NECO / SCPL authors) or ce (Wu et al.)."""
    config_defaults = {"lr": 3e-3, "lr_schedule": "constant"}
    """Run settings AL learns with (measured on digits and Fashion-MNIST: the cosine schedule
    from 1e-3 leaves the label autoencoders on their plateau in short runs)."""

    def __init__(self, cfg: MethodConfig | None = None) -> None:
        super().__init__(cfg)
        if self.label_loss not in LABEL_LOSSES:
            raise ConfigError(
                f"AL label_loss {self.label_loss!r}: choose one of {', '.join(LABEL_LOSSES)}"
            )
        if self.cfg.head not in HEADS:
            raise ConfigError(f"unknown head {self.cfg.head!r}; choose one of: {', '.join(HEADS)}")
        if self.cfg.al_bridge not in BRIDGE_INPUTS:
            raise ConfigError(
                f"--al-bridge {self.cfg.al_bridge!r}: choose flat (the papers) or pooled"
            )
        if self.cfg.proj_dim < 1:
            raise ConfigError(f"--proj-dim {self.cfg.proj_dim} must be >= 1, e.g. 500")

    def attach(self, model: StagedModel) -> nn.ModuleList:
        units = nn.ModuleList(
            ALUnit(i, model, self.cfg, self.label_loss) for i in range(model.num_stages)
        )
        units[-1].set_earlier_decoders([u.aux["h"] for u in units[:-1]])
        return units
