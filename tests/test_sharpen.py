"""Sharpening on hard negatives (``alias_opt.search.sharpen``): its pure steps on tiny inputs, and on sam3-toy a
too-broad winner for a name the toy never learned ("circle" for red circles) sharpened against images without the
category, every number recomputed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alias_opt.config import load_config
from alias_opt.eval.metrics import ImagePredictions
from alias_opt.search.sharpen import (
    Sharpening,
    SharpenRound,
    best_tokens,
    chance_positions,
    hard_negatives,
    max_scores,
    pick,
    replacements,
    screen_picks,
    word_first,
)
from tests.discovery_helpers import toy_crimson_discs


def _pred(*scores):
    return ImagePredictions(np.zeros((len(scores), 2, 2), dtype=bool), scores)


def test_max_scores_reads_each_image_s_best_detection():
    assert max_scores([_pred(0.9, 0.2), _pred(), _pred(0.4)]).tolist() == [0.9, 0.0, 0.4]


def test_hard_negatives_are_the_highest_firing_above_the_floor():
    assert hard_negatives([0.2, 0.9, 0.6, 0.0, 0.7], n=3, floor=0.5) == [1, 4, 2]
    assert hard_negatives([0.2, 0.9, 0.6, 0.0, 0.7], n=2, floor=0.5) == [1, 4]
    assert hard_negatives([0.2, 0.9, 0.6], n=5, floor=0.65) == [1]  # only real false positives count
    assert hard_negatives([0.1, 0.3], n=5, floor=0.5) == []  # the winner is sharp already


def test_best_tokens_keep_the_best_insertions_in_pool_order_on_ties():
    assert best_tokens([7, 8, 9, 10], [0.2, 0.5, 0.5, np.nan], 2) == [8, 9]
    assert best_tokens([7, 8, 9, 10], [0.2, 0.5, 0.5, np.nan], 4) == [8, 9, 7, 10]  # NaN last


def test_pick_needs_a_wide_gain_past_the_margin_at_a_small_train_cost():
    rows = [((1, 2), 0.30, 0.50), ((3, 2), 0.33, 0.45), ((2, 4), 0.32, 0.495), ((5, 2), 0.35, 0.30)]
    assert pick(0.25, 0.50, rows, margin=0.02, tolerance=0.01) == ((2, 4), 0.32, 0.495)  # (3, 2), (5, 2) lose train
    assert pick(0.25, 0.50, rows, margin=0.02, tolerance=0.10) == ((3, 2), 0.33, 0.45)
    assert pick(0.31, 0.50, rows, margin=0.02, tolerance=0.01) is None  # +0.01 wide only
    assert pick(0.25, 0.50, [], margin=0.02, tolerance=0.01) is None


def test_chance_positions_are_those_whose_best_synonym_swap_loses_past_the_tolerance():
    assert chance_positions(0.336, [0.337, 0.048, 0.336], 0.01) == [1]  # "navy honda empty"
    assert chance_positions(0.5, [0.495, 0.489, 0.2], 0.01) == [1, 2]
    assert chance_positions(0.5, [0.49, 0.5], 0.01) == []  # within the tolerance: words
    assert chance_positions(0.5, [-np.inf], 0.01) == [0]  # no swap scored: not shown to be a word


def test_replacements_swap_one_position_at_a_time_for_tokens_not_in_the_sequence():
    assert replacements((5, 6, 7), [1], [8, 5, 9]) == [(5, 8, 7), (5, 9, 7)]  # 5 is in the sequence already
    assert replacements((5, 6), [0, 1], [8]) == [(8, 6), (5, 8)]
    assert replacements((5, 6), [], [8]) == []


def test_screen_picks_take_the_best_by_loss_then_the_best_by_ap_not_among_them():
    loss = [0.5, 0.9, 0.4, np.inf, 1.1, 1.0]
    ap = [0.2, 0.6, 0.1, 0.9, 0.6, np.nan]
    assert screen_picks(loss, None, 2) == [2, 0]  # loss only
    # by AP (ties: loss): 3 has no finite loss, 1 and 4 tie at 0.6 (1 has the lower loss), NaN ranks last
    assert screen_picks(loss, ap, 2) == [2, 0, 1, 4]
    assert screen_picks(loss, ap, 1) == [2, 1]
    assert screen_picks([0.3, 0.2], [0.5, 0.9], 1) == [1]  # the best by AP is the best by loss: once
    assert screen_picks(loss, ap, 10) == [2, 0, 1, 5, 4]  # every finite-loss candidate, once


def test_word_first_keeps_rows_at_the_base_wide_ap_and_within_the_train_tolerance_best_wide_first():
    rows = [((1, 2), 0.30, 0.50), ((3, 2), 0.33, 0.45), ((2, 4), 0.32, 0.495), ((5, 2), 0.29, 0.6), ((6, 2), 0.3, 0.6)]
    assert [r[0] for r in word_first(rows, 0.30, 0.50, 0.01)] == [(2, 4), (1, 2), (6, 2)]  # no margin: ties kept
    assert [r[0] for r in word_first(rows, 0.30, 0.50, 0.10)] == [(3, 2), (2, 4), (1, 2), (6, 2)]
    assert word_first(rows, 0.34, 0.50, 0.10) == []


def test_sharpening_reports_the_tokens_its_rounds_added():
    r1 = SharpenRound((5, 6), (7, 5, 6), 3, 10, 30, 0.2, 0.4, 0.3, 0.41)
    r2 = SharpenRound((7, 5, 6), None, 2, 10, 40, 0.3, 0.41)
    assert Sharpening((7, 5, 6), [r1, r2], 100).added == (7,)
    row = r2.to_dict(str)
    assert row["pick"] is None and row["wide"] is None and row["base_wide"] == 0.3 and row["kind"] == "insert"
    r0 = SharpenRound((5, 9), (5, 6), 0, 40, 8, 0.1, 0.3, 0.2, 0.31, kind="replace")  # 9 -> 6, then 7 inserted
    assert Sharpening((7, 5, 6), [r0, r1], 100).added == (6, 7)
    assert r0.to_dict(str)["kind"] == "replace"


def test_config_refuses_bad_sharpen_settings():
    for over in ({"sharpen_negatives": 0}, {"sharpen_keep": 0}, {"sharpen_margin": -0.1}):
        with pytest.raises(ValueError, match="sharpen_negatives and sharpen_keep"):
            load_config(overrides=over)
    with pytest.raises(ValueError, match="sharpen_replace must be >= 0"):
        load_config(overrides={"sharpen_replace": -1})
    with pytest.raises(ValueError, match="sharpen_max_len must be in 0..30"):
        load_config(overrides={"sharpen_max_len": 31})
    for bad in (-0.01, 1.0):
        with pytest.raises(ValueError, match="sharpen_replace_tolerance must be in"):
            load_config(overrides={"sharpen_replace_tolerance": bad})
    with pytest.raises(ValueError, match="sharpen_replace_ap"):
        load_config(overrides={"sharpen_replace_ap": 1})  # a bool field takes no number


@pytest.fixture(scope="module")
def toy_ctx(tmp_path_factory):
    return toy_crimson_discs(tmp_path_factory.mktemp("sharpen"))


def test_sharpen_on_the_toy_narrows_a_broad_winner_against_the_extra_negatives(toy_ctx):
    """ "circle" for red circles under an unknown name fires on the other circles of the images without the
    category; its sharpening's pick beats its wide AP (recomputed prompt by prompt) past the margin, keeps its
    train AP, and every forward is charged."""
    from alias_opt.eval.predict import evaluate_prompts
    from alias_opt.search.context import make_context
    from alias_opt.search.sharpen import sharpen

    b, ts, feats = toy_ctx
    extra = [im for im in ts.test if not im.is_positive][:12]
    over = {"sharpen_negatives": 6, "sharpen_keep": 3, "sharpen_max_len": 2, "sharpen_replace": 0}  # inserts only
    cfg = load_config(overrides=over)
    ctx = make_context(b, ts.train, feats, ts.name, cfg, seed=0, extra_negatives=extra)
    assert not ctx.knows_name()
    enc = b.tokenizer.encode
    circle = tuple(enc("circle", special=False))
    words = "the dog blue green yellow purple red square triangle star circle large"
    pool = [t for w in words.split() for t in enc(w, special=False)]
    ctx.pool = lambda: pool  # the screened pool, stood in for (building it is a search's work)
    s0 = ctx.obj.spent
    sh = sharpen(ctx, circle)
    assert sh is not None and sh.rounds and sh.rounds[0].hard > 0
    assert ctx.obj.spent - s0 == sh.forwards
    r = sh.rounds[0]
    assert r.pick is not None and sh.seq != circle and len(sh.seq) == 2  # one token added
    wide = [m.ap for m in evaluate_prompts(b, [*ts.train, *extra], [list(circle), list(r.pick)])]
    train = [m.ap for m in evaluate_prompts(b, ts.train, [list(circle), list(r.pick)])]
    assert (r.base_wide, r.wide) == pytest.approx(wide, abs=1e-9)
    assert (r.base_train, r.train) == pytest.approx(train, abs=1e-9)
    assert r.wide > r.base_wide + cfg.sharpen_margin and r.train >= r.base_train - cfg.prune_tolerance
    assert "red" in b.tokenizer.decode(list(sh.seq))  # the colour the train split could not ask for

    known = make_context(b, ts.train, feats, "red circle", cfg, seed=0, extra_negatives=extra)
    assert sharpen(known, circle) is None  # a name the model knows keeps the annotator's words
    assert sharpen(make_context(b, ts.train, feats, ts.name, cfg, seed=0), circle) is None  # no extra negatives
    off = load_config(overrides={"sharpen": False})
    assert sharpen(make_context(b, ts.train, feats, ts.name, off, seed=0, extra_negatives=extra), circle) is None
    short = load_config(overrides={"max_len": 1, "sharpen_max_len": 0, "sharpen_replace": 0})  # 0: the max_len
    assert sharpen(make_context(b, ts.train, feats, ts.name, short, seed=0, extra_negatives=extra), circle) is None
    one = load_config(overrides={**over, "max_len": 1})
    past = make_context(b, ts.train, feats, ts.name, one, seed=0, extra_negatives=extra)
    past.pool = lambda: pool
    grown = sharpen(past, circle)  # one token past the search's max_len, as far as sharpen_max_len (2)
    assert grown is not None and len(grown.seq) == 2 and grown.rounds[0].pick == r.pick
    assert math.isfinite(sh.rounds[-1].base_wide)


class _Table:
    """A stand-in for the cosine table index of the synonym test: each listed token's k nearest rows as given,
    every other token its own (the v1 toy has no synonyms)."""

    def __init__(self, rows: dict[int, list[int]]):
        self.rows = rows

    def neighbours(self, ids, k):
        return np.array([(self.rows.get(i) or [i] * k)[:k] for i in ids])


def test_sharpen_replaces_a_chance_token_by_a_word_on_the_toy(toy_ctx):
    """ "red dog" for red circles under an unknown name: "dog" is a chance token (the stand-in table's rows in its
    place, "red star" ... "red blue", lose more than the tolerance) and "circle" in its place is the best wide AP
    of the replacements, a word (its own row keeps the AP): "red circle", every AP recomputed prompt by prompt,
    every forward charged. Where "circle"'s rows lose the AP too, it is no word and does not replace "dog"."""
    from alias_opt.eval.predict import evaluate_prompts
    from alias_opt.search.context import make_context
    from alias_opt.search.sharpen import sharpen

    b, ts, feats = toy_ctx
    extra = [im for im in ts.test if not im.is_positive][:12]
    cfg = load_config(overrides={"sharpen_negatives": 6, "sharpen_keep": 3, "sharpen_max_len": 2, "sharpen_replace": 6})
    tok = {
        w: b.tokenizer.encode(w, special=False)[0]
        for w in ["the", "dog", "blue", "red", "star", "square", "triangle", "circle"]
    }
    pool = [tok[w] for w in ["the", "dog", "blue", "red", "square", "triangle", "star", "circle"]]
    shapes = [tok[w] for w in ["star", "square", "triangle", "blue"]]

    def run(rows):
        ctx = make_context(b, ts.train, feats, ts.name, cfg, seed=0, extra_negatives=extra)
        ctx.pool, ctx._synonyms = (lambda: pool), _Table(rows)
        s0 = ctx.obj.spent
        sh = sharpen(ctx, (tok["red"], tok["dog"]))  # at sharpen_max_len: the replace round only
        assert sh is not None and ctx.obj.spent - s0 == sh.forwards > 0
        assert len(sh.rounds) == 1 and sh.rounds[0].kind == "replace" and sh.rounds[0].tokens == len(pool) - 2
        return ctx, sh.rounds[0]

    ctx, r = run({tok["dog"]: shapes})
    red_circle = (tok["red"], tok["circle"])
    assert r.pick == red_circle and r.tried == 3
    seqs = [[tok["red"], tok["dog"]], list(red_circle)]
    wide = [m.ap for m in evaluate_prompts(b, [*ts.train, *extra], seqs)]
    train = [m.ap for m in evaluate_prompts(b, ts.train, seqs)]
    assert (r.base_wide, r.wide) == pytest.approx(wide, abs=1e-9)
    assert (r.base_train, r.train) == pytest.approx(train, abs=1e-9)
    assert r.wide > r.base_wide + 0.5  # 0.06 -> 0.87: the shape the chance token stood in for
    swaps = ctx.train_aps([(tok["red"], t) for t in shapes])
    assert max(swaps) < r.base_train - cfg.synonym_tolerance  # "dog" was a chance token

    _, r = run({tok["dog"]: shapes, tok["circle"]: shapes})
    assert r.pick != red_circle and (r.pick is None or r.wide >= r.base_wide)  # "circle" fails the test: no word
