"""The synonym test: a word keeps its meaning when swapped for a near row of the token table; a chance fit does not.

Within the re-ranking's tolerance of the best train AP, the winner is often a phrase with a chance token that the
~20 train images reward: on renamed 6060 "framed azure spark" (hollow blue stars) "navy phew" has train AP 0.304
and "blue hollow star" 0.311, held out 0.303 and 0.390 (the oracle "hollow blue star" 0.408). Swap each token for
its k nearest allowed rows of the token-embedding table (cosine): a word has a synonym or a plural there ("navy" ->
"blue", "stars" -> "star", "hollow" -> "empty") and the phrase keeps its train AP; a chance token's neighbours are
other chance tokens, its fit is not shared, and the AP falls ("phew" -> "empty" 0.200, the best of four; "johannes"
in "johannes teal" 0.504 -> 0.124; "surprisingly" in "surprisingly filled hearts" 0.651 -> 0.002).

The pure steps (``synonym_swaps``, ``holds``, ``meaningful_first``) take tiny tensors and callables; the
pipeline supplies the neighbours (FAISS, ``ProjectionIndex`` with the cosine metric) and the memoized train AP.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Protocol

import numpy as np

from alias_opt.search.objective import Seq

if TYPE_CHECKING:
    from alias_opt.search.context import SearchContext


class Row(Protocol):
    """What the re-ranking's rows offer here (``pipeline.RerankRow``)."""

    token_ids: Seq
    train_ap: float
    loss: float

    @property
    def rank_ap(self) -> float:  # the AP the re-ranking ordered by (its train AP, or its wide AP)
        ...


@dataclass
class SynonymTest:
    """One candidate's synonym test.

    Attributes:
        token_ids: the candidate.
        train_ap: its train AP.
        best_swaps: per position the best train AP over that token's swaps (-inf: none scored).
        passed: every position has a swap within the tolerance of ``train_ap``.
    """

    token_ids: Seq
    train_ap: float
    best_swaps: list[float]
    passed: bool

    def to_dict(self, text: str | None = None) -> dict:
        row: dict = {"token_ids": list(self.token_ids)}
        if text is not None:
            row["text"] = text
        swaps = [s if np.isfinite(s) else None for s in self.best_swaps]
        row.update(train_ap=self.train_ap, best_swaps=swaps, passed=self.passed)
        return row


def synonym_swaps(seq: Seq, neighbours: np.ndarray) -> list[list[Seq]]:
    """``seq`` with one token swapped for each of its neighbours, position by position.

    Args:
        seq: (L,) token ids.
        neighbours: (L, k) each token's nearest allowed tokens (itself excluded).
    Returns:
        L lists of k sequences (position i: token i replaced by neighbours[i, j]).
    """
    return [[(*seq[:i], int(t), *seq[i + 1 :]) for t in neighbours[i]] for i in range(len(seq))]


def holds(base: float, swap_aps: Sequence[Sequence[float]], tolerance: float) -> tuple[bool, list[float]]:
    """Whether every position keeps ``base`` within ``tolerance`` under its best swap.

    Args:
        base: the candidate's train AP.
        swap_aps: (L, k) the swapped sequences' train APs (-inf: not scored).
        tolerance: train AP a swap may lose.
    Returns:
        (passed, per position the best swap's AP).
    """
    best = [max(row, default=-np.inf) for row in swap_aps]
    return bool(best) and all(b >= base - tolerance for b in best), [float(b) for b in best]


