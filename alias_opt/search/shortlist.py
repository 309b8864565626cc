"""The concept's vocabulary shortlist: allowed tokens, index views, pooling and model screening.

Discovery and the strategy comparison start from the same shortlist: the top tokens of one or more
``VocabularyIndex`` views of the concept vector, pooled, filtered by ``CandidateFilter`` and (for the
pooled shortlist) screened by the model itself on the objective's screen images.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from itertools import zip_longest

import numpy as np
import torch

from alias_opt.config import SearchConfig, parse_view, view_tokens
from alias_opt.search.embeddings import VocabularyIndex
from alias_opt.search.objective import Objective, Seq
from alias_opt.search.projection import CandidateFilter
from sam3 import Sam3Backend


def allowed_tokens(backend: Sam3Backend, cfg: SearchConfig, name: str | None) -> torch.Tensor:
    """The (V,) allowed-token mask of a category under ``cfg`` (never special tokens)."""
    block: list[str | int] = [int(b) if isinstance(b, int) or str(b).isdigit() else str(b) for b in cfg.blocklist]
    return backend.tokenizer.allowed_mask(
        ascii_only=cfg.ascii_only, blocklist=block, block_words_of=(name or "") if cfg.block_name else ""
    )


def build_shortlist(
    obj: Objective,
    vocab: VocabularyIndex,
    filt: CandidateFilter,
    k: int,
    probes: Sequence[Seq],
    rounds: int = 1,
    two_sided: bool = False,
) -> list[int]:
    """The concept's top-k allowed tokens in the vocabulary index.

    Round 1 probes the model with ``probes`` (the empty prompt and the name); each further round
    probes with the best single token of the previous shortlist (scored on the screening images)
    and merges its shortlist into the first, alternating. With ``two_sided`` half of each
    shortlist comes from the bottom of the ranking (alternating with the top).
    """

    def search(concept: torch.Tensor) -> list[int]:
        top = [int(t) for t in vocab.search(concept, k, allowed=filt.allowed)[0]]
        if not two_sided:
            return top
        bottom = [int(t) for t in vocab.search(-concept, k, allowed=filt.allowed)[0]]
        return _interleave(top, bottom, k)

    concept = obj.concept(vocab.space, probes)
    shortlist = search(concept)
    for _ in range(1, rounds):
        if vocab.space == "text" or not shortlist:
            break
        singles = filt.accept([(t,) for t in shortlist])
        losses = obj.screen_losses(singles)
        best = singles[int(np.argmin(losses))]
        concept = obj.concept(vocab.space, [best])
        shortlist = _interleave(search(concept), shortlist, k)
    return shortlist


def view_spaces(cfg: SearchConfig) -> list[str]:
    """The index spaces a config needs: ``index.space`` and every space its views name."""
    spaces = [cfg.index.space] + [parse_view(view)[2] or cfg.index.space for view in cfg.index.views]
    return list(dict.fromkeys(spaces))


def build_indexes(backend: Sam3Backend, cfg: SearchConfig) -> dict[str, VocabularyIndex]:
    """The vocabulary indexes of a config, by space, ``index.space`` first (each cached on disk)."""
    return {s: VocabularyIndex.build(backend, s, cfg.index.cache_dir) for s in view_spaces(cfg)}


def _interleave(a: Sequence[int], b: Sequence[int], k: int) -> list[int]:
    """a[0], b[0], a[1], b[1], ... without repeats, cut to k."""
    out: list[int] = []
    for x, y in zip(a, b):
        out += [x, y]
    return list(dict.fromkeys([*out, *a, *b]))[:k]


def pooled_shortlist(
    obj: Objective,
    indexes: Mapping[str, VocabularyIndex],
    filt: CandidateFilter,
    k: int,
    probes: Sequence[Seq],
    views: Sequence[str],
    pool: int,
    qualify: Seq | None = None,
    neighbours: Callable[[Sequence[int]], np.ndarray] | None = None,
    heads: int = 0,
    gate: int = 0,
) -> list[int]:
    """A shortlist screened by the model itself from a pool drawn from several index views.

    Each view contributes its top ``pool / len(views)`` (or, as ``"VIEW@N"``, N) allowed tokens, in turn: ``SPACE``
    (nearest to the concept vector in that space), ``-SPACE`` (the other end of the same ranking:
    the concept vector's sign is only as good as the probe, and a model's known words lie far out
    on either side) and ``distinct`` / ``distinct:SPACE`` (the model's most distinctive tokens,
    concept-free). The pooled tokens are scored as one-token aliases on the screening images; the
    best k, best first, are the shortlist. With ``qualify`` (the name's tokens) each token is also
    scored placed before it (``qualifier_losses``) and ranks by the better of its two losses. With ``neighbours``
    (token ids (H,) -> their nearest tokens (H, n): ``ProjectionIndex.neighbours``) the nearest tokens of the
    screened pool's best ``heads`` join it (``head_neighbours``), screened the same way, and all rank together.
    With ``gate`` as well, the nearest tokens of the rest of the pool are screened too and join where they screen
    at least as well as the pool's ``gate``-th token: a word no view holds whose neighbours rank low.
    """

    def screened(tokens: Sequence[int]) -> np.ndarray:
        losses = obj.screen_losses([(t,) for t in tokens])
        if qualify:
            losses = np.minimum(losses, qualifier_losses(obj, filt, tokens, qualify))
        return losses

    tokens = view_pool(obj, indexes, filt, probes, views, pool)
    losses = screened(tokens)
    if neighbours is not None and heads > 0 and tokens:
        ranked = [tokens[i] for i in np.argsort(losses, kind="stable")]
        near = neighbours(ranked if gate > 0 else ranked[:heads])  # (H, n)
        bar = float(np.sort(losses)[min(gate, len(losses)) - 1]) if gate > 0 else float("inf")
        for rows, cut in ((near[:heads], float("inf")), (near[heads:], bar)):
            new = filt.accept([(t,) for t in head_neighbours(tokens, rows)])  # canonical forms
            have = set(tokens)
            new = [s[0] for s in new if len(s) == 1 and s[0] not in have]
            if new:
                new_losses = screened(new)
                keep = new_losses <= cut
                tokens = tokens + [t for t, ok in zip(new, keep) if ok]
                losses = np.concatenate([losses, new_losses[keep]])
    return [tokens[i] for i in np.argsort(losses, kind="stable")[:k]]


def head_neighbours(ranked: Sequence[int], near: np.ndarray) -> list[int]:
    """The tokens of ``near`` not in ``ranked``, each once, row by row (the best head's first).

    Args:
        ranked: the screened pool, best first; near: (H, n) the nearest tokens of its first H.
    """
    have = {int(t) for t in ranked}
    return [t for t in dict.fromkeys(int(t) for t in np.asarray(near).reshape(-1)) if t not in have]


def view_lists(
    obj: Objective,
    indexes: Mapping[str, VocabularyIndex],
    filt: CandidateFilter,
    probes: Sequence[Seq],
    views: Sequence[str],
    pool: int,
    depth: int = 0,
) -> list[list[int]]:
    """Each view's top allowed tokens, best first: N for ``"VIEW@N"`` (``view_tokens``), else ``pool / len(views)``;
    every view to ``depth`` instead where it is given (``bench/pool_depth.py``). Concept vectors are paid by ``obj``."""
    per = max(1, -(-pool // max(1, len(views))))
    concepts: dict[str, torch.Tensor] = {}
    lists: list[list[int]] = []
    for view in views:
        distinct, sign, space = parse_view(view)
        k = depth or view_tokens(view, per)
        space = space or next(iter(indexes))  # bare "distinct": the first index (build_indexes: index.space)
        if distinct:
            lists.append([int(t) for t in indexes[space].distinct(k, filt.allowed)])
            continue
        if space not in concepts:
            concepts[space] = obj.concept(space, probes)
        lists.append([int(t) for t in indexes[space].search(sign * concepts[space], k, allowed=filt.allowed)[0]])
    return lists


def view_pool(
    obj: Objective,
    indexes: Mapping[str, VocabularyIndex],
    filt: CandidateFilter,
    probes: Sequence[Seq],
    views: Sequence[str],
    pool: int,
) -> list[int]:
    """The unscreened pool of ``pooled_shortlist``: each view's top allowed tokens (``view_lists``), taken in turn,
    the first ``pool`` distinct ones the filter accepts as one-token aliases (concept vectors paid)."""
    lists = view_lists(obj, indexes, filt, probes, views, pool)
    pooled = [t for row in zip_longest(*lists) for t in row if t is not None]  # in turn, each view to its depth
    return [s[0] for s in filt.accept([(t,) for t in dict.fromkeys(pooled)][:pool])]


def qualifier_losses(obj: Objective, filt: CandidateFilter, tokens: Sequence[int], name: Seq) -> np.ndarray:
    """(N,) screening losses of each token placed before ``name`` ("pink" + "circle"); inf where the
    filter rejects the pair (too long, or it does not round-trip)."""
    return _pair_losses(obj, filt, [filt((int(t), *name)) for t in tokens])


def narrowing_losses(obj: Objective, filt: CandidateFilter, tokens: Sequence[int], base: Seq) -> np.ndarray:
    """(N,) the better screening loss of each token placed before and after ``base`` ("large" + "red",
    "red" + "star"); inf where the filter rejects both."""
    before = _pair_losses(obj, filt, [filt((int(t), *base)) for t in tokens])
    after = _pair_losses(obj, filt, [filt((*base, int(t))) for t in tokens])
    return np.minimum(before, after)


def _pair_losses(obj: Objective, filt: CandidateFilter, seqs: Sequence[Seq | None]) -> np.ndarray:
    """Screening losses of ``seqs`` (scored together, each once); inf for None (rejected by the filter)."""
    ok = list(dict.fromkeys(p for p in seqs if p is not None))
    scored = dict(zip(ok, obj.screen_losses(ok))) if ok else {}
    return np.array([scored[p] if p is not None else np.inf for p in seqs], dtype=float)
