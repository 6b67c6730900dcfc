"""Methods decide how a staged model learns: which local modules each stage gets, which loss
each stage computes, and whether gradients may cross stage boundaries.

A method turns a StagedModel into a list of :class:`StageUnit` -- one per stage, the unit of work
that schedules and executors place on devices. A unit's ``forward`` is the inference path of its
stage; ``loss`` computes the stage's local loss terms from the stage output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from scpl.errors import ConfigError
from scpl.models.base import StagedModel
from scpl.registry import Registry

HEADS = ("identity", "linear", "mlp", "mlp-pool")
POOL_SIZE = 2
"""mlp-pool: side of the map the head pools a stage's output to before the MLP."""


@dataclass
class MethodConfig:
    """Options shared by the methods (each ignores what it does not use)."""

    head: str = "mlp"
    """Projection head g_l of hidden stages: identity, linear (Linear(dim, proj_dim)), mlp
    (Linear(dim, 512)-ReLU-Linear(512, proj_dim)) or mlp-pool (adaptive average pooling of the
    C x H x W map to C x 2 x 2, then the mlp: a light head for early, wide maps; on flat or text
    features it is the mlp)."""
    temperature: float = 0.1
    """SupCon temperature tau."""
    proj_dim: int = 1024
    """Output size of the linear/mlp projection heads (the paper's 1024)."""
    supcon_norm: str = "paper"
    """SupCon normalisation: 'paper' (Eq. 2, divide by |P(i)|) or 'reference' (|P(i)|+1)."""
    last_supcon: bool = True
    """SCPL: the last stage adds its own SupCon term to the cross-entropy (the global loss sums
    them). False is ``last_stage="ce"``."""
    local_ce: float = 0.0
    """SCPL: weight of an auxiliary cross-entropy on every hidden stage, through a light
    classifier (average-pool to 2x2, then Linear to the classes) on the stage's output; 0 (the
    paper) = SupCon only. Local like SupCon: no gradient crosses a stage boundary."""
    last_stage: str = "ce+supcon"
    """SCPL's last stage: ce+supcon (cross-entropy and SupCon both train the stage body, the
    Delog-SCL text), ce (cross-entropy only) or detached (SupCon trains the body, the classifier
    learns on detached features: the authors' code)."""
    local_loss: str = "supcon"
    """SCPL's local objective on each stage's projection z (``scpl.methods.similarity``): supcon
    (the paper), sim (MSE between the adjusted cosine similarity matrices of z and of the one-hot
    labels; Nøkland & Eidnes 2019), supcon+sim (their sum, weight 1 each) or predsim (0.99 sim +
    0.01 cross-entropy of a pooled linear classifier per hidden stage; Nøkland & Eidnes). Where
    last_stage says "supcon" it means this objective."""
    local_recon: float = 0.0
    """SCPL: weight of a reconstruction term on every hidden stage: a decoder (one 3x3 conv, then
    a resize) predicts the stage's own input from its output, MSE (``scpl.methods.recon``; after
    InfoPro, Wang et al. 2021). 0 = off (the paper)."""
    man_momentum: float = 0.995
    """SCPL ``--head man``: EMA momentum of the head's copy of the next stage's first layer
    (the MAN paper's 0.995)."""
    man_every: int = 1
    """SCPL ``--head man``: the next stage's weight travels back every this many steps."""
    head_pool: int = POOL_SIZE
    """mlp-pool (and lookahead's tail, Early Exit's exits): side of the pooled map, 2 = 2 x 2
    (the default); larger keeps more of where things are, at the cost of a wider first layer."""
    lookahead_units: int = 2
    """SCPL ``--head lookahead``: how many units after the stage the head copies (two convs of
    vanilla-convnet are one stage at K=4); fewer where the network ends sooner."""
    al_bridge: str = "flat"
    """AL: what the bridge b_l reads: flat (the flattened stage output, the papers' form) or
    pooled (the C x H x W map average-pooled to C x 2 x 2 first, like the mlp-pool head; on
    flat or text features it is flat)."""

    def resolved_last_stage(self) -> str:
        """``last_stage`` with ``last_supcon=False`` mapped onto it (ConfigError on a conflict)."""
        if self.last_stage not in LAST_STAGES:
            raise ConfigError(
                f"unknown --last-stage {self.last_stage!r}; choose one of: {', '.join(LAST_STAGES)}"
            )
        if self.last_supcon:
            return self.last_stage
        if self.last_stage == "detached":
            raise ConfigError(
                "--last-stage detached trains the last stage by SupCon, but --last-supcon false "
                "removes it; drop --last-supcon (use --last-stage ce for cross-entropy only)"
            )
        return "ce"


