"""How well a prompt (alias token ids or text) finds a target set's masks on a split.

Metrics (DESIGN §5), per prompt on a list of TargetImages:
- ``ap``, ``ap50``: COCO mask AP (pycocotools COCOeval, iouType='segm') over all detections
  ranked by score (no score threshold; the top ``max_dets`` per image, as COCO does).
- ``precision``, ``recall``, ``f1``: instances kept at the score threshold, matched one-to-one to
  targets at IoU >= ``Thresholds.iou`` (Hungarian). Unmatched detections lying mostly inside a
  crowd / ignore region count as neither right nor wrong (COCO's crowd rule).
- ``miou``: mean over positive images of IoU(union of kept masks, union of targets), ignore
  regions left out of both.
- ``fp_rate``: fraction of negative images with at least one kept detection.
Undefined values are NaN (AP and recall without positives, FP rate without negatives).

A detection's score is SAM 3's: sigmoid(query logit) x sigmoid(presence logit); a mask is the
sigmoid of its logits upsampled (bilinear) to the image size and thresholded, as transformers'
``Sam3Processor.post_process_instance_segmentation`` does (defaults: score 0.3, mask 0.5).
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence
from dataclasses import MISSING, asdict, dataclass, fields

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from alias_opt.data.loader import TargetImage, encode_masks
from alias_opt.eval.bootstrap import ImageMatches, ap_from_matches, evaluated_matches
from alias_opt.eval.matching import hungarian_match, inside_fraction, iou_matrix, semantic_iou, union_rle


@dataclass(frozen=True)
class Thresholds:
    """Detection thresholds (SAM 3's defaults).

    Attributes:
        score: keep a detection when presence x query score > this (for precision/recall/F1/mIoU/FP rate).
        mask: sigmoid mask threshold.
        iou: IoU for a match (instance precision/recall/F1) and for COCO's crowd rule.
        max_dets: detections kept per image for AP (COCO's 100); every one above ``score`` is kept too.
    """

    score: float = 0.3
    mask: float = 0.5
    iou: float = 0.5
    max_dets: int = 100


DEFAULT_THRESHOLDS = Thresholds()


@dataclass
class PromptMetrics:
    """Scores of one prompt on one split (see the module doc). NaN where undefined."""

    ap: float
    ap50: float
    precision: float
    recall: float
    f1: float
    miou: float
    fp_rate: float
    n_pos_images: int
    n_neg_images: int
    n_targets: int
    tp: int = 0
    fp: int = 0
    fn: int = 0
    n_detections: int = 0  # kept at the score threshold, over all images

    def to_dict(self) -> dict:
        """JSON-ready dict (NaN -> None)."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> PromptMetrics:
        """Inverse of ``to_dict`` (None -> NaN; unknown keys ignored). Raises KeyError/TypeError/ValueError."""
        kw = {}
        for f in fields(cls):
            if f.name not in data:
                if f.default is not MISSING:  # a field with a default is optional
                    continue
                raise KeyError(f.name)
            value = data[f.name]
            if f.type in ("int", int):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise TypeError(f"{f.name} must be an integer, got {value!r}")
                kw[f.name] = value
            else:
                if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                    raise TypeError(f"{f.name} must be a number or null, got {value!r}")
                kw[f.name] = math.nan if value is None else float(value)
        return cls(**kw)


class ImagePredictions:
    """One prompt's detections on one image, at the image's resolution.

    Attributes:
        masks: (Q, H, W) bool masks thresholded at ``Thresholds.mask`` (decoded on each read).
        scores: (Q,) presence x query scores, highest first.
        rles: the masks as compressed RLE (what is stored).
    """

    def __init__(
        self,
        masks: np.ndarray | None = None,
        scores: np.ndarray | Sequence[float] = (),
        *,
        rles: list[dict] | None = None,
        height: int | None = None,
        width: int | None = None,
    ):
        self.scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if masks is not None:
            masks = np.asarray(masks, dtype=bool)
            height, width = masks.shape[-2:]
            rles = encode_masks(masks.reshape(-1, height, width))
        if rles is None or height is None or width is None:
            raise ValueError("give masks, or rles with height and width")
        if len(rles) != len(self.scores):
            raise ValueError(f"{len(rles)} masks but {len(self.scores)} scores")
        self.rles = rles
        self.height, self.width = int(height), int(width)

    @property
    def masks(self) -> np.ndarray:
        if not self.rles:
            return np.zeros((0, self.height, self.width), dtype=bool)
        return np.ascontiguousarray(mask_utils.decode(self.rles).transpose(2, 0, 1).astype(bool))

    def kept(self, score: float) -> list[int]:
        """Indices of detections with score > ``score``."""
        return [int(i) for i in np.flatnonzero(self.scores > score)]

    def __len__(self) -> int:
        return len(self.rles)

    def __repr__(self) -> str:
        return f"ImagePredictions({len(self)} detections, {self.height}x{self.width})"


# ---------------------------------------------------------------------- scoring
def _coco_ann(ann_id: int, image_id: int, rle: dict, **extra) -> dict:
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": 1,
        "segmentation": rle,
        "area": float(mask_utils.area(rle)),
        "bbox": [float(v) for v in mask_utils.toBbox(rle)],
        **extra,
    }


def _coco(images: list[dict], anns: list[dict]) -> COCO:
    coco = COCO()
    coco.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "target"}]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def coco_matches(
    preds: Sequence[ImagePredictions], images: Sequence[TargetImage], max_dets: int = 100
) -> list[ImageMatches] | None:
    """Each image's detections matched to its targets by COCOeval (segm), run once; None when the
    images hold no target (AP undefined).

    Image and annotation ids are renumbered from 1 (COCOeval reads a match to id 0 as no match),
    crowd / ignore regions are iscrowd=1, and the COCO objects are built here and thrown away
    (COCOeval rewrites ground truth in place). The matches give COCO's AP (``ap_from_matches``) on
    the images or on any resample of them (``alias_opt.eval.bootstrap.paired_bootstrap``).
    """
    imgs, gts, dts = [], [], []
    for n, (pred, im) in enumerate(zip(preds, images), start=1):
        imgs.append({"id": n, "height": im.image.height, "width": im.image.width})
        for rle in im.rles:
            gts.append(_coco_ann(len(gts) + 1, n, rle, iscrowd=0))
        if im.ignore_rle is not None:
            gts.append(_coco_ann(len(gts) + 1, n, im.ignore_rle, iscrowd=1))
        for rle, score in zip(pred.rles, pred.scores):
            dts.append(_coco_ann(len(dts) + 1, n, rle, score=float(score), iscrowd=0))
    if not any(g["iscrowd"] == 0 for g in gts):
        return None
    return evaluated_matches(_coco(imgs, gts), _coco(imgs, dts), [im["id"] for im in imgs], max_dets)


