"""The cost meter of one objective: work done in forward-equivalents, an optional hard budget and
the anytime trace.

Every phase pays in one currency, prompt-image *pairs*: a pair forward costs 1, a pair backward
``BACKWARD_COST``. With a budget (``limit`` > 0) the meter is never overrun: a request that does not
fit raises ``BudgetExhausted`` before any work and marks the meter exhausted (also when a little
budget is left but not enough for the request). ``capped`` lowers the limit for one phase's share.
``count_pairs`` measures forwards done outside the objective so that they can be charged.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from sam3 import Sam3Backend

Seq = tuple[int, ...]
BACKWARD_COST = 2  # a pair backward costs about two pair forwards (measured on CPU: fwd+bwd / fwd ~ 3)


class BudgetExhausted(RuntimeError):
    """Raised when a request does not fit in the remaining forward-pass budget."""


@dataclass(frozen=True)
class Usage:
    """Work done, in prompt-image pairs (a snapshot of a ``CostMeter``)."""

    forward: int = 0  # pair forwards (with or without gradient)
    backward: int = 0  # pair backwards
    candidates: int = 0  # distinct discrete sequences scored on all train images (memo misses)
    memo_hits: int = 0  # sequences answered from the memo

    @property
    def cost(self) -> int:
        """Forward-equivalents: what budgets are counted in."""
        return self.forward + BACKWARD_COST * self.backward

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.forward + other.forward,
            self.backward + other.backward,
            self.candidates + other.candidates,
            self.memo_hits + other.memo_hits,
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "forward_passes": self.forward,
            "backward_passes": self.backward,
            "cost": self.cost,
            "candidates": self.candidates,
            "memo_hits": self.memo_hits,
        }


@dataclass(frozen=True)
class TracePoint:
    """The best fully scored sequence improved at ``cost`` forward-equivalents."""

    cost: int
    token_ids: Seq
    loss: float


class CostMeter:
    """Counts pairs, enforces an optional budget and keeps the anytime trace.

    Args:
        limit: forward-equivalents that may be spent (0: unlimited).
    """

    def __init__(self, limit: int = 0):
        self._usage = Usage()
        self._limit = int(limit)
        self._refused = False
        self._trace: list[TracePoint] = []

    # ------------------------------------------------------------------ reading
    def usage(self) -> Usage:
        return self._usage

    @property
    def spent(self) -> int:
        """Forward-equivalents spent so far."""
        return self._usage.cost

    @property
    def limit(self) -> int:
        """The current budget (0: unlimited)."""
        return self._limit

    def remaining(self) -> float:
        """Forward-equivalents left (``inf`` without a budget)."""
        return math.inf if self._limit <= 0 else self._limit - self.spent

    @property
    def exhausted(self) -> bool:
        """The budget is spent, or the last request did not fit in what is left."""
        return self._limit > 0 and (self.spent >= self._limit or self._refused)

    def fits(self, cost: float) -> bool:
        return cost <= self.remaining()

    # ------------------------------------------------------------------ spending
    def require(self, cost: float) -> None:
        """Raise ``BudgetExhausted`` (and mark the meter exhausted) if ``cost`` does not fit."""
        if not self.fits(cost):
            self.refuse()

    def refuse(self, why: str = "") -> None:
        """Mark the meter exhausted and raise ``BudgetExhausted``."""
        self._refused = True
        raise BudgetExhausted(
            f"budget of {self._limit} forward-equivalents spent ({self.spent} used){': ' + why if why else ''}"
        )

    def add(self, forward: int = 0, backward: int = 0, candidates: int = 0, memo_hits: int = 0) -> None:
        u = self._usage
        self._usage = Usage(
            u.forward + int(forward), u.backward + int(backward), u.candidates + candidates, u.memo_hits + memo_hits
        )

    def set_limit(self, limit: float) -> None:
        """A new budget (0: unlimited); a refusal under the old one is forgotten."""
        self._limit = int(limit)
        self._refused = False

    @contextmanager
    def capped(self, limit: float) -> Iterator[None]:
        """Lower the budget to ``limit`` inside the block (a phase's share; never above the current
        budget); ``BudgetExhausted`` raised inside is swallowed, so that code after the block goes on
        with the rest of the budget."""
        saved, refused = self._limit, self._refused
        if saved > 0:
            limit = min(limit, saved)
        self._limit, self._refused = max(1, int(limit)), False
        try:
            yield
        except BudgetExhausted:
            pass
        finally:
            self._limit, self._refused = saved, refused

    # ------------------------------------------------------------------ anytime trace
    def note(self, seq: Seq, loss: float) -> None:
        """Record ``seq`` in the trace if it beats the best traced loss."""
        if not self._trace or loss < self._trace[-1].loss:
            self._trace.append(TracePoint(self.spent, seq, loss))

    @property
    def trace(self) -> list[TracePoint]:
        return list(self._trace)

    def best_at(self, cost: float) -> TracePoint | None:
        """The best sequence found within ``cost`` forward-equivalents (None if none yet)."""
        found = [p for p in self._trace if p.cost <= cost]
        return found[-1] if found else None


@contextmanager
def count_pairs(backend: Sam3Backend) -> Iterator[list[int]]:
    """Count the (prompt, image) pairs grounded by ``backend`` inside the block: ``box[0]``.

    Every grounding path of the backend (``ground``, ``ground_pairs``, the objective, the metrics)
    goes through ``iter_ground_pairs``; the instance attribute set here shadows the method.
    """
    box = [0]
    shadowed = vars(backend).get("iter_ground_pairs")  # an enclosing count_pairs
    original = backend.iter_ground_pairs

    def counting(text, images, prompt_idx, image_idx, batch_size=None, masks=None):
        box[0] += int(torch.as_tensor(prompt_idx).numel())
        yield from original(text, images, prompt_idx, image_idx, batch_size, masks)

    backend.iter_ground_pairs = counting  # type: ignore[method-assign]
    try:
        yield box
    finally:
        if shadowed is not None:
            backend.iter_ground_pairs = shadowed  # type: ignore[method-assign]
        else:
            del backend.iter_ground_pairs
