"""Supervised contrastive loss (Khosla et al. 2020) as used by SCPL / Delog-SCL (Eq. 2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

SUPCON_NORMS = ("paper", "reference")


def supcon_loss(
    z: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1, norm: str = "paper"
) -> torch.Tensor:
    """Supervised contrastive loss of projections ``z`` [B, D] with integer ``labels`` [B].

    ``norm="paper"`` is Delog-SCL Eq. 2: for anchor i, the mean over its positives P(i) (same
    label, j != i) of -log(exp(z_i.z_p/t) / sum_{j != i} exp(z_i.z_j/t)); the loss is the mean
    over anchors that have at least one positive (anchors with none are skipped, never NaN).

    ``norm="reference"`` follows the public SCPL code: the same sum over positives divided by
    |P(i)| + 1 (its label mask counts the anchor itself), averaged over *all* anchors (anchors
    without positives contribute 0). It is a per-anchor rescaling of the paper's loss, so it
    weights anchors with few positives less and shrinks the loss by about |P|/(|P|+1).

    Computed in log-space (logsumexp with the diagonal masked to -inf), so it is stable for
    small temperatures. ``z`` is L2-normalised here.
    """
    if norm not in SUPCON_NORMS:
        raise ValueError(f"unknown SupCon normalisation {norm!r}; choose one of {SUPCON_NORMS}")
    z = F.normalize(z.flatten(1), dim=1)
    n = z.shape[0]
    logits = (z @ z.T) / temperature
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = (labels.view(-1, 1) == labels.view(1, -1)) & ~self_mask
    num_pos = pos.sum(1)
    # -inf on the diagonal times 0 would be NaN: zero it out before summing over positives.
    pos_log_prob = torch.where(pos, log_prob, torch.zeros_like(log_prob)).sum(1)
    if norm == "paper":
        # Masked sums, not boolean indexing: no data-dependent shape, so no host sync (and no
        # graph break under torch.compile). Anchors without positives add 0 to the sum and are
        # left out of the count; with none at all the loss is 0 and the graph is kept.
        has_pos = (num_pos > 0).to(log_prob.dtype)
        per_anchor = -pos_log_prob / num_pos.clamp(min=1).to(log_prob.dtype)
        return (per_anchor * has_pos).sum() / has_pos.sum().clamp(min=1)
    return (-pos_log_prob / (num_pos + 1)).mean()
