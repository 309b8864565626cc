"""What a discovery run shows while it works and where its time went.

``RunProgress`` drives the run's category bar: within a category its postfix shows the phase, the
forward-equivalents spent (of the budget, when there is one) and the best train loss so far,
refreshed from the search's steps at most every ``every`` seconds (a ticker refreshes it every 2 x
``every`` seconds when no step came; a phase that scores many candidates in one call records a step per
chunk, ``alias_opt.search.phases.stepwise``); the ETA is the run's cost still
to come divided by the cost per second so far (cost in forward-equivalents, not categories: the
budget, or without one the mean of the categories finished in this run). ``timed`` adds up the wall
time of the run's parts (encoding, search, shortlist and re-rank, held-out scoring, figures and reports).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator

from alias_opt.search.objective import Step

BACKWARD_COST = 2  # as alias_opt.search.meter: a pair backward costs two pair forwards

PARTS = ("encoding", "search", "shortlist and re-rank", "held-out scoring", "figures and reports")


def _dur(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class RunProgress:
    """The run's live progress line and its time accounting.

    Args:
        bar: the run's tqdm bar over categories (its own ETA is hidden: it counts categories).
        n_categories: categories this process will run (resumed ones are taken off as they come).
        budget: forward-equivalents per category (0: none).
        every: seconds between refreshes of the line.
    """

    def __init__(self, bar, n_categories: int, budget: int = 0, every: float = 1.0):
        self.bar, self.budget, self.every = bar, int(budget or 0), every
        self.left = n_categories  # categories still to run
        self.costs: list[int] = []  # finished categories' costs in this run
        self.cost = 0  # the current category's cost so far
        self.best = math.inf  # the current category's best train loss so far
        self.search_time = 0.0  # wall seconds of the categories run so far (the ETA's rate)
        self.t_cat = time.perf_counter()
        self.last = 0.0
        self.label = ""
        self.timings: dict[str, float] = dict.fromkeys(PARTS, 0.0)
        self.what = "starting"
        with contextlib.suppress(AttributeError):
            bar.bar_format = "{desc}: {n_fmt}/{total_fmt} [{elapsed}]{postfix}"
        # a phase may record no step for a while: a ticker keeps the clock and the ETA moving
        self._stop = threading.Event()
        if not getattr(bar, "disable", True):
            threading.Thread(target=self._tick, daemon=True, name="run-progress").start()

    def _tick(self) -> None:
        while not self._stop.wait(2 * self.every):
            if self.label and time.perf_counter() - self.last >= 2 * self.every:
                with contextlib.suppress(Exception):  # never let the display stop the run
                    self._show(self.what)

    def close(self) -> None:
        """Stop the ticker (the bar itself is closed by its owner)."""
        self._stop.set()

    @contextlib.contextmanager
    def timed(self, part: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.timings[part] = self.timings.get(part, 0.0) + time.perf_counter() - t

    def resumed(self) -> None:
        self.left = max(0, self.left - 1)

    def start(self, category_id: int, name: str | None) -> None:
        self.label = f"{category_id} {name or ''}".strip()
        self.cost, self.t_cat, self.last, self.best = 0, time.perf_counter(), 0.0, math.inf
        self.what = "starting"
        self._show(self.what)

    def tee(self, writer: Callable[[Step], None]) -> Callable[[Step], None]:
        """An on_step callback: ``writer(step)``, then the progress line (throttled)."""

        def on_step(st: Step) -> None:
            writer(st)
            self.cost = st.forward_passes + BACKWARD_COST * st.backward_passes
            # the objective's best, or a chunk's best scored on all train images before the objective knows it
            for v in (st.best_loss, st.loss if st.extra.get("split") == "full" else math.inf):
                if v == v and v < self.best:
                    self.best = v
            now = time.perf_counter()
            if now - self.last >= self.every:
                self.last = now
                best = "-" if math.isinf(self.best) else f"{self.best:.4f}"
                self.what = f"{st.phase}, best loss {best}"
                self._show(self.what)

        return on_step

    def finish(self, text: str) -> None:
        """A category is done: its cost and wall time (from ``start``) count for the ETA; ``text`` is
        shown (e.g. its alias and verdict)."""
        now = time.perf_counter()
        self.costs.append(self.cost)
        self.search_time += now - self.t_cat
        self.left = max(0, self.left - 1)
        self.cost, self.t_cat = 0, now
        self._show(text, passes=False)
        self.label = ""  # the ticker waits for the next category

    def eta(self) -> str:
        spent = sum(self.costs) + self.cost
        elapsed = self.search_time + (time.perf_counter() - self.t_cat)
        per_cat = self.budget or (sum(self.costs) / len(self.costs) if self.costs else 0)
        if not per_cat or not spent or elapsed <= 0:
            return "ETA after the first category"
        to_come = max(0.0, per_cat * self.left - self.cost)
        return f"ETA {_dur(to_come * elapsed / spent)}"

    def _show(self, what: str, passes: bool = True) -> None:
        cost = f"{self.cost:,}" + (f"/{self.budget:,}" if self.budget else "") + " passes" if passes else ""
        parts = [self.label, what, cost, self.eta()]
        self.bar.set_postfix_str(" | ".join(p for p in parts if p), refresh=True)


def time_report(timings: dict[str, float], total: float) -> str:
    """Where a run's ``total`` seconds went (``RunProgress.timings``), one line."""
    known = sum(timings.values())
    parts = [f"{k} {_dur(v)}" for k, v in timings.items() if v >= 0.5]
    parts.append(f"other (loading the model, vocabulary indexes, checkpoints) {_dur(max(0.0, total - known))}")
    return f"wall time {_dur(total)}: " + ", ".join(parts)
