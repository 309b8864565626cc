"""Run a strategy: the one search pipeline of discovery, the comparison and tuning.

    outcome = search(backend, train_images, feats, "red square", cfg, seed=search_seed(0, 3), budget=0)

Per (target set, seed): seed numpy and torch, make the ``SearchContext``, score the natural name,
run the strategy's phases (``alias_opt.search.strategies``) under the budget (0: none; then each phase
runs its configured work once), and re-rank the best ``rerank`` candidates and the name by train-split
COCO AP: the best AP wins, and within ``rerank_tolerance`` of it the most readable (fewest word pieces
and non-ASCII tokens, ``alias_opt.search.prune.readability``), then the lowest loss (shorter on ties);
the name stays first unless the best beats its train AP by more than ``name_margin`` (a small train
split rewards candidates that fit it by chance; a good name should not lose to one).
Then, for a name the model knows, the name's words the winner lacks are put back where that costs at most
``restore_tolerance`` of train AP (``restore_words``: a small train split cannot tell "huge teal" from "huge teal
cross", the annotator's word can), and the winner's inert tokens are dropped (``prune_inert``: each
removal may cost at most ``prune_tolerance`` of train AP against the winner's), so every token of an
alias earns its place (the name's own tokens are kept: ``prune_keep_name``). For a name the model does not know,
the winner is then sharpened on the extra negatives (``alias_opt.search.sharpen``: a chance token replaced by a
word, then the size word ~20 train images cannot ask for).
Under a budget the re-ranking's forwards are kept back from the phases (unless they would take half of
it) and the last phase restarts until the rest is spent.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from alias_opt.config import SearchConfig
from alias_opt.eval.metrics import PromptMetrics
from alias_opt.eval.predict import predict
from alias_opt.search.context import KeptSoft, SearchContext, known_name, make_context
from alias_opt.search.embeddings import VocabularyIndex
from alias_opt.search.meter import TracePoint, Usage
from alias_opt.search.name_check import NameCheck, check_level, wide_name_check
from alias_opt.search.objective import Seq, Step
from alias_opt.search.phase_result import PhaseResult, until_spent
from alias_opt.search.phases import PHASES
from alias_opt.search.prune import prune_inert, readability, restore_words
from alias_opt.search.sharpen import Sharpening, sharpen
from alias_opt.search.soft_prompt import SoftResult
from alias_opt.search.strategies import get_strategy
from alias_opt.search.synonyms import SynonymTest, synonym_first
from sam3 import ImageFeatures, Sam3Backend


def search_seed(seed: int, category_id: int) -> int:
    """The search seed of (seed, category): numpy, torch and the objective are seeded with it."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{category_id}".encode()).digest()[:4], "little")


@dataclass
class RerankRow:
    """One re-ranked candidate."""

    token_ids: Seq  # the candidate
    train_ap: float  # its train-split COCO AP (NaN without positives)
    loss: float  # its full-train loss (inf if never fully scored)
    metrics: PromptMetrics  # its train metrics
    wide_ap: float | None = None  # its AP over the train images and the extra negatives (wide_rerank), if scored

    @property
    def rank_ap(self) -> float:
        """The AP the re-ranking orders by: the wide AP where scored, else the train AP."""
        return self.train_ap if self.wide_ap is None else self.wide_ap

    def to_dict(self, text: str | None = None) -> dict:
        row: dict = {"token_ids": list(self.token_ids)}
        if text is not None:
            row["text"] = text
        row.update(train_ap=self.train_ap, loss=self.loss if math.isfinite(self.loss) else None)
        if self.wide_ap is not None:
            row["wide_ap"] = self.wide_ap
        return row


