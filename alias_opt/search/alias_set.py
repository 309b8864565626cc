"""Alias sets: a category that is a union of concepts answered by up to ``max_aliases`` aliases.

    result = build_alias_set(backend, images, feats, name, cfg, seed, first, indexes)

Greedy, after the single-alias search (``alias_opt.search.pipeline.search``); the set starts as its
winner. Each round (at most ``cfg.max_aliases - 1``):

1. ``covered_targets``: which train targets the set's merged detections find (a detection scoring
   above the threshold, matched one-to-one at IoU >= ``Thresholds.iou``).
2. ``residual_plan``: go on only while at least one target is covered and at least
   ``cfg.set_min_uncovered`` of them are not. With nothing covered the residual is the original problem
   (the search would find the same alias); with little left the category is one concept.
3. ``residual_images``: the train images with the missed targets as targets and the covered ones as
   ignore regions (finding them again is neither rewarded nor punished); images whose targets are all
   covered are left out, negatives kept.
4. The same search (strategy, config, budget per search) on the residual images, with a seed of its
   own; its re-ranked candidates and the first search's are each scored *merged* with the set on all
   train images (``rank_additions``), and the best joins the set if it raises the set's train AP,
   after its inert tokens are dropped (``prune_inert`` against the merged set's train AP, the same
   ``prune_tolerance`` as the single alias's; -1 turns it off).

A *cover set* is also chosen (``greedy_cover``) among the first search's best ``cfg.set_pool``
candidates by loss and the ``cfg.set_split`` best by train AP of its insertions into the name
(``SearchOutcome.splits``: "red circle", "purple circle" for a "circle"): the best pair (every pair is
scored), then greedy additions, each member raising the merged train AP by more than ``cfg.set_margin``.
It finds what the residual rounds cannot: a too-broad name covers every target, so nothing is left for
a residual search, while its narrowed candidates ("teal cross", "blue cross") together are the answer.
With ``cfg.set_clusters`` the pool also takes the candidates of two more searches, one per visual cluster
of the train targets (``alias_opt.search.clusters``): a union's members are each one cluster's concept.
With ``cfg.set_cluster_split``, where the single alias's train precision is low (``wants_split``), it takes
the name's insertions screened against each cluster alone (``cluster_insertions``: no search).
Its members lose their inert tokens as the rounds' picks do; the better of the two sets (train AP) is
the one built. A cover of one alias is a set too: the pool is scored on train anyway, and its best alias
may beat the first search's winner, which was re-ranked among ``cfg.rerank`` candidates only.

The built set is kept only where its merged train AP beats the single alias's by more than
``cfg.set_margin`` (``keep_set``) and (``set_vs_single``) the paired bootstrap interval over train
images of that difference lies above zero at ``cfg.set_level``: many candidates are merged on a small
train split, so a margin alone lets a chance fit through. Otherwise the result is the single alias.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from alias_opt.config import SearchConfig
from alias_opt.data.targets import TargetImage
from alias_opt.eval.alias_sets import merge_split
from alias_opt.eval.bootstrap import BootstrapDiff, ap_from_matches, paired_bootstrap
from alias_opt.eval.matching import hungarian_match, iou_matrix
from alias_opt.eval.metrics import DEFAULT_THRESHOLDS, ImagePredictions, PromptMetrics, Thresholds, coco_matches
from alias_opt.eval.metrics import score_predictions as _score
from alias_opt.eval.predict import predict
from alias_opt.search.clusters import ClusterSearch, ClusterSplit, cluster_insertions, search_clusters
from alias_opt.search.meter import Usage
from alias_opt.search.objective import Seq, Step, tagged
from alias_opt.search.pipeline import SearchOutcome, search
from alias_opt.search.prune import prune_inert
from sam3 import ImageFeatures, Sam3Backend

Preds = list[ImagePredictions]  # one prompt's (or a merged set's) predictions, one per image


# ------------------------------------------------------------------------------ pure steps
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


def merged(parts: Sequence[Preds], thresholds: Thresholds = DEFAULT_THRESHOLDS) -> Preds:
    """(I,) predictions of a set whose members predicted ``parts`` ((k) x (I)): merged image by image."""
    return list(parts[0]) if len(parts) == 1 else merge_split(parts, thresholds.iou)


def merged_metrics(parts: Sequence[Preds], images: Sequence[TargetImage], thresholds=DEFAULT_THRESHOLDS):
    """Metrics of a set whose members predicted ``parts`` ((k) x (I) predictions) on ``images``."""
    return _score(merged(parts, thresholds), images, thresholds)


def _ap(m: PromptMetrics | None) -> float:
    return -1.0 if m is None or math.isnan(m.ap) else m.ap


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
    return sorted(rows, key=lambda r: (-_ap(r[1]), len(r[0]), order[r[0]]))


def merged_ap(parts: Sequence[Preds], images: Sequence[TargetImage], thresholds=DEFAULT_THRESHOLDS) -> float:
    """The COCO AP alone of a set whose members predicted ``parts`` ((k) x (I)); -1 without targets (the
    cover search scores hundreds of sets: the other metrics are computed for the one chosen)."""
    per_image = coco_matches(merged(parts, thresholds), images, thresholds.max_dets)
    ap = math.nan if per_image is None else ap_from_matches(per_image)[0]
    return -1.0 if math.isnan(ap) else ap


def greedy_cover(
    candidates: Mapping[Seq, Preds],
    images: Sequence[TargetImage],
    k: int,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    margin: float = 0.0,
) -> tuple[list[Seq], PromptMetrics | None]:
    """Up to ``k`` of ``candidates`` (each with its predictions on ``images``) whose merged detections
    have a high train AP: the best single, replaced by the best pair where that beats it by more than
    ``margin`` (every pair is scored: the best single is often the too-broad name, which no narrowed
    candidate improves on alone), then greedy additions while one raises the AP by more than ``margin``
    (a member must earn its place). Returns the chosen and their merged metrics (None without
    candidates). Ties keep the candidates' order."""
    seqs = list(candidates)
    if not seqs or k < 1:
        return [], None

    def ap(chosen: Sequence[Seq]) -> float:
        return merged_ap([candidates[s] for s in chosen], images, thresholds)

    def best(sets: list[list[Seq]]) -> tuple[list[Seq], float]:
        scores = [ap(c) for c in sets]
        i = int(np.argmax(scores))  # the first of equals
        return sets[i], scores[i]

    chosen, top = best([[s] for s in seqs])
    if k >= 2 and len(seqs) > 1:
        pair, pair_ap = best([[a, b] for i, a in enumerate(seqs) for b in seqs[i + 1 :]])
        if pair_ap > top + margin:
            chosen, top = pair, pair_ap
    while len(chosen) < k and len(chosen) > 1:
        rest = [s for s in seqs if s not in chosen]
        if not rest:
            break
        more, more_ap = best([[*chosen, s] for s in rest])
        if more_ap <= top + margin:
            break
        chosen, top = more, more_ap
    return chosen, merged_metrics([candidates[s] for s in chosen], images, thresholds)


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
    if not level:
        return None
    a = coco_matches(merged(members, thresholds), images, thresholds.max_dets)
    b = coco_matches(single, images, thresholds.max_dets)
    if a is None or b is None:
        return None
    return paired_bootstrap(a, b, level=level, seed=seed)