def meaningful_first(
    rows: Sequence[Row],
    test: Callable[[Seq], SynonymTest],
    tolerance: float,
    limit: int,
    tidy: Callable[[Row], Row] = lambda r: r,
) -> tuple[list[Row], list[SynonymTest]]:
    """``rows`` with the first row that passes the synonym test moved to the front (as ``tidy`` leaves it), if it
    lies within ``tolerance`` of the best ``rank_ap`` (the re-ranking's train AP, or its wide AP); rows are
    tested in their order (the re-ranking's), each as ``tidy`` leaves it (the pipeline drops its inert tokens
    first), at most ``limit`` distinct tidied rows (a row that tidies to one already tested is skipped, not
    counted); the first passing ends the tests (the rows stand as they are where none passes); a row the tidied
    one repeats is dropped.

    Args:
        rows: the re-ranked rows, best first.
        test: a candidate's synonym test.
        tolerance: the train-AP band below the best where a row may move to the front.
        limit: most rows tested.
        tidy: the row a row is tested as (default itself).
    Returns:
        (the rows, the tests run, in order).
    """
    rows = list(rows)
    aps = [r.rank_ap for r in rows if not np.isnan(r.rank_ap)]
    if not rows or not aps or limit < 1:
        return rows, []
    top = max(aps)
    tests: list[SynonymTest] = []
    for r in rows:
        if len(tests) >= limit:
            break
        if np.isnan(r.rank_ap) or r.rank_ap < top - tolerance:
            continue
        tidied = tidy(r)
        if any(t.token_ids == tidied.token_ids for t in tests):
            continue  # tidied to a row already tested (and failed): not tested again, not counted
        t = test(tidied.token_ids)
        tests.append(t)
        if t.passed:
            return [tidied] + [x for x in rows if x is not r and x.token_ids != tidied.token_ids], tests
    return rows, tests


def synonym_test(ctx: SearchContext, seq: Seq, train_ap: Callable[[list[Seq]], list[float]]) -> SynonymTest:
    """``seq``'s synonym test: each token swapped for its ``synonyms`` nearest rows of the table (cosine), the best
    swap per position against ``seq``'s train AP within ``synonym_tolerance``.

    Args:
        ctx: the search context (its config and cosine index of the table).
        seq: (L,) token ids.
        train_ap: the memoized, budget-charged train AP of sequences.
    """
    k, tol = ctx.cfg.synonyms, ctx.cfg.synonym_tolerance
    swaps = synonym_swaps(seq, ctx.synonym_index.neighbours(list(seq), k))  # L lists of k
    aps = train_ap([s for row in swaps for s in row])
    base = train_ap([seq])[0]
    passed, best = holds(base, [aps[i * k : (i + 1) * k] for i in range(len(seq))], tol)
    return SynonymTest(seq, base, best, passed)


def synonym_first(
    ctx: SearchContext,
    rows: Sequence[Row],
    train_ap: Callable[[list[Seq]], list[float]],
    tidy: Callable[[Row], Row] = lambda r: r,
) -> tuple[list[Row], list[SynonymTest]]:
    """The re-ranked ``rows`` with the first that passes the synonym test first (``meaningful_first`` with the
    config's ``synonyms`` neighbours, ``synonym_rows`` and ``synonym_tolerance`` in the ``rerank_tolerance`` band,
    each row tested as ``tidy`` leaves it); unchanged where the test is off, or for a name the model knows (its
    answers keep the annotator's words: ``restore_words``, the name check).

    Args:
        ctx: the search context (its config, cosine index of the table, name and objective).
        rows: the re-ranked rows, best first.
        train_ap: the memoized, budget-charged train AP of sequences (-inf: not scored or not allowed).
        tidy: the row a row is tested as (the pipeline: its inert tokens dropped, ``prune_inert``).
    Returns:
        (the rows, the tests run).
    """
    cfg = ctx.cfg
    if not cfg.synonyms or not rows or rows[0].token_ids == ctx.name_seq or ctx.knows_name():
        return list(rows), []
    test = partial(synonym_test, ctx, train_ap=train_ap)
    out, tests = meaningful_first(rows, test, cfg.rerank_tolerance, cfg.synonym_rows, tidy)
    if tests:
        # the tests stop at the first pass: a row below the first went first iff a later test passed
        ctx.obj.record("synonyms", 0, out[0].loss, tested=len(tests), moved=len(tests) > 1 and tests[-1].passed)
    return out, tests
