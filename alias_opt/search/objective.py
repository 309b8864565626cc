"""The objective of one target set: what every search phase optimises and pays for.

An ``Objective`` is three named parts and the search's bookkeeping around them:

* ``Scorer`` (``alias_opt.search.scorer``): batched ``ground`` + the set loss on cached features;
* ``Memo`` (``alias_opt.search.memo``): the loss of every scored sequence, under typed keys;
* ``CostMeter`` (``alias_opt.search.meter``): pairs spent, the optional hard budget, the trace.

Phases talk to the objective through its methods: ``score`` (screened, memoized fitness of token
sequences), ``losses`` / ``screen_losses``, ``loss_grad`` (differentiable loss of input embeddings),
``loss_of`` / ``screen_loss_of`` / ``is_known`` (memo look-ups), ``ranked``, ``charge`` /
``capped`` / ``remaining`` / ``exhausted`` (the budget), ``concept`` (the concept vector, paid) and
``record`` (the step history for the JSONL log).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from alias_opt.config import LossConfig
from alias_opt.search.memo import Memo, Split, Subset
from alias_opt.search.meter import BACKWARD_COST, BudgetExhausted, CostMeter, TracePoint, Usage
from alias_opt.search.scorer import Scorer, resize_masks
from sam3 import ImageFeatures, Sam3Backend

__all__ = [
    "BACKWARD_COST",
    "BudgetExhausted",
    "Objective",
    "Seq",
    "Step",
    "resize_masks",
]

Seq = tuple[int, ...]


@dataclass
class Step:
    """One line of the JSONL history."""

    phase: str
    step: int
    loss: float
    best_loss: float
    best: list[int]
    forward_passes: int
    backward_passes: int
    wall_time: float
    extra: dict = field(default_factory=dict)


def tagged(on_step: Callable[[Step], None] | None, prefix: str) -> Callable[[Step], None] | None:
    """``on_step`` with each step's phase prefixed (a sub-search's steps in the one history file)."""
    if on_step is None:
        return None
    return lambda st: on_step(dataclasses.replace(st, phase=prefix + st.phase))


class Objective:
    """Loss and fitness of token sequences for one target set on its train images.

    Args:
        backend: the frozen SAM 3.
        images: train images (``alias_opt.data.targets.TargetImage``), see ``Scorer``.
        loss: loss weights.
        feats: their image features (default: encoded here).
        allowed: (V,) bool mask of tokens a sequence may use.
        screen_images: size of the screening subset (positives and negatives).
        screen_keep: fraction of screened candidates scored on all images.
        budget: forward-equivalents this objective may spend (0: unlimited); never overrun.
        seed: for the screening subset and image mini-batches.
        on_step: called with every recorded ``Step`` (e.g. a JSONL writer).
    """

    def __init__(
        self,
        backend: Sam3Backend,
        images: Sequence,
        loss: LossConfig | None = None,
        feats: ImageFeatures | None = None,
        allowed: torch.Tensor | None = None,
        screen_images: int = 6,
        screen_keep: float = 0.25,
        budget: int = 0,
        seed: int = 0,
        on_step: Callable[[Step], None] | None = None,
    ):
        self.scorer = Scorer(backend, images, loss, feats)
        self.memo = Memo()
        self.meter = CostMeter(budget)
        self.allowed = allowed
        self.screen_keep = screen_keep
        self.rng = np.random.default_rng(seed)
        self._best: Seq | None = None
        self._best_loss = math.inf
        self.history: list[Step] = []
        self.on_step = on_step
        self.t0 = time.perf_counter()
        self.screen_idx = self._balanced(min(screen_images, self.n_images), np.random.default_rng(seed))

    # ------------------------------------------------------------------ the train images
    @property
    def backend(self) -> Sam3Backend:
        return self.scorer.backend

    @property
    def images(self) -> list:
        return self.scorer.images

    @property
    def feats(self) -> ImageFeatures:
        return self.scorer.feats

    @property
    def n_images(self) -> int:
        return self.scorer.n_images

    def _balanced(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n image indices, about two thirds positives (all positives first if there are few)."""
        positive = self.scorer.positive
        pos, neg = np.flatnonzero(positive), np.flatnonzero(~positive)
        if n >= self.n_images:
            return self.scorer.all_idx.copy()
        n_neg = min(len(neg), n // 3)
        n_pos = min(len(pos), n - n_neg)
        n_neg = min(len(neg), n - n_pos)
        idx = np.concatenate([rng.choice(pos, n_pos, replace=False), rng.choice(neg, n_neg, replace=False)])
        return np.sort(idx)

    def sample_images(self, n: int) -> np.ndarray:
        """A random balanced mini-batch of train image indices (for stochastic gradient steps)."""
        return self._balanced(n, self.rng)

    def screen_cost(self, keep: float | None = None) -> float:
        """Expected pair forwards per new candidate under screening (screen images + the kept share:
        ``keep``, default ``screen_keep``)."""
        return len(self.screen_idx) + (self.screen_keep if keep is None else keep) * self.n_images

    # ------------------------------------------------------------------ the budget
    def usage(self) -> Usage:
        """Work done so far (forwards, backwards, candidates, memo hits)."""
        return self.meter.usage()

    @property
    def spent(self) -> int:
        """Forward-equivalents spent so far."""
        return self.meter.spent

    @property
    def budget(self) -> int:
        """The current budget in forward-equivalents (0: unlimited)."""
        return self.meter.limit

    def set_budget(self, limit: float) -> None:
        self.meter.set_limit(limit)

    @property
    def exhausted(self) -> bool:
        return self.meter.exhausted

    def remaining(self) -> float:
        return self.meter.remaining()

    def capped(self, limit: float):
        """Context manager: the budget lowered to ``limit`` inside the block (``CostMeter.capped``)."""
        return self.meter.capped(limit)

    def require(self, cost: float) -> None:
        """Raise ``BudgetExhausted`` unless ``cost`` forward-equivalents fit in the budget."""
        self.meter.require(cost)

    def charge(self, forwards: int) -> None:
        """Charge pair forwards done outside the objective (e.g. metrics of a re-ranking)."""
        self.meter.add(forward=forwards)

    def best_at(self, cost: float) -> TracePoint | None:
        """The best fully scored sequence found within ``cost`` forward-equivalents."""
        return self.meter.best_at(cost)

    @property
    def trace(self) -> list[TracePoint]:
        return self.meter.trace

    # ------------------------------------------------------------------ losses
    def loss_grad(self, embeds: torch.Tensor, mask: torch.Tensor, idx: np.ndarray | None = None) -> torch.Tensor:
        """Aggregated loss of P input-embedding prompts, back-propagated to ``embeds``
        (``Scorer.loss_grad``); refused before any work if the step does not fit in the budget.

        Args:
            embeds: (P, T, Dt) input embeddings incl. SOT/EOT; mask: (P, T); idx: image indices (default all).

        Returns:
            (P,) detached losses.
        """
        idx = self.scorer.all_idx if idx is None else np.asarray(idx)
        pairs = embeds.shape[0] * len(idx)
        self.meter.require(pairs * (1 + BACKWARD_COST))
        out = self.scorer.loss_grad(embeds, mask, idx)
        self.meter.add(forward=pairs, backward=pairs)
        return out

    def losses(self, seqs: Sequence[Seq], idx: np.ndarray | None = None, subset: Subset | None = None) -> np.ndarray:
        """Memoized loss of discrete sequences on images ``idx`` (default all), ``length_penalty``
        per token included. Under a budget only the first new sequences that fit are scored, then
        ``BudgetExhausted`` is raised.

        Args:
            seqs: token sequences.
            idx: train image indices (default all).
            subset: the memo key of ``idx`` (default ``Split.FULL`` for all images, else the indices).

        Returns:
            (len(seqs),) losses.
        """
        idx = self.scorer.all_idx if idx is None else np.asarray(idx)
        if subset is None:
            subset = Split.FULL if len(idx) == self.n_images else tuple(int(i) for i in idx)
        seqs = [tuple(int(t) for t in s) for s in seqs]
        todo = self.memo.missing(seqs, subset)
        self.meter.add(memo_hits=len(seqs) - len(todo))
        fit = len(todo) if self.meter.fits(len(todo) * len(idx)) else int(self.remaining() // max(1, len(idx)))
        if fit > 0:
            self._score_new(todo[:fit], idx, subset)
        if fit < len(todo):
            self.meter.refuse(f"{len(todo) - fit} of {len(todo)} sequences left unscored")
        return np.array([self.memo.get(s, subset) for s in seqs], dtype=np.float64)

    def _score_new(self, seqs: list[Seq], idx: np.ndarray, subset: Subset) -> None:
        values = self.scorer.seq_losses(seqs, idx)
        self.meter.add(forward=len(seqs) * len(idx), candidates=len(seqs) if subset is Split.FULL else 0)
        for s, v in zip(seqs, values):
            self.memo.put(s, subset, v)
            if subset is Split.FULL:
                self.meter.note(s, v)

    def screen_losses(self, seqs: Sequence[Seq]) -> np.ndarray:
        """Memoized losses on the screening images."""
        return self.losses(seqs, self.screen_idx, Split.SCREEN)

    def image_losses(self, seq: Seq) -> np.ndarray:
        """(n_images,) ``seq``'s unweighted loss on each train image (a pair forward each; not memoized)."""
        idx = self.scorer.all_idx
        self.meter.require(len(idx))
        with torch.no_grad():
            text = self.backend.encode_text(self.backend.prompt_ids([list(seq)]))
            pair, _ = self.scorer.pair_losses(text, idx)  # (1, n)
        self.meter.add(forward=len(idx))
        return pair[0].numpy()

    @property
    def positive(self) -> np.ndarray:
        """(n_images,) bool: whether each train image holds a target."""
        return self.scorer.positive

    def score(
        self,
        seqs: Iterable[Sequence[int]],
        screen: bool = True,
        keep: float | None = None,
        screen_idx: np.ndarray | None = None,
    ) -> np.ndarray:
        """Full-train loss of each sequence; ``inf`` for those screened out (or empty).

        With ``screen``, sequences never scored before are first scored on the screening images (``screen_idx``,
        default the objective's own); the best ``keep`` fraction of them (default ``screen_keep``; at least one),
        and, on the objective's own screening images, up to as many more that screen at least as well as the best
        sequence so far, are then scored on all train images. Not on given images: chosen where a sequence fails
        (``hard_images``), they make every loss high and the best so far screens badly there, so up to half of a
        pair's extensions passed its bar, while the pair's best extension ranked in the kept fraction on 24 of 25
        pairs (renamed 5555, 5656, 5959; the 25th's was no better than its pair). A sequence screened out once
        stays out (``inf``) unless scored with ``screen=False``. Updates ``best``.
        """
        seqs = [tuple(int(t) for t in s) for s in seqs]
        out = np.full(len(seqs), math.inf)
        valid = [s for s in dict.fromkeys(seqs) if len(s) > 0]
        if screen:
            new = [s for s in valid if not self.memo.is_known(s)]
            hits = sum(1 for s in valid if not self.memo.has(s) and self.memo.is_rejected(s))
            self.meter.add(memo_hits=hits)
            keep_n = math.ceil((self.screen_keep if keep is None else keep) * len(new))
            idx = self.screen_idx if screen_idx is None else np.sort(np.asarray(screen_idx))
            subset = Split.SCREEN if screen_idx is None else None  # given images: memoized under their indices
            if new and keep_n < len(new) and len(idx) < self.n_images:
                sl = self.losses(new, idx, subset)
                own = screen_idx is None and self._best is not None
                bar = self.losses([self._best], idx, subset)[0] if own else -math.inf
                order = np.argsort(sl, kind="stable")
                # the best fraction, plus up to as many more that screen at least as well as the best so far
                survivors = {new[i] for i in order[:keep_n]} | {
                    new[i] for i in order[keep_n : 2 * keep_n] if sl[i] <= bar
                }
                self.memo.reject(s for s in new if s not in survivors)
            full = [s for s in valid if self.memo.has(s) or not self.memo.is_rejected(s)]
        else:
            full = valid
        try:
            if full:
                self.losses(full)
        finally:  # also when the budget ran out part-way: the scored ones count
            for i, s in enumerate(seqs):
                v = self.memo.get(s)
                if v is not None:
                    out[i] = v
                    if v < self._best_loss or (
                        v == self._best_loss and self._best is not None and len(s) < len(self._best)
                    ):
                        self._best, self._best_loss = s, v
        return out

    # ------------------------------------------------------------------ the memo
    def loss_of(self, seq: Seq) -> float | None:
        """The full-train loss of ``seq`` if it was scored on all train images."""
        return self.memo.get(tuple(seq))

    def screen_loss_of(self, seq: Seq) -> float | None:
        """The screening loss of ``seq`` if it was screened."""
        return self.memo.get(tuple(seq), Split.SCREEN)

    def is_known(self, seq: Seq) -> bool:
        """Fully scored or screened out (scoring it again with screening would spend nothing)."""
        return self.memo.is_known(tuple(seq))

    def ranked(self, n: int | None = None) -> list[tuple[Seq, float]]:
        """Fully scored sequences, best first (ties: shorter first)."""
        return self.memo.ranked(n)

    def scored(self) -> set[Seq]:
        """Every sequence with a memoized loss (on any images)."""
        return self.memo.sequences()

    @property
    def best(self) -> Seq | None:
        """The best fully scored sequence so far (None before any)."""
        return self._best

    @property
    def best_loss(self) -> float:
        return self._best_loss

    # ------------------------------------------------------------------ the concept
    def concept(self, space: str, probes: Sequence[Seq]) -> torch.Tensor:
        """The target set's concept vector in ``space`` (``Scorer.concept``); its probe forwards are
        charged (refused before any work if they do not fit)."""
        pairs = 0 if space == "text" else len(probes) * self.n_images
        self.meter.require(pairs)
        vec = self.scorer.concept(space, probes)
        self.meter.add(forward=pairs)
        return vec

    # ------------------------------------------------------------------ history
    def record(self, phase: str, step: int, loss: float, **extra) -> Step:
        u = self.usage()
        st = Step(
            phase=phase,
            step=step,
            loss=float(loss),
            best_loss=float(self._best_loss),
            best=list(self._best or ()),
            forward_passes=u.forward,
            backward_passes=u.backward,
            wall_time=round(time.perf_counter() - self.t0, 3),
            extra=extra,
        )
        self.history.append(st)
        if self.on_step is not None:
            self.on_step(st)
        return st
