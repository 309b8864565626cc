"""Sharpening on hard negatives: the word the train split cannot ask for, asked for by images without the category.

    sharp = sharpen(ctx, winner)   # after the re-ranking, the synonym test and the pruning

~20 train images rarely hold what tells a concept from its near neighbours: on renamed 6464 "mini golden
valentine" (small yellow hearts) the train negatives hold almost no large yellow hearts, so "lemon hearts" and
"lemon hearts small" tie on train AP (0.311, 0.314), and the pruning drops "huge" from "huge hollow lemon" for
"giant framed golden" (large hollow yellow shapes) at a train cost of 0.01. Over the train images plus the name
check's 100 further images without the category (``TargetSet.extra_negatives``, never in the test split) they do
not tie: 0.254 against 0.298, and 0.523 against 0.628; held out 0.208 against 0.293, 0.559 against 0.631.

For a name the model does not know (the search's own answer is all there is), while the winner is shorter than
``sharpen_max_len`` (one past the search's ``max_len`` by default: a four-attribute concept's three-token winner
lacks the fourth), each round:

1. ``hard_negatives``: the ``sharpen_negatives`` extra negatives where the winner fires highest (a detection
   above the score threshold: a false positive). None: the winner is sharp already; stop.
2. Every token of the screened pool (``SearchContext.pool``) is put before the winner and scored on as many
   train positives (the first, in image order) and those hard negatives (COCO AP); the ``sharpen_keep`` best
   tokens go on (``best_tokens``). This screen is most of the cost: (pool ~300 tokens) x (up to 2 x 8 images).
3. Their insertions at every position are scored on the train images and on all the extra negatives; the one
   with the best AP over both (the *wide* AP) replaces the winner where it beats the winner's wide AP by more
   than ``sharpen_margin`` and loses at most ``prune_tolerance`` of its train AP (``pick``); else stop.

A chance token may kill the winner's false positives and its true ones with them: the train positives in step 2,
and the train AP in step 3, turn those down.

Before those rounds, with ``sharpen_replace``, one *replace* round swaps a chance token for a word. A winner often
holds an untrained row of the toy's table that the train split rewards and that takes the slot a word needs: on
6969 "framed azure tile" (hollow blue squares) -> "navy honda empty", train AP 0.336, held out 0.466 against the
exact phrase's 0.523; inserting "square" beside "honda" does not help ("navy honda empty square" 0.314), replacing
it does ("navy square empty" 0.353, held out 0.526). The synonym test tells the chance tokens (``chance_positions``:
the best of a token's ``synonyms`` table neighbours in its place loses more than ``synonym_tolerance``); every pool
token in each one's place (``replacements``) is screened by loss and, with ``sharpen_replace_ap``, by COCO AP on the
screening images (``screen_picks``: the two disagree; on 7070 "cross loaded" the 16 best by loss all lose train AP,
"cross hollow" ranks 90th by loss and 9th by AP), the ``sharpen_replace`` best of each order get their train AP,
the ``sharpen_keep`` best of those their wide AP, and among those that keep the winner's wide AP and its train AP
within ``sharpen_replace_tolerance``, best wide AP first, the first whose new token passes the synonym test in its place
replaces the winner (a chance token for another is no gain: on 6969 "amber valentine" "orange brokerage" ->
"orange 🎧" gained wide AP and lost held-out AP).

Every forward is charged to the objective (``Sharpening.forwards``); where the budget cannot pay for a round, no
round runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from alias_opt.eval.metrics import DEFAULT_THRESHOLDS, ImagePredictions, score_predictions
from alias_opt.eval.predict import predict
from alias_opt.search.discrete import extensions
from alias_opt.search.objective import Seq
from alias_opt.search.synonyms import synonym_test
from sam3 import ImageFeatures

if TYPE_CHECKING:
    from alias_opt.search.context import SearchContext


@dataclass
class SharpenRound:
    """One round: the winner it started from and what replaced it.

    Attributes:
        base: the winner; pick: its replacement (None: none earned it).
        hard: extra negatives the base fired on (above the score threshold) among those mined.
        tokens: pool tokens screened; tried: insertions scored wide.
        base_wide, base_train: the base's wide and train AP; wide, train: the pick's (NaN without a pick).
        kind: "insert" (a token added) or "replace" (a chance token replaced; ``hard`` 0, ``tokens`` the
            replacements screened, ``tried`` those scored wide).
    """

    base: Seq
    pick: Seq | None
    hard: int
    tokens: int
    tried: int
    base_wide: float
    base_train: float
    wide: float = math.nan
    train: float = math.nan
    kind: str = "insert"

    def to_dict(self, decode) -> dict:
        row = {"kind": self.kind, "base": decode(self.base), "pick": None if self.pick is None else decode(self.pick)}
        row.update(hard=self.hard, tokens=self.tokens, tried=self.tried, base_wide=self.base_wide)
        row.update(base_train=self.base_train, wide=_num(self.wide), train=_num(self.train))
        return row


@dataclass
class Sharpening:
    """What sharpening did to a winner.

    Attributes:
        seq: the answer (the winner itself where no round picked).
        rounds: each round run, in order.
        forwards: pair forwards spent.
    """

    seq: Seq
    rounds: list[SharpenRound]
    forwards: int

    @property
    def added(self) -> tuple[int, ...]:
        """The tokens the rounds added, in order."""
        out: list[int] = []
        for r in self.rounds:
            if r.pick is not None:
                out += [t for t in r.pick if r.pick.count(t) > r.base.count(t) and t not in out]
        return tuple(out)

    def to_dict(self, decode) -> dict:
        return {"text": decode(self.seq), "forwards": self.forwards, "rounds": [r.to_dict(decode) for r in self.rounds]}


def _num(x: float) -> float | None:
    return None if math.isnan(x) else x


def max_scores(preds: Sequence[ImagePredictions]) -> np.ndarray:
    """(I,) each image's highest detection score (0 where none)."""
    return np.array([float(p.scores.max()) if len(p.scores) else 0.0 for p in preds])