LAST_STAGES = ("ce+supcon", "ce", "detached")


def make_head(
    kind: str,
    dim: int,
    out_dim: int,
    hidden: int = 512,
    shape: tuple[int, ...] | None = None,
    pool: int = POOL_SIZE,
) -> nn.Module:
    """Projection head: identity, linear, the paper's MLP, or mlp-pool (``shape`` is the
    per-sample stage output shape; a C x H x W map is pooled to C x pool x pool).
    ``pool-linear`` (SCPL's --local-ce classifier) pools the same way, then one Linear."""
    if kind == "identity":
        return nn.Identity()
    if kind == "linear":
        return nn.Linear(dim, out_dim)
    pooled_map = shape is not None and len(shape) == 3 and math.prod(shape) == dim
    if kind in ("mlp-pool", "pool-linear") and pooled_map:
        c, h, w = shape
        side = (min(pool, h), min(pool, w))
        pooled = c * side[0] * side[1]
        pooling = [nn.Unflatten(1, tuple(shape)), nn.AdaptiveAvgPool2d(side), nn.Flatten()]
        if kind == "pool-linear":
            return nn.Sequential(*pooling, nn.Linear(pooled, out_dim))
        return nn.Sequential(
            *pooling, nn.Linear(pooled, hidden), nn.ReLU(), nn.Linear(hidden, out_dim)
        )
    if kind == "pool-linear":  # flat features (text, 1-d): a linear classifier
        return nn.Linear(dim, out_dim)
    if kind in ("mlp", "mlp-pool"):  # mlp-pool on flat features (text, 1-d) is the mlp
        return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))
    if kind in ("man", "lookahead"):
        raise ConfigError(
            f"--head {kind} (built from the next stage) is SCPL only: use --method scpl, or "
            "--head mlp-pool"
        )
    raise ConfigError(
        f"unknown head {kind!r}; choose one of: {', '.join(HEADS)}, man, lookahead (scpl)"
    )