def wants_split(single: PromptMetrics, max_precision: float) -> bool:
    """Whether the single alias fires on so much that is not annotated (train precision below
    ``max_precision``, NaN counting as below) that the targets may be a union of narrower concepts."""
    return not single.precision >= max_precision


def keep_set(single_ap: float, set_ap: float, margin: float) -> bool:
    """A set is kept only where its train AP beats the single alias's by more than ``margin``."""
    single = -1.0 if math.isnan(single_ap) else single_ap
    return not math.isnan(set_ap) and set_ap > single + margin


def round_seed(seed: int, n: int) -> int:
    """The residual search seed of round ``n`` (1, 2, ...) of a category searched with ``seed``."""
    return (int(seed) + 7919 * n) % (1 << 32)


# ------------------------------------------------------------------------------ the builder
@dataclass
class SetRound:
    """One round of the set builder.

    Attributes:
        n_targets, uncovered: train targets, and those the set missed before the round.
        searched: a residual search ran (else ``stop`` says why not).
        tried: sequences scored merged with the set.
        pick: the alias added (None: none raised the set's train AP), after pruning.
        pruned: the inert tokens dropped from it, in the order dropped.
        set_ap: the set's merged train AP after the round.
        stop: why the builder stopped after this round ("" when it went on).
    """

    n_targets: int
    uncovered: int
    searched: bool = False
    tried: int = 0
    pick: Seq | None = None
    pruned: tuple[int, ...] = ()
    set_ap: float = math.nan
    stop: str = ""

    def to_dict(self, decode: Callable[[Seq], str]) -> dict:
        return {
            "n_targets": self.n_targets,
            "uncovered": self.uncovered,
            "searched": self.searched,
            "tried": self.tried,
            "pick": None if self.pick is None else {"token_ids": list(self.pick), "text": decode(self.pick)},
            "pruned": list(self.pruned),
            "set_train_ap": self.set_ap,
            "stop": self.stop,
        }