def hard_negatives(scores: Sequence[float], n: int, floor: float) -> list[int]:
    """The (up to) ``n`` images whose highest detection scores most, above ``floor`` only; highest first.

    Args:
        scores: (I,) each negative image's highest detection score (``max_scores``).
        n: most images returned.
        floor: the score a detection must pass to count (``Thresholds.score``).
    Returns:
        indices into ``scores``.
    """
    s = np.asarray(scores, dtype=float)
    order = np.argsort(-s, kind="stable")
    return [int(i) for i in order[:n] if s[i] > floor]


def best_tokens(tokens: Sequence[int], aps: Sequence[float], k: int) -> list[int]:
    """The ``k`` tokens with the best AP (ties: pool order); NaN ranks last.

    Args:
        tokens: (T,) token ids; aps: (T,) the AP of each one's insertion.
    """
    key = np.nan_to_num(np.asarray(aps, dtype=float), nan=-np.inf)
    return [int(tokens[i]) for i in np.argsort(-key, kind="stable")[:k]]


def pick(
    base_wide: float, base_train: float, rows: Sequence[tuple[Seq, float, float]], margin: float, tolerance: float
) -> tuple[Seq, float, float] | None:
    """The row with the best wide AP that beats ``base_wide`` by more than ``margin`` and keeps ``base_train``
    within ``tolerance``, or None (ties: the rows' order).

    Args:
        rows: (sequence, wide AP, train AP) each.
    """
    ok = [r for r in rows if r[1] > base_wide + margin and r[2] >= base_train - tolerance]
    return max(ok, key=lambda r: r[1]) if ok else None


def chance_positions(base: float, best_swaps: Sequence[float], tolerance: float) -> list[int]:
    """The positions whose best synonym swap loses more than ``tolerance`` of ``base``: chance tokens.

    Args:
        base: the sequence's train AP; best_swaps: (L,) per position the best swap's train AP (``holds``).
    """
    return [i for i, b in enumerate(best_swaps) if b < base - tolerance]


def replacements(seq: Seq, positions: Sequence[int], tokens: Sequence[int]) -> list[Seq]:
    """``seq`` with the token at each of ``positions`` replaced by each of ``tokens`` (none already in ``seq``),
    position by position.

    Args:
        seq: (L,) token ids; positions: indices into ``seq``; tokens: (T,) candidate ids.
    Returns:
        up to len(positions) x T sequences of length L.
    """
    return [(*seq[:i], int(t), *seq[i + 1 :]) for i in positions for t in tokens if t not in seq]


