"""Aliases a person can read: drop tokens that do not earn their place, prefer words to fragments.

After the search, ``prune_inert`` removes, one at a time, the token whose removal costs the least
train score, as long as that cost stays within a tolerance ("red host" -> "red" when "host" adds
nothing). ``readability`` ranks token sequences at equal score: whole words before word pieces,
ASCII before other characters, shorter before longer. Both are pure functions of a scoring
callback and token strings, so tests drive them with tiny fakes.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

Seq = tuple[int, ...]
ScoreFn = Callable[[list[Seq]], list[float]]  # train score (higher is better) of each sequence, batched


@dataclass(frozen=True)
class PruneResult:
    """A pruned alias and what was dropped."""

    seq: Seq  # the alias after pruning
    score: float  # its train score
    dropped: tuple[int, ...]  # token ids removed, in the order they were removed
    start_score: float  # the train score before pruning


def prune_inert(
    seq: Sequence[int],
    score_fn: ScoreFn,
    tolerance: float = 0.0,
    base: float | None = None,
    keep: Collection[int] = (),
) -> PruneResult:
    """Greedily remove tokens whose removal lowers the train score by at most ``tolerance``.

    Each round scores every one-token deletion of the current sequence in one batch and removes
    the token whose deletion scores best, if that is within ``tolerance`` of the *starting* score
    (so dropping many tokens cannot add up to more than ``tolerance``). A sequence keeps at least
    one token; tokens in ``keep`` (the category name's: the annotator's words) are never removed.

    Args:
        seq: (L,) token ids.
        score_fn: batched train score, higher is better (e.g. train AP).
        tolerance: the largest score loss accepted against the starting score.
        base: the starting sequence's score, if already known.
        keep: token ids never removed.
    """
    cur = tuple(int(t) for t in seq)
    start = score_fn([cur])[0] if base is None else float(base)
    score, dropped = start, []
    while len(cur) > 1:
        at = [i for i in range(len(cur)) if cur[i] not in keep]
        if not at:
            break
        cands = [cur[:i] + cur[i + 1 :] for i in at]
        scores = score_fn(cands)
        best = max(range(len(cands)), key=lambda j: (scores[j], -j))
        if scores[best] < start - tolerance:
            break
        dropped.append(cur[at[best]])
        cur, score = cands[best], float(scores[best])
    return PruneResult(cur, score, tuple(dropped), start)


def is_word(token: str) -> bool:
    """A whole word: a BPE string that ends a word (``</w>``) and is made of letters only."""
    return token.endswith("</w>") and token[: -len("</w>")].isalpha() and len(token) > len("</w>") + 1


def readability(tokens: Sequence[str]) -> tuple[int, int, int]:
    """Sort key of a sequence's BPE strings, smaller is more readable: (non-words, non-ASCII
    tokens, length)."""
    return (sum(not is_word(t) for t in tokens), sum(not t.isascii() for t in tokens), len(tokens))


def has_inert_token(seq: Sequence[int], score_fn: ScoreFn, tolerance: float = 0.0) -> bool:
    """Whether some token of ``seq`` can be removed at a score loss of at most ``tolerance``
    (what the report counts as an alias with inert filler)."""
    seq = tuple(seq)
    if len(seq) < 2:
        return False
    scores = score_fn([seq, *(seq[:i] + seq[i + 1 :] for i in range(len(seq)))])
    return max(scores[1:]) >= scores[0] - tolerance
