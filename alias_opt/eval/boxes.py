"""Box-only predictions: SAM 3's detections as scores and boxes, without masks.

A detection's box comes from the DETR decoder, before the mask decoder, so a grounding call that
selects no mask skips the pixel decoder (most of a pair's cost on CPU) and stops there. Where a
cheap *estimate* needs only which targets a prompt finds (``alias_opt.search.pairs``: ranking pairs
of a name's insertions), boxes matched at IoU 0.5 stand in for masks; exact metrics stay mask-based.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from pycocotools import mask as mask_utils

from alias_opt.data.targets import TargetImage


@dataclass
class ImageBoxes:
    """One prompt's detections on one image, boxes only.

    Attributes:
        scores: (N,) presence x query scores, highest first.
        boxes: (N, 4) boxes (x, y, width, height) in image pixels (COCO's bbox form).
    """

    scores: np.ndarray
    boxes: np.ndarray


def target_boxes(target: TargetImage) -> np.ndarray:
    """(K, 4) the boxes (x, y, width, height) of an image's K target masks."""
    if not target.n_targets:
        return np.zeros((0, 4))
    return np.asarray(mask_utils.toBbox(list(target.rles)), dtype=np.float64).reshape(-1, 4)


def box_iou(dets: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(N, K) IoU of N detection boxes and K target boxes, each (x, y, width, height)."""
    if not len(dets) or not len(targets):
        return np.zeros((len(dets), len(targets)))
    return np.asarray(mask_utils.iou(dets, targets, [0] * len(targets)), dtype=np.float64).reshape(len(dets), -1)


@torch.no_grad()
def predict_boxes(
    backend,
    feats,
    images: Sequence[TargetImage],
    prompts: Sequence[Sequence[int]],
    min_score: float,
) -> list[list[ImageBoxes]]:
    """Every prompt on every image, boxes of the detections scoring above ``min_score`` only.

    Args:
        backend: a ``sam3.Sam3Backend``.
        feats: ``ImageFeatures`` of ``images``, in order.
        images: the TargetImages (their JSON size scales the boxes).
        prompts: P alias token id lists (no SOT/EOT).
        min_score: keep detections scoring above this.

    Returns:
        ``[prompt][image]`` ImageBoxes.
    """
    if len(feats) != len(images):
        raise ValueError(f"{len(feats)} image features for {len(images)} images")
    P, I = len(prompts), len(images)
    if not P or not I:
        return [[] for _ in range(P)]
    text = backend.encode_text(ids=backend.prompt_ids([list(p) for p in prompts]))
    p_idx, i_idx = torch.arange(P).repeat_interleave(I), torch.arange(I).repeat(P)

    def no_masks(out, sl) -> torch.Tensor:  # (b, Q): no query's mask, so no pixel decoder
        return torch.zeros(out.query_logits.shape, dtype=torch.bool)

    out_boxes: list[list] = [[None] * I for _ in range(P)]
    for sl, out in backend.iter_ground_pairs(text, feats, p_idx, i_idx, masks=no_masks):
        scores = out.scores().float().cpu()  # (b, Q)
        boxes = out.boxes.float().cpu()  # (b, Q, 4) normalized x0, y0, x1, y1
        for b in range(scores.shape[0]):
            k = sl.start + b
            im = images[int(i_idx[k])].image
            keep = torch.nonzero(scores[b] > min_score).flatten()
            keep = keep[torch.argsort(scores[b, keep], descending=True, stable=True)]
            xyxy = boxes[b, keep] * torch.tensor([im.width, im.height, im.width, im.height])  # (n, 4) pixels
            xywh = torch.cat([xyxy[:, :2], (xyxy[:, 2:] - xyxy[:, :2]).clamp(min=0)], dim=1)
            out_boxes[k // I][k % I] = ImageBoxes(scores[b, keep].double().numpy(), xywh.double().numpy())
    return out_boxes
