"""The extension phase's passes show while they are spent: ``phases.stepwise`` records a step per chunk of
a long scoring call, scores exactly what one call would, and the run's progress line follows the steps."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alias_opt.progress import RunProgress
from alias_opt.search.meter import BudgetExhausted
from alias_opt.search.objective import Step
from alias_opt.search.phases import stepwise
from tests.discovery_helpers import objective


def _pairs(n: int, seed: int = 0) -> list[tuple[int, ...]]:
    rng = np.random.default_rng(seed)
    return [tuple(int(t) for t in rng.integers(300, 40000, 2)) for _ in range(n)]


def test_stepwise_scores_what_one_call_scores_and_records_each_chunk(tiny_backend):
    seqs = _pairs(60)
    plain = objective(tiny_backend)
    chunked_steps: list[Step] = []
    chunked = objective(tiny_backend, on_step=chunked_steps.append)
    a = plain.score(seqs)
    with stepwise(chunked, "extend", pairs=32):
        b = chunked.score(seqs)
    assert "losses" not in vars(chunked)  # the objective is itself again after the block
    np.testing.assert_allclose(a, b, rtol=1e-5)  # the same survivors and losses (inf = screened out)
    assert np.isfinite(a).sum() >= 15 and plain.usage() == chunked.usage() and plain.best == chunked.best
    assert not plain.history
    # 60 screened 5 at a time (32 // 6 screening images), the survivors 4 at a time (32 // 8 images)
    screen = [s for s in chunked_steps if s.extra["split"] == "screen"]
    full = [s for s in chunked_steps if s.extra["split"] == "full"]
    assert len(screen) == 12 and [s.extra["scored"] for s in screen] == [5] * 12
    assert len(full) == math.ceil(np.isfinite(a).sum() / 4)
    passes = [s.forward_passes for s in chunked_steps]
    assert passes == sorted(passes) and passes[0] == 30 and passes[-1] == chunked.usage().forward
    assert all(s.phase == "extend" for s in chunked_steps)
    # a full-split chunk's loss is a real train loss: the best of its chunk
    assert min(s.loss for s in full) == pytest.approx(float(np.min(a)), rel=1e-5)


def test_stepwise_stops_where_one_call_stops(tiny_backend):
    seqs = _pairs(40, seed=1)
    plain, chunked = objective(tiny_backend, budget=100), objective(tiny_backend, budget=100)
    with pytest.raises(BudgetExhausted):
        plain.losses(seqs)
    with stepwise(chunked, "extend", pairs=24), pytest.raises(BudgetExhausted):
        chunked.losses(seqs)
    assert plain.usage().forward == chunked.usage().forward == 96  # 12 sequences x 8 images fit in 100
    assert len(chunked.history) == 4  # 3 sequences (24 pairs) a chunk; the fifth chunk did not fit


class _Bar:
    disable = True

    def __init__(self):
        self.lines: list[str] = []

    def set_postfix_str(self, s, refresh=True):
        self.lines.append(s)


def _step(phase, fwd, best, loss=math.inf, **extra):
    return Step(phase, 0, loss, best, [], fwd, 0, 0.0, extra)


def test_progress_line_shows_phase_passes_and_the_best_loss_of_a_full_chunk():
    bar = _Bar()
    prog = RunProgress(bar, n_categories=2, budget=5000, every=0.0)
    prog.start(3, "crimson disc")
    tee = prog.tee(lambda st: None)
    tee(_step("scan", 400, 1.25))
    assert bar.lines[-1].startswith("3 crimson disc | scan, best loss 1.2500 | 400/5,000 passes")
    tee(_step("extend", 900, 1.25, loss=2.0, split="screen"))  # a screening loss is not a train loss
    assert "extend, best loss 1.2500 | 900/5,000 passes" in bar.lines[-1]
    tee(_step("extend", 1700, 1.25, loss=0.75, split="full"))  # scored on all train images: the best now
    assert "extend, best loss 0.7500 | 1,700/5,000 passes" in bar.lines[-1]
    tee(_step("evolution", 1800, 0.9))  # the objective's best catches up later; never shown worse
    assert "evolution, best loss 0.7500 | 1,800/5,000 passes" in bar.lines[-1]
    prog.finish("done")
    prog.start(4, "x")
    tee(_step("scan", 10, 3.0))
    assert "scan, best loss 3.0000 | 10/5,000 passes" in bar.lines[-1]  # a new category starts afresh
