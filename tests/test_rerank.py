"""The re-ranking's order (alias_opt.search.pipeline.rerank_order), driven with tiny fake rows."""

from __future__ import annotations

import math

import pytest

from alias_opt.config import load_config
from alias_opt.search.pipeline import RerankRow, rerank_order

NAME = (1, 2)


def row(seq, ap, loss=1.0):
    return RerankRow(tuple(seq), ap, loss, None)


def order(rows, tolerance=0.01, margin=0.02, pieces=lambda seq: (0, 0)):
    return [r.token_ids for r in rerank_order(rows, NAME, pieces, tolerance, margin)]


def test_best_train_ap_wins_and_ties_go_to_the_readable_then_the_lower_loss():
    rows = [row((5,), 0.50, loss=0.2), row((6, 7), 0.60, loss=0.3), row((8,), 0.595, loss=0.1)]
    assert order(rows) == [(8,), (6, 7), (5,)]  # (8,) is within 0.01 of 0.60 with a lower loss
    fragment = {(8,): (1, 0)}  # (8,) is a word piece: the whole word wins within the tolerance
    assert order(rows, pieces=lambda s: fragment.get(s, (0, 0)))[0] == (6, 7)
    assert order([row((5,), math.nan), row((6,), 0.0)]) == [(6,), (5,)]  # NaN ranks below 0


def test_a_wide_ap_where_scored_is_what_the_rows_are_ranked_by():
    rows = [row((5,), 0.31, loss=0.1), row((6,), 0.30, loss=0.2), row((7,), 0.20, loss=0.3)]
    assert order(rows) == [(5,), (6,), (7,)]
    rows[0].wide_ap, rows[1].wide_ap, rows[2].wide_ap = 0.24, 0.29, 0.28  # the extra negatives' false positives
    assert order(rows) == [(6,), (7,), (5,)]  # (5,) led on train; (7,) is in the band, with a higher loss
    assert rows[0].rank_ap == 0.24 and row((9,), 0.5).rank_ap == 0.5


def test_the_name_stays_unless_clearly_beaten():
    close = [row((9,), 0.62), row(NAME, 0.60, loss=5.0)]
    assert order(close) == [NAME, (9,)]  # beaten by 0.02: not more than the margin
    assert order(close, margin=0.01) == [(9,), NAME]
    assert order(close, margin=-1) == [(9,), NAME]  # -1: no preference
    clear = [row((9,), 0.65), row(NAME, 0.60)]
    assert order(clear) == [(9,), NAME]
    assert order([row((9,), 0.65)]) == [(9,)] and order([]) == []  # no name row (nameless, or not re-ranked)


def test_name_margin_validated():
    assert load_config().name_margin == 0.02
    with pytest.raises(ValueError, match="name_margin"):
        load_config(overrides={"name_margin": 2})