@dataclass
class SearchOutcome:
    """What one search found and spent.

    Attributes:
        strategy: the strategy run.
        token_ids: the alias (None if the budget bought no candidate).
        chose_name: the natural name won the re-ranking.
        loss: the alias's full-train loss (inf if none).
        train_metrics: the alias's train metrics (None if the budget left no re-ranking).
        name_ids: the name's tokens if it was a candidate (all allowed), else None.
        name_train_metrics: the name's train metrics if it was re-ranked.
        shortlist: the concept's shortlist (empty if the strategy built none).
        phases: every phase's result, in order.
        reranked: the re-ranked candidates, best first.
        candidates: the best fully scored sequences after re-ranking (up to 32).
        usage: work done (pair forwards, backwards, candidates, memo hits).
        wall_time: seconds.
        soft: the last soft-prompt phase's result (its ``soft`` embeddings), if any.
        kept_soft: the ``soft`` phase's kept prompt, if any.
        trace: improvements of the best fully scored sequence, with their cost.
        restored: the name's tokens put back into the re-ranking's winner (``restore_words``), in order.
        pruned: tokens dropped from the re-ranking's winner as inert, in the order dropped.
        splits: the best one-token insertions into the name by screening loss (``SearchContext.splits``),
            asked for by the first search of an alias set (the cover set's union members); else [].
        insertions: the name's one-token insertions of the pool's first tokens (``SearchContext.insertions``,
            unscreened), asked for by the first search of an alias set (``alias_opt.search.pairs``); else [].
        name_check: the re-ranking's winner checked against a known name (``alias_opt.search.name_check``;
            None where not checked: the name won, is unknown or absent, or ``name_level`` is 0).
        synonym_tests: the re-ranked rows' synonym tests (each row pruned first), in order
            (``alias_opt.search.synonyms``); a passing last one went first.
        sharpening: the winner sharpened on the extra negatives (``alias_opt.search.sharpen``; None where it
            did not apply: a known name, or none given).
    """

    strategy: str
    token_ids: Seq | None
    chose_name: bool
    loss: float
    train_metrics: PromptMetrics | None
    name_ids: Seq | None
    name_train_metrics: PromptMetrics | None
    shortlist: list[int]
    phases: list[PhaseResult]
    reranked: list[RerankRow]
    candidates: list[Seq]
    usage: Usage
    wall_time: float
    soft: SoftResult | None = None
    kept_soft: KeptSoft | None = None
    trace: list[TracePoint] = field(default_factory=list)
    restored: tuple[int, ...] = ()
    pruned: tuple[int, ...] = ()
    splits: list[Seq] = field(default_factory=list)
    insertions: list[Seq] = field(default_factory=list)
    name_check: NameCheck | None = None
    synonym_tests: list[SynonymTest] = field(default_factory=list)
    sharpening: Sharpening | None = None


def search(
    backend: Sam3Backend,
    images: Sequence,
    feats: ImageFeatures,
    name: str | None,
    cfg: SearchConfig,
    seed: int,
    budget: int | None = None,
    strategy: str | None = None,
    indexes: Mapping[str, VocabularyIndex] | None = None,
    on_step: Callable[[Step], None] | None = None,
    splits: int = 0,
    insertions: int = 0,
    extra_negatives: Sequence = (),
) -> SearchOutcome:
    """Run ``strategy`` (default ``cfg.strategy``) on one target set's train images.

    Args:
        backend: the frozen SAM 3.
        images: train images (``TargetImage``) with at least one positive; feats: their features.
        name: the category's name (None if nameless).
        cfg: the search settings.
        seed: the search seed (``search_seed(cfg.seed, category_id)``).
        budget: forward-equivalents (default ``cfg.budget``; 0: none).
        strategy: a registry name (default ``cfg.strategy``).
        indexes: vocabulary indexes by space (built on first use where missing).
        on_step: called with every recorded step (e.g. a JSONL writer).
        splits: also return this many insertions into the name (``SearchOutcome.splits``; 0: none).
        insertions: also return the name's insertions of this many pool tokens (``SearchOutcome.insertions``).
        extra_negatives: images without the category the name check reads too (``TargetSet.extra_negatives``).

    Returns:
        the SearchOutcome.
    """
    torch.manual_seed(seed)
    ctx = make_context(backend, images, feats, name, cfg, seed, indexes, on_step, extra_negatives)
    return run_pipeline(ctx, strategy or cfg.strategy, cfg.budget if budget is None else budget, splits, insertions)


