"""Local losses: SupCon matches a naive per-anchor loop, handles anchors without positives, is
stable; the similarity-matching loss (sim) matches a hand computation; every local loss
computes in float32 under bf16 autocast and on bf16 inputs.

Mutants of the sim loss (methods/similarity.py) the sim tests fail on: rows not centred (plain
instead of adjusted cosine), the off-class target 0 instead of -1/(C-1), the label target
cached from the first batch of a size (a reused target).

Mutants of ``fp32_loss`` (methods/supcon.py) each fp32 test was run against, and fails on:
no decorator at all (today's code before the fix: the similarity matmul and logsumexp run in
bf16 under autocast; fails both tests), inputs cast up but autocast left on (autocast turns the
matmul back to bf16; fails both under autocast), autocast disabled but inputs not cast up
(fails the bf16-input test).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from scpl.methods import supcon_loss
from scpl.methods.similarity import label_similarity, sim_loss, similarity_matrix
from scpl.methods.supcon import cross_entropy


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


# -- sim (Nøkland & Eidnes 2019) --------------------------------------------------------
def naive_sim(z: torch.Tensor, labels: list[int], num_classes: int) -> float:
    """The sim loss by hand: adjusted cosine (rows centred, divided by 1e-8 + norm, clamped to
    [-1, 1]) of the features against 1 (same class) / -1/(C-1) (other class), squared error
    averaged over all pairs, diagonal included."""
    rows = [[float(v) for v in row] for row in z.flatten(1).tolist()]
    vecs = []
    for row in rows:
        mean = sum(row) / len(row)
        centred = [v - mean for v in row]
        length = 1e-8 + math.sqrt(sum(v * v for v in centred))
        vecs.append([v / length for v in centred])
    n = len(vecs)
    total = 0.0
    for i in range(n):
        for j in range(n):
            cos = max(-1.0, min(1.0, sum(a * b for a, b in zip(vecs[i], vecs[j], strict=True))))
            target = 1.0 if labels[i] == labels[j] else -1.0 / (num_classes - 1)
            total += (cos - target) ** 2
    return total / (n * n)


@pytest.mark.parametrize("num_classes", [3, 10])
@pytest.mark.parametrize("case", sorted(LABEL_CASES))
def test_sim_matches_hand_computation(case, num_classes):
    labels = [c % num_classes for c in LABEL_CASES[case]]
    g = torch.Generator().manual_seed(len(labels))
    z = torch.randn(len(labels), 2, 3, generator=g, dtype=torch.float64)  # flattened inside
    got = sim_loss(z, torch.tensor(labels), num_classes)
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(naive_sim(z, labels, num_classes), rel=1e-12)


def test_sim_targets_follow_each_batch_labels():
    """Two batches of one size with different labels: each loss uses its own targets."""
    g = torch.Generator().manual_seed(5)
    z = torch.randn(8, 6, generator=g, dtype=torch.float64)
    for labels in ([0, 0, 1, 1, 2, 2, 3, 3], [0, 1, 2, 3, 0, 1, 2, 3], [4] * 8):
        got = sim_loss(z, torch.tensor(labels), 5).item()
        assert got == pytest.approx(naive_sim(z, labels, 5), rel=1e-12)


def test_label_similarity_is_the_adjusted_cosine_of_one_hot_codes():
    """The closed form equals the authors' similarity matrix of the one-hot labels; features
    equal to the codes give a zero loss, and the loss is invariant to scaling and shifting."""
    y = torch.tensor([0, 3, 3, 1, 2, 0, 4, 4, 4])
    codes = F.one_hot(y, 5).double()
    closed = label_similarity(y, 5, torch.float64)
    assert torch.allclose(closed, similarity_matrix(codes), atol=1e-12)
    assert sim_loss(codes, y, 5).item() == pytest.approx(0.0, abs=1e-12)
    z = torch.randn(9, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert sim_loss(3.0 * z + 2.0, y, 5).item() == pytest.approx(sim_loss(z, y, 5).item())


# -- float32 whatever the autocast state ------------------------------------------------
FP32_LOSSES = {
    "supcon-paper": lambda z, y: supcon_loss(z, y, 0.1, "paper"),
    "supcon-reference": lambda z, y: supcon_loss(z, y, 0.1, "reference"),
    # logits: the first 10 feature dimensions, scaled (by a power of two: exact in bf16) to a
    # confident classifier's range
    "cross-entropy": lambda z, y: cross_entropy(z[:, :10] * 16, y),
    "sim": lambda z, y: sim_loss(z, y, 10),
}


def clustered_bf16_features(b=256, d=128, classes=10, noise=0.05, seed=0):
    """Tight clusters (unit class centres + noise, L2-normalised), as a bf16 layer would emit
    them: where training goes, and where a bf16 loss was worst (issue 22)."""
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(classes, d, generator=g, dtype=torch.float64), dim=1)
    y = torch.arange(b) % classes
    f = centres[y] + noise * torch.randn(b, d, generator=g, dtype=torch.float64)
    return F.normalize(f, dim=1).to(torch.bfloat16), y


def float64_grad(loss, values, y):
    z = values.double().requires_grad_()
    loss(z, y).backward()
    return z.grad


def rel_err(got, want):
    return ((got.double() - want).norm() / want.norm()).item()


@pytest.mark.parametrize("name", sorted(FP32_LOSSES))
def test_local_loss_is_fp32_under_bf16_autocast(name):
    """fp32 features holding bf16-produced values, the loss called inside bf16 autocast: its
    gradient is that of a float64 computation on the same values within 1e-3 (measured: 4e-6
    for SupCon; 0.12 with SupCon in bf16, today's code before the fix)."""
    loss = FP32_LOSSES[name]
    zb, y = clustered_bf16_features()
    want = float64_grad(loss, zb, y)
    z = zb.float().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = loss(z, y)
    assert out.dtype == torch.float32
    out.backward()
    assert rel_err(z.grad, want) < 1e-3


@pytest.mark.parametrize("autocast", [True, False])
@pytest.mark.parametrize("name", sorted(FP32_LOSSES))
def test_local_loss_is_fp32_on_bf16_inputs(name, autocast):
    """bf16 features (a head's output under autocast): the loss is float32 and the gradient,
    a bf16 tensor like its input, is the float64 gradient rounded to bf16 within 1e-3 (rounding
    the gradient itself costs 1.7e-3 against the unrounded one, so that is the reference)."""
    loss = FP32_LOSSES[name]
    zb, y = clustered_bf16_features()
    want = float64_grad(loss, zb, y).to(torch.bfloat16).double()
    z = zb.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = loss(z, y)
    assert out.dtype == torch.float32
    out.backward()
    assert z.grad.dtype == torch.bfloat16
    assert rel_err(z.grad, want) < 1e-3


def test_fp32_loss_keeps_float64():
    z = torch.randn(8, 4, dtype=torch.float64)
    assert supcon_loss(z, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])).dtype == torch.float64