@dataclass
class AliasSetResult:
    """What the set builder chose.

    Attributes:
        members: the aliases (the first search's winner first where it is one); one when no set was kept.
        member_metrics: each member's train metrics alone.
        metrics: the result's train metrics (merged when ``kept``; else the single alias's).
        single_ap: the single alias's train AP.
        built: the best set built (kept or not), built_ap its merged train AP.
        cover: the cover set (``greedy_cover``, pruned), cover_ap its merged train AP (NaN if none).
        split_pool: the insertions into the name that joined the cover pool (``best_splits``).
        clusters: the searches of the targets' two visual clusters, whose candidates joined the cover
            pool (None with ``cfg.set_clusters`` off).
        cluster_split: the name's insertions screened per visual cluster that joined the cover pool
            (None where ``cfg.set_cluster_split`` is 0 or the single alias's precision did not call for it).
        set_vs_single: the built set's train AP minus the single alias's with its bootstrap interval (None
            if not checked: no set, not past ``margin``, or ``set_level`` 0).
        kept: the set beat the single alias by more than ``margin`` (``cfg.set_margin``) and by a paired
            bootstrap win over the train images (``set_vs_single``).
        rounds: each round.
        searches: the residual searches' outcomes.
        usage: their work plus the merged scoring's pair forwards; wall_time: seconds.
    """

    members: list[Seq]
    member_metrics: list[PromptMetrics]
    metrics: PromptMetrics
    single_ap: float
    built: list[Seq]
    built_ap: float
    kept: bool
    margin: float = 0.0
    cover: list[Seq] = field(default_factory=list)
    cover_ap: float = math.nan
    split_pool: list[Seq] = field(default_factory=list)
    clusters: ClusterSearch | None = None
    cluster_split: ClusterSplit | None = None
    set_vs_single: BootstrapDiff | None = None
    rounds: list[SetRound] = field(default_factory=list)
    searches: list[SearchOutcome] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    wall_time: float = 0.0

    def to_dict(self, decode: Callable[[Seq], str]) -> dict:
        """The record's ``extra["alias_set_search"]``."""
        return {
            "kept": self.kept,
            "single_train_ap": self.single_ap,
            "built": [{"token_ids": list(s), "text": decode(s)} for s in self.built],
            "built_train_ap": self.built_ap,
            "margin": self.margin,
            "cover": [{"token_ids": list(s), "text": decode(s)} for s in self.cover],
            "cover_train_ap": self.cover_ap,
            "split_pool": [decode(s) for s in self.split_pool],
            "clusters": None if self.clusters is None else self.clusters.to_dict(decode),
            "cluster_split": None if self.cluster_split is None else self.cluster_split.to_dict(decode),
            "set_vs_single": None if self.set_vs_single is None else self.set_vs_single.to_dict(),
            "rounds": [r.to_dict(decode) for r in self.rounds],
            **{f"set_{k}": v for k, v in self.usage.as_dict().items()},
            "set_wall_time": round(self.wall_time, 3),
        }


def _predict_missing(backend, feats, images, seqs, preds: dict[Seq, Preds], thresholds) -> int:
    """Predict the ``seqs`` not yet in ``preds`` on ``images`` (one batch) and store them; returns the
    pair forwards spent."""
    new = [s for s in dict.fromkeys(tuple(s) for s in seqs) if s not in preds]
    for s, p in zip(new, predict(backend, feats, images, [list(s) for s in new], thresholds)):
        preds[s] = p
    return len(new) * len(images)


def _prune_addition(backend, feats, images, current, preds, pick, pick_metrics, chosen, tolerance, thresholds):
    """``pick`` with its inert tokens dropped: each removal may lower the merged set's train AP by at
    most ``tolerance``; a pruned sequence that is already a member is not taken. Fills ``preds``.

    Returns:
        (the addition, dropped token ids, the set's metrics with it, pair forwards spent)
    """
    spent = 0

    def set_ap(seqs: Sequence[Seq]) -> list[float]:
        nonlocal spent
        spent += _predict_missing(backend, feats, images, seqs, preds, thresholds)
        return [
            -1.0 if tuple(s) in chosen else _ap(merged_metrics([*current, preds[tuple(s)]], images, thresholds))
            for s in seqs
        ]

    res = prune_inert(pick, set_ap, tolerance, base=_ap(pick_metrics))
    if not res.dropped:
        return pick, (), pick_metrics, spent
    seq = tuple(res.seq)
    return seq, tuple(res.dropped), merged_metrics([*current, preds[seq]], images, thresholds), spent


