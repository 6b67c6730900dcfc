"""The paper's vanilla ConvNet, the convnet-bn / convnet names, ResNet-18 shortcuts and Tiny
ImageNet at 32x32."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from scpl.data import dataset_spec
from scpl.errors import ConfigError
from scpl.models import MODELS, build_model


def test_vanilla_convnet_is_the_authors_cnn():
    m = build_model("vanilla-convnet", (3, 32, 32), 10, 4, 1.0)
    convs = [c for c in m.modules() if isinstance(c, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32] * 4 + [64] * 4
    assert [c.stride[0] for c in convs] == [1, 1, 1, 2, 1, 1, 1, 2]
    assert all(c.bias is not None for c in convs)
    assert not any(isinstance(b, nn.BatchNorm2d | nn.MaxPool2d) for b in m.modules())
    assert m.partition == [2, 2, 2, 2]
    assert m.stage_shapes == [(32, 32, 32), (32, 16, 16), (64, 16, 16), (64, 8, 8)]
    lin = [c for c in m.classifier if isinstance(c, nn.Linear)]
    assert [(x.in_features, x.out_features) for x in lin] == [(4096, 1500), (1500, 10)]
    assert isinstance(m.classifier[2], nn.Sigmoid)
    assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 8, 8), (3, 64, 64)])
@pytest.mark.parametrize("k", [1, 2, 4, 8])
def test_vanilla_convnet_fits_other_inputs_and_splits(shape, k):
    m = build_model("vanilla-convnet", shape, 7, k, 0.25)
    assert m.num_stages == k and m(torch.zeros(2, *shape)).shape == (2, 7)


def test_convnet_is_an_alias_of_convnet_bn():
    assert MODELS.get("convnet") is MODELS.get("convnet-bn")
    assert "vanilla" not in MODELS.describe("convnet-bn")


def test_resnet_shortcut_is_identity_unless_the_block_downsamples():
    m = build_model("resnet18", (3, 32, 32), 10, 4, 0.25)
    blocks = [b for b in m.modules() if type(b).__name__ == "BasicBlock"]
    kinds = [isinstance(b.shortcut, nn.Identity) for b in blocks]
    # Downsampling at the first block of groups 2-4 only.
    assert kinds == [True, True, False, True, False, True, False, True]


def test_tiny_imagenet_at_32():
    assert dataset_spec("tiny-imagenet").input_shape == (3, 64, 64)
    assert dataset_spec("tiny-imagenet:32").input_shape == (3, 32, 32)
    with pytest.raises(ConfigError, match="divides 64"):
        dataset_spec("tiny-imagenet:30")
    from scpl.data.vision.tiny_imagenet import downsample

    x = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4).repeat(1, 3, 1, 1)
    y = downsample(x, 2)
    assert y.dtype == torch.uint8 and y[0, 0].tolist() == [[2, 4], [10, 12]]


def test_init_he_rescales_convs_and_linears_and_torch_keeps_defaults():
    torch.manual_seed(0)
    default = build_model("vanilla-convnet", (3, 32, 32), 10, 4, 1.0)
    torch.manual_seed(0)
    same = build_model("vanilla-convnet", (3, 32, 32), 10, 4, 1.0, init="torch")
    assert all(
        torch.equal(a, b) for a, b in zip(default.parameters(), same.parameters(), strict=True)
    )
    he = build_model("vanilla-convnet", (3, 32, 32), 10, 4, 1.0, init="he")
    conv = [c for c in he.modules() if isinstance(c, nn.Conv2d)][4]  # 32 in, 3x3: fan-in 288
    assert conv.weight.std().item() == pytest.approx((2 / 288) ** 0.5, rel=0.1)
    assert all(torch.all(m.bias == 0) for m in he.modules() if isinstance(m, nn.Conv2d | nn.Linear))
    # Why it exists: through 8 BN-free convs the default init shrinks the signal, He keeps it.
    x = torch.randn(64, 3, 32, 32)
    with torch.no_grad():
        r_default, r_he = x, x
        for s_default, s_he in zip(default.stages, he.stages, strict=True):
            r_default, r_he = s_default(r_default), s_he(r_he)
    assert r_he.std() > 3 * r_default.std()
    with pytest.raises(ConfigError, match="--init"):
        build_model("vanilla-convnet", (3, 32, 32), 10, 4, 1.0, init="xavier")


def test_init_auto_is_he_for_images_and_torch_for_text_and_paper_recipes():
    from scpl.training.recipes import make_config

    cfg = make_config("default")
    assert cfg.init == "auto"
    assert cfg.resolved_init("image") == "he" and cfg.resolved_init("text") == "torch"
    assert make_config("paper-cifar10-vanilla-convnet-scpl").resolved_init("image") == "torch"
    with pytest.raises(ConfigError, match="--init"):
        make_config("default", {"init": "xavier"})
