"""SAM 3-style set-prediction loss for training sam3-toy.

Per (image, prompt) pair the targets are the instances the prompt names (possibly none). Queries are
matched one-to-one to instances by the Hungarian algorithm (``scipy.optimize.linear_sum_assignment``)
on a cost of focal classification + box L1 + GIoU + mask focal + mask dice. Then:

    classification  sigmoid focal loss on every query's logit (matched 1, others 0)
    masks           sigmoid focal + dice on matched queries' mask logits vs instance masks
    boxes           L1 + GIoU on matched queries' boxes (xyxy, normalized)
    presence        BCE of the presence logit vs "the prompt has at least one instance here"
    semantic        BCE + dice of the semantic mask vs the union of the instance masks

Losses over instances are normalized by the number of instances in the batch (DETR-style).
The focal and dice losses, the mask matching costs and the Hungarian assignment are
``sam3.set_matching``'s (shared with the alias loss); the GIoU helper comes from transformers'
``loss_for_object_detection``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from transformers.loss.loss_for_object_detection import generalized_box_iou

from sam3.set_matching import dice_loss, hungarian, pairwise_costs, sigmoid_focal

FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms (``cost_*``: of the matching cost)."""

    cls: float = 2.0
    box_l1: float = 5.0
    giou: float = 2.0
    mask_focal: float = 20.0
    mask_dice: float = 5.0
    presence: float = 2.0
    semantic: float = 5.0
    cost_cls: float = 2.0
    cost_box_l1: float = 5.0
    cost_giou: float = 2.0
    cost_mask: float = 5.0
    cost_dice: float = 5.0


@dataclass
class SetTarget:
    """The instances one prompt names in one image.

    masks: (N, h, w) float in [0, 1] at the predicted mask resolution (N may be 0).
    boxes: (N, 4) xyxy normalized to [0, 1].
    """

    masks: torch.Tensor
    boxes: torch.Tensor

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    def to(self, device: str | torch.device) -> SetTarget:
        """The same target on ``device`` (itself where it is there already)."""
        return SetTarget(self.masks.to(device), self.boxes.to(device))


@dataclass
class LossOutput:
    total: torch.Tensor
    terms: dict[str, float] = field(default_factory=dict)
    matches: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)


def _focal_class_cost(logits: torch.Tensor) -> torch.Tensor:
    """(Q,) cost of calling each query positive (DETR/Deformable-DETR focal cost)."""
    p = logits.sigmoid()
    neg = (1 - FOCAL_ALPHA) * p.pow(FOCAL_GAMMA) * -(1 - p + 1e-8).log()
    pos = FOCAL_ALPHA * (1 - p).pow(FOCAL_GAMMA) * -(p + 1e-8).log()
    return pos - neg


def _focal_sum(logits: torch.Tensor, targets: torch.Tensor, num: float) -> torch.Tensor:
    """Sigmoid focal loss of (N, P) logits, mean over P, summed over N, over ``num`` (DETR's reduction)."""
    return sigmoid_focal(logits, targets, FOCAL_ALPHA, FOCAL_GAMMA).mean(1).sum() / num


@torch.no_grad()
def hungarian_match(
    logits: torch.Tensor,
    boxes: torch.Tensor,
    masks: torch.Tensor | None,
    target: SetTarget,
    weights: LossWeights = LossWeights(),
) -> tuple[np.ndarray, np.ndarray]:
    """Match queries to the target instances of one pair.

    Args:
        logits: (Q,) query logits; boxes: (Q, 4) xyxy; masks: (Q, h, w) mask logits, or None to
            match on the class and box costs alone (an intermediate decoder layer has no masks).

    Returns:
        (query indices, target indices), each of length min(Q, N).
    """
    n = len(target)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    logits, boxes = logits.float(), boxes.float()
    tb = target.boxes.to(boxes)
    cost = (
        weights.cost_cls * _focal_class_cost(logits)[:, None]
        + weights.cost_box_l1 * torch.cdist(boxes, tb, p=1)
        - weights.cost_giou * generalized_box_iou(boxes, tb)
    )
    if masks is not None:
        pm = masks.float().flatten(1)
        tm = target.masks.flatten(1).to(pm)
        dice, focal = pairwise_costs(pm, tm, FOCAL_ALPHA, FOCAL_GAMMA)
        cost = cost + weights.cost_mask * focal + weights.cost_dice * dice
    return hungarian(cost)


def _semantic_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE + dice of semantic mask logits (B, h, w) vs union masks (B, h, w), mean over pairs."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    return bce + dice_loss(logits.flatten(1), target.flatten(1)).mean()