COVER_MIN_SCORE = 0.05  # the cover search ranks sets on detections above this score (exact metrics after)


def above(pred: ImagePredictions, min_score: float) -> ImagePredictions:
    """``pred`` without its detections scoring at most ``min_score`` (scores stay best first). A set's
    merge is a mask NMS over all its members' detections, at least 100 per image each; the cover search
    merges hundreds of sets, and the tail below 0.05 moves their AP by little."""
    keep = np.flatnonzero(pred.scores > min_score)
    if len(keep) == len(pred.scores):
        return pred
    return ImagePredictions(
        scores=pred.scores[keep], rles=[pred.rles[i] for i in keep], height=pred.height, width=pred.width
    )


def best_splits(trimmed: Mapping[Seq, Preds], images: Sequence[TargetImage], n: int, thresholds=DEFAULT_THRESHOLDS):
    """The ``n`` of ``trimmed``'s sequences with the best train AP alone, best first (ties: their order)."""
    seqs = list(trimmed)
    aps = [merged_ap([trimmed[s]], images, thresholds) for s in seqs]
    return [seqs[i] for i in np.argsort(-np.asarray(aps, dtype=float), kind="stable")[:n]]


def _cover_set(backend, feats, images, first, preds, cfg, thresholds, extra=()):
    """The cover set among ``first.candidates[: cfg.set_pool]``, the clusters' candidates ``extra`` and
    the ``cfg.set_split`` best of ``first.splits`` by train AP (``greedy_cover`` on their detections above
    ``COVER_MIN_SCORE``; the metrics returned are exact), each member then without its inert tokens
    (``prune_inert`` against the merged set's train AP). Fills ``preds``.

    Returns:
        (members, their merged metrics or None, pair forwards spent, the insertions that joined the pool)
    """
    pool = [tuple(s) for s in dict.fromkeys([*(tuple(s) for s in first.candidates[: cfg.set_pool]), *extra])]
    splits = [s for s in dict.fromkeys(tuple(s) for s in first.splits) if s not in pool]
    spent = _predict_missing(backend, feats, images, pool + splits, preds, thresholds)
    trimmed = {s: [above(p, COVER_MIN_SCORE) for p in preds[s]] for s in pool + splits}
    joined = best_splits({s: trimmed[s] for s in splits}, images, cfg.set_split, thresholds) if splits else []
    pool += joined
    trimmed = {s: trimmed[s] for s in pool}
    cover, _ = greedy_cover(trimmed, images, cfg.max_aliases, thresholds, cfg.set_margin)
    m = merged_metrics([preds[s] for s in cover], images, thresholds) if cover else None
    if not cover or cfg.prune_tolerance < 0:
        return cover, m, spent, joined
    for i, seq in enumerate(list(cover)):
        if len(seq) < 2:
            continue
        others = cover[:i] + cover[i + 1 :]
        seq, _, m, cost = _prune_addition(
            backend, feats, images, [preds[s] for s in others], preds, seq, m, others, cfg.prune_tolerance, thresholds
        )
        spent += cost
        cover[i] = seq
    return cover, m, spent, joined


