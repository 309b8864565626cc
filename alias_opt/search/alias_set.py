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
   train images (``rank_additions``), and the best joins the set if it raises the set's train AP by
   more than ``cfg.set_margin`` (else the builder stops: a member must earn its place), after it is
   tidied against the merged set's train AP (``tidy_addition``: the name's missing words put back,
   ``restore_tolerance``, then its inert tokens dropped, ``prune_tolerance``, the name's tokens kept, as
   for the single alias; -1 turns either off).

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
Where the single alias is too broad (``wants_split``: train precision below ``cfg.set_pair_precision``)
or misses enough train targets for a residual search (a union's member found alone), the pool also
takes the members of the best pairs of the name's insertions of the pool's first ``cfg.set_pair_tokens`` (128)
tokens, each scored on all train images and paired by an estimate of the merged AP50
(``alias_opt.search.pairs``: "star navy | star rose" for a "star" annotated on blue and pink stars), and
that cover set is built *first*: where it already wins (margin and bootstrap), no residual round runs, nor
where it lost and ``cfg.set_residual_after_pairs`` is off (the default). It is chosen on the train images
plus ``cfg.set_negatives`` of the name check's images without the category (``with_negatives``).
The cover set and its pool live in ``alias_opt.search.cover``; the pure steps named here
(``covered_targets`` ... ``best_member``) in ``alias_opt.search.set_steps``; the result in
``alias_opt.search.set_result``.
Its members lose their inert tokens as the rounds' picks do; the better of the two sets (train AP) is
the one built. A cover of one alias is a set too: the pool is scored on train anyway, and its best alias
may beat the first search's winner, which was re-ranked among ``cfg.rerank`` candidates only.

The built set is kept only where its merged train AP beats the single alias's by more than
``cfg.set_margin`` (``keep_set``) and (``set_vs_single``) the paired bootstrap interval over train
images of that difference lies above zero at ``cfg.set_level``: many candidates are merged on a small
train split, so a margin alone lets a chance fit through. Otherwise the result is the single alias.
Then every member earns its place (``best_member``, ``cfg.set_member_single``): a member alone replaces
the answer where it beats a single alias's train AP by more than ``cfg.set_margin``, or comes within
``cfg.set_margin`` of a kept set's (a residual search, on the missed targets, can find a better alias
than the first search did).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from alias_opt.config import SearchConfig
from alias_opt.data.targets import TargetImage
from alias_opt.eval.metrics import DEFAULT_THRESHOLDS, Thresholds
from alias_opt.eval.predict import predict
from alias_opt.search.context import known_name
from alias_opt.search.cover import (
    CoverStep,
    Preds,
    ap_of,
    cover_step,
    merged,
    merged_metrics,
    predict_missing,
    tidy_addition,
    with_negatives,
)
from alias_opt.search.meter import Usage
from alias_opt.search.name_check import check_level, wide_name_check
from alias_opt.search.objective import Seq, Step, tagged
from alias_opt.search.pipeline import SearchOutcome, search
from alias_opt.search.set_result import AliasSetResult, SetRound
from alias_opt.search.set_steps import (
    best_member,
    keep_set,
    rank_additions,
    residual_plan,
    round_seed,
    set_vs_single,
    wants_split,
)
from sam3 import ImageFeatures, Sam3Backend

__all__ = ["AliasSetResult", "SetRound", "build_alias_set", "set_wins"]


