"""Search strategies for the comparison: selectable by name, one interface, one budget.

    ctx = make_context(backend, train_images, feats, name, cfg, vocab, seed)
    result = run_strategy("pez+evolution", ctx, budget=4000, rng=np.random.default_rng(0), cfg=cfg)

``STRATEGIES[name](ctx, budget, rng, cfg)`` runs one strategy on ``ctx.obj`` (a
``BudgetedObjective`` capped at ``budget`` forward-equivalents: pair forwards + 2 x pair backwards)
until the budget is spent or the strategy has nothing left to try. Every strategy is a thin
composition of the discovery phases (``alias_opt.soft_prompt``, ``gcg``, ``evolution``,
``discrete_search``); the ones whose last phase can stop early restart it, so that every strategy
can use the whole budget. ``run_strategy`` adds what all share: the cap, a final re-ranking of the
best few candidates by train-split COCO AP (paid from the same budget), and the result.

Names (``NAMES``):
    soft             soft prompt (no projection during training): the continuous upper bound; the
                     best restart's embeddings are kept (``extra['soft_embeds']``, ``['soft_mask']``)
    projection       the same soft prompt, projected once to the nearest tokens at the end
    pez              shortlist scan, then PEZ (projected forward, continuous update), restarted
    pez+gcg          scan, PEZ on ``soft_fraction`` of the budget, then GCG swaps from the best, restarted
    pez+evolution    scan, one-token extensions of the best singles, PEZ on ``soft_fraction`` of the
                     budget, then evolution (the default pipeline)
    random-evolution the public attempt's recipe: a population of random allowed tokens, mutation and
                     crossover, no gradients, no shortlist
    random           random allowed sequences of length 1..max_len
    optuna           Optuna TPE over a per-position choice among the shortlist tokens (or nothing)
    scan             exhaustive single-token scan, tokens in the concept's vocabulary-index order
The vocabulary probes that build a shortlist are charged to the strategy that uses one.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from alias_opt.budget import BudgetedObjective, BudgetExhausted, capped
from alias_opt.discrete_search import extend, random_search, scan
from alias_opt.evolution import Mutator, evolve, seed_population
from alias_opt.gcg import gcg
from alias_opt.metrics import evaluate_prompts
from alias_opt.objective import BACKWARD_COST, SearchResult, Seq
from alias_opt.projection import embed_prompts, random_sequences
from alias_opt.soft_prompt import initial_sequences, optimize_soft
from alias_opt.strategy_context import (
    Context,
    StrategyConfig,
    deep_merge,
    load_strategy_config,
    make_context,
    shortlist,
    soft_metrics,
)

__all__ = [
    "NAMES",
    "STRATEGIES",
    "Context",
    "StrategyConfig",
    "deep_merge",
    "get_strategy",
    "load_strategy_config",
    "make_context",
    "run_strategy",
    "shortlist",
    "soft_metrics",
]

UNLIMITED = 10**9  # phase steps / generations when the budget is the only stop
SCAN_SHARE = 0.25  # most of the budget the shortlist scan of the pez strategies may use


def _ranked_singles(ctx: Context, cfg: StrategyConfig, budget: int) -> list[int]:
    """The shortlist, best single tokens first: its first ``scan_size`` tokens are scored by ``scan``
    (as ``discover`` does) on at most ``SCAN_SHARE`` of the budget; screened-out ones rank after the
    fully scored ones (by screening loss), the unscored rest last."""
    obj = ctx.obj
    short = shortlist(ctx, cfg)
    per_token = len(obj.screen_idx) + obj.screen_keep * obj.n_images
    n_scan = min(cfg.search.scan_size, int(SCAN_SHARE * budget // per_token))
    if n_scan > 0:
        with capped(obj, obj.counter.cost + SCAN_SHARE * budget):
            scan(obj, short[:n_scan], ctx.filt)

    def rank(t: int) -> tuple:
        full, screen = obj.memo.get(((t,), "full")), obj.memo.get(((t,), "screen"))
        return (0, full) if full is not None else (1, screen) if screen is not None else (2, 0.0)

    return sorted(short, key=rank)


def _lengths(cfg: StrategyConfig) -> list[int]:
    return [min(n, cfg.search.max_len) for n in cfg.search.soft.lengths] or [cfg.search.max_len]


# ---------------------------------------------------------------------------------------- soft prompts
def _soft(ctx: Context, budget: int, rng: np.random.Generator, cfg: StrategyConfig, keep_soft: bool) -> SearchResult:
    obj, s = ctx.obj, cfg.search
    short = shortlist(ctx, cfg)
    inits = initial_sequences(s.soft.inits, s.soft.restarts, _lengths(cfg), short, ctx.name_seq, ctx.filt, rng)
    R, n = len(inits), obj.n_images
    per_step = R * min(s.soft.batch_images, n) * (1 + BACKWARD_COST)
    reserve = R * n * (2 if keep_soft else 1)  # final projection scoring (+ the soft prompts' train AP)
    room = obj.remaining() if math.isfinite(obj.remaining()) else budget
    steps = int((room - reserve) // per_step)
    if steps < 1:
        raise BudgetExhausted("budget too small for one soft-prompt step")
    res = optimize_soft(obj, inits, replace(s.soft, steps=steps), ctx.proj, ctx.filt, pez=False)
    if not keep_soft:
        return res
    table, tok = ctx.backend.token_embeddings.detach().float(), ctx.backend.tokenizer
    soft, lengths = res.extra["soft"], res.extra["lengths"]
    embeds, mask = embed_prompts(table, tok.sot_id, tok.eot_id, [soft[r, :m] for r, m in enumerate(lengths)])
    metrics = soft_metrics(ctx.backend, obj.images, embeds, mask, obj.feats)
    obj.charge(R * n)
    aps = [m.ap if not math.isnan(m.ap) else -1.0 for m in metrics]
    best = int(np.argmax(aps))
    width = int(mask[best].sum())
    res.extra.update(
        soft_embeds=embeds[best : best + 1, :width].detach().clone(),
        soft_mask=mask[best : best + 1, :width].clone(),
        soft_train_metrics=metrics[best],
        soft_restart=best,
    )
    return res


def soft_only(ctx: Context, budget: int, rng: np.random.Generator, cfg: StrategyConfig) -> SearchResult:
    """Continuous soft prompt (the upper bound); keeps the restart with the best train AP."""
    return _soft(ctx, budget, rng, cfg, keep_soft=True)


def projection(ctx: Context, budget: int, rng: np.random.Generator, cfg: StrategyConfig) -> SearchResult:
    """The soft prompt projected once to its nearest allowed tokens."""
    return _soft(ctx, budget, rng, cfg, keep_soft=False)


def _pez_restarts(ctx: Context, cfg: StrategyConfig, rng: np.random.Generator, ranked: list[int]) -> None:
    """PEZ runs of ``soft.steps`` steps, each from other shortlist heads, until the (capped) budget is spent."""
    obj, s = ctx.obj, cfg.search
    r = 0
    while not obj.exhausted:
        shift = (r * s.soft.restarts) % max(1, len(ranked))
        heads = ranked[shift:] + ranked[:shift]
        inits = initial_sequences(s.soft.inits, s.soft.restarts, _lengths(cfg), heads, ctx.name_seq, ctx.filt, rng)
        c0 = obj.counter.cost
        optimize_soft(obj, inits, s.soft, ctx.proj, ctx.filt, pez=True)
        if obj.counter.cost == c0:
            break
        r += 1


def pez(ctx: Context, budget: int, rng: np.random.Generator, cfg: StrategyConfig) -> None:
    """Shortlist scan, then PEZ restarts until the budget is spent."""
    _pez_restarts(ctx, cfg, rng, _ranked_singles(ctx, cfg, budget))


def pez_gcg(ctx: Context, budget: int, rng: np.random.Generator, cfg: StrategyConfig) -> None:
    """Scan, PEZ on ``soft_fraction`` of the budget, then GCG from the best candidates in turn."""
    obj = ctx.obj
    start = obj.counter.cost
    ranked = _ranked_singles(ctx, cfg, budget)
    with capped(obj, start + cfg.soft_fraction * budget):
        _pez_restarts(ctx, cfg, rng, ranked)
    tried: set[Seq] = set()
    while not obj.exhausted:
        nxt = next((sq for sq, _ in obj.ranked() if sq not in tried), None)
        if nxt is None:
            break
        tried.add(nxt)
        gcg(obj, nxt, cfg.search.gcg, ctx.filt, rng, cfg.search.soft.batch_images)


def _evolve_until_spent(
    ctx: Context,
    cfg: StrategyConfig,
    rng: np.random.Generator,
    pop: list[Seq],
    mutator: Mutator,
    evo,
    fresh: Callable[[], list[Seq]] | None = None,
) -> None:
    """Evolution restarted whenever it stops early (patience), from the best sequences so far (half
    of them plus ``fresh()`` newcomers, if given), until the budget is spent or nothing new is made."""
    obj = ctx.obj
    while not obj.exhausted and pop:
        c0 = obj.counter.cost
        evolve(obj, pop, evo, ctx.filt, mutator, rng, cfg.search.soft.batch_images)
        if obj.counter.cost == c0:
            break
        if fresh is None:
            pop = [sq for sq, _ in obj.ranked(evo.population)]
        else:
            pop = [sq for sq, _ in obj.ranked(max(1, evo.population // 2))] + fresh()


def pez_evolution(ctx: Context, budget: int, rng: np.random.Generator, cfg: StrategyConfig) -> None:
    """The default pipeline: scan, PEZ on ``soft_fraction`` of the budget, then evolution."""
    obj, s = ctx.obj, cfg.search
    start = obj.counter.cost
    ranked = _ranked_singles(ctx, cfg, budget)
    if s.extend_bases:  # as discover: the best singles extended by every scanned shortlist token
        with capped(obj, obj.counter.cost + SCAN_SHARE * budget):
            extend(obj, [(t,) for t in ranked[: s.extend_bases]], shortlist(ctx, cfg)[: s.scan_size], ctx.filt)
    with capped(obj, start + cfg.soft_fraction * budget):
        _pez_restarts(ctx, cfg, rng, ranked)
    seeds = [sq for sq, _ in obj.ranked(s.evolution.population)] + ([ctx.name_seq] if ctx.name_seq else [])
    singles = [(t,) for t in ranked]
    pop = seed_population(seeds, singles[: s.evolution.population], s.evolution.shortlist_pairs, ctx.filt)
    mutator = Mutator(ranked, ctx.proj, s.evolution.neighbours, s.max_len, rng)
    _evolve_until_spent(ctx, cfg, rng, pop, mutator, replace(s.evolution, generations=UNLIMITED))


def random_evolution(ctx: Context, budget: int, rng: np.random.Generator, cfg: StrategyConfig) -> None:
    """Evolution from random allowed tokens: no gradients, no shortlist, no neighbours."""
    s = cfg.search
    pool = ctx.filt.allowed_ids
    evo = replace(s.evolution, grad_topk=0, neighbours=0, generations=UNLIMITED)
    lengths = list(range(1, s.max_len + 1))

    def fresh() -> list[Seq]:
        return ctx.filt.accept(random_sequences(rng, pool, max(1, evo.population // 2), lengths))

    mutator = Mutator(pool, None, 0, s.max_len, rng)
    pop = ctx.filt.accept(random_sequences(rng, pool, evo.population, lengths))
    _evolve_until_spent(ctx, cfg, rng, pop, mutator, evo, fresh)


def random_baseline(ctx: Context, budget: int, rng: np.random.Generator, cfg: StrategyConfig) -> None:
    """Random allowed sequences of length 1..max_len until the budget is spent."""
    lengths = tuple(range(1, cfg.search.max_len + 1))
    random_search(ctx.obj, ctx.filt, rng, lengths=lengths, batch=cfg.random_batch, max_candidates=UNLIMITED)


def exhaustive_scan(ctx: Context, budget: int, rng: np.random.Generator, cfg: StrategyConfig) -> None:
    """Every allowed single token, in the concept's vocabulary-index order, until the budget is spent."""
    obj = ctx.obj
    order = shortlist(ctx, cfg, k=len(ctx.filt.allowed_ids), rounds=1)
    start = 0
    while start < len(order) and not obj.exhausted:
        # a chunk whose screening and full scoring still fit, so that the last chunks are scored too
        per_token = len(obj.screen_idx) + obj.screen_keep * obj.n_images
        size = max(1, min(cfg.scan_chunk, int(obj.remaining() // per_token)))
        scan(obj, order[start : start + size], ctx.filt)
        start += size


def optuna_tpe(ctx: Context, budget: int, rng: np.random.Generator, cfg: StrategyConfig) -> None:
    """Optuna TPE over per-position token choices among the shortlist (or none, for shorter aliases);
    each batch of proposals is scored in one call, and the fitness told back to the study."""
    import optuna

    obj, filt = ctx.obj, ctx.filt
    choices = [-1, *shortlist(ctx, cfg)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(
            seed=int(rng.integers(2**31)), n_startup_trials=cfg.optuna_startup, multivariate=True, constant_liar=True
        )
    study = optuna.create_study(direction="minimize", sampler=sampler)
    idle = 0
    while not obj.exhausted and idle < 10:
        trials = [study.ask() for _ in range(cfg.optuna_batch)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            raw = [[t.suggest_categorical(f"p{i}", choices) for i in range(cfg.search.max_len)] for t in trials]
        seqs = [filt([x for x in r if x >= 0]) if any(x >= 0 for x in r) else None for r in raw]
        c0 = obj.counter.cost
        try:
            obj.score([sq for sq in seqs if sq], screen=cfg.optuna_screen)
        finally:  # tell every asked trial, also when the budget ran out mid-batch
            _tell(study, trials, seqs, obj)
        idle = idle + 1 if obj.counter.cost == c0 else 0


def _tell(study, trials, seqs, obj: BudgetedObjective) -> None:
    import optuna

    full = [obj.memo.get((sq, "full")) if sq else None for sq in seqs]
    worst = max([v for v in full if v is not None], default=None)
    for t, sq, v in zip(trials, seqs, full):
        if v is None and sq is not None and (sq, "screen") in obj.memo and worst is not None:
            v = max(worst, obj.memo[(sq, "screen")])  # screened out: ranks below this batch's survivors
        if v is None and sq is None:
            done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            v = max((tr.value for tr in done), default=None)  # nothing to score: as bad as the worst so far
        if v is None:
            study.tell(t, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(t, float(v))


STRATEGIES: dict[str, Callable[[Context, int, np.random.Generator, StrategyConfig], SearchResult | None]] = {
    "soft": soft_only,
    "projection": projection,
    "pez": pez,
    "pez+gcg": pez_gcg,
    "pez+evolution": pez_evolution,
    "random-evolution": random_evolution,
    "random": random_baseline,
    "optuna": optuna_tpe,
    "scan": exhaustive_scan,
}
NAMES = tuple(STRATEGIES)


def get_strategy(name: str):
    """The strategy function of ``name``; a clear error for unknown names."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(NAMES)}") from None


# ---------------------------------------------------------------------------------------- running
def rerank_reserve(cfg: StrategyConfig, n_images: int, budget: int) -> int:
    """Forward passes kept back for the final train-AP re-ranking (none if it would eat half the budget)."""
    need = cfg.search.rerank * n_images
    return need if 0 < need <= budget // 2 else 0


def run_strategy(name: str, ctx: Context, budget: int, rng: np.random.Generator, cfg: StrategyConfig) -> SearchResult:
    """Run strategy ``name`` within ``budget`` forward-equivalents, then re-rank its best
    ``search.rerank`` candidates by train COCO AP (within the same budget).

    Returns a SearchResult whose token_ids is the final alias (None if the budget bought nothing);
    ``extra`` holds ``train_metrics``, ``reranked``, ``trace`` and the strategy's own extras
    (``soft_embeds`` ... for ``soft``).
    """
    fn = get_strategy(name)
    if budget <= 0:
        raise ValueError(f"the budget must be a positive number of forward passes; got {budget}")
    obj = ctx.obj
    f0, b0, t0 = obj.counter.forward, obj.counter.backward, time.perf_counter()
    total = obj.counter.cost + budget
    reserve = rerank_reserve(cfg, obj.n_images, budget)
    obj.budget = total - reserve
    extra: dict = {}
    try:
        res = fn(ctx, budget - reserve, rng, cfg)
        if res is not None:
            extra.update({k: v for k, v in res.extra.items() if k not in ("soft", "lengths", "soft_losses")})
    except BudgetExhausted:
        pass
    obj.budget = total
    pool = [sq for sq, _ in obj.ranked(max(1, cfg.search.rerank))]
    k = min(len(pool), int(obj.remaining() // obj.n_images)) if cfg.search.rerank else 0
    train_metrics, reranked = None, []
    if k > 0:
        metrics = evaluate_prompts(ctx.backend, obj.images, [list(p) for p in pool[:k]], feats=obj.feats)
        obj.charge(k * obj.n_images)
        rows = sorted(
            zip(pool[:k], metrics),
            key=lambda r: (-(r[1].ap if not math.isnan(r[1].ap) else -1.0), obj.memo[(r[0], "full")], len(r[0])),
        )
        pool = [p for p, _ in rows] + pool[k:]
        train_metrics = rows[0][1]
        reranked = [{"token_ids": list(p), "train_ap": m.ap, "loss": obj.memo[(p, "full")]} for p, m in rows]
    obj.record("rerank", 0, obj.memo[(pool[0], "full")] if pool else math.inf, candidates=k)
    best = pool[0] if pool else None
    extra.update(train_metrics=train_metrics, reranked=reranked, trace=list(obj.trace))
    return SearchResult(
        phase=name,
        token_ids=best,
        loss=obj.memo[(best, "full")] if best else math.inf,
        candidates=pool[:16],
        forward_passes=obj.counter.forward - f0,
        backward_passes=obj.counter.backward - b0,
        wall_time=time.perf_counter() - t0,
        extra=extra,
    )
