"""The synonym test (``alias_opt.search.synonyms``): its pure steps on tiny inputs, and on sam3-toy the pipeline's
test of re-ranked rows against every token's nearest table rows, recomputed prompt by prompt."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alias_opt.config import load_config
from alias_opt.search.pipeline import RerankRow
from alias_opt.search.synonyms import SynonymTest, holds, meaningful_first, synonym_swaps
from tests.discovery_helpers import toy_crimson_discs


def test_synonym_swaps_replace_one_position_at_a_time():
    swaps = synonym_swaps((5, 6, 7), np.array([[1, 2], [3, 4], [8, 9]]))
    assert swaps == [[(1, 6, 7), (2, 6, 7)], [(5, 3, 7), (5, 4, 7)], [(5, 6, 8), (5, 6, 9)]]
    assert synonym_swaps((), np.zeros((0, 2), dtype=int)) == []


def test_holds_needs_one_good_swap_at_every_position():
    ok, best = holds(0.50, [[0.10, 0.495], [0.48, 0.51]], tolerance=0.01)
    assert ok and best == [0.495, 0.51]
    ok, best = holds(0.50, [[0.10, 0.495], [0.48, 0.20]], tolerance=0.01)  # the second token's best loses 0.02
    assert not ok and best == [0.495, 0.48]
    ok, _ = holds(0.50, [[0.10, 0.495], [0.48, 0.20]], tolerance=0.03)
    assert ok
    assert holds(0.5, [[-math.inf]], 0.01)[0] is False  # no swap scored (budget spent, not allowed)
    assert holds(0.5, [], 0.01)[0] is False  # nothing to test


def _rows(*aps):
    return [RerankRow((i,), a, float(i), None) for i, a in enumerate(aps)]


def _tester(passing, calls):
    def test(seq):
        calls.append(seq)
        return SynonymTest(seq, 0.0, [0.0], seq in passing)

    return test


def test_meaningful_first_moves_the_first_passing_row_within_the_band():
    rows = _rows(0.304, 0.301, 0.311, 0.200)  # re-ranked order: the rows' order is the tie-break's
    calls: list = []
    out, tests = meaningful_first(rows, _tester({(1,), (2,)}, calls), tolerance=0.01, limit=4)
    assert [r.token_ids for r in out] == [(1,), (0,), (2,), (3,)]
    assert calls == [(0,), (1,)] and [t.passed for t in tests] == [False, True]  # stops at the first pass


def test_meaningful_first_leaves_rows_outside_the_band_and_respects_the_limit():
    rows = _rows(0.30, 0.25, 0.31)
    calls: list = []
    out, tests = meaningful_first(rows, _tester({(1,)}, calls), tolerance=0.02, limit=4)
    assert out == rows and calls == [(0,), (2,)]  # (1,) is 0.06 below the best: never tested
    calls.clear()
    out, _ = meaningful_first(_rows(0.30, 0.30, 0.30), _tester({(2,)}, calls), tolerance=0.01, limit=2)
    assert [r.token_ids for r in out] == [(0,), (1,), (2,)] and calls == [(0,), (1,)]
    calls.clear()
    out, tests = meaningful_first(_rows(0.30, 0.29), _tester({(0,)}, calls), tolerance=0.01, limit=4)
    assert [r.token_ids for r in out] == [(0,), (1,)] and len(tests) == 1  # the first passes: nothing moves
    assert meaningful_first(rows, _tester(set(), calls), 0.01, 0) == (rows, [])
    nan = _rows(float("nan"), 0.2)
    out, tests = meaningful_first(nan, _tester({(1,)}, []), 0.01, 4)
    assert [r.token_ids for r in out] == [(1,), (0,)] and len(tests) == 1  # a NaN AP is never tested


def test_meaningful_first_tests_and_moves_each_row_as_tidy_leaves_it():
    rows = _rows(0.30, 0.30) + [RerankRow((7,), 0.20, 6.0, None)]
    pruned = RerankRow((7,), 0.30, 5.0, None)
    calls: list = []
    out, _ = meaningful_first(rows, _tester({(7,)}, calls), 0.01, 4, tidy=lambda r: pruned if r is rows[1] else r)
    assert calls == [(0,), (7,)] and out == [pruned, rows[0]]  # the pruned row goes first; its source and repeat go


def test_meaningful_first_tests_each_tidied_row_once_and_counts_it_once():
    """Rows that tidy to one row (seed 7070 "framed plus": eight re-ranked rows all pruned to "cross loaded") are
    tested once; the repeats do not use up the limit, so the next distinct row is still tested."""
    rows = _rows(0.30, 0.30, 0.30, 0.30)
    same = RerankRow((9,), 0.30, 0.0, None)
    tidy = lambda r: same if r.token_ids < (3,) else r  # noqa: E731
    calls: list = []
    out, tests = meaningful_first(rows, _tester({(3,)}, calls), 0.01, 2, tidy=tidy)
    assert calls == [(9,), (3,)] and [t.token_ids for t in tests] == [(9,), (3,)]
    assert out[0] is rows[3]
    calls.clear()
    out, tests = meaningful_first(rows, _tester(set(), calls), 0.01, 1, tidy=tidy)
    assert calls == [(9,)] and len(tests) == 1 and out == rows  # the limit still counts distinct rows


def test_meaningful_first_reads_the_wide_ap_where_the_rows_have_one():
    rows = [RerankRow((0,), 0.30, 0.0, None, wide_ap=0.27), RerankRow((1,), 0.30, 1.0, None, wide_ap=0.20)]
    calls: list = []
    out, tests = meaningful_first(rows, _tester({(1,)}, calls), tolerance=0.01, limit=4)
    assert out == rows and calls == [(0,)]  # equal on train, but (1,) is 0.07 below on the wide AP: not tested
    rows[1].wide_ap = 0.265
    out, _ = meaningful_first(rows, _tester({(1,)}, calls), tolerance=0.01, limit=4)
    assert [r.token_ids for r in out] == [(1,), (0,)]


def test_wide_aps_score_the_train_images_with_the_extra_negatives_and_order_the_rerank(toy_ctx):
    """``SearchContext.wide_aps`` is COCO AP over train + extra negatives (recomputed here), charged once per
    sequence; with ``wide_rerank`` an unknown name's re-ranked rows carry it and are ordered by it."""
    from alias_opt.eval.predict import evaluate_prompts
    from alias_opt.search.context import make_context
    from alias_opt.search.pipeline import _rerank

    b, ts, feats = toy_ctx
    extra = [im for im in ts.test if not im.is_positive][:5]
    cfg = load_config(overrides={"wide_rerank": True, "rerank": 3, "synonym_rows": 3})
    ctx = make_context(b, ts.train, feats, ts.name, cfg, seed=0, extra_negatives=extra)
    enc = b.tokenizer.encode
    seqs = [tuple(enc(p, special=False)) for p in ("red circle", "red", "circle")]
    s0 = ctx.obj.spent
    wide = ctx.wide_aps(seqs)
    want = [m.ap for m in evaluate_prompts(b, [*ts.train, *extra], [list(s) for s in seqs])]
    assert wide == pytest.approx(want, abs=1e-9)
    assert ctx.obj.spent - s0 == 3 * (len(ts.train) + len(extra))
    assert ctx.wide_aps(seqs[:1]) == wide[:1] and ctx.obj.spent - s0 == 3 * (len(ts.train) + len(extra))  # memo
    assert make_context(b, ts.train, feats, ts.name, cfg, seed=0).wide_aps(seqs) == [None] * 3  # no negatives

    ctx.obj.score(seqs, screen=False)
    rows, _ = _rerank(ctx)
    assert not ctx.knows_name() and {r.token_ids for r in rows} >= set(seqs)
    assert all(r.wide_ap == pytest.approx(w, abs=1e-9) for r in rows for s, w in zip(seqs, wide) if r.token_ids == s)
    assert rows[0].rank_ap >= max(r.rank_ap for r in rows) - cfg.rerank_tolerance  # ordered by the wide AP
    plain = make_context(
        b, ts.train, feats, ts.name, load_config(overrides={"rerank": 3}), seed=0, extra_negatives=extra
    )
    plain.obj.score(seqs, screen=False)
    assert all(r.wide_ap is None for r in _rerank(plain)[0])  # off by default