def build_alias_set(
    backend: Sam3Backend,
    images: Sequence[TargetImage],
    feats: ImageFeatures,
    name: str | None,
    cfg: SearchConfig,
    seed: int,
    first: SearchOutcome,
    indexes: Mapping | None = None,
    on_step: Callable[[Step], None] | None = None,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> AliasSetResult:
    """Grow an alias set from ``first``'s winner on the train ``images`` (see the module doc).

    Args:
        backend: the frozen SAM 3; images, feats: the train images the first search ran on.
        name: the category's name (the residual searches re-rank it as they do).
        cfg: the search settings (``max_aliases``, ``set_margin``, ``set_min_uncovered``).
        seed: the first search's seed (round ``n`` searches with ``round_seed(seed, n)``).
        first: the single-alias search's outcome (its ``token_ids`` must be set).
        indexes, on_step: passed to each residual search (its steps' phases prefixed ``set<n>:``).
    """
    if first.token_ids is None:
        raise ValueError("the single-alias search found no candidate")
    t0 = time.perf_counter()
    single = tuple(first.token_ids)
    usage = Usage(forward=len(images))
    preds: dict[Seq, Preds] = {single: predict(backend, feats, images, [list(single)], thresholds)[0]}
    chosen = [single]
    metrics = {single: merged_metrics([preds[single]], images, thresholds)}
    set_metrics = metrics[single]
    rounds: list[SetRound] = []
    searches: list[SearchOutcome] = []
    for n in range(1, cfg.max_aliases):
        current = [preds[s] for s in chosen]
        plan = residual_plan(images, merged(current, thresholds), cfg.set_min_uncovered, thresholds)
        rnd = SetRound(plan.n_targets, plan.uncovered, set_ap=set_metrics.ap)
        rounds.append(rnd)
        if plan.reason:
            rnd.stop = plan.reason
            break
        out = search(
            backend,
            plan.images,
            feats.select(plan.index),
            name,
            cfg,
            round_seed(seed, n),
            indexes=indexes,
            on_step=tagged(on_step, f"set{n}:"),
        )
        searches.append(out)
        usage = usage + out.usage
        rnd.searched = True
        pool = [r.token_ids for r in out.reranked] + out.candidates[: cfg.rerank] + first.candidates[: cfg.rerank]
        fresh = [tuple(s) for s in dict.fromkeys(tuple(s) for s in pool) if tuple(s) not in chosen]
        usage = usage + Usage(forward=_predict_missing(backend, feats, images, fresh, preds, thresholds))
        ranked = rank_additions(current, {s: preds[s] for s in fresh}, images, thresholds)
        rnd.tried = len(ranked)
        if not ranked or _ap(ranked[0][1]) <= _ap(set_metrics):
            rnd.stop = "no candidate raises the set's train AP"
            break
        rnd.pick, set_metrics = ranked[0]
        if cfg.prune_tolerance >= 0 and len(rnd.pick) > 1:
            rnd.pick, rnd.pruned, set_metrics, cost = _prune_addition(
                backend, feats, images, current, preds, rnd.pick, set_metrics, chosen, cfg.prune_tolerance, thresholds
            )
            usage = usage + Usage(forward=cost)
        rnd.set_ap = set_metrics.ap
        chosen.append(rnd.pick)
    cover, cover_metrics, joined, clusters, split = [], None, [], None, None
    if cfg.set_pool and cfg.max_aliases > 1:
        if cfg.set_clusters:
            clusters = search_clusters(backend, images, feats, name, cfg, seed, indexes, on_step)
            usage = usage + clusters.usage()
        if cfg.set_cluster_split and wants_split(metrics[single], cfg.set_cluster_precision):
            split = cluster_insertions(backend, images, feats, name, cfg, seed, cfg.set_cluster_split, indexes)
            usage = usage + Usage(forward=split.forwards)
        extra = clusters.candidates(cfg.rerank) if clusters is not None else []
        extra += split.candidates() if split is not None else []
        cover, cover_metrics, cost, joined = _cover_set(backend, feats, images, first, preds, cfg, thresholds, extra)
        usage = usage + Usage(forward=cost)
        if cover and _ap(cover_metrics) > _ap(set_metrics):
            chosen, set_metrics = cover, cover_metrics
    for s in chosen:
        if s not in metrics:
            metrics[s] = merged_metrics([preds[s]], images, thresholds)
    kept = chosen != [single] and keep_set(metrics[single].ap, set_metrics.ap, cfg.set_margin)
    set_diff = None
    if kept and cfg.set_level:
        set_diff = set_vs_single([preds[s] for s in chosen], preds[single], images, cfg.set_level, seed, thresholds)
        kept = set_diff is None or set_diff.verdict() == "win"
    if kept and single in chosen:  # the single alias stays first where it is a member
        chosen = [single] + [s for s in chosen if s != single]
    members = chosen if kept else [single]
    return AliasSetResult(
        members=members,
        member_metrics=[metrics[s] for s in members],
        metrics=set_metrics if kept else metrics[single],
        single_ap=metrics[single].ap,
        built=chosen,
        built_ap=set_metrics.ap,
        kept=kept,
        margin=cfg.set_margin,
        cover=cover,
        cover_ap=cover_metrics.ap if cover_metrics is not None else math.nan,
        split_pool=joined,
        clusters=clusters,
        cluster_split=split,
        set_vs_single=set_diff,
        rounds=rounds,
        searches=searches,
        usage=usage,
        wall_time=time.perf_counter() - t0,
    )
