"""The cover set: narrowed candidates whose merged detections are the answer to a too-broad name.

A too-broad name ("cross" for the teal and the blue crosses) covers every target, so a residual search
(``alias_opt.search.alias_set``) has nothing left to find, while its narrowed candidates ("teal cross",
"blue cross") together are the answer. ``cover_step`` builds the pool (the first search's best
candidates, the name's insertions best by train AP, the clusters' candidates, the members of the best
pairs of the name's insertions: ``alias_opt.search.pairs``) and ``greedy_cover`` picks the set:

    step = cover_step(backend, images, feats, name, cfg, seed, first, preds, indexes, on_step, thr, broad)
    step.members, step.metrics                                   # the set, its merged train metrics

Also the shared pieces of the set builder: merging members' detections (``merged``, ``merged_metrics``,
``merged_ap``), predicting sequences once (``predict_missing``) and tidying a member against the merged
set (``tidy_addition``: the name's words put back, inert tokens dropped).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from alias_opt.data.targets import TargetImage
from alias_opt.eval.alias_sets import merge_split
from alias_opt.eval.bootstrap import ap_from_matches
from alias_opt.eval.boxes import predict_boxes, target_boxes
from alias_opt.eval.metrics import DEFAULT_THRESHOLDS, ImagePredictions, PromptMetrics, Thresholds, coco_matches
from alias_opt.eval.metrics import score_predictions as _score
from alias_opt.eval.predict import predict
from alias_opt.search.clusters import ClusterSearch, ClusterSplit, cluster_insertions, search_clusters
from alias_opt.search.context import known_name
from alias_opt.search.meter import Usage
from alias_opt.search.objective import Seq
from alias_opt.search.pairs import best_pairs, box_hits, image_hits, join, pair_members
from alias_opt.search.prune import prune_inert, restore_words
from sam3 import ImageFeatures

Preds = list[ImagePredictions]  # one prompt's (or a merged set's) predictions, one per image


def merged(parts: Sequence[Preds], thresholds: Thresholds = DEFAULT_THRESHOLDS) -> Preds:
    """(I,) predictions of a set whose members predicted ``parts`` ((k) x (I)): merged image by image."""
    return list(parts[0]) if len(parts) == 1 else merge_split(parts, thresholds.iou)


def merged_metrics(parts: Sequence[Preds], images: Sequence[TargetImage], thresholds=DEFAULT_THRESHOLDS):
    """Metrics of a set whose members predicted ``parts`` ((k) x (I) predictions) on ``images``."""
    return _score(merged(parts, thresholds), images, thresholds)


def ap_of(m: PromptMetrics | None) -> float:
    """The AP of ``m``; -1 for none or NaN (ranks below every set)."""
    return -1.0 if m is None or math.isnan(m.ap) else m.ap


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


def encode_targets(backend, images: Sequence[TargetImage]) -> ImageFeatures:
    """Image features of TargetImages, read in their JSON orientation (as ``alias_opt.discover.encode``)."""
    return backend.encode_images([im.image.load() for im in images])


def with_negatives(backend, images, feats, preds: dict[Seq, Preds], negatives, thresholds):
    """The train ``images`` and ``feats`` with ``negatives`` (images without the category) appended, and every
    sequence's predictions in ``preds`` extended to them (``cfg.set_negatives``: the pairs' cover set is chosen
    on both, where a too-broad name shows itself firing on what is not annotated).

    Args:
        images, feats: (I) train images and their features; preds: sequence -> (I,) predictions on them.
        negatives: (N) images without the category.

    Returns:
        (the I + N images, their features, sequence -> (I + N,) predictions, pair forwards spent)
    """
    if not negatives:
        return list(images), feats, dict(preds), 0
    neg_feats = encode_targets(backend, negatives)
    seqs = list(preds)
    more = predict(backend, neg_feats, negatives, [list(s) for s in seqs], thresholds)
    out = {s: [*preds[s], *m] for s, m in zip(seqs, more)}
    return [*images, *negatives], ImageFeatures.concat([feats, neg_feats]), out, len(seqs) * len(negatives)


def predict_missing(backend, feats, images, seqs, preds: dict[Seq, Preds], thresholds) -> int:
    """Predict the ``seqs`` not yet in ``preds`` on ``images`` (one batch) and store them; returns the
    pair forwards spent."""
    new = [s for s in dict.fromkeys(tuple(s) for s in seqs) if s not in preds]
    for s, p in zip(new, predict(backend, feats, images, [list(s) for s in new], thresholds)):
        preds[s] = p
    return len(new) * len(images)


def kept_tokens(first, cfg) -> tuple[int, ...]:
    """The tokens pruning never drops, as many times as the name holds them: the name's (``first.name_ids``),
    where ``cfg.prune_keep_name``."""
    return tuple(first.name_ids or ()) if cfg.prune_keep_name else ()


def restored_words(first, cfg) -> tuple[int, ...]:
    """The tokens a member gets back (``restore_words``): the name's, where the model knows the name
    (``known_name_ap``) and ``cfg.restore_tolerance`` is on; else none."""
    if cfg.restore_tolerance < 0 or not first.name_ids or not known_name(first.name_train_metrics, cfg.known_name_ap):
        return ()
    return tuple(first.name_ids)


@dataclass
class Tidied:
    """A set member after ``tidy_addition``.

    Attributes:
        seq: the member's token ids.
        added: the name's tokens put back (``restore_words``), in the order put back.
        replaced: the tokens they took the place of (at ``max_len``).
        dropped: the inert tokens dropped (``prune_inert``), in the order dropped.
        metrics: the merged set's train metrics with the member.
        forwards: pair forwards spent.
    """

    seq: Seq
    added: tuple[int, ...]
    replaced: tuple[int, ...]
    dropped: tuple[int, ...]
    metrics: PromptMetrics
    forwards: int


def tidy_addition(backend, feats, images, current, preds, pick, pick_metrics, chosen, first, cfg, thresholds) -> Tidied:
    """``pick`` with the name's missing words put back (``restore_words``, ``cfg.restore_tolerance``) and
    then its inert tokens dropped (``prune_inert``, ``cfg.prune_tolerance``; never the name's tokens,
    ``kept_tokens``), each step scored by the merged set's train AP (``current`` plus the pick); a
    sequence that is already a member (``chosen``) is not taken. Fills ``preds``."""
    spent = 0

    def set_ap(seqs: Sequence[Seq]) -> list[float]:
        nonlocal spent
        spent += predict_missing(backend, feats, images, seqs, preds, thresholds)
        return [
            -1.0 if tuple(s) in chosen else ap_of(merged_metrics([*current, preds[tuple(s)]], images, thresholds))
            for s in seqs
        ]

    seq, score, added, replaced, dropped = tuple(pick), ap_of(pick_metrics), (), (), ()
    words = restored_words(first, cfg)
    if words:
        res = restore_words(seq, words, set_ap, cfg.restore_tolerance, base=score, max_len=cfg.max_len)
        seq, score, added, replaced = res.seq, res.score, res.added, res.replaced
    if cfg.prune_tolerance >= 0 and len(seq) > 1:
        pruned = prune_inert(seq, set_ap, cfg.prune_tolerance, base=score, keep=kept_tokens(first, cfg))
        seq, dropped = pruned.seq, tuple(pruned.dropped)
    if seq == tuple(pick):
        return Tidied(seq, (), (), (), pick_metrics, spent)
    return Tidied(seq, added, replaced, dropped, merged_metrics([*current, preds[seq]], images, thresholds), spent)


PAIRS = 4  # the best pairs of a too-broad name's insertions (by estimated merged AP50) that join the cover pool
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


def cover_set(backend, feats, images, first, preds, cfg, thresholds, extra=()):
    """The cover set among ``first.candidates[: cfg.set_pool]``, the clusters' candidates ``extra`` and
    the ``cfg.set_split`` best of ``first.splits`` by train AP (``greedy_cover`` on their detections above
    ``COVER_MIN_SCORE``; the metrics returned are exact), each member then tidied against the merged set's
    train AP (``tidy_addition``: the name's words put back, inert tokens dropped). Fills ``preds``.

    Returns:
        A ``CoverStep`` with the members, their merged metrics (None without a cover), the insertions that
        joined the pool, the name's tokens put back into each member and the pair forwards spent.
    """
    pool = [tuple(s) for s in dict.fromkeys([*(tuple(s) for s in first.candidates[: cfg.set_pool]), *extra])]
    splits = [s for s in dict.fromkeys(tuple(s) for s in first.splits) if s not in pool]
    spent = predict_missing(backend, feats, images, pool + splits, preds, thresholds)
    trimmed = {s: [above(p, COVER_MIN_SCORE) for p in preds[s]] for s in pool + splits}
    joined = best_splits({s: trimmed[s] for s in splits}, images, cfg.set_split, thresholds) if splits else []
    pool += joined
    trimmed = {s: trimmed[s] for s in pool}
    cover, _ = greedy_cover(trimmed, images, cfg.max_aliases, thresholds, cfg.set_margin)
    m = merged_metrics([preds[s] for s in cover], images, thresholds) if cover else None
    restored = []
    for i, seq in enumerate(list(cover)):
        others = cover[:i] + cover[i + 1 :]
        current = [preds[s] for s in others]
        tidied = tidy_addition(backend, feats, images, current, preds, seq, m, others, first, cfg, thresholds)
        m, spent, cover[i] = tidied.metrics, spent + tidied.forwards, tidied.seq
        restored.append(tidied.added)
    return CoverStep(cover, m, joined=joined, restored=restored, usage=Usage(forward=spent))


@dataclass
class CoverStep:
    """The cover set and what its pool was built from (``cover_step``).

    Attributes:
        members: the cover set (pruned), metrics: its merged train metrics (None without one).
        joined: the insertions that joined the pool by train AP alone (``best_splits``).
        restored: per member, the name's tokens put back into it (``tidy_addition``), in the order put back.
        clusters, split: the cluster searches / cluster insertions (None where off).
        pairs: the best pairs of the name's insertions by estimated merged AP50 (``alias_opt.search.pairs``),
            whose members joined the pool ([] unless the single alias is too broad).
        usage: the pair forwards and searches it cost.
    """

    members: list[Seq]
    metrics: PromptMetrics | None
    joined: list[Seq] = field(default_factory=list)
    restored: list[tuple[int, ...]] = field(default_factory=list)
    clusters: ClusterSearch | None = None
    split: ClusterSplit | None = None
    pairs: list[tuple[Seq, Seq, float]] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)


def insertion_pairs(backend, feats, images, insertions, preds, thresholds, boxes=True):
    """The ``PAIRS`` best pairs of ``insertions`` (the name's, predicted here on all train ``images``)
    by ``pair_ap50`` on their detections above ``COVER_MIN_SCORE``, matched to the targets by box IoU
    (``boxes``: ``predict_boxes``, no masks, so no pixel decoder) or by mask IoU (only those
    detections' masks are computed: ``lean``; a pair member's full predictions are made when it joins the
    cover pool). ``preds`` is read, not filled.

    Returns:
        (the pairs with their estimates, pair forwards spent)
    """
    ins = [tuple(s) for s in dict.fromkeys(tuple(s) for s in insertions)]
    if boxes:
        found = predict_boxes(backend, feats, images, ins, COVER_MIN_SCORE)
        gt = [target_boxes(im) for im in images]
        hits = {s: join([box_hits(p, b, thresholds.iou) for p, b in zip(ps, gt)]) for s, ps in zip(ins, found)}
        return best_pairs(hits, PAIRS), len(ins) * len(images)
    trimmed = {s: [above(p, COVER_MIN_SCORE) for p in preds[s]] for s in ins if s in preds}
    spent = predict_missing(backend, feats, images, [s for s in ins if s not in trimmed], trimmed, lean(thresholds))
    hits = {s: join([image_hits(p, im, thresholds.iou) for p, im in zip(trimmed[s], images)]) for s in ins}
    return best_pairs(hits, PAIRS), spent


def lean(thresholds: Thresholds) -> Thresholds:
    """``thresholds`` that keep only the detections scoring above ``COVER_MIN_SCORE`` (no 100-detection
    floor): ``predict`` then upsamples and encodes a few masks per image instead of ``max_dets``."""
    return replace(thresholds, score=COVER_MIN_SCORE, max_dets=0)


def cover_step(backend, images, feats, name, cfg, seed, first, preds, indexes, on_step, thresholds, broad, paired):
    """The cover set (``cover_set``) over the first search's candidates and, where on, the cluster
    searches' candidates, the cluster insertions (where ``broad``) and the members of the best pairs of
    the name's insertions (where ``paired``). Fills ``preds``."""
    step, usage = CoverStep([], None), Usage()
    if cfg.set_clusters:
        step.clusters = search_clusters(backend, images, feats, name, cfg, seed, indexes, on_step)
        usage = usage + step.clusters.usage()
    if cfg.set_cluster_split and broad:
        step.split = cluster_insertions(backend, images, feats, name, cfg, seed, cfg.set_cluster_split, indexes)
        usage = usage + Usage(forward=step.split.forwards)
    extra = step.clusters.candidates(cfg.rerank) if step.clusters is not None else []
    extra += step.split.candidates() if step.split is not None else []
    if paired and first.insertions:
        step.pairs, cost = insertion_pairs(
            backend, feats, images, first.insertions, preds, thresholds, cfg.set_pair_boxes
        )
        extra += pair_members(step.pairs)
        usage = usage + Usage(forward=cost)
    found = cover_set(backend, feats, images, first, preds, cfg, thresholds, extra)
    return replace(found, clusters=step.clusters, split=step.split, pairs=step.pairs, usage=usage + found.usage)
