"""The phases a strategy is made of: small functions of a ``SearchContext`` that return a PhaseResult.

Each phase runs its configured amount of work once (``soft.steps``, ``evolution.generations``, ...),
as discovery always did. Under a budget two rules make every strategy use it fairly:

* a phase that is not the pipeline's last gets a share: the shortlist scan and the extension phase
  at most ``options.scan_share`` of the budget each; PEZ ends by ``options.soft_fraction`` of it;
* the pipeline's last phase restarts (from other shortlist heads, or from the best sequences so far)
  until the budget is spent or a restart spends nothing.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np

from alias_opt.search.context import KeptSoft, SearchContext
from alias_opt.search.discrete import (
    best_extensions,
    by_ap,
    deeper_plan,
    extend_each,
    extends_once,
    hard_images,
    name_first_bases,
    random_search,
    scan,
)
from alias_opt.search.evolution import Mutator, evolve, seed_population
from alias_opt.search.gcg import gcg, insertion_gradients, slot_insertions, top_tokens
from alias_opt.search.meter import BACKWARD_COST, BudgetExhausted
from alias_opt.search.objective import Seq
from alias_opt.search.phase_result import PhaseResult, PhaseTimer, until_spent
from alias_opt.search.projection import embed_prompts, random_sequences
from alias_opt.search.soft_prompt import SoftResult, initial_sequences, optimize_soft, soft_metrics

UNLIMITED = 10**9  # candidates when the budget is the only stop
STEP_PAIRS = 512  # pair forwards between two recorded steps of a long scoring call (progress and history)


@contextlib.contextmanager
def stepwise(obj, phase: str, pairs: int = STEP_PAIRS) -> Iterator[None]:
    """Inside the block, ``obj.losses`` scores new sequences about ``pairs`` pair forwards at a time and
    records a step after each chunk (``extra``: ``split`` "screen" or "full", ``scored``), so that a phase
    that scores thousands of candidates in one ``Objective.score`` call shows its passes as they are spent.

    The same sequences are scored in the same order with the same budget stops (a chunk that does not fit
    scores what fits and raises ``BudgetExhausted`` as the whole call would); only the batches are smaller.
    """
    whole = obj.losses
    n_steps = 0

    def losses(seqs, idx=None, subset=None):
        nonlocal n_steps
        n = obj.n_images if idx is None else len(idx)
        size = max(1, pairs // max(1, n))
        if len(seqs) <= size:
            return whole(seqs, idx, subset)
        parts = []
        for i in range(0, len(seqs), size):
            part = whole(seqs[i : i + size], idx, subset)
            parts.append(part)
            n_steps += 1
            split = "full" if n == obj.n_images else "screen"
            obj.record(phase, n_steps, float(np.min(part)), split=split, scored=len(part))
        return np.concatenate(parts)

    obj.losses = losses  # an instance attribute: Objective.score and screen_losses call it
    try:
        yield
    finally:
        del obj.losses


def _restarts(
    ctx: SearchContext, name: str, first: Callable[[], PhaseResult], again: Callable[[], PhaseResult | None]
) -> PhaseResult:
    """``first()``; as the budgeted pipeline's last phase, then ``again()`` until the budget is spent, a
    restart spends nothing or there is nothing left to restart from: one result over all runs."""
    if not ctx.restarting():
        return first()
    obj = ctx.obj
    timer = PhaseTimer(obj, name)
    res = first()
    seen = list(res.candidates)
    with until_spent():
        while not obj.exhausted:
            c0 = obj.spent
            res = again()
            if res is None:
                break
            seen += res.candidates
            if obj.spent == c0:
                break
    return timer.result(seen)


# ---------------------------------------------------------------------------------------- single tokens
def scan_phase(ctx: SearchContext) -> PhaseResult:
    """Score the first ``scan_size`` shortlist tokens as one-token aliases (screened), best first."""
    obj, s = ctx.obj, ctx.cfg
    tokens = ctx.shortlist()[: s.scan_size]
    if not ctx.budget:
        return scan(obj, tokens, ctx.filt, keep=s.scan_keep)
    share = (1.0 if ctx.last else s.options.scan_share) * ctx.budget
    tokens = tokens[: int(share // obj.screen_cost(s.scan_keep))]
    with ctx.share(share):
        return scan(obj, tokens, ctx.filt, keep=s.scan_keep)


def vocab_scan_phase(ctx: SearchContext) -> PhaseResult:
    """Every allowed single token, in the concept's vocabulary-index order, in chunks (until the budget
    is spent, with one)."""
    obj, o = ctx.obj, ctx.cfg.options
    timer = PhaseTimer(obj, "vocab-scan")
    order = ctx.vocabulary_order()
    start, seen = 0, []
    with until_spent():
        while start < len(order) and not obj.exhausted:
            # a chunk whose screening and full scoring still fit, so that the last chunks are scored too
            size = max(1, min(o.scan_chunk, int(min(obj.remaining(), 1e12) // obj.screen_cost())))
            seen += scan(obj, order[start : start + size], ctx.filt).candidates
            start += size
    return timer.result(seen)


def extend_phase(ctx: SearchContext) -> PhaseResult | None:
    """The natural name (when shorter than ``max_len``) and the best ``extend_bases`` singles by train AP,
    each extended by one token (appended, prepended or inserted): a too-broad name narrowed by one word
    ("red circle" -> "large red circle", "solid star" -> "solid blue star") is one candidate. The name is
    extended by the scanned shortlist (screened as qualifiers of the name), a single by the pool's tokens
    that best narrow it (``SearchContext.narrowing``; with ``extend_narrowing``, else the shortlist too);
    with ``extend_depth`` 2 and a name the model does not know, the best ``deep_bases`` singles are bases
    and each base's ``deep_beam`` best extensions are extended once more (``deeper_plan``), each pair's
    extensions screened apart on the images where that pair fails most (``hard_images``): on the objective's
    six screening images "scarlet hollow square" screens at 0.96, below 25% of its pair's extensions, while its
    full loss, 0.51, beats every triple kept (0.67; renamed 5656 "framed crimson tile"); with ``deep_grad`` a
    pair's insertions proposed by the loss gradient at a new slot are screened with them. None when
    ``extend_bases`` is 0."""
    s = ctx.cfg
    if not s.extend_bases:
        return None
    with ctx.share((1.0 if ctx.last else s.options.scan_share) * ctx.budget), stepwise(ctx.obj, "extend"):
        deeper = s.extend_depth > 1 and not ctx.knows_name()
        n_bases = max(s.extend_bases, s.deep_bases) if deeper else s.extend_bases
        singles = [(t,) for t in ctx.ranked_singles()[:n_bases]]
        bases = name_first_bases(ctx.name_seq, singles, s.max_len)
        short = ctx.shortlist()[: s.scan_size]
        narrow = s.extend_narrowing
        plan = [
            (b, ctx.narrowing(b, s.scan_size, s.extend_pool) if narrow and b != ctx.name_seq else short) for b in bases
        ]
        timer = PhaseTimer(ctx.obj, "extend")
        first = extend_each(ctx.obj, plan, ctx.filt)
        ranked = s.extend_ranked if deeper else 0  # a base's best pairs by loss, ranked by train AP
        bests = best_extensions(ctx.obj.loss_of, plan, max(s.deep_beam, ranked)) if deeper else []
        bests = by_ap(bests, ctx.train_aps, s.deep_beam) if ranked else [b[: s.deep_beam] for b in bests]
        second = deeper_plan(bests, plan, s.max_len, ctx.pool() if s.deep_tokens == "pool" else None)
        if not second:
            return first
        more: list[Seq] = []
        with until_spent():
            for entry in second:  # each pair's extensions screened apart, on the images where the pair fails
                hard = hard_images(ctx.obj.image_losses(entry[0]), ctx.obj.positive, len(ctx.obj.screen_idx))
                extra = gradient_insertions(ctx, entry[0], hard)
                more += extend_each(
                    ctx.obj, [entry], ctx.filt, screen_idx=hard, keep_n=s.deep_keep, extra=extra
                ).candidates
            if ranked:  # each pair's best triples by loss get their train AP (the re-ranking reads the best)
                full = [sq for sq, _ in ctx.obj.ranked()]
                ctx.train_aps([t for pair, _ in second for t in [c for c in full if extends_once(c, pair)][:ranked]])
        return timer.result(first.candidates + more, n=8)
    return None  # the share's budget was spent before a result


def gradient_insertions(ctx: SearchContext, pair: Seq, hard: np.ndarray) -> list[Seq]:
    """A depth-2 pair's ``deep_grad`` best insertions per gap by the loss gradient at a new slot, on the pair's
    hard images (``gcg.insertion_gradients``); [] with ``deep_grad`` 0."""
    if not ctx.cfg.deep_grad:
        return []
    scores = insertion_gradients(ctx.obj, pair, ctx.filt.allowed, hard)  # (len(pair) + 1, V)
    return slot_insertions(pair, top_tokens(scores, ctx.filt.allowed, ctx.cfg.deep_grad))


# ---------------------------------------------------------------------------------------- soft prompts
def _lengths(ctx: SearchContext) -> list[int]:
    s = ctx.cfg
    return [min(n, s.max_len) for n in s.soft.lengths] or [s.max_len]


def _inits(ctx: SearchContext, heads: list[int]) -> list[Seq]:
    s = ctx.cfg
    return initial_sequences(s.soft.inits, s.soft.restarts, _lengths(ctx), heads, ctx.name_seq, ctx.filt, ctx.rng)


def pez_phase(ctx: SearchContext) -> SoftResult:
    """PEZ (projected forward, continuous update) from the best singles; under a budget it ends by
    ``options.soft_fraction`` of it (all of it as the last phase), restarting from other shortlist heads."""
    obj, s = ctx.obj, ctx.cfg
    ranked = ctx.ranked_singles()
    if not ctx.budget:
        return optimize_soft(obj, _inits(ctx, ranked), s.soft, ctx.proj, ctx.filt, pez=True)
    end = ctx.start + ctx.budget * (1.0 if ctx.last else s.options.soft_fraction)
    timer = PhaseTimer(obj, "pez")
    seen, last, r = [], None, 0
    with obj.capped(end):
        while not obj.exhausted:
            shift = (r * s.soft.restarts) % max(1, len(ranked))
            c0 = obj.spent
            res = optimize_soft(obj, _inits(ctx, ranked[shift:] + ranked[:shift]), s.soft, ctx.proj, ctx.filt, pez=True)
            seen += res.candidates
            last = res
            if obj.spent == c0:
                break
            r += 1
    if last is None:  # the soft share was spent before PEZ began
        return SoftResult(**vars(timer.result(seen)))
    return SoftResult(**vars(timer.result(seen)), soft=last.soft, lengths=last.lengths, soft_losses=last.soft_losses)


def _soft(ctx: SearchContext, keep: bool) -> SoftResult:
    obj, s = ctx.obj, ctx.cfg
    inits = _inits(ctx, ctx.ranked_singles())
    soft_cfg = s.soft
    R, n = len(inits), obj.n_images
    if ctx.budget:  # the steps the budget buys, keeping the final projection (and AP) scoring
        per_step = R * min(s.soft.batch_images, n) * (1 + BACKWARD_COST)
        reserve = R * n * (2 if keep else 1)
        steps = int((obj.remaining() - reserve) // per_step)
        if steps < 1:
            raise BudgetExhausted("budget too small for one soft-prompt step")
        soft_cfg = replace(s.soft, steps=steps)
    res = optimize_soft(obj, inits, soft_cfg, ctx.proj, ctx.filt, pez=False)
    if keep:
        ctx.kept_soft = _keep_best_restart(ctx, res)
    return res


def _keep_best_restart(ctx: SearchContext, res: SoftResult) -> KeptSoft:
    """The restart whose soft prompt has the best train AP (its R x n forwards are paid)."""
    obj = ctx.obj
    table, tok = ctx.backend.token_embeddings.detach().float(), ctx.backend.tokenizer
    embeds, mask = embed_prompts(table, tok.sot_id, tok.eot_id, [res.soft[r, :m] for r, m in enumerate(res.lengths)])
    obj.require(len(res.lengths) * obj.n_images)
    metrics = soft_metrics(ctx.backend, obj.images, embeds, mask, obj.feats)
    obj.charge(len(res.lengths) * obj.n_images)
    aps = [m.ap if not math.isnan(m.ap) else -1.0 for m in metrics]
    best = int(np.argmax(aps))
    width = int(mask[best].sum())
    return KeptSoft(
        embeds[best : best + 1, :width].detach().clone(), mask[best : best + 1, :width].clone(), metrics[best], best
    )


def soft_phase(ctx: SearchContext) -> SoftResult:
    """A soft prompt optimised as such (no projection during training), projected once at the end; the
    restart with the best train AP is kept (``ctx.kept_soft``): the continuous upper bound."""
    return _soft(ctx, keep=True)


def projection_phase(ctx: SearchContext) -> SoftResult:
    """The same soft prompt, projected once to its nearest allowed tokens (nothing kept)."""
    return _soft(ctx, keep=False)


# ---------------------------------------------------------------------------------------- discrete
def gcg_phase(ctx: SearchContext) -> PhaseResult:
    """GCG swaps from the soft phase's best sequence (or the best single); as the budgeted last phase,
    again from the best sequences not tried yet."""
    obj, s = ctx.obj, ctx.cfg
    prev = ctx.result("pez", "soft", "projection")
    start = prev.token_ids if prev is not None and prev.token_ids else (ctx.ranked_singles()[0],)
    tried: set[Seq] = set()

    def run(seq: Seq) -> PhaseResult:
        tried.add(seq)
        return gcg(obj, seq, s.gcg, ctx.filt, ctx.rng, s.soft.batch_images)

    def again() -> PhaseResult | None:
        nxt = next((sq for sq, _ in obj.ranked() if sq not in tried), None)
        return None if nxt is None else run(nxt)

    return _restarts(ctx, "gcg", lambda: run(start), again)


def evolution_phase(ctx: SearchContext) -> PhaseResult:
    """Evolution seeded with the earlier phases' candidates (the scan's aside), the name, the best singles
    and their ordered pairs; mutations from the gradient, FAISS neighbours and the shortlist."""
    obj, s = ctx.obj, ctx.cfg
    ranked = ctx.ranked_singles()
    seeds = [c for r in ctx.results if r.phase != "scan" for c in r.candidates]
    seeds += [ctx.name_seq] if ctx.name_seq else []
    singles = [(t,) for t in ranked]
    pop = seed_population(seeds, singles[: s.evolution.population], s.evolution.shortlist_pairs, ctx.filt)
    mutator = Mutator(ranked, ctx.proj, s.evolution.neighbours, s.max_len, ctx.rng)

    def run(seeds: list[Seq]) -> PhaseResult:
        return evolve(obj, seeds, s.evolution, ctx.filt, mutator, ctx.rng, s.soft.batch_images)

    return _restarts(
        ctx, "evolution", lambda: run(pop), lambda: run([sq for sq, _ in obj.ranked(s.evolution.population)])
    )


def random_evolution_phase(ctx: SearchContext) -> PhaseResult:
    """Evolution from random allowed tokens: no gradients, no shortlist, no neighbours (the public
    attempt's recipe); restarts keep the better half and add random newcomers."""
    obj, s = ctx.obj, ctx.cfg
    pool = ctx.filt.allowed_ids
    evo = replace(s.evolution, grad_topk=0, neighbours=0)
    lengths = list(range(1, s.max_len + 1))
    mutator = Mutator(pool, None, 0, s.max_len, ctx.rng)
    pop = ctx.filt.accept(random_sequences(ctx.rng, pool, evo.population, lengths))

    def run(seeds: list[Seq]) -> PhaseResult:
        return evolve(obj, seeds, evo, ctx.filt, mutator, ctx.rng, s.soft.batch_images)

    def again() -> PhaseResult:
        best = [sq for sq, _ in obj.ranked(max(1, evo.population // 2))]
        return run(best + ctx.filt.accept(random_sequences(ctx.rng, pool, max(1, evo.population // 2), lengths)))

    return _restarts(ctx, "random-evolution", lambda: run(pop), again)


def random_phase(ctx: SearchContext) -> PhaseResult:
    """Random allowed sequences of length 1..max_len (``options.random_candidates`` of them, or until the
    budget is spent as the budgeted last phase)."""
    o = ctx.cfg.options
    n = UNLIMITED if ctx.restarting() else o.random_candidates
    lengths = tuple(range(1, ctx.cfg.max_len + 1))
    return random_search(ctx.obj, ctx.filt, ctx.rng, lengths=lengths, batch=o.random_batch, max_candidates=n)


def optuna_phase(ctx: SearchContext) -> PhaseResult:
    """Optuna TPE over a per-position choice among the shortlist tokens (or none, for shorter aliases);
    each batch of proposals is scored in one call and the losses told back (``options.optuna_trials``
    trials, or until the budget is spent)."""
    import optuna

    obj, filt, o = ctx.obj, ctx.filt, ctx.cfg.options
    timer = PhaseTimer(obj, "optuna")
    choices = [-1, *ctx.shortlist()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(
            seed=int(ctx.rng.integers(2**31)), n_startup_trials=o.optuna_startup, multivariate=True, constant_liar=True
        )
    study = optuna.create_study(direction="minimize", sampler=sampler)
    idle, asked, seen = 0, 0, []
    limit = UNLIMITED if ctx.budget else o.optuna_trials
    with until_spent():
        while not obj.exhausted and idle < 10 and asked < limit:
            trials = [study.ask() for _ in range(o.optuna_batch)]
            asked += len(trials)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                raw = [[t.suggest_categorical(f"p{i}", choices) for i in range(ctx.cfg.max_len)] for t in trials]
            seqs = [filt([x for x in r if x >= 0]) if any(x >= 0 for x in r) else None for r in raw]
            seen += [sq for sq in seqs if sq]
            c0 = obj.spent
            try:
                obj.score([sq for sq in seqs if sq], screen=o.optuna_screen)
            finally:  # tell every asked trial, also when the budget ran out mid-batch
                _tell(study, trials, seqs, obj)
            idle = idle + 1 if obj.spent == c0 else 0
    return timer.result(seen)


def _tell(study, trials, seqs, obj) -> None:
    import optuna

    full = [obj.loss_of(sq) if sq else None for sq in seqs]
    worst = max([v for v in full if v is not None], default=None)
    for t, sq, v in zip(trials, seqs, full):
        screen = obj.screen_loss_of(sq) if sq else None
        if v is None and screen is not None and worst is not None:
            v = max(worst, screen)  # screened out: ranks below this batch's survivors
        if v is None and sq is None:
            done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            v = max((tr.value for tr in done), default=None)  # nothing to score: as bad as the worst so far
        if v is None:
            study.tell(t, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(t, float(v))


PHASES: dict[str, Callable[[SearchContext], PhaseResult | None]] = {
    "scan": scan_phase,
    "vocab-scan": vocab_scan_phase,
    "extend": extend_phase,
    "pez": pez_phase,
    "soft": soft_phase,
    "projection": projection_phase,
    "gcg": gcg_phase,
    "evolution": evolution_phase,
    "random-evolution": random_evolution_phase,
    "random": random_phase,
    "optuna": optuna_phase,
}
