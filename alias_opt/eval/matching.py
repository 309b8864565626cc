"""One-to-one matching of predicted and target instances (Hungarian) and mask overlaps on RLEs."""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils
from scipy.optimize import linear_sum_assignment


def iou_matrix(pred_rles: list[dict], target_rles: list[dict]) -> np.ndarray:
    """(N, K) IoU of N predicted and K target masks (compressed RLE, same size)."""
    if not pred_rles or not target_rles:
        return np.zeros((len(pred_rles), len(target_rles)))
    return np.asarray(mask_utils.iou(pred_rles, target_rles, [0] * len(target_rles)), dtype=np.float64)


def inside_fraction(pred_rles: list[dict], region_rle: dict | None) -> np.ndarray:
    """(N,) fraction of each predicted mask's area inside a region (COCO's crowd overlap)."""
    if not pred_rles or region_rle is None:
        return np.zeros(len(pred_rles))
    return np.asarray(mask_utils.iou(pred_rles, [region_rle], [1]), dtype=np.float64).reshape(-1)


def hungarian_match(iou: np.ndarray, threshold: float = 0.5) -> list[tuple[int, int]]:
    """The largest set of one-to-one (pred, target) pairs with IoU >= threshold; among those of
    that size, the one with the highest total IoU.

    Args:
        iou: (N, K) IoU matrix.
        threshold: the least IoU of a match.

    Returns:
        matched (pred index, target index) pairs.
    """
    if iou.size == 0:
        return []
    valid = iou >= threshold
    if not valid.any():
        return []
    # Each match is worth more than any total of IoUs (<= min(N, K)), so the count comes first.
    weight = np.where(valid, min(iou.shape) + 1.0 + iou, 0.0)
    rows, cols = linear_sum_assignment(weight, maximize=True)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if valid[r, c]]


def union_rle(rles: list[dict], height: int, width: int) -> dict:
    """Union of masks as one RLE (an empty mask when there are none)."""
    if not rles:
        return mask_utils.encode(np.zeros((height, width, 1), dtype=np.uint8, order="F"))[0]
    if len(rles) == 1:
        return rles[0]
    return mask_utils.merge(rles)


def semantic_iou(pred: dict, target: dict, ignore: dict | None = None) -> float:
    """IoU of two masks with an ignore region left out of both; 1.0 when both are empty."""
    inter = float(mask_utils.area(mask_utils.merge([pred, target], intersect=True)))
    union = float(mask_utils.area(mask_utils.merge([pred, target])))
    if ignore is not None:
        inter -= float(mask_utils.area(mask_utils.merge([pred, target, ignore], intersect=True)))
        union -= float(mask_utils.area(mask_utils.merge([mask_utils.merge([pred, target]), ignore], intersect=True)))
    return inter / union if union > 0 else 1.0
