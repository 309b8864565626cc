"""The differentiable set-level mask loss of one prompt on one image (DETR / SAM 3 style).

Per (prompt, image) pair: queries are Hungarian-matched to the target instances on a cost of mask
dice + mask focal + score; matched queries get dice + sigmoid focal on their masks; every query's
score logit gets a focal loss (matched -> 1, others -> 0); the presence logit gets BCE (1 on images
with targets, 0 on negatives); the semantic map gets BCE + dice against the union of the targets.
On a negative image there is nothing to match, so the loss only pushes presence and scores down.

All functions take mask logits and targets flattened to (..., P) pixels on the model's mask grid. The
focal and dice losses, the matching costs and the Hungarian assignment are ``sam3.set_matching``'s,
shared with sam3-toy's training loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from alias_opt.config import LossConfig
from sam3.set_matching import dice_loss, hungarian, pairwise_costs, sigmoid_focal

__all__ = ["COMPONENTS", "PairTargets", "dice_loss", "hungarian", "pairwise_costs", "set_loss", "sigmoid_focal"]

COMPONENTS = ("dice", "mask_focal", "score", "presence", "semantic")
MATCH_SIDE = 32  # matching costs are computed on masks average-pooled to at most this side


def _pooled(mask_logits: torch.Tensor, masks: torch.Tensor, targets: torch.Tensor):
    """(B, Q, P) logits and (B, K, P) targets average-pooled to a grid of side <= MATCH_SIDE (matching
    needs only approximate costs; the loss itself uses full resolution)."""
    if mask_logits.dim() != 4:
        return masks, targets
    B, Q, h, w = mask_logits.shape
    f = -(-min(h, w) // MATCH_SIDE)  # ceil
    if f == 1:
        return masks, targets
    with torch.no_grad():
        m = F.avg_pool2d(masks.detach().view(B * Q, 1, h, w), f).view(B, Q, -1)
        t = F.avg_pool2d(targets.view(-1, 1, h, w), f).view(B, targets.shape[1], -1)
    return m, t


@dataclass
class PairTargets:
    """Targets of a batch of (prompt, image) pairs on the mask grid.

    Attributes:
        masks: per pair a (K_b, P) float tensor in [0, 1] (K_b = 0 on negative images).
        weight: per pair a (P,) pixel weight (0 on ignored pixels) or None.
    """

    masks: list[torch.Tensor]
    weight: list[torch.Tensor | None]


def set_loss(
    mask_logits: torch.Tensor,
    query_logits: torch.Tensor,
    presence_logits: torch.Tensor,
    semantic_logits: torch.Tensor | None,
    targets: PairTargets,
    cfg: LossConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss of B (prompt, image) pairs.

    Args:
        mask_logits: (B, Q, h, w) or (B, Q, P); query_logits: (B, Q); presence_logits: (B,);
        semantic_logits: (B, h, w) / (B, P) or None; targets: per pair, on the same grid.

    Returns:
        loss (B,) differentiable; components (B, 5) detached, in the order of ``COMPONENTS``.
    """
    B, Q = query_logits.shape
    masks = mask_logits.float().reshape(B, Q, -1)
    qlog = query_logits.float()
    comps = torch.zeros(B, len(COMPONENTS), device=masks.device)
    loss = torch.zeros(B, device=masks.device)
    a, g = cfg.focal_alpha, cfg.focal_gamma

    # Hungarian matching (costs batched over pairs, assignment per pair), then one gathered loss
    n_t = [int(t.shape[0]) for t in targets.masks]
    kmax = max(n_t)
    qb, qq, kk_all = [], [], []
    score_targets = torch.zeros_like(qlog)
    if kmax:
        padded = torch.zeros(B, kmax, masks.shape[-1], device=masks.device)
        for b, t in enumerate(targets.masks):
            if n_t[b]:
                padded[b, : n_t[b]] = t.to(masks.device, torch.float32)
        dice_c, focal_c = pairwise_costs(*_pooled(mask_logits, masks, padded), a, g)
        cost = (
            cfg.match_dice * dice_c + cfg.match_focal * focal_c - cfg.match_score * qlog.detach().sigmoid()[..., None]
        )
        cost = cost.cpu()
        for b in range(B):
            if not n_t[b]:
                continue
            rows, cols = hungarian(cost[b, :, : n_t[b]])
            qb += [b] * len(rows)
            qq += rows.tolist()
            kk_all += cols.tolist()
            score_targets[b, torch.as_tensor(rows, device=masks.device)] = 1.0
    n_targets = torch.tensor(n_t, device=masks.device, dtype=torch.float32)

    if qb:
        bi = torch.tensor(qb, device=masks.device)
        pred = masks[bi, torch.tensor(qq, device=masks.device)]  # (M, P)
        tgt = padded[bi, torch.tensor(kk_all, device=masks.device)]  # (M, P)
        w = [targets.weight[b] for b in qb]
        wt = (
            None
            if all(x is None for x in w)
            else torch.stack(
                [torch.ones(pred.shape[1], device=masks.device) if x is None else x.to(masks.device) for x in w]
            )
        )
        d = dice_loss(pred, tgt, wt)
        f = sigmoid_focal(pred, tgt, a, g)
        f = (f * wt).sum(-1) / wt.sum(-1).clamp_min(1) if wt is not None else f.mean(-1)
        per = torch.zeros(B, 2, device=masks.device).index_add(0, bi, torch.stack([d, f], -1))
        per = per / n_targets.clamp_min(1)[:, None]
        comps[:, 0], comps[:, 1] = per[:, 0].detach(), per[:, 1].detach()
        loss = loss + cfg.dice * per[:, 0] + cfg.mask_focal * per[:, 1]

    score = sigmoid_focal(qlog, score_targets, a, g).sum(-1) / n_targets.clamp_min(1)
    presence = F.binary_cross_entropy_with_logits(
        presence_logits.float().reshape(B), (n_targets > 0).float(), reduction="none"
    )
    loss = loss + cfg.score * score + cfg.presence * presence
    comps[:, 2], comps[:, 3] = score.detach(), presence.detach()

    if semantic_logits is not None and cfg.semantic > 0:
        sem = semantic_logits.float().reshape(B, -1)
        union = torch.stack(
            [
                t.to(sem.device, torch.float32).amax(0) if t.shape[0] else torch.zeros(sem.shape[1], device=sem.device)
                for t in targets.masks
            ]
        )
        ce = F.binary_cross_entropy_with_logits(sem, union, reduction="none")
        if any(x is not None for x in targets.weight):
            wt = torch.stack(
                [torch.ones(sem.shape[1], device=sem.device) if x is None else x.to(sem.device) for x in targets.weight]
            )
            s = (ce * wt).sum(-1) / wt.sum(-1).clamp_min(1) + dice_loss(sem, union, wt)
        else:
            s = ce.mean(-1) + dice_loss(sem, union)
        loss = loss + cfg.semantic * s
        comps[:, 4] = s.detach()
    return loss, comps
