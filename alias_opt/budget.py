"""Hard forward-pass budgets for the strategy comparison.

``alias_opt.objective.Objective`` counts its work (``Counter.cost``: pair forwards + 2 x pair
backwards) and phases stop when ``obj.exhausted``, but a phase may finish the batch it started. For a
fair comparison every strategy must stop *at* the budget, so ``BudgetedObjective``:

* cuts a batch of discrete candidates to the number that still fits (the first ones, in order) and
  scores those before raising ``BudgetExhausted``;
* refuses a gradient step that does not fit (``BudgetExhausted``, nothing charged);
* records the anytime trace: every time a fully scored sequence beats the best so far, the cost at
  that moment (for the "held-out AP vs forward passes" curves).

``count_pairs`` measures forwards that do not go through the objective (the vocabulary probes of
``alias_opt.shortlist.build_shortlist``), so that a strategy can be charged for them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from alias_opt.objective import BACKWARD_COST, BudgetExhausted, Objective, Seq
from sam3 import Sam3Backend

__all__ = ["BudgetExhausted", "BudgetedObjective", "TracePoint", "capped", "count_pairs"]


@dataclass
class TracePoint:
    """The best fully scored sequence improved at ``cost`` forward-equivalents."""

    cost: int
    token_ids: Seq
    loss: float


class BudgetedObjective(Objective):
    """An ``Objective`` whose ``budget`` (forward-equivalents, 0 = none) is never overrun.

    Takes the same arguments as ``Objective``. ``trace`` lists the improvements of the best fully
    scored sequence with the cost at which each was found.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.trace: list[TracePoint] = []

    def losses(self, seqs: Sequence[Seq], idx: np.ndarray | None = None, key: str | None = None) -> np.ndarray:
        idx = self.all_idx if idx is None else np.asarray(idx)
        key = key or ("full" if len(idx) == self.n_images else "idx:" + ",".join(map(str, idx.tolist())))
        seqs = [tuple(int(t) for t in s) for s in seqs]
        todo = list(dict.fromkeys(s for s in seqs if (s, key) not in self.memo))
        room = self.remaining()
        if todo and len(todo) * len(idx) > room:
            fit = int(room // max(1, len(idx)))
            if fit > 0:
                super().losses(todo[:fit], idx, key)
                self._trace(todo[:fit], key)
            raise BudgetExhausted(f"budget of {self.budget} forward-equivalents spent ({self.counter.cost} used)")
        out = super().losses(seqs, idx, key)
        self._trace(todo, key)
        return out

    def _trace(self, scored: Sequence[Seq], key: str) -> None:
        if key != "full" or not scored:
            return
        best = self.trace[-1].loss if self.trace else math.inf
        for s in scored:
            v = self.memo[(s, key)]
            if v < best:
                best = v
                self.trace.append(TracePoint(self.counter.cost, s, v))

    def loss_grad(self, embeds: torch.Tensor, mask: torch.Tensor, idx: np.ndarray | None = None) -> torch.Tensor:
        n = self.n_images if idx is None else len(idx)
        if embeds.shape[0] * n * (1 + BACKWARD_COST) > self.remaining():
            raise BudgetExhausted(f"budget of {self.budget} forward-equivalents spent ({self.counter.cost} used)")
        return super().loss_grad(embeds, mask, idx)

    def charge(self, forwards: int) -> None:
        """Charge forwards done outside the objective (e.g. vocabulary probes)."""
        self.counter.forward += int(forwards)

    def best_at(self, cost: float) -> TracePoint | None:
        """The best sequence found within ``cost`` forward-equivalents (None if none yet)."""
        found = [p for p in self.trace if p.cost <= cost]
        return found[-1] if found else None


@contextmanager
def capped(obj: Objective, limit: float) -> Iterator[Objective]:
    """Temporarily lower ``obj.budget`` to ``limit`` (a phase's share); ``BudgetExhausted`` raised
    inside is swallowed, so the code after the block continues with the rest of the budget."""
    saved = obj.budget
    if saved > 0:
        limit = min(limit, saved)
    obj.budget = max(1, int(limit))
    try:
        yield obj
    except BudgetExhausted:
        pass
    finally:
        obj.budget = saved


@contextmanager
def count_pairs(backend: Sam3Backend) -> Iterator[list[int]]:
    """Count the (prompt, image) pairs grounded by ``backend`` inside the block: ``box[0]``.

    Every grounding path of the backend (``ground``, ``ground_pairs``, the objective, the metrics)
    goes through ``iter_ground_pairs``; the instance attribute set here shadows the method.
    """
    box = [0]
    shadowed = vars(backend).get("iter_ground_pairs")  # an enclosing count_pairs
    original = backend.iter_ground_pairs

    def counting(text, images, prompt_idx, image_idx, batch_size=None):
        box[0] += int(torch.as_tensor(prompt_idx).numel())
        yield from original(text, images, prompt_idx, image_idx, batch_size)

    backend.iter_ground_pairs = counting  # type: ignore[method-assign]
    try:
        yield box
    finally:
        if shadowed is not None:
            backend.iter_ground_pairs = shadowed  # type: ignore[method-assign]
        else:
            del backend.iter_ground_pairs
