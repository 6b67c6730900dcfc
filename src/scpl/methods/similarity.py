"""Similarity-matching local losses (Nøkland & Eidnes, ICML 2019, "Training Neural Networks with
Local Error Signals"; their code: github.com/anokland/local-loss) and the choice of SCPL's local
objective (``--local-loss``).

* ``sim``: the mean squared error between the similarity matrix of a stage's features and that
  of the one-hot labels. Both are *adjusted* cosine similarities, as in the authors'
  ``similarity_matrix``: each row is centred (its mean over the feature dimension subtracted),
  divided by ``1e-8 + its norm``, and ``R = X Xᵀ`` is clamped to [-1, 1]. For centred one-hot
  codes of C classes this is 1 for a pair of the same class and ``-1/(C-1)`` otherwise (that
  closed form is what :func:`label_similarity` returns). The mean runs over all B x B entries,
  diagonal included (``F.mse_loss``), as theirs does.
* ``predsim``: ``0.99 * sim + 0.01 * cross-entropy`` of a linear classifier on the stage's pooled
  features (their ``--beta 0.99``: ``(1 - beta) * pred + beta * sim``).
* ``supcon+sim``: SupCon and sim on the same projection, added with weight 1 each (no tuning;
  SupCon at tau = 0.1 is several times larger than sim, which lies in [0, 4], so SupCon leads).

Which features (ours, documented in docs/paper-differences.md): the authors compute sim on the
conv output passed through one more 3x3 conv (no bias), reduced per channel to the standard
deviation over positions. Here sim reads the output ``z`` of the stage's projection head, the
same module SupCon reads (``--head``, default mlp-pool: average-pool the map to 2x2, then
Linear-ReLU-Linear to ``--proj-dim``): a small learned map from the stage's pooled output, so
``sim`` and ``supcon+sim`` cost what ``supcon`` costs. predsim's classifier is the ``pool-linear``
head of ``--local-ce`` (average-pool to 2x2, one Linear; the authors pool to at most 2048 inputs
and use one Linear). Everything is stage-local: the targets come from the labels, which travel
with the activations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from scpl.methods.supcon import fp32_loss

LOCAL_LOSSES = ("supcon", "sim", "supcon+sim", "predsim")
"""SCPL's local objectives (--local-loss); supcon is the paper's."""
PREDSIM_BETA = 0.99
"""predsim's weight on sim; the classifier's cross-entropy gets 1 - beta (the authors' 0.99)."""


def uses_supcon(local_loss: str) -> bool:
    return local_loss in ("supcon", "supcon+sim")


def uses_sim(local_loss: str) -> bool:
    return local_loss in ("sim", "supcon+sim", "predsim")


def similarity_matrix(x: torch.Tensor) -> torch.Tensor:
    """Adjusted cosine similarity of the rows of ``x`` [B, ...] (flattened): rows centred, then
    divided by 1e-8 + their norm; ``x xᵀ`` clamped to [-1, 1] (Nøkland & Eidnes)."""
    x = x.flatten(1)
    xc = x - x.mean(dim=1, keepdim=True)
    xn = xc / (1e-8 + xc.pow(2).sum(dim=1, keepdim=True).sqrt())
    return (xn @ xn.T).clamp(-1, 1)


def label_similarity(labels: torch.Tensor, num_classes: int, dtype=torch.float32) -> torch.Tensor:
    """The adjusted cosine similarity of the one-hot codes of ``labels``: 1 for a pair of the
    same class, ``-1/(num_classes-1)`` otherwise (centring e_c by 1/C leaves norm² (C-1)/C and
    inner products δ - 1/C)."""
    same = labels.view(-1, 1) == labels.view(1, -1)
    # Filled on the device from Python scalars: no host-to-device copy in the step path.
    other = -1.0 / max(num_classes - 1, 1)
    target = torch.full(same.shape, other, dtype=dtype, device=labels.device)
    return target.masked_fill(same, 1.0)


@fp32_loss
def sim_loss(z: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Nøkland & Eidnes' ``sim`` loss: MSE between the adjusted cosine similarity matrix of ``z``
    [B, ...] and that of the one-hot ``labels`` [B] (mean over all B x B entries). Computed in
    float32 (float64 for float64 ``z``) whatever the autocast state."""
    target = label_similarity(labels, num_classes, z.dtype)
    return F.mse_loss(similarity_matrix(z), target)
