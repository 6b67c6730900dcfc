"""SCPL's last stage: ce+supcon (the default, Delog-SCL's text), ce, detached (authors' code)."""

from __future__ import annotations

import pytest
import torch

from scpl.errors import ConfigError
from scpl.methods import MethodConfig, build_method
from scpl.models import build_model


def _last_unit(**kw):
    torch.manual_seed(0)
    model = build_model("convnet", (1, 8, 8), 3, 2, 0.125)
    return build_method("scpl", MethodConfig(proj_dim=8, **kw)).attach(model)[-1]


def _grads(unit, x, y):
    unit.zero_grad(set_to_none=True)
    loss, terms = unit.loss(unit.forward_train(x, y), y)
    loss.backward()
    body = [p.grad for p in unit.body.parameters()]
    clf = [p.grad for p in unit.classifier.parameters()]
    return terms, body, clf


def _batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 16, 4, 4, generator=g), torch.arange(8) % 3


def test_ce_plus_supcon_is_the_default_and_trains_the_body_with_both():
    unit = _last_unit()
    assert unit.last_stage == "ce+supcon" and "head" in unit.aux
    x, y = _batch()
    terms, body, _ = _grads(unit, x, y)
    assert set(terms) == {"supcon", "ce"}
    # The body's gradient is the sum of both terms' gradients.
    only_supcon = _last_unit(last_stage="detached")
    _, body_sc, _ = _grads(only_supcon, x, y)
    assert not all(torch.allclose(a, b) for a, b in zip(body, body_sc, strict=True))


def test_ce_only_has_no_last_head_and_last_supcon_false_maps_to_it():
    for kw in ({"last_stage": "ce"}, {"last_supcon": False}):
        unit = _last_unit(**kw)
        assert unit.last_stage == "ce" and "head" not in unit.aux
        terms, _, _ = _grads(unit, *_batch())
        assert set(terms) == {"ce"}


def test_detached_trains_the_body_by_supcon_and_the_classifier_by_ce():
    x, y = _batch()
    unit = _last_unit(last_stage="detached")
    terms, body, clf = _grads(unit, x, y)
    assert set(terms) == {"supcon", "ce"} and all(g is not None for g in clf)
    # The body's gradient equals that of SupCon alone.
    unit.zero_grad(set_to_none=True)
    out = unit.forward_train(x, y)
    z = unit.aux["head"](unit.features(out))
    from scpl.methods.supcon import supcon_loss

    supcon_loss(z, y, 0.1, "paper").backward()
    for a, p in zip(body, unit.body.parameters(), strict=True):
        torch.testing.assert_close(a, p.grad)


def test_bad_last_stage_values_fail_with_a_fix():
    with pytest.raises(ConfigError, match="choose one of: ce\\+supcon, ce, detached"):
        build_method("scpl", MethodConfig(last_stage="both"))
    with pytest.raises(ConfigError, match="--last-stage ce"):
        build_method("scpl", MethodConfig(last_stage="detached", last_supcon=False))