def rerank_reserve(cfg: SearchConfig, n_images: int, budget: int, with_name: bool, n_extra: int = 0) -> int:
    """Forward passes kept back for the final re-ranking and the name check on the train images and
    ``n_extra`` further negatives: the check's share only where both fit in half the budget, the
    re-ranking's only where it does (else none)."""
    need = (cfg.rerank + int(with_name)) * n_images
    check = 2 * bool(cfg.name_level) * int(with_name) * (n_images + n_extra)
    if 0 < need + check <= budget // 2:
        return need + check
    return need if 0 < need <= budget // 2 else 0


def run_pipeline(
    ctx: SearchContext, strategy: str, budget: int = 0, splits: int = 0, insertions: int = 0
) -> SearchOutcome:
    """Score the name, run ``strategy``'s phases on ``ctx`` within ``budget``, re-rank (see the module doc);
    with ``splits``, also the best insertions into the name (within what the budget leaves)."""
    plan = get_strategy(strategy)
    if budget < 0:
        raise ValueError(f"the budget must be >= 0 forward-equivalents; got {budget}")
    obj, cfg = ctx.obj, ctx.cfg
    t0, u0 = time.perf_counter(), obj.usage()
    ctx.budget, ctx.start = int(budget), obj.spent
    if budget:
        obj.set_budget(ctx.start + budget - rerank_reserve(cfg, obj.n_images, budget, ctx.name_seq is not None))
    with until_spent():
        if ctx.name_seq is not None:
            obj.score([ctx.name_seq], screen=False)
            if budget and cfg.name_level and ctx.extra_negatives and ctx.knows_name():  # the check reads them too
                n_extra = len(ctx.extra_negatives)
                obj.set_budget(ctx.start + budget - rerank_reserve(cfg, obj.n_images, budget, True, n_extra))
    for i, phase in enumerate(plan.phases):
        ctx.last = i == len(plan.phases) - 1
        res = None
        with until_spent():
            res = PHASES[phase](ctx)
        if res is not None:
            ctx.results.append(res)
    if budget:
        obj.set_budget(ctx.start + budget)
    rows, pool = _rerank(ctx)
    tidy = (lambda r: _prune(ctx, r)[0] if len(r.token_ids) > 1 else r) if cfg.prune_tolerance >= 0 else (lambda r: r)
    rows, synonym_tests = synonym_first(ctx, rows, ctx.train_aps, tidy)  # unknown names: words over chance fits
    restored: tuple[int, ...] = ()
    restore = rows and cfg.restore_tolerance >= 0 and ctx.name_seq is not None and rows[0].token_ids != ctx.name_seq
    if restore and ctx.knows_name():
        row, restored = _restore(ctx, rows[0])
        if restored:
            rows = [row] + [r for r in rows if r.token_ids != row.token_ids]
    pruned: tuple[int, ...] = ()
    if rows and cfg.prune_tolerance >= 0 and rows[0].token_ids != ctx.name_seq and len(rows[0].token_ids) > 1:
        row, pruned = _prune(ctx, rows[0])
        if pruned:
            rows = [row] + [r for r in rows if r.token_ids != row.token_ids]
    sharp = sharpen(ctx, rows[0].token_ids) if rows and rows[0].token_ids != ctx.name_seq else None
    if sharp is not None and sharp.seq != rows[0].token_ids:  # an unknown name: sharpened on the extra negatives
        row = _row(ctx, sharp.seq, "sharpened", added=list(sharp.added))
        rows = [row] + [r for r in rows if r.token_ids != row.token_ids]
    check = _check_name(ctx, rows)
    if check is not None and not check.departs:  # not clearly better than a known name: the name stays
        rows.insert(0, rows.pop(next(i for i, r in enumerate(rows) if r.token_ids == ctx.name_seq)))
    best = rows[0] if rows else None
    token_ids = best.token_ids if best else (pool[0] if pool else None)
    loss = obj.loss_of(token_ids) if token_ids else None
    obj.record(
        "rerank", 0, math.inf if loss is None else loss, candidates=len(rows), best_ap=best.train_ap if best else None
    )
    split_seqs: list[Seq] = []
    with until_spent():
        split_seqs = ctx.splits(splits)
    soft = next((r for r in reversed(ctx.results) if isinstance(r, SoftResult)), None)
    u = obj.usage()
    return SearchOutcome(
        strategy=strategy,
        token_ids=token_ids,
        chose_name=token_ids is not None and token_ids == ctx.name_seq and strategy != "name",
        loss=math.inf if loss is None else loss,
        train_metrics=best.metrics if best else None,
        name_ids=ctx.name_seq,
        name_train_metrics=next((r.metrics for r in rows if r.token_ids == ctx.name_seq), None),
        shortlist=ctx.built_shortlist(),
        phases=list(ctx.results),
        reranked=rows,
        candidates=([token_ids] if token_ids else []) + [p for p in pool if p != token_ids][:31],
        usage=Usage(
            u.forward - u0.forward, u.backward - u0.backward, u.candidates - u0.candidates, u.memo_hits - u0.memo_hits
        ),
        wall_time=time.perf_counter() - t0,
        soft=soft,
        kept_soft=ctx.kept_soft,
        trace=obj.trace,
        splits=split_seqs,
        insertions=ctx.insertions(insertions),
        restored=restored,
        pruned=pruned,
        name_check=check,
        synonym_tests=synonym_tests,
        sharpening=sharp,
    )