def set_wins(preds, single, chosen, set_metrics, single_metrics, images, cfg, seed, thresholds):
    """Whether the set ``chosen`` (merged train metrics ``set_metrics``) is kept over the single alias:
    past ``cfg.set_margin`` and, with ``cfg.set_level``, a paired bootstrap win over the train images.

    Returns:
        (kept, the bootstrap or None where not checked)
    """
    if chosen == [single] or not keep_set(single_metrics.ap, set_metrics.ap, cfg.set_margin):
        return False, None
    if not cfg.set_level:
        return True, None
    diff = set_vs_single([preds[s] for s in chosen], preds[single], images, cfg.set_level, seed, thresholds)
    return diff is None or diff.verdict() == "win", diff


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
    extra_negatives: Sequence[TargetImage] = (),
) -> AliasSetResult:
    """Grow an alias set from ``first``'s winner on the train ``images`` (see the module doc).

    Args:
        backend: the frozen SAM 3; images, feats: the train images the first search ran on.
        name: the category's name (the residual searches re-rank it as they do).
        cfg: the search settings (``max_aliases``, ``set_margin``, ``set_min_uncovered``).
        seed: the first search's seed (round ``n`` searches with ``round_seed(seed, n)``).
        first: the single-alias search's outcome (its ``token_ids`` must be set).
        indexes, on_step: passed to each residual search (its steps' phases prefixed ``set<n>:``).
        extra_negatives: images without the category the name check reads besides ``images``.
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
    # the name's insertions are paired (alias_opt.search.pairs) where the single alias is too broad (it fires
    # on much that is not annotated) or misses enough for a residual search: a union's member found alone
    # ("violet" for purple squares and triangles) leaves the other to find. That cover set is built first;
    # where it already wins, no residual search runs (they cost ~30-90 s a category)
    sets_on = bool(cfg.set_pool) and cfg.max_aliases > 1
    broad = sets_on and wants_split(metrics[single], cfg.set_cluster_precision)  # for the cluster insertions
    pair_broad = sets_on and wants_split(metrics[single], cfg.set_pair_precision)
    missed = not residual_plan(images, preds[single], cfg.set_min_uncovered, thresholds).reason
    # ... and only where the model knows the name (its train AP reaches known_name_ap): a never-trained
    # name (renamed) finds nothing, so its insertions have nothing to split (renamed 4646: no pair ever won)
    known = known_name(first.name_train_metrics, cfg.known_name_ap)
    paired = sets_on and bool(first.insertions) and (pair_broad or missed) and known
    covered, skip, n_train, negatives = None, "", len(images), ()
    if paired and cfg.set_negatives and extra_negatives:  # the cover set is chosen with more negatives
        negatives, extra_negatives = extra_negatives[: cfg.set_negatives], extra_negatives[cfg.set_negatives :]
        images, feats, preds, spent = with_negatives(backend, images, feats, preds, negatives, thresholds)
        metrics = {single: merged_metrics([preds[single]], images, thresholds)}
        set_metrics, usage = metrics[single], usage + Usage(forward=spent)
    if paired:
        covered = cover_step(
            backend, images, feats, name, cfg, seed, first, preds, indexes, on_step, thresholds, broad, paired
        )
        usage = usage + covered.usage
        won = (
            covered.metrics is not None
            and set_wins(
                preds, single, covered.members, covered.metrics, metrics[single], images, cfg, seed, thresholds
            )[0]
        )
        if won:
            skip = "the cover set with the pairs of the name's insertions already wins"
        elif not cfg.set_residual_after_pairs:
            skip = "the pairs of the name's insertions were tried (set_residual_after_pairs off)"
    for n in range(1, cfg.max_aliases if not skip else 1):
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
            replace(cfg, extend_depth=1),  # the name finds little on the missed targets: no third word for it
            round_seed(seed, n),
            indexes=indexes,
            on_step=tagged(on_step, f"set{n}:"),
        )
        searches.append(out)
        usage = usage + out.usage
        rnd.searched = True
        pool = [r.token_ids for r in out.reranked] + out.candidates[: cfg.rerank] + first.candidates[: cfg.rerank]
        fresh = [tuple(s) for s in dict.fromkeys(tuple(s) for s in pool) if tuple(s) not in chosen]
        usage = usage + Usage(forward=predict_missing(backend, feats, images, fresh, preds, thresholds))
        ranked = rank_additions(current, {s: preds[s] for s in fresh}, images, thresholds)
        rnd.tried = len(ranked)
        # a member must earn its place, as in the cover set: a pick that raises the set's train AP by no
        # more than set_margin is not taken, and no further round runs (demo 2024: two such picks, +0.001
        # and +0.005, each followed by a second residual search of ~60 s that found nothing either)
        if not ranked or ap_of(ranked[0][1]) <= ap_of(set_metrics) + cfg.set_margin:
            rnd.stop = f"no candidate raises the set's train AP by more than {cfg.set_margin:g}"
            break
        rnd.pick, set_metrics = ranked[0]
        tidied = tidy_addition(
            backend, feats, images, current, preds, rnd.pick, set_metrics, chosen, first, cfg, thresholds
        )
        rnd.pick, rnd.restored, rnd.pruned, set_metrics = tidied.seq, tidied.added, tidied.dropped, tidied.metrics
        usage = usage + Usage(forward=tidied.forwards)
        rnd.set_ap = set_metrics.ap
        chosen.append(rnd.pick)
    if covered is None and not (cfg.set_pool and cfg.max_aliases > 1):
        covered = CoverStep([], None)
    elif covered is None:
        covered = cover_step(
            backend, images, feats, name, cfg, seed, first, preds, indexes, on_step, thresholds, broad, False
        )
        usage = usage + covered.usage
    cover, cover_metrics = covered.members, covered.metrics
    if cover and ap_of(cover_metrics) > ap_of(set_metrics):
        chosen, set_metrics = cover, cover_metrics
    for s in chosen:
        if s not in metrics:
            metrics[s] = merged_metrics([preds[s]], images, thresholds)
    kept, set_diff = set_wins(preds, single, chosen, set_metrics, metrics[single], images, cfg, seed, thresholds)
    first_single, tidied_alone = None, None
    if cfg.set_member_single and len(chosen) > 1:  # every member earns its place, and the best alone is tried
        answer = chosen if kept else [single]
        better = best_member(answer, chosen, metrics, (set_metrics if kept else metrics[single]).ap, cfg.set_margin)
        if better is not None:  # alone now, so tidied alone: a token it needed only beside the others goes
            pick = metrics[better]
            alone = tidy_addition(backend, feats, images, [], preds, better, pick, (), first, cfg, thresholds)
            usage, metrics[alone.seq] = usage + Usage(forward=alone.forwards), alone.metrics
            first_single, single, kept, tidied_alone = single, alone.seq, False, alone
    if kept and single in chosen:  # the single alias stays first where it is a member
        chosen = [single] + [s for s in chosen if s != single]
    members = chosen if kept else [single]
    name_seq = first.name_ids
    checked = None
    if known and name_seq is not None and tuple(first.token_ids) == name_seq and members != [name_seq]:
        # the first search kept a known name: a set or a member alone replaces it only by a clear train win; where
        # the first search's own winner was checked and turned down, this is a second look at the same images
        # (its cover pool holds other candidates), so at half the error rate (6565 "small triangle": "small kj"
        # turned down at 0.9, then "small gardeners" from the cover pool passed at 0.9 by +0.0006)
        looked = first.name_check is not None
        level = check_level(members, name_seq, cfg.name_level, cfg.narrowing_level)
        level = 1 - (1 - level) / 2 if looked else level
        answer = [preds[s] for s in members]
        checked = wide_name_check(
            backend, answer, preds[name_seq], images, extra_negatives, members, name_seq, level, seed, thresholds
        )
        usage = usage + Usage(forward=(len(members) + 1) * len(extra_negatives) if level else 0)  # 0: not checked
        if checked is not None and not checked.departs:
            single, first_single, tidied_alone, kept, members = name_seq, None, None, False, [name_seq]
    if negatives:  # the record's train metrics are on the train images alone, as the single alias's are
        images = images[:n_train]
        metrics = {s: merged_metrics([preds[s][:n_train]], images, thresholds) for s in {*members, single}}
        if kept:
            set_metrics = merged_metrics([preds[s][:n_train] for s in members], images, thresholds)
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
        cover_restored=covered.restored,
        split_pool=covered.joined,
        clusters=covered.clusters,
        cluster_split=covered.split,
        pairs=covered.pairs,
        insertions=len(first.insertions) if paired else 0,
        negatives=len(negatives),
        rounds_skipped=skip,
        set_vs_single=set_diff,
        first_single=first_single,
        single_added=tidied_alone.added if tidied_alone is not None else (),
        single_dropped=tidied_alone.dropped if tidied_alone is not None else (),
        name_check=checked,
        rounds=rounds,
        searches=searches,
        usage=usage,
        wall_time=time.perf_counter() - t0,
    )
