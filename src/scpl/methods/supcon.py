"""Supervised contrastive loss (Khosla et al. 2020) as used by SCPL / Delog-SCL (Eq. 2), and
:func:`fp32_loss`, which every local loss goes through."""

from __future__ import annotations

import contextlib
import functools

import torch
import torch.nn.functional as F

SUPCON_NORMS = ("paper", "reference")
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def fp32_loss(fn):
    """Decorate a loss so that it computes in float32 whatever the autocast state: half/bfloat16
    tensor arguments are cast up and autocast is disabled inside (on every device type).

    Why: under ``--precision bf16`` the loss runs inside the stage's autocast, which would run
    the similarity matmul and the logsumexp in bf16 (spacing 0.0625 near 10 = 1/tau): on tight
    clusters, where training goes, SupCon's gradient was off by more than its own norm. Doing it
    here, not in the runner, keeps library users who call a loss directly safe too. float32 and
    float64 inputs are left as they are (fp32 runs stay bitwise what they were)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        def up(a):
            return a.float() if torch.is_tensor(a) and a.dtype in _LOW_PRECISION else a

        args = tuple(up(a) for a in args)
        kwargs = {k: up(v) for k, v in kwargs.items()}
        # The device types of the tensors involved (autocast state is per device type).
        kinds = {a.device.type for a in (*args, *kwargs.values()) if torch.is_tensor(a)}
        with contextlib.ExitStack() as stack:
            for kind in sorted(kinds):
                if torch.amp.is_autocast_available(kind):
                    stack.enter_context(torch.autocast(kind, enabled=False))
            return fn(*args, **kwargs)

    return wrapper


@fp32_loss
def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``F.cross_entropy`` in float32 whatever the autocast state (see :func:`fp32_loss`)."""
    return F.cross_entropy(logits, labels)


@fp32_loss
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
    small temperatures. ``z`` is L2-normalised here. Computed in float32 (or float64 for float64
    ``z``) whatever the autocast state: :func:`fp32_loss`.
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