def _query_terms(
    query_logits: torch.Tensor,
    boxes: torch.Tensor,
    presence_logits: torch.Tensor,
    targets: list[SetTarget],
    matches: list[tuple[np.ndarray, np.ndarray]],
    num: float,
) -> tuple[dict[str, torch.Tensor], tuple[torch.Tensor, torch.Tensor] | None]:
    """The class, box and presence terms of one decoder layer given its matching, and the
    (pair, query) indices of the matched queries (None when nothing is matched)."""
    B, Q = query_logits.shape
    cls_target = torch.zeros_like(query_logits)
    for b, (qi, _) in enumerate(matches):
        cls_target[b, torch.as_tensor(qi, dtype=torch.long)] = 1.0
    presence_target = torch.tensor([float(len(t) > 0) for t in targets], device=query_logits.device)
    zero = query_logits.sum() * 0.0
    terms = {
        "cls": _focal_sum(query_logits, cls_target, num) * Q,
        "box_l1": zero,
        "giou": zero,
        "presence": F.binary_cross_entropy_with_logits(presence_logits.reshape(B), presence_target.to(presence_logits)),
    }
    if not any(len(qi) for qi, _ in matches):
        return terms, None
    b_idx = torch.cat([torch.full((len(qi),), b, dtype=torch.long) for b, (qi, _) in enumerate(matches)])
    q_idx = torch.cat([torch.as_tensor(qi, dtype=torch.long) for qi, _ in matches])
    src = boxes[b_idx, q_idx]
    tgt = torch.cat([t.boxes[torch.as_tensor(ti, dtype=torch.long)] for t, (_, ti) in zip(targets, matches)]).to(src)
    terms["box_l1"] = F.l1_loss(src, tgt, reduction="none").sum() / num
    terms["giou"] = (1 - torch.diag(generalized_box_iou(src, tgt))).sum() / num
    return terms, (b_idx, q_idx)


def set_prediction_loss(
    query_logits: torch.Tensor,
    boxes: torch.Tensor,
    mask_logits: torch.Tensor,
    presence_logits: torch.Tensor,
    semantic_logits: torch.Tensor,
    targets: list[SetTarget],
    weights: LossWeights = LossWeights(),
) -> LossOutput:
    """The loss of a batch of B (image, prompt) pairs.

    Args:
        query_logits: (B, Q); boxes: (B, Q, 4) xyxy normalized; mask_logits: (B, Q, h, w);
        presence_logits: (B,) or (B, 1); semantic_logits: (B, h, w) or (B, 1, h, w) — as
            ``Sam3Model`` returns them (``pred_logits``, ``pred_boxes``, ``pred_masks``, ...).
        targets: B ``SetTarget`` with masks at (h, w).

    Returns:
        LossOutput: the weighted total, each (unweighted) term as a float, and the matches.
    """
    B = query_logits.shape[0]
    h, w = mask_logits.shape[-2:]
    semantic_logits = semantic_logits.reshape(B, *semantic_logits.shape[-2:])
    matches = [hungarian_match(query_logits[b], boxes[b], mask_logits[b], targets[b], weights) for b in range(B)]
    num = float(max(sum(len(t) for t in targets), 1))
    terms, matched = _query_terms(query_logits, boxes, presence_logits, targets, matches, num)

    sem_target = torch.stack(
        [t.masks.amax(0) if len(t) else torch.zeros(h, w, device=mask_logits.device) for t in targets]
    ).to(semantic_logits)
    if sem_target.shape[-2:] != semantic_logits.shape[-2:]:
        sem_target = F.interpolate(sem_target[:, None], size=semantic_logits.shape[-2:], mode="area")[:, 0]
    terms["semantic"] = _semantic_loss(semantic_logits, sem_target)

    terms["mask_focal"] = terms["mask_dice"] = query_logits.sum() * 0.0
    if matched is not None:
        src_masks = mask_logits[matched].flatten(1)
        tgt_masks = torch.cat([t.masks[torch.as_tensor(ti, dtype=torch.long)] for t, (_, ti) in zip(targets, matches)])
        tgt_masks = tgt_masks.flatten(1).to(src_masks)
        terms["mask_focal"] = _focal_sum(src_masks, tgt_masks, num)
        terms["mask_dice"] = dice_loss(src_masks, tgt_masks).sum() / num

    order = ("cls", "box_l1", "giou", "mask_focal", "mask_dice", "presence", "semantic")  # the log's and the sum's
    terms = {k: terms[k] for k in order}
    total = sum(getattr(weights, k) * v for k, v in terms.items())
    return LossOutput(total, {k: float(v.detach()) for k, v in terms.items()}, matches)


def aux_layer_loss(
    query_logits: torch.Tensor,
    boxes: torch.Tensor,
    presence_logits: torch.Tensor,
    targets: list[SetTarget],
    weights: LossWeights = LossWeights(),
) -> torch.Tensor:
    """DETR's auxiliary loss of an intermediate decoder layer, which predicts no masks: its own
    Hungarian matching on the class and box costs, then the class, box and presence terms of
    ``set_prediction_loss`` with its weights.

    Args:
        query_logits: (B, Q); boxes: (B, Q, 4) xyxy normalized; presence_logits: (B,) or (B, 1).
        targets: B ``SetTarget``.

    Returns:
        The weighted loss (a scalar tensor).
    """
    B = query_logits.shape[0]
    matches = [hungarian_match(query_logits[b], boxes[b], None, targets[b], weights) for b in range(B)]
    num = float(max(sum(len(t) for t in targets), 1))
    terms, _ = _query_terms(query_logits, boxes, presence_logits, targets, matches, num)
    return sum(getattr(weights, k) * v for k, v in terms.items())
