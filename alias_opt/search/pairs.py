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
All pairs are scored one batch per first member (``pairs_ap50``), to the same floats as one at a time
(``pair_ap50``; ``bench/pairs_speed.py``).
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


def ap50_rows(tp: np.ndarray, fp_above) -> np.ndarray:
    """COCO's 101-point AP at one IoU for ``B`` prompts at once, each with the same ``K`` targets.

    A found target's precision is its rank among the found ones over that rank plus the false positives
    scored above it (a false positive tied with a hit ranks after it, as COCO's stable sort of hits
    before false positives does); the envelope is the best precision at that rank or below, read at
    each recall point's first rank that reaches it.

    Args:
        tp: (B, K) per prompt and target the matched score (0: missed); K > 0.
        fp_above: callable (B, K) scores -> (B, K) counts of each prompt's false positives scored above.

    Returns:
        (B,) the APs.
    """
    b, k = tp.shape
    s = -np.sort(-tp, axis=1)  # (B, K) found scores, best first; the missed (0) last
    found = (s > 0).sum(axis=1)  # (B,)
    ranks = np.arange(1, k + 1, dtype=np.float64)
    precision = np.where(s > 0, ranks / (ranks + fp_above(s)), 0.0)  # (B, K) at each found target
    envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]  # (B, K)
    # recall point r is reached at the first rank j with j / K >= r (j = 0 for r = 0: the top detection,
    # whose envelope is the first found target's)
    need = np.maximum(np.searchsorted(np.arange(k + 1) / k, RECALL_POINTS, side="left"), 1)  # (101,)
    at = envelope[:, need - 1]  # (B, 101)
    reached = (need[None, :] <= found[:, None]).sum(axis=1)  # (B,) the recall points reached: a prefix
    # each row sums its reached prefix alone, as a 1-D sum of that length would (numpy's pairwise sum
    # groups by length), so the estimate is the same float whatever the batch and ties stay ties
    total = np.zeros(b)
    for c in np.unique(reached[reached > 0]):
        rows = reached == c
        total[rows] = np.ascontiguousarray(at[rows, :c]).sum(axis=1)
    return total / len(RECALL_POINTS)


def _count_above(fp: np.ndarray):
    """``fp_above`` for one list of false-positive scores shared by every row."""
    fp = np.sort(fp)
    return lambda s: fp.size - np.searchsorted(fp, s, side="right")


def ap50(tp: np.ndarray, fp: np.ndarray) -> float:
    """COCO's 101-point AP at one IoU of ``len(tp)`` targets, of which those with a score > 0 were found
    at that score, and false positives scored ``fp``; NaN without targets (``ap50_rows`` of one row).

    Args:
        tp: (K,) matched scores (0: missed); fp: (F,) false-positive scores.
    """
    if len(tp) == 0:
        return float("nan")
    return float(ap50_rows(np.asarray(tp, dtype=np.float64)[None, :], _count_above(np.asarray(fp)))[0])


def pair_ap50(a: Hits, b: Hits) -> float:
    """The estimated AP50 of two prompts' merged detections (see the module doc)."""
    return ap50(np.maximum(a.tp, b.tp), np.concatenate([a.fp, b.fp]))


def pairs_ap50(hits: Sequence[Hits]) -> np.ndarray:
    """``pair_ap50`` of every pair (i < j) of ``hits``, in the order i, then j: one batch per i.

    Args:
        hits: M prompts' hits on the same K targets.

    Returns:
        (M * (M - 1) / 2,) the estimates.
    """
    m = len(hits)
    if m < 2:
        return np.zeros(0)
    k = len(hits[0].tp)
    if k == 0:
        return np.full(m * (m - 1) // 2, np.nan)
    tps = np.stack([h.tp for h in hits]).astype(np.float64)  # (M, K)
    # every prompt's false positives in one sorted array, keyed by prompt: key = row * 4 + score (scores
    # lie in [0, 1]), so one searchsorted counts each row's own scores above a query
    rows = np.repeat(np.arange(m), [len(h.fp) for h in hits])
    keys = np.sort(rows * 4.0 + np.concatenate([h.fp for h in hits] + [np.zeros(0)]))
    out = []
    for i in range(m - 1):
        own = np.arange(i + 1, m)[:, None] * 4.0  # (B, 1) the partners' keys' offsets
        a_above = _count_above(hits[i].fp)

        def above(s, own=own, a_above=a_above):
            b_above = np.searchsorted(keys, own + 4.0, side="left") - np.searchsorted(keys, own + s, side="right")
            return a_above(s) + b_above

        out.append(ap50_rows(np.maximum(tps[i], tps[i + 1 :]), above))
    return np.concatenate(out)


def best_pairs(hits: Mapping[Seq, Hits], n: int) -> list[tuple[Seq, Seq, float]]:
    """The ``n`` pairs of ``hits``' sequences with the best ``pair_ap50``, best first (ties: their
    order), each with its estimate."""
    seqs = list(hits)
    est = pairs_ap50([hits[s] for s in seqs])
    i, j = np.triu_indices(len(seqs), k=1)  # the pairs in the order i, then j
    order = np.argsort(-est, kind="stable")[:n]
    return [(seqs[i[r]], seqs[j[r]], float(est[r])) for r in order]


def pair_members(pairs: Sequence[tuple[Seq, Seq, float]]) -> list[Seq]:
    """The pairs' members, each once, best pair first."""
    return list(dict.fromkeys(s for a, b, _ in pairs for s in (a, b)))
