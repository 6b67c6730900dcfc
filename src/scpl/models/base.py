"""Staged models: a network is an ordered list of stage modules plus a classifier on the last one.

Models are built from *units* (the smallest pieces a model may be cut between, e.g. a VGG conv
block or a ResNet BasicBlock) grouped into K stages by an explicit partition. The paper's split is
each model's default partition; stage balancing (a later feature) only passes another partition.
Nothing here knows about devices or losses.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from scpl.errors import ConfigError
from scpl.registry import Registry

MODELS: Registry[Callable[..., StagedModel]] = Registry("model")


def even_partition(num_units: int, num_stages: int) -> list[int]:
    """Split ``num_units`` consecutive units into ``num_stages`` groups as evenly as possible."""
    base, extra = divmod(num_units, num_stages)
    # Give the remainder to the earliest stages: they usually see the largest activations.
    return [base + (1 if i < extra else 0) for i in range(num_stages)]


def check_partition(partition: Sequence[int], num_units: int, model: str) -> list[int]:
    """Validate a partition (units per stage) and return it as a list."""
    partition = list(partition)
    if not partition or any(p < 1 for p in partition) or sum(partition) != num_units:
        raise ConfigError(
            f"partition {partition} does not cover {model}'s {num_units} units with >=1 unit per "
            f"stage; give positive counts that sum to {num_units}"
        )
    return partition


def check_num_stages(num_stages: int, num_units: int, model: str) -> None:
    """Raise ConfigError if K does not fit the model."""
    if not 1 <= num_stages <= num_units:
        raise ConfigError(
            f"--stages {num_stages} does not fit {model}: it has {num_units} layers that can be "
            f"stages; choose --stages between 1 and {num_units}"
        )


class StagedModel(nn.Module):
    """A network as explicit stages; ``forward`` runs the stages in order, then the classifier.

    ``StagedModel([stage1, stage2, ...], classifier)`` makes each module one stage. With
    ``partition`` the modules are *units* (the smallest pieces the model may be cut between) and
    ``partition[l]`` consecutive units form stage l. Per-stage output shapes are inferred by a dry
    run on ``input_shape`` or, when it is not given, on the first batch the model sees.

    Attributes:
        stages: ``nn.ModuleList`` of K stage modules; stage l maps r_{l-1} to r_l.
        classifier: maps the last stage's output to class logits.
        stage_shapes: per-sample output shape of each stage (without the batch dim).
        partition: how many units each stage holds.
    """

    def __init__(
        self,
        stages: Sequence[nn.Module],
        classifier: nn.Module,
        input_shape: Sequence[int] | None = None,
        num_classes: int | None = None,
        partition: Sequence[int] | None = None,
        name: str = "custom",
        kind: str = "image",
    ) -> None:
        super().__init__()
        units = list(stages)
        if not units or not all(isinstance(u, nn.Module) for u in units):
            raise ConfigError(
                "stages must be a non-empty list of nn.Module (one per stage, or units with "
                "partition=[...])"
            )
        if not isinstance(classifier, nn.Module):
            raise ConfigError("classifier must be an nn.Module mapping the last stage to logits")
        self.name = name
        self.kind = kind
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.num_classes = num_classes if num_classes is not None else _out_features(classifier)
        self.partition = check_partition(
            partition if partition is not None else [1] * len(units), len(units), name
        )
        grouped, start = [], 0
        for count in self.partition:
            group = units[start : start + count]
            grouped.append(group[0] if count == 1 else nn.Sequential(*group))
            start += count
        self.stages = nn.ModuleList(grouped)
        self.classifier = classifier
        self.stage_shapes: list[tuple[int, ...]] | None = None
        if self.input_shape is not None:
            self.stage_shapes = self._infer_shapes(self.example_input(2))

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    @property
    def shapes_known(self) -> bool:
        return self.stage_shapes is not None

    def example_input(self, batch_size: int = 2) -> torch.Tensor:
        """A zero input batch of the model's input shape (used for shape inference and tests)."""
        assert self.input_shape is not None, "example_input needs input_shape"
        return torch.zeros(batch_size, *self.input_shape)

    def infer_shapes(self, example) -> None:
        """Learn the input and per-stage output shapes from an example batch (a tensor, or a
        tuple whose first tensor is the main input)."""
        main = _main(example)
        self.input_shape = tuple(main.shape[1:])
        self.stage_shapes = self._infer_shapes(_first(example, 2))

    @torch.no_grad()
    def _infer_shapes(self, x) -> list[tuple[int, ...]]:
        was_training = self.training
        self.eval()  # BatchNorm in eval mode: no running-stat update from the dry run
        shapes = []
        try:
            for stage in self.stages:
                x = stage(x)
                shapes.append(tuple(_main(x).shape[1:]))
        finally:
            self.train(was_training)
        return shapes

    def feature_dim(self, stage_index: int) -> int:
        """Length of the flat local feature vector of stage ``stage_index`` (head input size)."""
        return math.prod(self.stage_shapes[stage_index])

    def features(self, stage_index: int, out: torch.Tensor) -> torch.Tensor:
        """Flat per-sample features of a stage output, used by local losses ([B, D])."""
        return _main(out).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return self.classifier(x)


