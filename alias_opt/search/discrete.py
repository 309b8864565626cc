"""Discrete search over token sequences: the phases that score real token ids.

* projection of soft embeddings to the nearest allowed tokens (``alias_opt.search.projection``);
* gradient-guided single swaps, GCG-style (``alias_opt.search.gcg``);
* evolutionary search (``alias_opt.search.evolution``);
* ``scan``: score single tokens (e.g. the concept's shortlist), best first;
* ``extend``: greedy one-token extensions of the best sequences (a concept named by two words whose
  single tokens each match only part of it, "red" + "square", is found by pairing, not by singles);
* ``random_search``: random allowed sequences until the budget or a count is spent (a baseline).

Every candidate goes through the ``CandidateFilter`` (allowed tokens, no specials, round trip) and
is scored by ``Objective.score``: batched ``ground`` on cached image features, memoized by token
tuple, screened on a few images before all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from alias_opt.search.evolution import Mutator, crossover, evolve, seed_population
from alias_opt.search.gcg import gcg, sample_swaps, token_gradients, top_tokens
from alias_opt.search.objective import Objective, Seq
from alias_opt.search.phase_result import PhaseResult, PhaseTimer, until_spent
from alias_opt.search.projection import CandidateFilter, project_sequences, random_sequences

__all__ = [
    "CandidateFilter",
    "Mutator",
    "crossover",
    "evolve",
    "gcg",
    "project_sequences",
    "random_search",
    "extensions",
    "extend",
    "random_sequences",
    "sample_swaps",
    "scan",
    "seed_population",
    "token_gradients",
    "top_tokens",
]


def scan(
    obj: Objective, tokens: Sequence[int], filt: CandidateFilter, screen: bool = True, keep: float | None = None
) -> PhaseResult:
    """Score every single token of ``tokens`` (as a one-token alias; with ``screen``, the best ``keep`` share
    of the screened ones on all images, default ``obj.screen_keep``); candidates come back best first."""
    timer = PhaseTimer(obj, "scan")
    cands = filt.accept([(int(t),) for t in tokens])
    with until_spent():
        losses = obj.score(cands, screen=screen, keep=keep) if cands else np.zeros(0)
        obj.record("scan", 0, float(np.min(losses)) if len(losses) else float("inf"), scored=len(cands))
    # screened-out singles still rank (by screening loss) after the fully scored ones: they seed pairs
    losses = np.array([_inf(obj.loss_of(c)) for c in cands])
    order = np.argsort(losses, kind="stable")
    screened = [cands[i] for i in order if not np.isfinite(losses[i])]
    screened.sort(key=lambda s: _inf(obj.screen_loss_of(s)))  # screened out: by screening loss
    res = timer.result(cands, n=len(cands))
    res.candidates = res.candidates + screened
    return res


def _inf(v: float | None) -> float:
    return np.inf if v is None else v


def extensions(bases: Sequence[Seq], tokens: Sequence[int]) -> list[Seq]:
    """Every base with one token of ``tokens`` inserted: appended, prepended, then between each pair of
    its tokens ("solid star" -> "solid blue star": a qualifier sits where natural word order puts it);
    no repeats, base order kept.

    Args:
        bases: sequences to extend, best first.
        tokens: token ids to add.
    Returns:
        for each base and token: ``(*base, t)``, ``(t, *base)``, then ``(*base[:i], t, *base[i:])`` for
        i = 1 .. len(base) - 1.
    """
    out = [(*b[:i], int(t), *b[i:]) for b in bases for t in tokens for i in (len(b), 0, *range(1, len(b)))]
    return list(dict.fromkeys(out))


def best_extensions(
    loss_of: Callable[[Seq], float | None], plan: list[tuple[Seq, list[int]]], k: int = 1
) -> list[list[Seq]]:
    """Each base's ``k`` best fully scored one-token extensions by its own tokens (lowest ``loss_of`` first; the
    first made on ties), in ``plan`` order; an empty list for a base none of whose extensions was fully scored.

    Args:
        loss_of: a sequence's full-train loss, None where it was not fully scored (``Objective.loss_of``).
        plan: (base, tokens) pairs, as ``extend_each`` reads them.
        k: extensions kept per base (the deeper level's beam).
    """
    out: list[list[Seq]] = []
    for base, tokens in plan:
        scored = [(v, c) for c in extensions([base], tokens) if (v := loss_of(c)) is not None]
        out.append([c for _, c in sorted(scored, key=lambda vc: vc[0])[:k]])
    return out


def by_ap(heads: list[list[Seq]], aps: Callable[[list[Seq]], list[float]], k: int) -> list[list[Seq]]:
    """Each list of ``heads`` (a base's best extensions by loss) re-ordered by ``aps`` (best first; ties and
    NaN keep the loss order, NaN last) and cut to ``k``.

    Args:
        heads: per base, its candidates best first by loss.
        aps: the train AP of sequences (one call for all; -inf where not paid for).
        k: candidates kept per base.
    """
    flat = [c for h in heads for c in h]
    ap = dict(zip(flat, aps(flat))) if flat else {}

    def key(c: Seq) -> float:
        v = ap.get(c, -math.inf)
        return -v if not math.isnan(v) else math.inf

    return [sorted(h, key=key)[:k] for h in heads]


def extends_once(seq: Seq, base: Seq) -> bool:
    """Whether ``seq`` is ``base`` with one token inserted (anywhere)."""
    return len(seq) == len(base) + 1 and any(seq[:i] + seq[i + 1 :] == tuple(base) for i in range(len(seq)))


def deeper_plan(
    bests: list[list[Seq]], plan: list[tuple[Seq, list[int]]], max_len: int, pool: Sequence[int] | None = None
) -> list[tuple[Seq, list[int]]]:
    """The second extension level: each base's best extensions (``bests``, in ``plan`` order:
    ``best_extensions``) extended again by the tokens their base was extended with (already screened: no new
    narrowing), a three-word alias ("mini framed tile") whose third word the first level could not add. Every
    base gets its own: a base of chance tokens whose pair has the lowest loss ("hickman filled") must not keep
    the third word from another ("small purple" -> "small solid purple", renamed 5555); and a base's second
    best pair is extended too (its best, "violet concession", 0.58, is a chance token's; "tiny violet", 0.66).
    Only the base's own tokens: adding every other base's as well tripled the fill-word triples scored on
    renamed 5656 "framed crimson tile" and found the same best ("honda hollow scarlet", 0.442). An extension
    that is no one-token extension of its base, has no room left under ``max_len`` or came already is skipped;
    order: each base's best first, then each base's second, ... With ``pool``, every pair is extended by all of
    its tokens instead (``deep_tokens`` "pool"): a base's tokens are ranked by how they narrow the base alone,
    where a size word does badly ("small" ranks 109th for "crosses": "small crosses" is worse than "crosses"),
    while beside the colour it is the missing word ("small crosses green", renamed 5656 "mini full emerald
    plus")."""
    out: list[tuple[Seq, list[int]]] = []
    for rank in range(max((len(b) for b in bests), default=0)):
        for ext, (base, tokens) in zip(bests, plan):
            best = ext[rank] if rank < len(ext) else None
            if best is None or len(best) >= max_len or any(best == b for b, _ in out):
                continue
            if extends_once(best, base):  # a one-token extension of its own base
                out.append((best, [int(t) for t in (tokens if pool is None else pool) if t not in best]))
    return out


def hard_images(losses: np.ndarray, positive: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` train images where a sequence fails most, to screen its extensions on: its worst positives
    (targets it misses) and its worst negatives (where it fires), half each (the odd one a positive), topped
    up from the other kind where one runs short. Both kinds: on negatives alone a token that silences
    everything would screen best.

    Args:
        losses: (n_images,) the sequence's loss on each image (``Objective.image_losses``).
        positive: (n_images,) bool, whether each image holds a target.
        n: images to pick.
    Returns:
        (min(n, n_images),) sorted image indices.
    """
    pos, neg = np.flatnonzero(positive), np.flatnonzero(~np.asarray(positive, dtype=bool))
    pos = pos[np.argsort(-losses[pos], kind="stable")]  # worst first
    neg = neg[np.argsort(-losses[neg], kind="stable")]
    n_neg = min(len(neg), n // 2)
    n_pos = min(len(pos), n - n_neg)
    n_neg = min(len(neg), n - n_pos)
    return np.sort(np.concatenate([pos[:n_pos], neg[:n_neg]]))


def name_first_bases(name: Seq | None, singles: list[Seq], max_len: int) -> list[Seq]:
    """Extension bases: the name first (if it exists and an extension of it fits ``max_len``), then the
    singles; no repeats."""
    bases = ([name] if name and len(name) < max_len else []) + list(singles)
    return list(dict.fromkeys(bases))


def extend(
    obj: Objective, bases: Sequence[Seq], tokens: Sequence[int], filt: CandidateFilter, n: int = 8
) -> PhaseResult:
    """Score all one-token extensions of ``bases`` by ``tokens`` together (screened); the best ``n`` come back."""
    return extend_each(obj, [(b, tokens) for b in bases], filt, n)


def extend_each(
    obj: Objective,
    plan: Sequence[tuple[Seq, Sequence[int]]],
    filt: CandidateFilter,
    n: int = 8,
    screen_idx: np.ndarray | None = None,
    keep_n: int = 0,
    extra: Sequence[Seq] = (),
) -> PhaseResult:
    """``extend`` with each base's own tokens: ``plan`` is (base, tokens) pairs, best base first; screened on
    ``screen_idx`` (default: the objective's screening images), the best ``keep_n`` then scored in full (0: the
    objective's ``screen_keep`` share); ``extra`` candidates (``gcg.slot_insertions``) are screened with them."""
    timer = PhaseTimer(obj, "extend")
    cands = filt.accept(list(dict.fromkeys([c for b, toks in plan for c in extensions([b], toks)] + list(extra))))
    keep = min(1.0, keep_n / len(cands)) if keep_n and cands else None
    with until_spent():
        losses = obj.score(cands, screen_idx=screen_idx, keep=keep) if cands else np.zeros(0)
        obj.record("extend", 0, float(np.min(losses)) if len(losses) else float("inf"), scored=len(cands))
    return timer.result(cands, n=n)


def random_search(
    obj: Objective,
    filt: CandidateFilter,
    rng: np.random.Generator,
    pool: np.ndarray | None = None,
    lengths: Sequence[int] = (1, 2, 3),
    batch: int = 32,
    max_candidates: int = 512,
) -> PhaseResult:
    """Score random sequences of ``pool`` tokens (default: all allowed) in batches until the budget or
    ``max_candidates`` is spent."""
    timer = PhaseTimer(obj, "random")
    pool = filt.allowed_ids if pool is None else np.asarray(pool)
    seen: list[Seq] = []
    step = 0
    with until_spent():
        while len(seen) < max_candidates and not obj.exhausted:
            cands = filt.accept(random_sequences(rng, pool, batch, [n for n in lengths if n <= filt.max_len] or [1]))
            seen += cands
            losses = obj.score(cands)
            obj.record("random", step, float(np.min(losses)) if len(losses) else float("inf"), scored=len(cands))
            step += 1
    return timer.result(seen)
