"""bench/screen_fidelity.py's pure steps on tiny arrays: the objective's subset aggregate, balanced subsets and
the scan's survivors."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def bench():
    from bench import screen_fidelity  # the repository root is on the path under pytest

    return screen_fidelity


def test_subset_loss_weighs_positives_and_negatives_equally(bench):
    losses = np.array([[1.0, 3.0, 10.0], [2.0, 2.0, 0.0]])  # (T=2 tokens, n=3 images)
    positive = np.array([True, True, False])
    got = bench.subset_loss(losses, positive, np.array([0, 1, 2]))
    assert got.tolist() == [(2.0 + 10.0) / 2, (2.0 + 0.0) / 2]
    assert bench.subset_loss(losses, positive, np.array([0, 1])).tolist() == [2.0, 2.0]  # no negative drawn


def test_balanced_subset_takes_a_third_negatives(bench):
    positive = np.array([True] * 10 + [False] * 5)
    idx = bench.balanced_subset(positive, 6, np.random.default_rng(0))
    assert len(idx) == 6 and (~positive[idx]).sum() == 2 and list(idx) == sorted(set(idx.tolist()))
    assert bench.balanced_subset(positive, 40, np.random.default_rng(0)).tolist() == list(range(15))


def test_scan_survivors_screen_the_shortlist_by_the_loss_alone(bench):
    alone = np.array([5.0, 1.0, 4.0, 2.0, 3.0])
    qual = np.array([0.5, 9.0, 9.0, 9.0, 9.0])  # row 0 enters the shortlist only as a qualifier of the name
    # shortlist (better of the two): rows 0, 1, 3 -> by alone: 1, 3, 0; 30% kept (ceil: one) -> row 1
    assert bench.scan_survivors(alone, qual, shortlist=3, scan_size=3, keep=0.3).tolist() == [1]
    assert bench.scan_survivors(alone, qual, shortlist=3, scan_size=3, keep=1.0).tolist() == [1, 3, 0]
    assert bench.scan_survivors(alone, None, shortlist=3, scan_size=2, keep=1.0).tolist() == [1, 3]
