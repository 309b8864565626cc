"""Pairs of the name's insertions: the members of a union the too-broad name covers.

A *policy* category named "heart" whose annotation is the yellow and the blue hearts is answered by
"yellow heart | blue heart". Each member alone finds half the targets, so ranked by its own train AP
(``alias_set.best_splits``) or screening loss it sits far down the list (design seed 3131: the oracle
members' insertions ranked 134-476 by screening loss, outside the best 16 by train AP for 3 of 4
unions), while on train the oracle pair beats the name by 0.11-0.21 AP (``bench/union_members.py``).
Here every insertion is scored on the train images once, and *pairs* are ranked by a cheap estimate
of their merged AP50 (``pair_ap50``), so complementary members rank where they belong:

    hits = [box_hits(p, target_boxes(im)) for p, im in zip(boxes, images)]   # per insertion, per image
    ranked = best_pairs({seq: hits_of_seq, ...}, 4)

The estimate matches each insertion's detections to the targets once (``match_hits``: per target the
best matched score, the unmatched detections' scores) and merges a pair by the per-target maximum and
the concatenated false positives (a duplicate false positive counts twice: shared junk ranks lower).
It matches by box IoU by default (``box_hits``: the DETR decoder's boxes, so no masks and no pixel
decoder for thousands of insertion-image pairs; ``cfg.set_pair_boxes``) or by mask IoU (``image_hits``).
Exact merged metrics are computed by the cover search, with masks, for the pairs' members only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from alias_opt.data.targets import TargetImage
from alias_opt.eval.bootstrap import RECALL_POINTS
from alias_opt.eval.boxes import ImageBoxes, box_iou
from alias_opt.eval.matching import iou_matrix
from alias_opt.eval.metrics import ImagePredictions
from alias_opt.search.objective import Seq


@dataclass
class Hits:
    """One prompt's detections matched to the train targets.

    Attributes:
        tp: (K,) per target (all images, in order) the score of the detection matched to it (0: none).
        fp: (F,) the scores of the detections matched to no target.
    """

    tp: np.ndarray
    fp: np.ndarray


def match_hits(scores: np.ndarray, ious: np.ndarray, iou: float = 0.5) -> Hits:
    """Match one image's detections to its targets greedily in score order (as COCO does): each takes
    the unmatched target it overlaps most, at IoU >= ``iou``.

    Args:
        scores: (N,) detection scores; ious: (N, K) their IoU with the image's K targets.

    Returns:
        Hits with tp (K,) and fp (F,).
    """
    n_targets = ious.shape[1]
    tp = np.zeros(n_targets)
    free = np.ones(n_targets, dtype=bool)
    fp = []
    for d in np.argsort(-np.asarray(scores), kind="stable"):
        row = np.where(free, ious[d], -1.0) if n_targets else np.zeros(0)
        k = int(np.argmax(row)) if row.size else -1
        if k >= 0 and row[k] >= iou:
            tp[k], free[k] = scores[d], False
        else:
            fp.append(float(scores[d]))
    return Hits(tp, np.asarray(fp, dtype=np.float64))


def image_hits(pred: ImagePredictions, target: TargetImage, iou: float = 0.5) -> Hits:
    """``match_hits`` of one image's detections by mask IoU.

    Returns:
        Hits with tp (K,) for the image's K targets and fp (F,).
    """
    return match_hits(pred.scores, iou_matrix(list(pred.rles), list(target.rles)), iou)  # IoU (N, K)


def box_hits(pred: ImageBoxes, boxes: np.ndarray, iou: float = 0.5) -> Hits:
    """``match_hits`` of one image's detections by box IoU: the estimate without masks.

    Args:
        pred: the detections' scores and boxes; boxes: (K, 4) the targets' (``target_boxes``).
    """
    return match_hits(pred.scores, box_iou(pred.boxes, boxes), iou)  # IoU (N, K)


def join(hits: Sequence[Hits]) -> Hits:
    """Per-image hits concatenated into one split's (targets and false positives in image order)."""
    return Hits(np.concatenate([h.tp for h in hits]), np.concatenate([h.fp for h in hits]))


def ap50(tp: np.ndarray, fp: np.ndarray) -> float:
    """COCO's 101-point AP at one IoU of ``len(tp)`` targets, of which those with a score > 0 were found
    at that score, and false positives scored ``fp``; NaN without targets.

    Args:
        tp: (K,) matched scores (0: missed); fp: (F,) false-positive scores.
    """
    n = len(tp)
    if n == 0:
        return float("nan")
    found = tp[tp > 0]
    scores = np.concatenate([found, fp])
    if scores.size == 0:
        return 0.0
    is_tp = np.concatenate([np.ones(found.size, dtype=bool), np.zeros(fp.size, dtype=bool)])
    is_tp = is_tp[np.argsort(-scores, kind="mergesort")]
    tps = np.cumsum(is_tp, dtype=np.float64)
    precision = tps / np.arange(1, len(is_tp) + 1)
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    inds = np.searchsorted(tps / n, RECALL_POINTS, side="left")
    ok = inds < len(is_tp)
    return float(precision[inds[ok]].sum() / len(RECALL_POINTS))


def pair_ap50(a: Hits, b: Hits) -> float:
    """The estimated AP50 of two prompts' merged detections (see the module doc)."""
    return ap50(np.maximum(a.tp, b.tp), np.concatenate([a.fp, b.fp]))


def best_pairs(hits: Mapping[Seq, Hits], n: int) -> list[tuple[Seq, Seq, float]]:
    """The ``n`` pairs of ``hits``' sequences with the best ``pair_ap50``, best first (ties: their
    order), each with its estimate."""
    seqs = list(hits)
    rows = [(a, b, pair_ap50(hits[a], hits[b])) for i, a in enumerate(seqs) for b in seqs[i + 1 :]]
    order = sorted(range(len(rows)), key=lambda r: (-rows[r][2], r))
    return [rows[r] for r in order[:n]]


def pair_members(pairs: Sequence[tuple[Seq, Seq, float]]) -> list[Seq]:
    """The pairs' members, each once, best pair first."""
    return list(dict.fromkeys(s for a, b, _ in pairs for s in (a, b)))
