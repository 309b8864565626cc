"""Verdicts a statistician would sign: paired bootstrap intervals of a held-out AP difference.

COCOeval matches each image's detections to its targets once (``image_matches``); COCO's AP is
then recomputed from those per-image matches on any multiset of images (``ap_from_matches``,
exactly COCOeval's ``accumulate`` with its 101-point interpolation), so resampling images with
replacement costs no new matching. ``paired_bootstrap`` resamples the same images for both prompts
and reports the AP difference with a percentile interval; ``verdict`` calls a *win* only when the
interval lies above zero (DESIGN §5).
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from pycocotools.cocoeval import COCOeval

RESAMPLES = 1000  # default resamples of a verdict's interval
LEVEL = 0.95  # default coverage of a verdict's interval
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # COCO's
RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # COCO's


@dataclass(frozen=True)
class ImageMatches:
    """One image's detections matched to its targets at each IoU threshold (COCOeval's evaluateImg)."""

    scores: np.ndarray  # (D,) detection scores, at most max_dets, best first
    tp: np.ndarray  # (T, D) bool: the detection matched a target at threshold t
    ignored: np.ndarray  # (T, D) bool: it matched an ignore region (counts as neither TP nor FP)
    n_targets: int  # targets that are not ignore regions

    @classmethod
    def empty(cls) -> ImageMatches:
        t = len(IOU_THRESHOLDS)
        return cls(np.zeros(0), np.zeros((t, 0), bool), np.zeros((t, 0), bool), 0)


@dataclass(frozen=True)
class BootstrapDiff:
    """AP(a) - AP(b) on the held-out images and its paired bootstrap interval."""

    diff: float  # on all images
    low: float  # lower end of the percentile interval
    high: float  # upper end
    level: float  # e.g. 0.95
    resamples: int  # resamples that had a target (AP defined for both)

    def verdict(self) -> str:
        """``win`` when the interval lies above zero, ``loss`` below, else ``tie``; ``n/a`` if undefined."""
        if math.isnan(self.diff) or math.isnan(self.low):
            return "n/a"
        return "win" if self.low > 0 else "loss" if self.high < 0 else "tie"

    def describe(self) -> str:
        return f"{self.diff:+.3f} [{self.low:+.3f}, {self.high:+.3f}] ({self.level:.0%}, {self.resamples} resamples)"

    def short(self) -> str:
        """``+0.412 [+0.300, +0.520]`` (the level goes in the table's legend)."""
        if math.isnan(self.diff):
            return ""
        if math.isnan(self.low):
            return f"{self.diff:+.3f}"
        return f"{self.diff:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"

    def to_dict(self) -> dict:
        """JSON-ready (NaN -> None)."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> BootstrapDiff:
        num = lambda v: math.nan if v is None else float(v)  # noqa: E731
        return cls(num(data["diff"]), num(data["low"]), num(data["high"]), float(data["level"]), int(data["resamples"]))


def image_matches(ev: COCOeval, max_dets: int) -> list[ImageMatches]:
    """Per-image matches of an evaluated single-category ``COCOeval`` (``ev.evaluate()`` has run),
    in ``ev.params.imgIds`` order, at area range "all"."""
    out = []
    n_img = len(ev.params.imgIds)
    for e in ev.evalImgs[:n_img]:  # category 0, area range 0 ("all") come first
        if e is None:
            out.append(ImageMatches.empty())
            continue
        order = np.argsort(-np.asarray(e["dtScores"]), kind="mergesort")[:max_dets]
        matched = np.asarray(e["dtMatches"])[:, order] > 0
        ignored = np.asarray(e["dtIgnore"])[:, order].astype(bool)
        n_targets = int(np.count_nonzero(np.asarray(e["gtIgnore"]) == 0))
        out.append(ImageMatches(np.asarray(e["dtScores"])[order], matched & ~ignored, ignored, n_targets))
    return out


def evaluated_matches(gt_coco, dt_coco, img_ids: Sequence[int], max_dets: int = 100) -> list[ImageMatches]:
    """Run COCOeval (segm) once on the two COCO objects and return each image's matches."""
    ev = COCOeval(gt_coco, dt_coco, iouType="segm")
    ev.params.imgIds = list(img_ids)
    ev.params.maxDets = [1, 10, max_dets]
    # area range "all" alone: image_matches reads no other, and evaluateImg (pure Python, per image and
    # area range) was most of a cover set's scoring time, 4 ranges for 1 used
    ev.params.areaRng, ev.params.areaRngLbl = ev.params.areaRng[:1], ev.params.areaRngLbl[:1]
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
    return image_matches(ev, max_dets)


def ap_from_matches(matches: Sequence[ImageMatches], idx: np.ndarray | None = None) -> tuple[float, float]:
    """(AP@[.5:.95], AP50) over the images ``idx`` (with repeats; default all), as COCOeval's
    accumulate computes them. NaN when the images hold no target.

    Args:
        matches: per-image matches (``image_matches``).
        idx: (N,) image indices into ``matches``.
    """
    chosen = [matches[i] for i in (range(len(matches)) if idx is None else idx)]
    n_targets = sum(m.n_targets for m in chosen)
    if n_targets == 0:
        return math.nan, math.nan
    scores = np.concatenate([m.scores for m in chosen])
    if scores.size == 0:
        return 0.0, 0.0
    order = np.argsort(-scores, kind="mergesort")
    tp = np.concatenate([m.tp for m in chosen], axis=1)[:, order]  # (T, D)
    ign = np.concatenate([m.ignored for m in chosen], axis=1)[:, order]
    tp_sum = np.cumsum(tp, axis=1, dtype=np.float64)
    fp_sum = np.cumsum(~tp & ~ign, axis=1, dtype=np.float64)
    recall = tp_sum / n_targets
    precision = tp_sum / (tp_sum + fp_sum + np.spacing(1))
    precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]  # COCO's monotone envelope
    per_t = np.zeros((tp.shape[0], len(RECALL_POINTS)))
    for t in range(tp.shape[0]):
        inds = np.searchsorted(recall[t], RECALL_POINTS, side="left")
        ok = inds < recall.shape[1]
        per_t[t, ok] = precision[t, inds[ok]]
    return float(per_t.mean()), float(per_t[0].mean())


