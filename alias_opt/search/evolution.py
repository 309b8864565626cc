"""Evolutionary search over token sequences of length 1..L.

The population is seeded from earlier phases (PEZ projections, the natural name) and from the
concept's shortlist (its best single tokens and their ordered pairs). Each generation keeps the
elite, makes children by one-point crossover of tournament-selected parents and by mutations
(swap a token for one from the gradient's top-k, a FAISS neighbour of it, or the shortlist; insert a
shortlist token; delete a token), and scores all new children in one batched, screened call.
Stops after ``generations`` or ``patience`` generations without improvement, or when the budget is
spent.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from alias_opt.config import EvolutionConfig
from alias_opt.search.embeddings import ProjectionIndex
from alias_opt.search.gcg import token_gradients, top_tokens
from alias_opt.search.objective import Objective, Seq
from alias_opt.search.phase_result import PhaseResult, PhaseTimer, until_spent
from alias_opt.search.projection import CandidateFilter


def crossover(a: Seq, b: Seq, rng: np.random.Generator, max_len: int) -> Seq:
    """One-point crossover: a prefix of ``a`` + a suffix of ``b`` (lengths may differ), cut to max_len."""
    i = int(rng.integers(0, len(a) + 1))
    j = int(rng.integers(0, len(b) + 1))
    child = a[:i] + b[j:]
    if not child:
        child = a[:1] or b[:1]
    return child[:max_len]


class Mutator:
    """Draws mutations of a sequence from three token pools: the gradient's favourites, FAISS
    neighbours of the token being replaced, and the shortlist."""

    def __init__(
        self,
        shortlist: Sequence[int],
        proj: ProjectionIndex | None,
        neighbours: int,
        max_len: int,
        rng: np.random.Generator,
    ):
        self.shortlist = np.asarray(list(shortlist), dtype=np.int64)
        self.proj = proj
        self.k_nb = neighbours
        self.max_len = max_len
        self.rng = rng
        self.grad_pool = np.zeros(0, dtype=np.int64)
        self._nb: dict[int, np.ndarray] = {}

    def neighbours(self, tok: int) -> np.ndarray:
        if tok not in self._nb:
            self._nb[tok] = (
                self.proj.neighbours([tok], self.k_nb)[0] if self.proj is not None and self.k_nb else self.shortlist
            )
        return self._nb[tok]

    def _token(self, old: int | None) -> int:
        pools = [p for p in (self.grad_pool, self.shortlist) if len(p)]
        if old is not None and self.proj is not None and self.k_nb:
            pools.append(self.neighbours(old))
        pool = pools[int(self.rng.integers(len(pools)))]
        return int(pool[int(self.rng.integers(len(pool)))])

    def __call__(self, seq: Seq) -> Seq:
        ops = ["swap"] + (["insert"] if len(seq) < self.max_len else []) + (["delete"] if len(seq) > 1 else [])
        op = ops[int(self.rng.choice(len(ops), p=_op_weights(ops)))]
        pos = int(self.rng.integers(len(seq)))
        if op == "swap":
            return seq[:pos] + (self._token(seq[pos]),) + seq[pos + 1 :]
        if op == "insert":
            pos = int(self.rng.integers(len(seq) + 1))
            return seq[:pos] + (self._token(None),) + seq[pos:]
        return seq[:pos] + seq[pos + 1 :]


def _op_weights(ops: list[str]) -> np.ndarray:
    w = np.array([{"swap": 0.6, "insert": 0.25, "delete": 0.15}[o] for o in ops])
    return w / w.sum()


def seed_population(
    seeds: Sequence[Seq], shortlist_singles: Sequence[Seq], n_pairs: int, filt: CandidateFilter
) -> list[Seq]:
    """Seeds, then the shortlist singles, then all ordered pairs of the best ``n_pairs`` singles."""
    singles = [s for s in shortlist_singles if len(s) == 1]
    top = [s[0] for s in singles[:n_pairs]]
    pairs = [(a, b) for a in top for b in top if a != b]
    return filt.accept([*seeds, *shortlist_singles, *pairs])


def evolve(
    obj: Objective,
    seeds: Sequence[Seq],
    cfg: EvolutionConfig,
    filt: CandidateFilter,
    mutator: Mutator,
    rng: np.random.Generator,
    grad_images: int = 8,
) -> PhaseResult:
    """Run the evolutionary search from an initial population ``seeds`` (already filtered)."""
    timer = PhaseTimer(obj, "evolution")
    pop = filt.accept(seeds)
    seen = list(pop)
    if pop:
        with until_spent():
            _generations(obj, pop, cfg, filt, mutator, rng, grad_images, seen)
    return timer.result(seen)


def _generations(
    obj: Objective,
    pop: list[Seq],
    cfg: EvolutionConfig,
    filt: CandidateFilter,
    mutator: Mutator,
    rng: np.random.Generator,
    grad_images: int,
    seen: list[Seq],
) -> None:
    """The generations of ``evolve``; every child scored is appended to ``seen``."""
    scores = obj.score(pop)
    best = float(np.min(scores))
    stale = 0
    for gen in range(cfg.generations):
        if obj.exhausted or stale >= cfg.patience:
            break
        order = np.lexsort(([len(s) for s in pop], scores))
        pop = [pop[i] for i in order][: cfg.population]
        scores = scores[order][: cfg.population]
        alive = [i for i in range(len(pop)) if np.isfinite(scores[i])] or list(range(len(pop)))
        if cfg.grad_topk > 0:
            grad = token_gradients(obj, [pop[alive[0]]], obj.sample_images(grad_images))[0]
            mutator.grad_pool = np.unique(top_tokens(grad, filt.allowed, cfg.grad_topk).numpy().reshape(-1))
        children: list[Seq] = []
        tries = 0
        n_children = max(1, cfg.population - cfg.elite)
        while len(children) < n_children and tries < 20 * n_children:
            tries += 1
            a = pop[_tournament(alive, scores, rng)]
            if rng.random() < cfg.crossover and len(alive) > 1:
                child = crossover(a, pop[_tournament(alive, scores, rng)], rng, filt.max_len)
                if rng.random() < 0.5:
                    child = mutator(child)
            else:
                child = mutator(a)
            c = filt(child)
            if c is None or c in children or obj.is_known(c):
                continue
            children.append(c)
        if not children:
            break
        seen += children
        child_scores = obj.score(children)
        pop = pop + children
        scores = np.concatenate([scores, child_scores])
        gen_best = float(np.min(scores))
        if gen_best < best - 1e-6:
            best, stale = gen_best, 0
        else:
            stale += 1
        obj.record("evolution", gen, gen_best, population=len(pop), children=len(children))


def _tournament(alive: list[int], scores: np.ndarray, rng: np.random.Generator, k: int = 3) -> int:
    picks = rng.choice(alive, size=min(k, len(alive)), replace=False)
    return int(picks[np.argmin(scores[picks])])
