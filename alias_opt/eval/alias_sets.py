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

from alias_opt.data.targets import TargetImage
from alias_opt.eval.bootstrap import BootstrapDiff, paired_bootstrap
from alias_opt.eval.metrics import DEFAULT_THRESHOLDS, ImagePredictions, Thresholds, coco_matches


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


def set_bootstrap(
    members: Sequence[Sequence[ImagePredictions]],
    other: Sequence[ImagePredictions],
    images: Sequence[TargetImage],
    level: float,
    seed: int,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> BootstrapDiff | None:
    """AP(set) - AP(other) on the same images with its paired bootstrap interval, the set's members'
    detections merged image by image (one member: its own); None with ``level`` 0 or without targets.

    Args:
        members: each member's predictions ((k) x (I)); other: the prompt compared against ((I,)).
        level: the interval's coverage; seed: the resampling seed.
    """
    if not level or not members:
        return None
    joined = list(members[0]) if len(members) == 1 else merge_split(members, thresholds.iou)  # (I,)
    a = coco_matches(joined, images, thresholds.max_dets)
    b = coco_matches(other, images, thresholds.max_dets)
    if a is None or b is None:
        return None
    return paired_bootstrap(a, b, level=level, seed=seed)
