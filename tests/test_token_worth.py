"""bench/token_worth.py's pure steps: the tokens pruning dropped (from a run's history), untrained tokens,
and the before / after readability shares."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def bench():
    from bench import token_worth  # the repository root is on the path under pytest

    return token_worth


def test_pruned_in_search_reads_the_prune_step_of_a_history(bench):
    lines = [
        json.dumps({"phase": "scan", "step": 0, "extra": {"scored": 64}}),
        "",
        json.dumps({"phase": "prune", "step": 0, "extra": {"dropped": [1739, 42], "train_ap": 0.4}}),
    ]
    assert bench.pruned_in_search(lines) == (1739, 42)
    assert bench.pruned_in_search(lines[:2]) == ()  # no prune step: nothing dropped


def test_untrained_keeps_tokens_that_are_not_whole_trained_words(bench):
    words = frozenset({"red", "circles"})
    strings = ["red</w>", "circles</w>", "thursdaymotivation</w>", "re", "circle</w>"]
    assert bench.untrained(strings, words) == ["thursdaymotivation</w>", "re", "circle</w>"]
    assert "circles" in bench.TOY_WORDS and "thursdaymotivation" not in bench.TOY_WORDS


def test_summarize_counts_inert_before_and_after_and_untrained(bench):
    rows = [
        {"pruned": ["things"], "untrained": [], "tokens": [{"train_cost": 0.05, "held_out_cost": 0.005}] * 2},
        {"pruned": [], "untrained": ["kaur"], "tokens": [{"train_cost": 0.009, "held_out_cost": 0.2}] * 2},
        {"pruned": ["items"], "untrained": []},  # pruned down to one token
        {"pruned": [], "untrained": ["hickman"], "tokens": [{"train_cost": 0.3, "held_out_cost": 0.011}] * 2},
    ]
    s = bench.summarize(rows, tolerance=0.01)
    assert s["single_alias_answers"] == 4 and s["multi_token"] == 3
    assert (s["inert_before_pruning"], s["inert_after_train"], s["inert_after_held_out"]) == (2, 1, 1)
    assert s["share_inert_before"] == 0.5 and s["share_inert_after_held_out"] == 0.25
    assert s["with_untrained_token"] == 2 and s["share_untrained"] == 0.5
    assert bench.summarize([], 0.01)["share_inert_before"] is None


def test_name_words_marks_each_name_token_once_per_copy(bench):
    star, solid, stars = 1565, 6148, 2895
    assert bench.name_words([star, solid, star], [star]) == [True, False, False]  # the second star is not
    assert bench.name_words([stars, solid, star], [star]) == [False, False, True]
    assert bench.name_words([star, star], [star, star]) == [True, True]
    assert bench.name_words([solid], []) == [False]


def test_summarize_counts_inert_tokens_beyond_the_names_words(bench):
    rows = [  # "hollow little stars" for "hollow star": the inert "hollow" is the annotator's word
        {
            "pruned": [],
            "untrained": [],
            "tokens": [
                {"train_cost": -0.009, "held_out_cost": 0.014, "name_word": True},
                {"train_cost": 0.02, "held_out_cost": 0.05, "name_word": False},
            ],
        },
        {
            "pruned": [],
            "untrained": [],
            "tokens": [  # "stars solid star" for "star"
                {"train_cost": -0.0005, "held_out_cost": -0.05, "name_word": False},
                {"train_cost": 0.08, "held_out_cost": 0.09, "name_word": False},
                {"train_cost": -0.016, "held_out_cost": -0.04, "name_word": True},
            ],
        },
    ]
    s = bench.summarize(rows, tolerance=0.01)
    assert (s["inert_after_train"], s["inert_after_held_out"]) == (2, 1)
    assert (s["inert_after_train_beyond_name"], s["inert_after_held_out_beyond_name"]) == (1, 1)
