"""What a search phase hands on: its result (``PhaseResult``), the timer that measures it (``PhaseTimer``) and
the guard that ends a phase quietly when the budget runs out (``until_spent``)."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from alias_opt.search.meter import BudgetExhausted
from alias_opt.search.objective import Seq

if TYPE_CHECKING:
    from alias_opt.search.objective import Objective


@dataclass
class PhaseResult:
    """What a phase hands to the next one.

    Attributes:
        phase: the phase name.
        token_ids: the best sequence this phase found (None if it found none).
        loss: its full-train loss (inf if none).
        candidates: the phase's best distinct sequences, best first (seeds for the next phase).
        forward_passes / backward_passes: pair passes this phase spent.
        wall_time: seconds.
    """

    phase: str
    token_ids: Seq | None
    loss: float
    candidates: list[Seq]
    forward_passes: int
    backward_passes: int
    wall_time: float

    def to_dict(self) -> dict:
        """The JSON form kept in an alias record's ``phases``."""
        return {
            "phase": self.phase,
            "best": list(self.token_ids) if self.token_ids else None,
            "loss": self.loss if math.isfinite(self.loss) else None,
            "forward_passes": self.forward_passes,
            "backward_passes": self.backward_passes,
            "wall_time": round(self.wall_time, 3),
        }


class PhaseTimer:
    """Measures one phase's passes and wall time on an objective."""

    def __init__(self, obj: Objective, phase: str):
        self.obj, self.phase = obj, phase
        self.u0, self.t0 = obj.usage(), time.perf_counter()

    def result(self, scored: Iterable[Seq], n: int = 16) -> PhaseResult:
        """A PhaseResult of the best ``n`` fully scored sequences among ``scored``."""
        losses = {s: v for s in scored if (v := self.obj.loss_of(s)) is not None}
        ranked = sorted(losses.items(), key=lambda sv: (sv[1], len(sv[0])))
        best = ranked[0] if ranked else (None, math.inf)
        u = self.obj.usage()
        return PhaseResult(
            phase=self.phase,
            token_ids=best[0],
            loss=float(best[1]),
            candidates=[s for s, _ in ranked[:n]],
            forward_passes=u.forward - self.u0.forward,
            backward_passes=u.backward - self.u0.backward,
            wall_time=time.perf_counter() - self.t0,
        )


def until_spent() -> contextlib.suppress:
    """Context manager: a phase body ends quietly when the budget runs out (its result so far counts)."""
    return contextlib.suppress(BudgetExhausted)