def test_config_refuses_negative_synonym_settings():
    for over in ({"synonyms": -1}, {"synonym_rows": -1}, {"synonym_tolerance": 1.5}):
        with pytest.raises(ValueError, match="synonyms and synonym_rows must be >= 0"):
            load_config(overrides=over)


@pytest.fixture(scope="module")
def toy_ctx(tmp_path_factory):
    return toy_crimson_discs(tmp_path_factory.mktemp("synonyms"))


def test_synonym_first_on_the_toy_tests_every_token_against_its_table_neighbours(toy_ctx):
    """Each tested row's best swaps are the train APs of real sequences: recomputed here one by one."""
    from alias_opt.eval.predict import evaluate_prompts
    from alias_opt.search.context import make_context
    from alias_opt.search.synonyms import synonym_first

    b, ts, feats = toy_ctx
    cfg = load_config(overrides={"synonyms": 3, "synonym_rows": 2, "synonym_tolerance": 0.01})
    ctx = make_context(b, ts.train, feats, ts.name, cfg, seed=0)
    enc = b.tokenizer.encode
    seqs = [tuple(enc(p, special=False)) for p in ("red circle", "circle red")]
    ms = evaluate_prompts(b, ctx.obj.images, [list(s) for s in seqs], feats=feats)
    rows = [RerankRow(s, m.ap, float(i), m) for i, (s, m) in enumerate(zip(seqs, ms))]
    f0 = ctx.obj.usage().forward
    out, tests = synonym_first(ctx, rows, ctx.train_aps)
    assert 1 <= len(tests) <= 2 and ctx.obj.usage().forward > f0  # the swaps' train APs are charged
    t = tests[0]
    nb = ctx.synonym_index.neighbours(list(t.token_ids), 3)  # (L, 3)
    swapped = [s for row in synonym_swaps(t.token_ids, nb) for s in row]
    ok = [s for s in swapped if ctx.filt(s) == s]
    aps = dict(zip(ok, (m.ap for m in evaluate_prompts(b, ctx.obj.images, [list(s) for s in ok], feats=feats))))
    want = [max((aps.get(s, -math.inf) for s in swapped[i * 3 : (i + 1) * 3]), default=-math.inf) for i in range(2)]
    assert t.best_swaps == pytest.approx(want, abs=1e-9)
    assert t.passed == all(w >= t.train_ap - 0.01 for w in want)
    assert out[0].token_ids == next((x.token_ids for x in tests if x.passed), rows[0].token_ids)
    off = make_context(b, ts.train, feats, ts.name, load_config(overrides={"synonyms": 0}), seed=0)
    assert synonym_first(off, rows, off.train_aps) == (rows, [])
    named = make_context(b, ts.train, feats, "red circle", cfg, seed=0)  # the name leads: nothing is tested
    assert synonym_first(named, rows, named.train_aps) == (rows, [])


