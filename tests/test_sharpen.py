"""Sharpening on hard negatives (``alias_opt.search.sharpen``): its pure steps on tiny inputs, and on sam3-toy a
too-broad winner for a name the toy never learned ("circle" for red circles) sharpened against images without the
category, every number recomputed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alias_opt.config import load_config
from alias_opt.eval.metrics import ImagePredictions
from alias_opt.search.sharpen import Sharpening, SharpenRound, best_tokens, hard_negatives, max_scores, pick
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


def test_sharpening_reports_the_tokens_its_rounds_added():
    r1 = SharpenRound((5, 6), (7, 5, 6), 3, 10, 30, 0.2, 0.4, 0.3, 0.41)
    r2 = SharpenRound((7, 5, 6), None, 2, 10, 40, 0.3, 0.41)
    assert Sharpening((7, 5, 6), [r1, r2], 100).added == (7,)
    row = r2.to_dict(str)
    assert row["pick"] is None and row["wide"] is None and row["base_wide"] == 0.3


def test_config_refuses_bad_sharpen_settings():
    for over in ({"sharpen_negatives": 0}, {"sharpen_keep": 0}, {"sharpen_margin": -0.1}):
        with pytest.raises(ValueError, match="sharpen_negatives and sharpen_keep"):
            load_config(overrides=over)
    with pytest.raises(ValueError, match="sharpen_max_len must be in 0..30"):
        load_config(overrides={"sharpen_max_len": 31})


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
    over = {"sharpen_negatives": 6, "sharpen_keep": 3, "sharpen_max_len": 2}
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
    short = load_config(overrides={"max_len": 1, "sharpen_max_len": 0})  # 0: the search's max_len
    assert sharpen(make_context(b, ts.train, feats, ts.name, short, seed=0, extra_negatives=extra), circle) is None
    one = load_config(overrides={**over, "max_len": 1})
    past = make_context(b, ts.train, feats, ts.name, one, seed=0, extra_negatives=extra)
    past.pool = lambda: pool
    grown = sharpen(past, circle)  # one token past the search's max_len, as far as sharpen_max_len (2)
    assert grown is not None and len(grown.seq) == 2 and grown.rounds[0].pick == r.pick
    assert math.isfinite(sh.rounds[-1].base_wide)
