"""Aliases a person can read: drop tokens that do not earn their place, prefer words to fragments.

After the search, ``restore_words`` puts back the name's words the winner dropped where that costs
at most a tolerance of train score ("huge teal" -> "huge teal cross" for "large cross": a small train
split cannot tell the two apart, the annotator's word can), then ``prune_inert`` removes, one at a
time, the token whose removal costs the least train score, as long as that cost stays within a
tolerance ("red host" -> "red" when "host" adds nothing). ``readability`` ranks token sequences at
equal score: whole words before word pieces, ASCII before other characters, shorter before longer.
All are pure functions of a scoring callback and token strings, so tests drive them with tiny fakes.
"""

from __future__ import annotations

from collections import Counter
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
    one token; the tokens of ``keep`` (the category name's: the annotator's words) are never removed,
    as many times as ``keep`` holds them: a second copy of a kept token is pruned like any other
    ("star solid star" for the name "star": dropping one "star" leaves "solid star").

    Args:
        seq: (L,) token ids.
        score_fn: batched train score, higher is better (e.g. train AP).
        tolerance: the largest score loss accepted against the starting score.
        base: the starting sequence's score, if already known.
        keep: token ids never removed (a sequence, such as the name's ids, or a set), with multiplicity.
    """
    cur = tuple(int(t) for t in seq)
    start = score_fn([cur])[0] if base is None else float(base)
    score, dropped = start, []
    kept = Counter(int(t) for t in keep)
    while len(cur) > 1:
        have = Counter(cur)
        at = [i for i in range(len(cur)) if have[cur[i]] > kept[cur[i]]]
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


@dataclass(frozen=True)
class RestoreResult:
    """An alias with the name's words put back."""

    seq: Seq  # the alias after restoring
    score: float  # its train score
    added: tuple[int, ...]  # the name's token ids put in, in order
    replaced: tuple[int, ...]  # the token ids they replaced (at max_len), in order
    start_score: float  # the train score before restoring


def restore_words(
    seq: Sequence[int],
    words: Sequence[int],
    score_fn: ScoreFn,
    tolerance: float = 0.0,
    base: float | None = None,
    max_len: int | None = None,
) -> RestoreResult:
    """Greedily put the tokens of ``words`` that ``seq`` lacks back into it, where that lowers the train
    score by at most ``tolerance``.

    Each round scores, in one batch, every missing token (``words`` minus ``seq``, as multisets) at every
    position of the current sequence: inserted while it is shorter than ``max_len``, else in place of
    a token that is not one of ``words`` ("empty red circle" -> "hollow red circle" for "hollow circle"
    at three tokens) or is a surplus copy of one ("small small purple" -> "small star purple" for
    "small star"). It keeps the best-scoring move (the earliest on ties) if that is within
    ``tolerance`` of the *starting* score; else restoring stops.

    Args:
        seq: (L,) token ids, the alias.
        words: (N,) token ids, the name's.
        score_fn: batched train score, higher is better (e.g. train AP).
        tolerance: the largest score loss accepted against the starting score.
        base: the starting sequence's score, if already known.
        max_len: the longest sequence allowed (None: no limit).
    """
    cur = tuple(int(t) for t in seq)
    order = [int(t) for t in words]
    missing = Counter(order) - Counter(cur)
    start = score_fn([cur])[0] if base is None else float(base)
    score, added, replaced = start, [], []
    while missing:
        toks = sorted(missing, key=order.index)  # the name's order
        if max_len is None or len(cur) < max_len:
            moves = [(t, i, False) for t in toks for i in range(len(cur) + 1)]
        else:
            surplus = Counter(cur) - Counter(order)  # tokens beyond the name's own copies
            moves = [(t, i, True) for t in toks for i in range(len(cur)) if surplus[cur[i]] > 0]
        if not moves:
            break
        cands = [cur[:i] + (t,) + cur[i + swap :] for t, i, swap in moves]
        scores = score_fn(cands)
        best = max(range(len(cands)), key=lambda j: (scores[j], -j))
        if scores[best] < start - tolerance:
            break
        tok, at, swap = moves[best]
        added.append(tok)
        if swap:
            replaced.append(cur[at])
        missing = missing - Counter([tok])
        cur, score = cands[best], float(scores[best])
    return RestoreResult(cur, score, tuple(added), tuple(replaced), start)


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
