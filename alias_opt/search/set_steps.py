"""The alias-set builder's pure steps (``alias_opt.search.alias_set``): which train targets a set's
merged detections find, what a residual search runs on, how candidate additions rank, and when a built
set, or one of its members alone, is kept. No forward passes here: the builder passes predictions in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from alias_opt.data.targets import TargetImage
from alias_opt.eval.alias_sets import set_bootstrap
from alias_opt.eval.bootstrap import BootstrapDiff
from alias_opt.eval.matching import hungarian_match, iou_matrix
from alias_opt.eval.metrics import DEFAULT_THRESHOLDS, ImagePredictions, PromptMetrics, Thresholds
from alias_opt.search.cover import Preds, ap_of, merged_metrics
from alias_opt.search.objective import Seq


def covered_targets(pred: ImagePredictions, target: TargetImage, thresholds: Thresholds = DEFAULT_THRESHOLDS):
    """(K,) bool: which of the image's K targets a detection scoring above ``thresholds.score`` finds
    (one-to-one matching at IoU >= ``thresholds.iou``, as the F1 metric counts them)."""
    kept = [pred.rles[i] for i in pred.kept(thresholds.score)]
    hit = np.zeros(target.n_targets, dtype=bool)
    for _, t in hungarian_match(iou_matrix(kept, target.rles), thresholds.iou):
        hit[t] = True
    return hit


def residual_image(target: TargetImage, covered: np.ndarray) -> TargetImage | None:
    """The image with only its ``~covered`` targets as targets and the covered ones added to its ignore
    region; None when it has targets and all are covered (nothing left to find there). A negative
    image comes back unchanged."""
    covered = np.asarray(covered, dtype=bool)
    if target.is_positive and covered.all():
        return None
    return target.only(~covered)


@dataclass
class ResidualPlan:
    """The train targets a set misses, and the images a residual search would run on.

    Attributes:
        images: residual TargetImages (``residual_image``), in train order.
        index: their positions in the train images (to select their features).
        n_targets: train targets; uncovered: those the set misses.
        reason: why no residual search runs ("" when one should).
    """

    images: list[TargetImage]
    index: list[int]
    n_targets: int
    uncovered: int
    reason: str = ""


def residual_plan(
    images: Sequence[TargetImage], preds: Preds, min_uncovered: float, thresholds: Thresholds = DEFAULT_THRESHOLDS
) -> ResidualPlan:
    """What the set with predictions ``preds`` (one per image) leaves to find (see the module doc)."""
    out, index, n_targets, uncovered = [], [], 0, 0
    for i, (im, pred) in enumerate(zip(images, preds, strict=True)):
        hit = covered_targets(pred, im, thresholds)
        n_targets += im.n_targets
        uncovered += int((~hit).sum())
        res = residual_image(im, hit)
        if res is not None:
            out.append(res)
            index.append(i)
    reason = ""
    if n_targets == 0:
        reason = "no train targets"
    elif uncovered == n_targets:
        reason = "the set finds no target: a residual search would repeat the search"
    elif uncovered < min_uncovered * n_targets:
        reason = f"{uncovered} of {n_targets} train targets missed (< {min_uncovered:g})"
    return ResidualPlan(out, index, n_targets, uncovered, reason)


def rank_additions(
    base: Sequence[Preds],
    candidates: Mapping[Seq, Preds],
    images: Sequence[TargetImage],
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> list[tuple[Seq, PromptMetrics]]:
    """Each candidate scored merged with the set's members' predictions ``base``; best train AP first
    (ties: fewer tokens, then the candidates' order)."""
    rows = [(seq, merged_metrics([*base, preds], images, thresholds)) for seq, preds in candidates.items()]
    order = {seq: n for n, seq in enumerate(candidates)}
    return sorted(rows, key=lambda r: (-ap_of(r[1]), len(r[0]), order[r[0]]))


def set_vs_single(
    members: Sequence[Preds],
    single: Preds,
    images: Sequence[TargetImage],
    level: float,
    seed: int,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> BootstrapDiff | None:
    """The paired bootstrap of a set's train AP minus the single alias's (None with ``level`` 0 or
    without targets); the set is kept only where its ``verdict()`` is ``win``.

    Args:
        members: the set members' predictions ((k) x (I)); single: the single alias's (I,).
        level: the interval's coverage; seed: the resampling seed.
    """
    return set_bootstrap(members, single, images, level, seed, thresholds)


def wants_split(single: PromptMetrics, max_precision: float) -> bool:
    """Whether the single alias fires on so much that is not annotated (train precision below
    ``max_precision``, NaN counting as below) that the targets may be a union of narrower concepts."""
    return not single.precision >= max_precision


def keep_set(single_ap: float, set_ap: float, margin: float) -> bool:
    """A set is kept only where its train AP beats the single alias's by more than ``margin``."""
    single = -1.0 if math.isnan(single_ap) else single_ap
    return not math.isnan(set_ap) and set_ap > single + margin


def best_member(
    answer: Sequence[Seq], members: Sequence[Seq], alone: Mapping[Seq, PromptMetrics], answer_ap: float, margin: float
) -> Seq | None:
    """The member of the built set that replaces the current ``answer`` (one alias, or the kept set) alone,
    or None. Against one alias a member must beat its train AP (``answer_ap``) by more than ``margin`` (a
    residual search can find, on the missed targets, an alias better than the first search's: "triangle
    solid pink" where it had settled on "informative kj huge"); against a kept set it need only come within
    ``margin`` of the set's (the others add nothing: "circles | orange" where "orange" alone does as well).
    Ties: the best alone, then fewer tokens, then the members' order.

    Args:
        answer: the current answer's aliases ((1) or (k)); members: the built set's ((k)).
        alone: each member's own train metrics; answer_ap: the answer's train AP (merged for a set).
    """
    base = -1.0 if math.isnan(answer_ap) else answer_ap

    def replaces(m: Seq) -> bool:
        own = ap_of(alone[m])
        return own > base + margin if len(answer) == 1 else own >= base - margin

    better = [(n, m) for n, m in enumerate(members) if [m] != list(answer) and replaces(m)]
    if not better:
        return None
    return min(better, key=lambda r: (-ap_of(alone[r[1]]), len(r[1]), r[0]))[1]


def round_seed(seed: int, n: int) -> int:
    """The residual search seed of round ``n`` (1, 2, ...) of a category searched with ``seed``."""
    return (int(seed) + 7919 * n) % (1 << 32)