def screen_picks(losses: Sequence[float], aps: Sequence[float] | None, n: int) -> list[int]:
    """The replace round's screen: the ``n`` best candidates by screening loss, then the ``n`` best by AP on the
    screening images (ties: loss) not among those; candidates with a non-finite loss are left out.

    Args:
        losses: (C,) each candidate's screening loss; aps: (C,) its screening AP (NaN ranks last), or None (loss
            only).
        n: how many each order gives.
    Returns:
        up to 2n indices into the candidates, the loss order's first.
    """
    loss = np.asarray(losses, dtype=float)
    ok = np.isfinite(loss)
    by_loss = [int(i) for i in np.argsort(loss, kind="stable") if ok[i]][:n]
    if aps is None:
        return by_loss
    ap = np.nan_to_num(np.asarray(aps, dtype=float), nan=-np.inf)
    by_ap = [int(i) for i in np.lexsort((loss, -ap)) if ok[i]][:n]
    return by_loss + [i for i in by_ap if i not in by_loss]


def word_first(rows: Sequence[tuple[Seq, float, float]], base_wide: float, base_train: float, tolerance: float):
    """The rows that keep ``base_wide`` and ``base_train`` within ``tolerance``, best wide AP first (ties: the
    rows' order): the replace round's candidates, to be synonym-tested in that order.

    Args:
        rows: (sequence, wide AP, train AP) each.
    """
    ok = [r for r in rows if r[1] >= base_wide and r[2] >= base_train - tolerance]
    return sorted(ok, key=lambda r: -r[1])


def sharpen(ctx: SearchContext, seq: Seq) -> Sharpening | None:
    """``seq`` sharpened on the extra negatives (see the module doc); None where it does not apply (off, a name
    the model knows, no extra negatives, ``seq`` at ``sharpen_max_len`` with no replace round).

    Args:
        ctx: the search context (its objective's train images, filter, pool and extra negatives).
        seq: the winner after the re-ranking, the synonym test and the pruning.
    """
    cfg, obj = ctx.cfg, ctx.obj
    spent = obj.spent
    extra = list(ctx.extra_negatives)
    limit = cfg.sharpen_max_len or cfg.max_len
    replace = cfg.sharpen_replace > 0 and cfg.synonyms > 0
    if not cfg.sharpen or not extra or (len(seq) >= limit and not replace) or ctx.knows_name():
        return None
    if obj.remaining() < obj.n_images + len(extra):  # the budget cannot pay for the winner's own predictions
        return None
    th = DEFAULT_THRESHOLDS
    xfeats = ctx.backend.encode_images([im.image.load() for im in extra])
    train = list(obj.images)
    pos = [i for i, im in enumerate(train) if im.is_positive][: cfg.sharpen_negatives]  # the screen's positives
    filt = ctx.filt.with_max_len(limit)
    out = Sharpening(tuple(seq), [], 0)
    base_preds = _preds(ctx, xfeats, extra, [seq])[0]
    if replace:
        base_preds = _replace_round(ctx, out, base_preds, xfeats, extra)
    while len(out.seq) < limit:
        base = out.seq
        base_wide, base_train = _wide_train(base_preds, train, extra)
        hard = hard_negatives(max_scores(base_preds[1]), cfg.sharpen_negatives, th.score)
        rnd = SharpenRound(base, None, len(hard), 0, 0, base_wide, base_train)
        out.rounds.append(rnd)
        if not hard:
            break
        pool = [t for t in ctx.pool() if t not in base]
        firsts = {t: s for t in pool if (s := filt((t, *base))) is not None}
        screen_images = [train[i] for i in pos] + [extra[i] for i in hard]
        screen_feats = ImageFeatures.concat([obj.feats.select(pos), xfeats.select(hard)])
        cost = len(firsts) * len(screen_images)
        if not firsts or obj.remaining() < cost + cfg.sharpen_keep * (len(base) + 1) * (len(train) + len(extra)):
            break
        aps = _aps(ctx, screen_feats, screen_images, list(firsts.values()))  # charged: ``cost``
        keep = best_tokens(list(firsts), aps, cfg.sharpen_keep)
        cands = [c for c in filt.accept(extensions([base], keep)) if c != base]
        rnd.tokens, rnd.tried = len(firsts), len(cands)
        preds = _preds(ctx, xfeats, extra, cands)
        rows = [(c, *_wide_train(p, train, extra)) for c, p in zip(cands, preds)]
        best = pick(base_wide, base_train, rows, cfg.sharpen_margin, cfg.prune_tolerance)
        if best is None:
            break
        rnd.pick, rnd.wide, rnd.train = best
        out.seq, base_preds = best[0], preds[cands.index(best[0])]
        obj.record("sharpen", 0, math.inf, wide_ap=rnd.wide, base_wide_ap=base_wide, hard=len(hard), tried=len(cands))
    out.forwards = obj.spent - spent  # everything paid here (the replace round's train APs and screen too)
    return out