def _check_name(ctx: SearchContext, rows: Sequence[RerankRow]) -> NameCheck | None:
    """The re-ranking's winner against a known name on the train images and the extra negatives
    (``wide_name_check``, the two prompts' forwards charged to the budget); None where not checked (no winner,
    the name won, the name is unknown or was not re-ranked, ``name_level`` 0, or the budget is spent)."""
    obj, cfg = ctx.obj, ctx.cfg
    name_row = next((r for r in rows if r.token_ids == ctx.name_seq), None)
    if not cfg.name_level or name_row is None or rows[0] is name_row:
        return None
    extra = ctx.extra_negatives if obj.remaining() >= 2 * (obj.n_images + len(ctx.extra_negatives)) else ()
    cost = 2 * (obj.n_images + len(extra))  # where the budget cannot pay for the extra images, the train images
    if not known_name(name_row.metrics, cfg.known_name_ap) or obj.remaining() < cost:
        return None
    winner, name_seq = rows[0].token_ids, name_row.token_ids
    answer, name = predict(ctx.backend, obj.feats, obj.images, [list(winner), list(name_seq)])
    level = check_level([winner], name_seq, cfg.name_level, cfg.narrowing_level)
    check = wide_name_check(ctx.backend, [answer], name, obj.images, extra, [winner], name_seq, level, ctx.seed)
    obj.charge(cost)
    if check is not None:
        obj.record("name check", 0, rows[0].loss, diff=check.diff.to_dict(), name_kept=not check.departs)
    return check


def _row(ctx: SearchContext, seq: Seq, phase: str, **info) -> RerankRow:
    """The re-ranking row of an edited winner ``seq`` (its loss scored if new), recorded as ``phase``."""
    obj = ctx.obj
    if obj.loss_of(seq) is None:
        with until_spent():
            obj.score([seq], screen=False)
    loss = obj.loss_of(seq)
    m = ctx.train_metrics([seq])[0]
    obj.record(phase, 0, math.inf if loss is None else loss, train_ap=m.ap, **info)
    return RerankRow(seq, m.ap, math.inf if loss is None else loss, m)


def _restore(ctx: SearchContext, best: RerankRow) -> tuple[RerankRow, tuple[int, ...]]:
    """``best`` with the name's missing words put back (``restore_words``), and the tokens inserted."""
    train_ap = ctx.train_aps
    res = restore_words(
        best.token_ids,
        ctx.name_seq or (),
        train_ap,
        ctx.cfg.restore_tolerance,
        train_ap([best.token_ids])[0],
        ctx.cfg.max_len,
    )
    if not res.added:
        return best, ()
    return _row(ctx, res.seq, "restore", added=list(res.added), replaced=list(res.replaced)), res.added


