"""SupCon loss: matches a naive per-anchor loop, handles anchors without positives, is stable."""

from __future__ import annotations

import math

import pytest
import torch

from scpl.methods import supcon_loss


def naive_supcon(z: torch.Tensor, labels: list[int], temperature: float, norm: str) -> float:
    """Delog-SCL Eq. 2 ("paper") or the public SCPL code ("reference"), with plain loops."""
    rows = [[float(v) for v in row] for row in z.tolist()]
    vecs = []
    for row in rows:
        length = math.sqrt(sum(v * v for v in row))
        vecs.append([v / length for v in row])
    n = len(vecs)

    def sim(i: int, j: int) -> float:
        return sum(a * b for a, b in zip(vecs[i], vecs[j], strict=True)) / temperature

    per_anchor = []
    for i in range(n):
        others = [j for j in range(n) if j != i]
        positives = [j for j in others if labels[j] == labels[i]]
        log_denominator = math.log(sum(math.exp(sim(i, j)) for j in others))
        total = sum(-(sim(i, p) - log_denominator) for p in positives)
        if norm == "paper":
            if positives:
                per_anchor.append(total / len(positives))
        else:
            per_anchor.append(total / (len(positives) + 1))
    if not per_anchor:
        return 0.0
    return sum(per_anchor) / len(per_anchor)


LABEL_CASES = {
    "mixed-some-without-positive": [0, 0, 1, 2, 3, 3, 3, 4],
    "all-same": [5, 5, 5, 5, 5, 5],
    "pairs": [0, 1, 2, 0, 1, 2, 0, 1, 2, 3],
    "one-pair-rest-single": [7, 1, 2, 3, 7, 4],
}


@pytest.mark.parametrize("norm", ["paper", "reference"])
@pytest.mark.parametrize("temperature", [0.07, 0.1, 0.5])
@pytest.mark.parametrize("case", sorted(LABEL_CASES))
def test_matches_naive_loop(case, temperature, norm):
    labels = LABEL_CASES[case]
    g = torch.Generator().manual_seed(len(labels) + int(temperature * 100))
    z = torch.randn(len(labels), 5, generator=g, dtype=torch.float64)
    got = supcon_loss(z, torch.tensor(labels), temperature, norm)
    want = naive_supcon(z, labels, temperature, norm)
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(want, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("norm", ["paper", "reference"])
def test_matches_naive_loop_random_labels_float32(norm):
    g = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 4, (24,), generator=g)
    z = torch.randn(24, 16, generator=g)
    got = supcon_loss(z, labels, 0.1, norm)
    want = naive_supcon(z.double(), labels.tolist(), 0.1, norm)
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_some_anchors_without_positive_are_skipped_by_paper_norm():
    # Anchors 2 and 4 have no positive: "paper" averages over the 6 others only, "reference"
    # averages over all 8 (the two contribute 0).
    labels = LABEL_CASES["mixed-some-without-positive"]
    z = torch.randn(8, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    paper = supcon_loss(z, torch.tensor(labels), 0.1, "paper")
    reference = supcon_loss(z, torch.tensor(labels), 0.1, "reference")
    assert torch.isfinite(paper) and torch.isfinite(reference)
    assert paper.item() > 0 and reference.item() > 0
    # The positive-less anchors still sit in the other anchors' denominators.
    assert paper.item() == pytest.approx(naive_supcon(z, labels, 0.1, "paper"), rel=1e-10)


@pytest.mark.parametrize("norm", ["paper", "reference"])
def test_no_positive_pair_at_all(norm):
    z = torch.randn(6, 8, dtype=torch.float64, requires_grad=True)
    labels = torch.arange(6)
    loss = supcon_loss(z, labels, 0.1, norm)
    assert loss.item() == 0.0
    assert loss.requires_grad and loss.grad_fn is not None
    loss.backward()
    assert z.grad is not None
    assert torch.all(z.grad == 0)


@pytest.mark.parametrize("norm", ["paper", "reference"])
def test_finite_gradients_for_tiny_temperature(norm):
    g = torch.Generator().manual_seed(1)
    z = torch.randn(32, 64, generator=g).requires_grad_()
    labels = torch.randint(0, 3, (32,), generator=g)
    loss = supcon_loss(z, labels, 0.01, norm)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(z.grad).all()
    assert z.grad.abs().sum() > 0


@pytest.mark.parametrize("temperature", [0.01, 0.1])
@pytest.mark.parametrize("norm", ["paper", "reference"])
def test_identical_vectors(temperature, norm):
    z = torch.ones(8, 16).requires_grad_()
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    loss = supcon_loss(z, labels, temperature, norm)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(z.grad).all()
    # All similarities equal: every positive has probability 1/(n-1).
    expected = math.log(7) if norm == "paper" else math.log(7) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("norm", ["paper", "reference"])
@pytest.mark.parametrize("scale", [1e-3, 0.5, 7.0, 1e3])
def test_invariant_to_scaling_z(scale, norm):
    g = torch.Generator().manual_seed(2)
    z = torch.randn(16, 10, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (16,), generator=g)
    base = supcon_loss(z, labels, 0.2, norm)
    scaled = supcon_loss(z * scale, labels, 0.2, norm)
    assert scaled.item() == pytest.approx(base.item(), rel=1e-9)


def test_flattens_non_flat_inputs():
    z = torch.randn(6, 2, 3, 4, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    assert supcon_loss(z, labels).item() == pytest.approx(
        supcon_loss(z.flatten(1), labels).item(), rel=1e-12
    )


def test_unknown_norm_raises():
    with pytest.raises(ValueError, match="paper"):
        supcon_loss(torch.randn(4, 3), torch.tensor([0, 0, 1, 1]), 0.1, "bogus")