class StageUnit(nn.Module):
    """One stage as trained by a method: the model's stage (``body``), the method's affiliated
    modules (``aux``: heads, local classifiers) and, on the last stage, the model's classifier.

    ``forward`` is inference (body only); ``loss`` returns (total, terms) for the stage's local
    objective, or (None, {}) for a stage without one (hidden stages under BP).
    """

    wants_input = False
    """True when ``loss`` takes the stage's (detached) input as a third argument (SCPL's
    ``--local-recon``); executors and cost models then pass it."""

    feature_gather = None
    """Under data parallelism, set by the executor: ``(z, y) -> (z_all, y_all)`` gathering the
    projections and labels of every replica of this stage (gradients flow back), so contrastive
    losses see the global batch. None: the replica's own batch."""

    def __init__(self, index: int, model: StagedModel, detach_input: bool) -> None:
        super().__init__()
        self.index = index
        self.num_stages = model.num_stages
        self.is_last = index == model.num_stages - 1
        self.body = model.stages[index]
        self.classifier = model.classifier if self.is_last else None
        self.aux = nn.ModuleDict()
        self.detach_input = detach_input
        self.feature_dim = model.feature_dim(index)
        self.out_shape = tuple(model.stage_shapes[index])  # per-sample output shape of the stage
        # Models know how to pool their own outputs (flatten for images, masked mean for text).
        self._features = model.features

    def forward(self, x):
        return self.body(x)

    def forward_train(self, x, y: torch.Tensor):
        """Training forward (F op). Methods whose stages also transform targets (AL) override
        this; the default is the inference forward."""
        return self(x)

    def to_next(self, out):
        """What the next stage receives from this stage's training output (default: all of it)."""
        return out

    def features(self, out) -> torch.Tensor:
        return self._features(self.index, out)

    def predict(self, out) -> torch.Tensor:
        """Class logits from the last stage's output (inference path: no heads)."""
        assert self.classifier is not None, "predict() is only defined on the last stage"
        return self.classifier(out)

    def loss(self, out, y: torch.Tensor) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def stage_loss(self, out, y: torch.Tensor, x):
        """``loss`` as executors and cost models call it: the stage's input ``x`` is passed
        only to units that want it (``wants_input``)."""
        return self.loss(out, y, x) if self.wants_input else self.loss(out, y)

    def inference_export(self) -> nn.Module | None:
        """A module of this stage that the *last* stage needs at inference (AL's decoders);
        executors that keep stages in separate processes ship its weights there."""
        return None

    def link_exports(self, modules: list[nn.Module | None]) -> None:
        """Last stage only: receive the other stages' ``inference_export`` modules (in stage
        order) for use in ``predict``."""

    def feedback_out(self, step: int) -> list[torch.Tensor] | None:
        """What this stage sends back to the previous one when it starts training step ``step``
        (a copy of weights, never a gradient: ``--head man``), or None."""
        return None

    def feedback_in(self, step: int) -> list[torch.Tensor] | None:
        """Empty tensors shaped like the next stage's ``feedback_out`` of step ``step``, to
        receive it into after this stage's update, or None when none is due."""
        return None

    def apply_feedback(self, tensors: list[torch.Tensor]) -> None:
        """Take in the next stage's feedback (after this stage's update of the same step)."""

    def effective_parameters(self):
        """Parameters used at inference (stage body and classifier)."""
        yield from self.body.parameters()
        if self.classifier is not None:
            yield from self.classifier.parameters()

    def affiliated_parameters(self):
        """Parameters used only in training (heads, local classifiers)."""
        yield from self.aux.parameters()


class Method:
    """A registered learning method."""

    name: str = ""
    local: bool = True
    """True if every stage has its own loss and its input is detached (no gradient crosses)."""
    presets: dict[str, dict] = {}
    """Named option sets (``--preset NAME``): run-config fields a preset sets over the recipe."""
    config_defaults: dict = {}
    """Run-config fields (e.g. lr, lr_schedule) this method trains with unless the recipe or
    the user sets them (applied by ``scpl.training.recipes.make_config``)."""

    def __init__(self, cfg: MethodConfig | None = None) -> None:
        self.cfg = cfg or MethodConfig()

    def attach(self, model: StagedModel) -> nn.ModuleList:
        """Wrap each stage of ``model`` in this method's StageUnit."""
        raise NotImplementedError

    @property
    def uses_supcon(self) -> bool:
        return False


METHODS: Registry[type[Method]] = Registry("method")


def method_run_defaults(name: str) -> dict:
    """The :class:`MethodConfig` fields among method ``name``'s run defaults (unknown name:
    ConfigError listing the registered methods)."""
    fields = set(MethodConfig.__dataclass_fields__)
    return {k: v for k, v in METHODS.get(name).config_defaults.items() if k in fields}


def build_method(name: str, cfg: MethodConfig | None = None) -> Method:
    """Instantiate a registered method."""
    return METHODS.get(name)(cfg)


def count_parameters(units: nn.ModuleList) -> dict[str, int]:
    """Effective (inference) and affiliated (training-only) parameter counts."""
    eff = sum(p.numel() for u in units for p in u.effective_parameters())
    aff = sum(p.numel() for u in units for p in u.affiliated_parameters())
    return {"effective": eff, "affiliated": aff, "training": eff + aff}
