"""DETR-style set matching and mask losses shared by the alias loss (``alias_opt.search.losses``) and
sam3-toy's training loss (``sam3.toy.set_loss``): one implementation of the sigmoid focal loss, the
soft dice loss, the pairwise (query x target) mask costs they are matched on, and the Hungarian
assignment. Lives in ``sam3`` so that both can import it (``sam3`` never imports ``alias_opt``).

All masks are flattened to (..., P) pixels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment


def sigmoid_focal(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Element-wise sigmoid focal loss (Lin et al.); ``alpha < 0`` disables the class weighting.

    Args:
        logits, targets: the same shape; targets in [0, 1].

    Returns:
        the loss, element-wise (same shape).
    """
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """1 - soft dice over the last dim, smoothed by 1 so that empty targets are defined.

    Args:
        logits, targets: (..., P); weight: (..., P) pixel weights (0: ignored) or None.

    Returns:
        (...) losses.
    """
    p = logits.sigmoid()
    if weight is not None:
        p, targets = p * weight, targets * weight
    num = 2 * (p * targets).sum(-1) + 1
    den = p.sum(-1) + targets.sum(-1) + 1
    return 1 - num / den


@torch.no_grad()
def pairwise_costs(
    mask_logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Matching costs of Q predicted masks against K targets, batched over leading dims.

    Args:
        mask_logits: (..., Q, P); targets: (..., K, P) in [0, 1].

    Returns:
        dice (..., Q, K), focal (..., Q, K): ``dice_loss`` and the mean per-pixel ``sigmoid_focal`` of
        each (query, target) pair.
    """
    x = mask_logits.float()
    p = x.sigmoid()
    tT = targets.float().transpose(-1, -2)
    dice = 1 - (2 * p @ tT + 1) / (p.sum(-1, keepdim=True) + tT.sum(-2, keepdim=True) + 1)
    # focal(x, 1) = a (1-p)^g softplus(-x); focal(x, 0) = (1-a) p^g softplus(x); softplus(-x) = softplus(x) - x
    sp = F.softplus(x)
    pos = (1 - p).pow(gamma) * (sp - x)
    neg = p.pow(gamma) * sp
    if alpha >= 0:
        pos, neg = alpha * pos, (1 - alpha) * neg
    focal = ((pos - neg) @ tT + neg.sum(-1, keepdim=True)) / x.shape[-1]
    return dice, focal


def hungarian(cost: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Optimal one-to-one assignment of rows (queries) to columns (targets) of a (Q, K) cost matrix.

    Returns:
        (row indices, column indices), each of length min(Q, K).
    """
    if cost.shape[1] == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    rows, cols = linear_sum_assignment(cost.detach().float().cpu().numpy())
    return rows.astype(np.int64), cols.astype(np.int64)
