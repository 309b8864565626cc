"""Pruning inside the pipeline: on sam3-toy, filler after "red circle" is dropped, the concept words stay."""

from __future__ import annotations

import math

import pytest

from alias_opt.config import load_config
from alias_opt.eval.predict import evaluate_prompts
from alias_opt.search.context import make_context
from alias_opt.search.pipeline import RerankRow, _prune, _restore
from tests.discovery_helpers import toy_crimson_discs


@pytest.fixture(scope="module")
def toy_ctx(tmp_path_factory):
    return toy_crimson_discs(tmp_path_factory.mktemp("prune"))


def _row(ctx, seq):
    m = evaluate_prompts(ctx.backend, ctx.obj.images, [list(seq)], feats=ctx.obj.feats)[0]
    return RerankRow(tuple(seq), m.ap, math.inf, m)


def test_prune_drops_filler_and_keeps_the_concept(toy_ctx):
    b, ts, feats = toy_ctx
    cfg = load_config(overrides={"max_len": 4, "prune_tolerance": 0.01})
    ctx = make_context(b, ts.train, feats, ts.name, cfg, seed=0)
    enc = b.tokenizer.encode
    red, circle, host = enc("red", special=False)[0], enc("circle", special=False)[0], enc("host", special=False)[0]
    row, dropped = _prune(ctx, _row(ctx, (red, circle, host)))
    assert dropped == (host,) and row.token_ids == (red, circle)
    assert row.train_ap >= _row(ctx, (red, circle, host)).train_ap - 0.01
    assert row.train_ap > _row(ctx, (red,)).train_ap + 0.05  # "red" alone is not enough: it stays a pair
    assert ctx.obj.usage().forward > 0  # the pruning's scoring is charged
    off = make_context(b, ts.train, feats, ts.name, load_config(overrides={"prune_tolerance": 0.0}), seed=0)
    same, none = _prune(off, _row(off, (red, circle)))
    assert none == () and same.token_ids == (red, circle)


def test_prune_keeps_the_names_tokens(toy_ctx):
    """The name's tokens are never pruned (``prune_keep_name``), even where they add no train AP."""
    b, ts, feats = toy_ctx
    enc = b.tokenizer.encode
    red, circle, host = enc("red", special=False)[0], enc("circle", special=False)[0], enc("host", special=False)[0]
    for keep, expect in ((True, (red, circle, host)), (False, (red, circle))):
        cfg = load_config(overrides={"max_len": 4, "prune_tolerance": 0.01, "prune_keep_name": keep})
        ctx = make_context(b, ts.train, feats, "host", cfg, seed=0)  # a name whose token is filler here
        row, _ = _prune(ctx, _row(ctx, (red, circle, host)))
        assert row.token_ids == expect, (keep, row.token_ids)


def test_restore_puts_back_the_names_word_only_where_it_does_not_cost(toy_ctx):
    """The targets are red circles: from "red", the name "red circle" gets "circle" back (it raises
    train AP); a wrong name's word ("square") costs train AP and stays out."""
    b, ts, feats = toy_ctx
    enc = b.tokenizer.encode
    red, circle, square = (enc(w, special=False)[0] for w in ("red", "circle", "square"))
    cfg = load_config(overrides={"restore_tolerance": 0.01})
    ctx = make_context(b, ts.train, feats, "red circle", cfg, seed=0)
    row, added = _restore(ctx, _row(ctx, (red,)))
    assert added == (circle,) and sorted(row.token_ids) == sorted((red, circle))
    assert row.train_ap > _row(ctx, (red,)).train_ap + 0.05
    wrong = make_context(b, ts.train, feats, "red square", cfg, seed=0)
    same, none = _restore(wrong, _row(wrong, (red,)))
    assert none == () and same.token_ids == (red,)