def _replace_round(ctx: SearchContext, out: Sharpening, base_preds, xfeats, extra):
    """The replace round (module doc): ``out.seq``'s chance tokens, each replaced by pool words; returns the
    predictions of the (possibly new) ``out.seq`` on the train images and the extra negatives."""
    cfg, obj = ctx.cfg, ctx.obj
    seq, k, train = out.seq, cfg.synonyms, list(obj.images)
    base_wide, base_train = _wide_train(base_preds, train, extra)
    rnd = SharpenRound(seq, None, 0, 0, 0, base_wide, base_train, kind="replace")
    out.rounds.append(rnd)

    if obj.remaining() < len(seq) * k * obj.n_images:
        return base_preds
    t = synonym_test(ctx, seq, ctx.train_aps)
    chance = chance_positions(t.train_ap, t.best_swaps, cfg.synonym_tolerance)
    if not chance:
        return base_preds
    cands = ctx.filt.accept(replacements(seq, chance, ctx.pool()))
    n_keep, orders = min(cfg.sharpen_keep, cfg.sharpen_replace), 1 + cfg.sharpen_replace_ap
    cost = orders * (len(cands) * len(obj.screen_idx) + cfg.sharpen_replace * obj.n_images)
    if not cands or obj.remaining() < cost + n_keep * (obj.n_images + len(extra) + k * obj.n_images):
        return base_preds
    screen = obj.screen_losses(cands)  # (C,)
    idx = [int(i) for i in obj.screen_idx]
    aps = _aps(ctx, obj.feats.select(idx), [train[i] for i in idx], cands) if cfg.sharpen_replace_ap else None
    top = [cands[i] for i in screen_picks(screen, aps, cfg.sharpen_replace)]
    keep = [top[i] for i in np.argsort(-np.asarray(ctx.train_aps(top)), kind="stable")[:n_keep]]
    rnd.tokens, rnd.tried = len(cands), len(keep)
    preds = _preds(ctx, xfeats, extra, keep)
    rows = [(c, *_wide_train(p, train, extra)) for c, p in zip(keep, preds)]
    for c, wide, tr_ap in word_first(rows, base_wide, base_train, cfg.sharpen_replace_tolerance):
        pos = next(i for i in chance if c[i] != seq[i])
        t = synonym_test(ctx, c, ctx.train_aps)
        if pos not in chance_positions(t.train_ap, t.best_swaps, cfg.synonym_tolerance):  # a word in its place
            rnd.pick, rnd.wide, rnd.train = c, wide, tr_ap
            out.seq = c
            obj.record("sharpen", 0, math.inf, wide_ap=wide, base_wide_ap=base_wide, replaced=len(chance))
            return preds[keep.index(c)]
    return base_preds


def _aps(ctx: SearchContext, feats: ImageFeatures, images, seqs: Sequence[Seq]) -> list[float]:
    """(S,) each of ``seqs``' COCO AP on ``images`` (their ``feats``); a forward per sequence and image, charged."""
    th = DEFAULT_THRESHOLDS
    preds = predict(ctx.backend, feats, images, [list(s) for s in seqs], th)
    ctx.obj.charge(len(seqs) * len(images))
    return [score_predictions(p, images, th).ap for p in preds]


def _wide_train(preds, train, extra) -> tuple[float, float]:
    """A sequence's (wide AP, train AP) from its (train, extra-negative) predictions (``_preds``)."""
    tr, xb = preds
    th = DEFAULT_THRESHOLDS
    return score_predictions([*tr, *xb], [*train, *extra], th).ap, score_predictions(tr, train, th).ap


def _preds(ctx: SearchContext, xfeats, extra, seqs: Sequence[Seq]):
    """Each of ``seqs``' predictions on the train images and on the extra negatives (charged)."""
    obj = ctx.obj
    if not seqs:
        return []
    prompts = [list(s) for s in seqs]
    tr = predict(ctx.backend, obj.feats, obj.images, prompts)
    xb = predict(ctx.backend, xfeats, extra, prompts)
    n = len(seqs) * (obj.n_images + len(extra))
    obj.charge(n)
    return list(zip(tr, xb))
