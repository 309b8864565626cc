"""The world-v2 discovery bench's bar numbers (bench/world_v2_discovery.py ``score_rows``) on hand-made rows."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("wv2d", REPO / "bench" / "world_v2_discovery.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _row(alias, name, oracle, verdict, oracle_verdict=None):
    return {
        "n_test_images": [12, 10],
        "alias_ap": alias,
        "name_ap": name,
        "oracle_ap": oracle,
        "single_ap": alias,
        "vs_name": verdict,
        "oracle_vs_name": oracle_verdict,
        "oracle_ratio": alias / oracle,
        "n_aliases": 1,
    }


def test_policy_scores_with_the_oracle_ceiling(bench):
    rows = [
        _row(0.5, 0.3, 0.5, "win", "win"),  # gap closed 1.0
        _row(0.3, 0.3, 0.4, "tie", "win"),  # 0.0
        _row(0.35, 0.3, 0.32, "tie", "tie"),  # 2.5 (the alias passes the oracle)
        _row(0.2, 0.3, 0.3, "loss", "tie"),  # no gap: left out of the mean
    ]
    out = bench.score_rows("policy", rows)
    assert out["win_share"] == 0.25
    assert math.isclose(out["gap_closed_mean"], (1.0 + 0.0 + 2.5) / 3)
    assert out["gap_categories"] == 3
    assert out["oracle_win_share"] == 0.5
    assert out["alias_wins_where_oracle_wins"] == "1/2"


def test_policy_scores_without_oracle_verdicts(bench):
    """Records written before the oracle verdict carry None: no ceiling is claimed."""
    out = bench.score_rows("policy", [_row(0.5, 0.3, 0.5, "win"), _row(0.3, 0.3, 0.4, "tie")])
    assert out["win_share"] == 0.5 and "oracle_win_share" not in out