def coco_mask_ap(
    preds: Sequence[ImagePredictions], images: Sequence[TargetImage], max_dets: int = 100
) -> tuple[float, float]:
    """(AP@[.5:.95], AP50) of the detections, as COCOeval computes them (``coco_matches`` then
    ``ap_from_matches``, which is COCOeval's accumulate); NaN when there is no target."""
    matches = coco_matches(preds, images, max_dets)
    return (math.nan, math.nan) if matches is None else ap_from_matches(matches)


def score_predictions(
    preds: Sequence[ImagePredictions], images: Sequence[TargetImage], thresholds: Thresholds = DEFAULT_THRESHOLDS
) -> PromptMetrics:
    """All metrics of one prompt's predictions on a split (one ImagePredictions per image)."""
    return score_with_matches(preds, images, thresholds)[0]


def score_with_matches(
    preds: Sequence[ImagePredictions], images: Sequence[TargetImage], thresholds: Thresholds = DEFAULT_THRESHOLDS
) -> tuple[PromptMetrics, list[ImageMatches] | None]:
    """``score_predictions`` and the per-image COCO matches its AP came from (None without targets),
    kept for a paired bootstrap against another prompt on the same images."""
    if len(preds) != len(images):
        raise ValueError(f"{len(preds)} predictions for {len(images)} images")
    per_image = coco_matches(preds, images, thresholds.max_dets)
    ap, ap50 = (math.nan, math.nan) if per_image is None else ap_from_matches(per_image)
    tp = fp = fn = n_det = fp_images = n_targets = 0
    ious = []
    for pred, im in zip(preds, images):
        kept = [pred.rles[i] for i in pred.kept(thresholds.score)]
        targets = im.rles
        ignore = im.ignore_rle
        matches = hungarian_match(iou_matrix(kept, targets), thresholds.iou)
        matched = {d for d, _ in matches}
        in_ignore = inside_fraction(kept, ignore)
        wrong = sum(1 for d in range(len(kept)) if d not in matched and in_ignore[d] < thresholds.iou)
        tp, fp, fn = tp + len(matches), fp + wrong, fn + len(targets) - len(matches)
        n_det += len(kept)
        n_targets += len(targets)
        h, w = im.image.height, im.image.width
        if im.is_positive:
            ious.append(semantic_iou(union_rle(kept, h, w), union_rle(targets, h, w), ignore))
        elif wrong:
            fp_images += 1
    n_pos = sum(im.is_positive for im in images)
    n_neg = len(images) - n_pos
    nan = math.nan
    precision = tp / (tp + fp) if tp + fp else (0.0 if n_targets else nan)
    metrics = PromptMetrics(
        ap=ap,
        ap50=ap50,
        precision=precision,
        recall=tp / n_targets if n_targets else nan,
        f1=2 * tp / (2 * tp + fp + fn) if n_targets else nan,
        miou=float(np.mean(ious)) if ious else nan,
        fp_rate=fp_images / n_neg if n_neg else nan,
        n_pos_images=n_pos,
        n_neg_images=n_neg,
        n_targets=n_targets,
        tp=tp,
        fp=fp,
        fn=fn,
        n_detections=n_det,
    )
    return metrics, per_image


def compare(alias_ap: float, name_ap: float, margin: float = 0.01) -> str:
    """``win`` when the alias's AP beats the name's by more than ``margin``, ``loss`` when it trails
    by more, else ``tie`` (DESIGN §5); ``n/a`` when either is NaN."""
    if math.isnan(alias_ap) or math.isnan(name_ap):
        return "n/a"
    diff = alias_ap - name_ap
    if diff > margin:
        return "win"
    if diff < -margin:
        return "loss"
    return "tie"
