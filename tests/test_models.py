"""Staged models: shapes, stage/forward equivalence, K variants, partitions, width."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from scpl.errors import ConfigError
from scpl.models import MODELS, build_model
from scpl.models.vision import BasicBlock

IMAGE_MODELS = [n for n in MODELS.names() if getattr(MODELS.get(n), "kind", "image") == "image"]

SHAPES = [(1, 28, 28), (3, 32, 32), (1, 8, 8), (3, 64, 64)]
WIDTH = 0.125
UNITS = {"vgg": 6, "resnet18": 9}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one thread avoids OpenMP spin-wait stalls on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_has_the_paper_models():
    assert {"vgg", "resnet18", "convnet"} <= set(MODELS.names())


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_stage_shapes_and_forward(name, shape):
    torch.manual_seed(0)
    model = build_model(name, shape, num_classes=7, num_stages=4, width=WIDTH).eval()
    assert model.num_stages == 4 and len(model.stages) == 4
    assert len(model.stage_shapes) == 4
    x = torch.randn(3, *shape)
    with torch.no_grad():
        h = x
        for i, stage in enumerate(model.stages):
            h = stage(h)
            assert tuple(h.shape) == (3, *model.stage_shapes[i]), f"stage {i}"
            assert model.feature_dim(i) == h[0].numel()
            assert model.features(i, h).shape == (3, model.feature_dim(i))
        by_stages = model.classifier(h)
        whole = model(x)
    assert whole.shape == (3, 7)
    assert torch.equal(by_stages, whole)
    assert torch.isfinite(whole).all()


@pytest.mark.parametrize(
    "name,k",
    [("vgg", k) for k in range(1, 7)]
    + [("resnet18", k) for k in range(1, 10)]
    + [("convnet", k) for k in range(1, 7)],
)
def test_k_variants(name, k):
    model = build_model(name, (1, 8, 8), num_classes=10, num_stages=k, width=WIDTH).eval()
    assert model.num_stages == k
    assert len(model.partition) == k and all(p >= 1 for p in model.partition)
    if name in UNITS:
        assert sum(model.partition) == UNITS[name]
    with torch.no_grad():
        assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def count(module: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in module.modules())


def test_vgg_default_partition_is_the_papers():
    model = build_model("vgg", (3, 32, 32), num_classes=10, width=WIDTH)
    assert model.partition == [2, 2, 1, 1]
    convs = [count(s, nn.Conv2d) for s in model.stages]
    pools = [count(s, nn.MaxPool2d) for s in model.stages]
    assert convs == [2, 2, 1, 1]
    assert pools == [1, 1, 1, 1]
    # The pool closes the stage: [C C MP].
    last = list(model.stages[0].modules())[-1]
    assert isinstance(last, nn.MaxPool2d)


def test_resnet18_default_partition():
    model = build_model("resnet18", (3, 32, 32), num_classes=10, width=WIDTH)
    assert model.partition == [3, 2, 2, 2]  # the stem is a unit; it travels with block 1
    assert [count(s, BasicBlock) for s in model.stages] == [2, 2, 2, 2]
    # Other K: the blocks spread evenly, the stem with the first stage.
    assert build_model("resnet18", (3, 32, 32), 10, 3, WIDTH).partition == [4, 3, 2]
    assert build_model("resnet18", (3, 32, 32), 10, 9, WIDTH).partition == [1] * 9


@pytest.mark.parametrize(
    "name,k,valid",
    [
        ("vgg", 7, "between 1 and 6"),
        ("resnet18", 10, "between 1 and 9"),
        ("vgg", 0, "between 1 and 6"),
        ("resnet18", 0, "between 1 and 9"),
        ("convnet", 0, "1 or more"),
    ],
)
def test_k_that_does_not_fit(name, k, valid):
    with pytest.raises(ConfigError) as err:
        build_model(name, (1, 8, 8), num_classes=10, num_stages=k, width=WIDTH)
    msg = str(err.value)
    assert str(k) in msg and valid in msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    "name,partition",
    [
        ("vgg", [2, 2, 2, 1]),
        ("vgg", [3, 3, 1, -1]),
        ("vgg", [0, 2, 2, 2]),
        ("vgg", []),
        ("resnet18", [1, 1, 1, 1]),
        ("convnet", [2, 1, 1, 1]),
    ],
)
def test_bad_partition(name, partition):
    with pytest.raises(ConfigError, match="partition"):
        build_model(name, (1, 8, 8), num_classes=10, num_stages=4, width=WIDTH, partition=partition)


@pytest.mark.parametrize("partition", [[3, 3], [1, 1, 1, 1, 2]])
def test_partition_length_must_match_k(partition):
    with pytest.raises(ConfigError) as err:
        build_model("vgg", (1, 8, 8), 10, num_stages=4, width=WIDTH, partition=partition)
    assert "--stages" in str(err.value) and str(len(partition)) in str(err.value)


def test_custom_partition():
    model = build_model("vgg", (3, 32, 32), 10, num_stages=4, width=WIDTH, partition=[3, 1, 1, 1])
    assert model.partition == [3, 1, 1, 1]
    assert [count(s, nn.Conv2d) for s in model.stages] == [3, 1, 1, 1]


def test_unknown_model_lists_valid_names():
    with pytest.raises(ConfigError) as err:
        build_model("alexnet", (3, 32, 32), 10)
    for name in MODELS.names():
        assert name in str(err.value)


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_width_changes_parameter_count(name):
    small = build_model(name, (3, 32, 32), 10, width=0.125)
    large = build_model(name, (3, 32, 32), 10, width=0.25)
    assert n_params(large) > n_params(small)


@pytest.mark.parametrize("width", [0.0, -1.0])
def test_non_positive_width(width):
    with pytest.raises(ConfigError, match="width"):
        build_model("vgg", (3, 32, 32), 10, width=width)


def test_shape_inference_leaves_train_mode_and_bn_stats():
    model = build_model("vgg", (3, 32, 32), 10, width=WIDTH)
    assert model.training
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert int(m.num_batches_tracked) == 0
            assert torch.all(m.running_mean == 0)
