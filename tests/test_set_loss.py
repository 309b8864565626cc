"""The set-prediction loss of sam3-toy on hand-made cases."""

from __future__ import annotations

import numpy as np
import torch

from sam3.toy.set_loss import LossWeights, SetTarget, aux_layer_loss, hungarian_match, set_prediction_loss

Q, H, W = 6, 16, 16
BIG = 30.0


def _box_mask(x0, y0, x1, y1) -> torch.Tensor:
    m = torch.zeros(H, W)
    m[y0:y1, x0:x1] = 1
    return m


def _target() -> SetTarget:
    masks = torch.stack([_box_mask(1, 2, 6, 8), _box_mask(9, 9, 15, 14)])
    boxes = torch.tensor([[1 / W, 2 / H, 6 / W, 8 / H], [9 / W, 9 / H, 15 / W, 14 / H]])
    return SetTarget(masks, boxes)


def _prediction(target: SetTarget, assign: dict[int, int]):
    """Logits/boxes/masks that predict target instance assign[q] exactly at query q, nothing elsewhere."""
    logits = torch.full((Q,), -BIG)
    boxes = torch.tensor([[0.4, 0.4, 0.6, 0.6]]).repeat(Q, 1)
    masks = torch.full((Q, H, W), -BIG)
    for q, t in assign.items():
        logits[q] = BIG
        boxes[q] = target.boxes[t]
        masks[q] = torch.where(target.masks[t] > 0, BIG, -BIG)
    return logits, boxes, masks


def _loss(logits, boxes, masks, presence, target):
    union = target.masks.amax(0) if len(target) else torch.zeros(H, W)
    semantic = torch.where(union > 0, BIG, -BIG)
    return set_prediction_loss(
        logits[None], boxes[None], masks[None], torch.tensor([[presence]]), semantic[None, None], [target]
    )


def test_perfect_prediction_has_near_zero_loss():
    target = _target()
    out = _loss(*_prediction(target, {0: 0, 4: 1}), BIG, target)
    assert float(out.total) < 1e-3, out.terms
    assert all(v < 1e-3 for v in out.terms.values()), out.terms


def test_swapped_matching_is_found():
    target = _target()
    logits, boxes, masks = _prediction(target, {3: 0, 1: 1})
    q_idx, t_idx = hungarian_match(logits, boxes, masks, target)
    assert dict(zip(q_idx.tolist(), t_idx.tolist())) == {3: 0, 1: 1}
    # the loss follows the matching, so the swapped order costs nothing
    assert float(_loss(logits, boxes, masks, BIG, target).total) < 1e-3


def test_wrong_predictions_cost_more():
    target = _target()
    good = _loss(*_prediction(target, {0: 0, 1: 1}), BIG, target)
    logits, boxes, masks = _prediction(target, {0: 0, 1: 1})
    masks_wrong = masks.clone()
    masks_wrong[0] = masks[1]  # query 0 segments the other instance
    worse_mask = _loss(logits, boxes, masks_wrong, BIG, target)
    no_presence = _loss(logits, boxes, masks, -BIG, target)
    missed = _loss(*_prediction(target, {0: 0}), BIG, target)  # one instance not found
    for bad in (worse_mask, no_presence, missed):
        assert float(bad.total) > float(good.total) + 1.0
    assert no_presence.terms["presence"] > 10
    assert missed.terms["cls"] > 0.1 and missed.terms["mask_dice"] > 0.4


def test_negative_prompt():
    empty = SetTarget(torch.zeros(0, H, W), torch.zeros(0, 4))
    logits, boxes, masks = _prediction(_target(), {})
    quiet = _loss(logits, boxes, masks, -BIG, empty)
    assert float(quiet.total) < 1e-3 and quiet.matches[0][0].size == 0
    loud_logits = logits.clone()
    loud_logits[2] = BIG
    loud = _loss(loud_logits, boxes, masks, BIG, empty)
    assert loud.terms["presence"] > 10 and loud.terms["cls"] > 1


def test_gradients_reach_every_output():
    target = _target()
    logits, boxes, masks = (t.clone().requires_grad_() for t in _prediction(target, {0: 0}))
    presence = torch.zeros(1, 1, requires_grad=True)
    semantic = torch.zeros(1, 1, H, W, requires_grad=True)
    out = set_prediction_loss(logits[None], boxes[None], masks[None], presence, semantic, [target], LossWeights())
    out.total.backward()
    for t in (logits, boxes, masks, presence, semantic):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def test_matching_is_one_to_one_with_more_targets_than_queries():
    masks = torch.stack([_box_mask(i, i, i + 3, i + 3) for i in range(8)])
    boxes = torch.tensor([[i / W, i / H, (i + 3) / W, (i + 3) / H] for i in range(8)])
    target = SetTarget(masks, boxes)
    logits, qboxes, qmasks = torch.zeros(Q), torch.rand(Q, 2).repeat(1, 2).sort(-1).values, torch.randn(Q, H, W)
    q_idx, t_idx = hungarian_match(logits, qboxes, qmasks, target)
    assert len(q_idx) == Q and len(set(q_idx.tolist())) == Q and len(set(t_idx.tolist())) == Q
    assert np.all(t_idx < 8)


def test_aux_layer_loss_matches_on_class_and_boxes_alone():
    """An intermediate decoder layer has no masks: it is matched on class and box costs, and a
    perfect (swapped-order) prediction costs nothing while a box error or a missed presence costs."""
    target = _target()
    logits, boxes, _ = _prediction(target, {5: 0, 2: 1})
    q_idx, t_idx = hungarian_match(logits, boxes, None, target)
    assert dict(zip(q_idx.tolist(), t_idx.tolist())) == {5: 0, 2: 1}
    present = torch.tensor([[BIG]])
    assert float(aux_layer_loss(logits[None], boxes[None], present, [target])) < 1e-3
    shifted = boxes.clone()
    shifted[5] += 0.1
    assert float(aux_layer_loss(logits[None], shifted[None], present, [target])) > 1.0
    assert float(aux_layer_loss(logits[None], boxes[None], -present, [target])) > 10.0
    empty = SetTarget(torch.zeros(0, H, W), torch.zeros(0, 4))
    nothing = torch.full((1, Q), -BIG)
    assert float(aux_layer_loss(nothing, boxes[None], -present, [empty])) < 1e-3