def _main(out):
    """The tensor part of a stage output (text models may carry lengths alongside)."""
    return out[0] if isinstance(out, tuple) else out


def _first(x, n: int):
    """The first ``n`` samples of a batch (a tensor or a tuple of per-sample tensors)."""
    if isinstance(x, tuple):
        b = _main(x).shape[0]
        return tuple(t[:n] if torch.is_tensor(t) and t.dim() and t.shape[0] == b else t for t in x)
    return x[:n]


def _out_features(classifier: nn.Module) -> int | None:
    """Number of classes read off the classifier's last Linear layer (None if it has none)."""
    linears = [m for m in classifier.modules() if isinstance(m, nn.Linear | nn.LazyLinear)]
    return linears[-1].out_features if linears else None


def scaled(channels: int, width: float) -> int:
    """Channel count under a width multiplier (at least 4 so tiny runs still work)."""
    return max(4, int(round(channels * width)))


def register_model(name: str, help: str = ""):
    """Register a builder ``fn(input_shape, num_classes, num_stages, width, partition, **kw)``."""
    return MODELS.register(name, help=help)


def models_of_kind(kind: str) -> list[str]:
    """Names of the registered models that take ``kind`` data ("image" or "text")."""
    return [m for m in MODELS.names() if getattr(MODELS.get(m), "kind", "image") == kind]


# Weight initialisations a model can be built with (``--init``).
INITS = ("torch", "he")


def init_weights(model: nn.Module, scheme: str) -> nn.Module:
    """Re-initialise ``model``'s convolutions and linear layers in place and return it.

    ``torch`` keeps PyTorch's defaults (the authors' code). ``he`` draws Kaiming-normal weights
    for the ReLU that follows (fan-in) and zero biases. It matters for the BN-free vanilla
    ConvNet: with PyTorch's defaults (a variance gain of 1/3 per layer) its activations shrink
    eightfold over 8 convolutions, and a stage that learns only from its own loss starts from
    features near zero (Fashion-MNIST, 240 steps: SCPL 51% with torch, 73% with he; see LOG.md).
    Embeddings, recurrent and normalisation layers keep their own initialisation."""
    if scheme not in INITS:
        raise ConfigError(f"unknown --init {scheme!r}; choose one of: {', '.join(INITS)}")
    if scheme == "he":
        for m in model.modules():
            if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
    return model


def build_model(
    name: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    num_stages: int = 4,
    width: float = 1.0,
    partition: Sequence[int] | None = None,
    init: str = "torch",
    **kwargs,
) -> StagedModel:
    """Build a registered model split into ``num_stages`` stages, initialised per ``init``
    (see :func:`init_weights`, which refuses an unknown ``init``)."""
    if width <= 0:
        raise ConfigError(f"--width {width} must be positive, e.g. --width 0.25")
    if partition is not None and len(partition) != num_stages:
        # Otherwise the model silently gets len(partition) stages while the run records K.
        raise ConfigError(
            f"--partition {','.join(map(str, partition))} has {len(partition)} stages but --stages "
            f"is {num_stages}; give {num_stages} counts or pass --stages {len(partition)}"
        )
    builder = MODELS.get(name)
    model = builder(
        input_shape=tuple(input_shape),
        num_classes=num_classes,
        num_stages=num_stages,
        width=width,
        partition=partition,
        **kwargs,
    )
    return init_weights(model, init)


def estimate_parameters(
    name: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    num_stages: int = 4,
    width: float = 1.0,
    partition: Sequence[int] | None = None,
    **kwargs,
) -> float | None:
    """The parameter count :func:`build_model` would give, counted on the meta device (no
    memory is allocated), so a model too large for the machine is refused before it is built;
    ``math.inf`` when a layer's size overflows, None when the model cannot be built on the meta
    device (e.g. it copies given embeddings)."""
    try:
        with torch.device("meta"):
            model = MODELS.get(name)(
                input_shape=tuple(input_shape),
                num_classes=num_classes,
                num_stages=num_stages,
                width=width,
                partition=partition,
                **kwargs,
            )
    except RuntimeError as e:
        return math.inf if "overflow" in str(e) else None
    except (NotImplementedError, ValueError, TypeError):
        return None
    return float(sum(p.numel() for p in model.parameters()))