def test_extend_ranked_re_ranking_also_reads_the_best_by_train_ap_so_far(toy_ctx):
    """With ``extend_ranked`` an unknown name's re-ranking reads the lowest losses and the best train APs paid for
    so far (``SearchContext.ap_ranked``, memoized: no new forwards); without it, the lowest losses alone."""
    from alias_opt.search.context import make_context
    from alias_opt.search.pipeline import _rerank

    b, ts, feats = toy_ctx
    enc = b.tokenizer.encode
    seqs = [tuple(enc(p, special=False)) for p in ("red circle", "red", "circle", "blue square")]
    for k, want_more in ((4, True), (0, False)):
        cfg = load_config(overrides={"extend_ranked": k, "rerank": 1, "synonym_rows": 1, "synonyms": 0})
        ctx = make_context(b, ts.train, feats, ts.name, cfg, seed=0)
        ctx.obj.score(seqs, screen=False)
        by_loss = ctx.obj.ranked(1)[0][0]
        others = [q for q in seqs if q != by_loss]  # their train APs paid for (as a phase would); by_loss's not
        aps = ctx.train_aps(others)
        best_ap = others[max(range(len(others)), key=lambda i: aps[i])]
        assert ctx.ap_ranked(1) == [best_ap] and not ctx.knows_name()
        spent = ctx.obj.spent
        rows = {r.token_ids for r in _rerank(ctx)[0]}
        assert by_loss in rows and (best_ap in rows) == want_more
        assert ctx.obj.spent - spent == len(ts.train)  # only by_loss's train AP is new