def paired_bootstrap(
    a: Sequence[ImageMatches],
    b: Sequence[ImageMatches],
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    ap50: bool = False,
) -> BootstrapDiff:
    """AP(a) - AP(b) on the same images, with a paired percentile bootstrap interval over images.

    Args:
        a, b: the two prompts' per-image matches on the same images, in the same order.
        resamples: bootstrap resamples (images drawn with replacement, the same draw for a and b).
        level: coverage of the interval.
        ap50: compare AP50 instead of AP@[.5:.95].
    """
    if len(a) != len(b):
        raise ValueError(f"paired bootstrap needs the same images: {len(a)} vs {len(b)}")
    k = 1 if ap50 else 0
    diff = ap_from_matches(a)[k] - ap_from_matches(b)[k]
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        idx = rng.integers(len(a), size=len(a))
        d = ap_from_matches(a, idx)[k] - ap_from_matches(b, idx)[k]
        if not math.isnan(d):
            draws.append(d)
    if not draws or math.isnan(diff):
        return BootstrapDiff(diff, math.nan, math.nan, level, len(draws))
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return BootstrapDiff(float(diff), float(lo), float(hi), level, len(draws))


def verdict_vs(
    a: Sequence[ImageMatches] | None,
    b: Sequence[ImageMatches] | None,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
) -> tuple[str, BootstrapDiff | None]:
    """The verdict of prompt ``a`` against ``b`` on the same images (win / tie / loss by the paired
    bootstrap interval of AP(a) - AP(b); ``n/a`` without targets) and the interval itself."""
    if a is None or b is None:
        return "n/a", None
    d = paired_bootstrap(a, b, resamples=resamples, level=level, seed=seed)
    return d.verdict(), d
