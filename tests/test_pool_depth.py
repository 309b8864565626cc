"""bench/pool_depth.py's pure steps on tiny rankings: a value's first rank over views, the pool's size per
depth, and the recall table."""

from __future__ import annotations

import math

import pytest


@pytest.fixture(scope="module")
def bench():
    from bench import pool_depth  # the repository root is on the path under pytest

    return pool_depth


def test_first_rank_is_the_best_position_of_any_word_in_any_view(bench):
    views = [[5, 6, 7, 8], [9, 8, 5, 4]]
    assert bench.first_rank(views, {8}) == 1  # 4th in view 0, 2nd in view 1
    assert bench.first_rank(views, {4, 7}) == 2  # 7 is 3rd in view 0, 4 is 4th in view 1
    assert bench.first_rank(views, {1, 2}) is None


def test_pool_size_counts_distinct_tokens_of_each_views_head(bench):
    views = [[5, 6, 7, 8], [6, 5, 9, 4]]
    assert [bench.pool_size(views, d) for d in (1, 2, 3, 4)] == [2, 2, 4, 6]


def test_depth_table_recall_all_values_and_pool(bench):
    rows = [
        {"ranks": [0, 5], "pool_sizes": {2: 3, 6: 9}},
        {"ranks": [1, None, 3], "pool_sizes": {2: 4, 6: 11}},
    ]
    t = bench.depth_table(rows, [2, 6])
    assert t[2]["value_recall"] == pytest.approx(2 / 5) and t[2]["all_values"] == 0.0 and t[2]["pool"] == 3.5
    assert t[6]["value_recall"] == pytest.approx(4 / 5) and t[6]["all_values"] == 0.5 and t[6]["pool"] == 10.0
    assert math.isnan(bench.depth_table([], [2])[2]["all_values"])
