"""Alias sets: a category that is a union of concepts answered by up to k aliases.

The set's detections on an image are the union of its aliases' detections, best score first; a
detection that overlaps a higher-scored one already kept (mask IoU >= ``nms_iou``: the same
instance found by two aliases) is dropped, so the union is not charged a false positive for it.
The merged ``ImagePredictions`` are scored like any prompt's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pycocotools import mask as mask_utils

from alias_opt.eval.metrics import ImagePredictions


def merge_predictions(parts: Sequence[ImagePredictions], nms_iou: float = 0.5) -> ImagePredictions:
    """Union of several prompts' detections on one image (greedy mask NMS across prompts).

    Args:
        parts: each alias's predictions on the same image (same height and width).
        nms_iou: a detection is dropped when its mask IoU with a kept, higher-scored one reaches this.
    Returns:
        the merged predictions, highest score first.
    """
    if not parts:
        raise ValueError("an alias set has at least one alias")
    h, w = parts[0].height, parts[0].width
    if any((p.height, p.width) != (h, w) for p in parts):
        raise ValueError("alias-set predictions must be on the same image size")
    rles = [r for p in parts for r in p.rles]
    scores = np.concatenate([p.scores for p in parts]) if rles else np.zeros(0)
    order = np.argsort(-scores, kind="stable")
    iou = mask_utils.iou(rles, rles, [0] * len(rles)) if rles else np.zeros((0, 0))
    keep: list[int] = []
    for i in order:
        if all(iou[i, j] < nms_iou for j in keep):
            keep.append(int(i))
    return ImagePredictions(rles=[rles[i] for i in keep], scores=scores[keep], height=h, width=w)


def merge_split(per_alias: Sequence[Sequence[ImagePredictions]], nms_iou: float = 0.5) -> list[ImagePredictions]:
    """Merge an alias set's predictions image by image.

    Args:
        per_alias: (k aliases) x (I images) predictions.
    Returns:
        (I,) merged predictions.
    """
    return [merge_predictions(parts, nms_iou) for parts in zip(*per_alias)]