def _prune(ctx: SearchContext, best: RerankRow) -> tuple[RerankRow, tuple[int, ...]]:
    """``best`` without its inert tokens (train AP, charged to the budget), and the tokens dropped."""
    train_ap = ctx.train_aps
    keep = tuple(ctx.name_seq or ()) if ctx.cfg.prune_keep_name else ()
    res = prune_inert(best.token_ids, train_ap, ctx.cfg.prune_tolerance, base=train_ap([best.token_ids])[0], keep=keep)
    if not res.dropped:
        return best, ()
    return _row(ctx, res.seq, "prune", dropped=list(res.dropped)), res.dropped


def rerank_order(
    rows: Sequence[RerankRow],
    name_seq: Seq | None,
    pieces: Callable[[Seq], tuple],
    tolerance: float,
    name_margin: float,
) -> list[RerankRow]:
    """The re-ranked rows, the answer first: the best train AP wins; within ``tolerance`` of it the
    most readable (``pieces``: a sort key, smaller is more readable), then the lowest loss, then the
    shorter; the name's row goes first when the best beats its train AP by at most ``name_margin``.
    A NaN train AP ranks as -1."""

    def ap(r: RerankRow) -> float:
        return r.rank_ap if not math.isnan(r.rank_ap) else -1.0

    if not rows:
        return []
    top = max(ap(r) for r in rows)
    out = sorted(rows, key=lambda r: (ap(r) < top - tolerance, pieces(r.token_ids), r.loss, len(r.token_ids), -ap(r)))
    name_row = next((r for r in out if r.token_ids == name_seq), None)
    if name_row is not None and ap(name_row) >= top - name_margin:  # not clearly beaten: the name stays
        out.remove(name_row)
        out.insert(0, name_row)
    return out


def _rerank(ctx: SearchContext) -> tuple[list[RerankRow], list[Seq]]:
    """The best ``rerank`` candidates (``synonym_rows`` for a name the model does not know, if more) and the
    name, re-ranked by train AP (as many as the budget pays for); returns the rows, best first, and the
    candidate pool by loss."""
    obj, cfg = ctx.obj, ctx.cfg
    ranked = [sq for sq, _ in obj.ranked()]
    # an unknown name's synonym test (alias_opt.search.synonyms) picks among synonym_rows rows, if more
    n = cfg.rerank if not cfg.synonyms or ctx.knows_name() else max(cfg.rerank, cfg.synonym_rows)
    pool = ranked[: max(1, n)]
    if cfg.extend_ranked and not ctx.knows_name():  # and the best by train AP so far (free: memoized)
        pool += [s for s in ctx.ap_ranked(n) if s not in pool]
    if ctx.name_seq is not None and obj.loss_of(ctx.name_seq) is not None and ctx.name_seq not in pool:
        pool.append(ctx.name_seq)
    if not pool and not ctx.budget:  # nothing scored (e.g. every candidate screened out): the best single
        with until_spent():
            obj.score([(ctx.ranked_singles()[0],)], screen=False)
        pool = [sq for sq, _ in obj.ranked(1)]
    metrics = ctx.train_metrics(pool)  # as many as the budget pays for (memoized: the singles' are free)
    if metrics[0] is None:
        return [], ranked
    rows = []
    for p, m in zip(pool, metrics):
        if m is not None:
            loss = obj.loss_of(p)
            rows.append(RerankRow(p, m.ap, math.inf if loss is None else loss, m))
    if cfg.wide_rerank and not ctx.knows_name():  # ranked with the extra negatives, where all are paid for
        wide = ctx.wide_aps([r.token_ids for r in rows])
        if rows and all(w is not None for w in wide):
            rows = [dataclasses.replace(r, wide_ap=w) for r, w in zip(rows, wide)]
    rows = rerank_order(
        rows,
        ctx.name_seq,
        lambda seq: readability(ctx.backend.tokenizer.token_strings(seq))[:2],
        cfg.rerank_tolerance,
        cfg.name_margin,
    )
    order = [r.token_ids for r in rows]
    return rows, order + [sq for sq in ranked if sq not in order]
