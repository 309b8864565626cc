"""The name check: an answer replaces a known name only by a paired bootstrap win on the train images."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from alias_opt.config import load_config
from alias_opt.eval.metrics import score_predictions
from alias_opt.search import alias_set as aset
from alias_opt.search import name_check as nc
from alias_opt.search import pipeline
from alias_opt.search.name_check import name_check, wide_name_check
from tests.test_alias_sets import A1, B2, BROAD, IMAGES, JUNK, PREDS, _fake_world, _Feats, pred, target

TWELVE = [target(i, A1) for i in range(1, 13)]  # one target on each of 12 images
HIT, MISS = pred((A1, 0.9)), pred((JUNK, 0.9))


def test_a_clear_train_win_departs_from_the_name():
    answer = [HIT] * 12
    name = [HIT] * 6 + [MISS] * 6  # the name misses half the targets and fires on junk there
    c = name_check([answer], name, TWELVE, [(7, 8)], level=0.9, seed=0)
    assert c.diff.diff == pytest.approx(0.5, abs=0.01) and c.diff.low > 0 and c.diff.level == 0.9
    assert c.departs and c.answer == ((7, 8),)
    rec = c.to_dict(lambda s: "-".join(map(str, s)))
    assert rec["answer"] == ["7-8"] and rec["name_kept"] is False and rec["level"] == 0.9


def test_a_chance_fit_keeps_the_name():
    # the answer finds the target on 7 images, the name on 7 (2 of them the same): no clear win
    answer = [HIT] * 7 + [MISS] * 5
    name = [MISS] * 5 + [HIT] * 7
    c = name_check([answer], name, TWELVE, [(7,)], level=0.9, seed=0)
    assert c.diff.low < 0 < c.diff.high and not c.departs
    assert c.to_dict(str)["name_kept"] is True


def test_a_sets_members_are_merged_before_the_check():
    images = [target(i, A1, B2) for i in range(1, 11)]
    a_only, b_only = [pred((A1, 0.9))] * 10, [pred((B2, 0.8))] * 10
    name = [pred((A1, 0.9))] * 10  # finds half the targets, as each member alone does
    alone = name_check([a_only], name, images, [(1,)], level=0.9, seed=0)
    both = name_check([a_only, b_only], name, images, [(1,), (2,)], level=0.9, seed=0)
    assert alone.diff.diff == pytest.approx(0.0) and not alone.departs
    assert both.diff.diff > 0.4 and both.departs and both.answer == ((1,), (2,))


def test_no_check_without_a_level_or_targets():
    assert name_check([[HIT] * 12], [MISS] * 12, TWELVE, [(7,)], level=0, seed=0) is None
    empty = [target(i) for i in range(1, 4)]
    assert name_check([[MISS] * 3], [MISS] * 3, empty, [(7,)], level=0.9, seed=0) is None
    with pytest.raises(ValueError):
        load_config(overrides={"name_level": 1.0})
    with pytest.raises(ValueError, match="name_negatives"):
        load_config(overrides={"name_negatives": -1})


def test_the_set_builder_keeps_a_known_name_the_set_does_not_clearly_beat(monkeypatch):
    """The first search kept the name (4,), a broad alias; the cover set (1,) | (2,) beats it on the four
    train images by 0.2 AP, enough at set_level 0.3, but at the default name_level the bootstrap ties."""
    _fake_world(monkeypatch, [])
    monkeypatch.setitem(PREDS, (4,), BROAD)
    known = score_predictions(BROAD, IMAGES)
    first = SimpleNamespace(
        token_ids=(4,),
        candidates=[(4,), (3,), (1,), (2,)],
        splits=[],
        insertions=[],
        name_ids=(4,),
        name_train_metrics=known,
        name_check=None,
    )
    loose = {"set_level": 0.3, "restore_tolerance": -1}  # the fake world predicts no (4, 1): nothing put back
    res = aset.build_alias_set(
        None,
        IMAGES,
        _Feats(),
        "name",
        load_config(overrides=loose),
        0,
        first,  # the default name_level
    )
    assert res.built == [(1,), (2,)] and res.name_check is not None
    assert res.name_check.answer == ((1,), (2,)) and not res.name_check.departs
    assert not res.kept and res.members == [(4,)] and res.metrics.ap == pytest.approx(known.ap)
    level = load_config().name_level
    assert res.to_dict(str)["name_check"]["name_kept"] is True and res.name_check.diff.level == level
    # where the first search's winner was checked and turned down, the set's check is a second look at half the
    # error rate
    second = aset.build_alias_set(
        None, IMAGES, _Feats(), "name", load_config(overrides=loose), 0, replace_first(first, name_check=object())
    )
    assert second.name_check.diff.level == pytest.approx(1 - (1 - level) / 2) and second.members == [(4,)]
    off = aset.build_alias_set(
        None, IMAGES, _Feats(), "name", load_config(overrides={**loose, "name_level": 0}), 0, first
    )
    assert off.kept and off.members == [(1,), (2,)] and off.name_check is None
    # a name the model does not know (train AP below known_name_ap) is not checked
    unknown = replace_first(first, name_train_metrics=SimpleNamespace(ap=0.0))
    res = aset.build_alias_set(None, IMAGES, _Feats(), "name", load_config(overrides=loose), 0, unknown)
    assert res.kept and res.name_check is None
    # nor is a set grown from an alias that already replaced the name (the pipeline checked that one)
    other = replace_first(first, name_ids=(9,))
    res = aset.build_alias_set(None, IMAGES, _Feats(), "name", load_config(overrides=loose), 0, other)
    assert res.kept and res.name_check is None


def replace_first(first, **kw):
    return SimpleNamespace(**{**vars(first), **kw})


class _Obj:
    """The objective as the pipeline's name check reads it."""

    def __init__(self, images, room=math.inf):
        self.images, self.feats, self.n_images, self.room = images, "feats", len(images), room
        self.charged, self.records = 0, []

    def remaining(self):
        return self.room

    def charge(self, n):
        self.charged += n

    def record(self, phase, step, loss, **extra):
        self.records.append((phase, extra))


def _row(seq, preds, images):
    m = score_predictions(preds, images)
    return pipeline.RerankRow(seq, m.ap, 1.0, m)


def test_the_pipelines_name_check_on_the_reranked_winner(monkeypatch):
    answer, name = [HIT] * 7 + [MISS] * 5, [MISS] * 5 + [HIT] * 7
    preds = {(7,): answer, (5, 6): name}
    monkeypatch.setattr(pipeline, "predict", lambda backend, feats, images, prompts: [preds[tuple(p)] for p in prompts])
    rows = [_row((7,), answer, TWELVE), _row((5, 6), name, TWELVE)]
    ctx = SimpleNamespace(
        obj=_Obj(TWELVE), cfg=load_config(), name_seq=(5, 6), seed=3, backend=None, extra_negatives=()
    )
    c = pipeline._check_name(ctx, rows)
    assert c is not None and not c.departs and ctx.obj.charged == 24
    assert ctx.obj.records[0][0] == "name check" and ctx.obj.records[0][1]["name_kept"] is True
    # not checked: the name won, no level, an unknown name, or no budget left for the two prompts' forwards
    assert pipeline._check_name(ctx, rows[::-1]) is None
    ctx.cfg = load_config(overrides={"name_level": 0})
    assert pipeline._check_name(ctx, rows) is None
    ctx.cfg = load_config()
    bad = [HIT] * 0 + [MISS] * 12
    assert pipeline._check_name(ctx, [rows[0], _row((5, 6), bad, TWELVE)]) is None  # AP 0: unknown
    ctx.obj = _Obj(TWELVE, room=23)
    assert pipeline._check_name(ctx, rows) is None
    # the reserve for the re-ranking keeps the check's forwards back under a budget
    cfg = load_config()
    assert pipeline.rerank_reserve(cfg, 10, 10_000, True) == (cfg.rerank + 3) * 10
    assert pipeline.rerank_reserve(cfg, 10, 10_000, True, n_extra=100) == (cfg.rerank + 3) * 10 + 200
    assert pipeline.rerank_reserve(cfg, 10, 10_000, False, n_extra=100) == cfg.rerank * 10
    # a budget too small for the check on 110 images still keeps the re-ranking's share back
    assert pipeline.rerank_reserve(cfg, 10, 100, True, n_extra=100) == (cfg.rerank + 1) * 10
    assert pipeline.rerank_reserve(load_config(overrides={"name_level": 0}), 10, 10_000, True) == (cfg.rerank + 1) * 10


EXTRA = [target(i) for i in range(20, 32)]  # twelve images without the category


def _extra_preds(monkeypatch, by_prompt):
    """predict_images on the extra negatives, from hand-made predictions per prompt."""
    calls = []

    def fake(backend, images, prompts, thresholds=None):
        calls.append((list(images), [tuple(p) for p in prompts]))
        return [by_prompt[tuple(p)] if images else [] for p in prompts]

    monkeypatch.setattr(nc, "predict_images", fake)
    return calls


def test_extra_negatives_catch_a_broadening_of_the_name(monkeypatch):
    """On the train images the answer finds two targets more than the name (a clear win); it also fires on
    every image without the category, where the name stays quiet: over both, the name stays."""
    answer, name = [HIT] * 12, [HIT] * 8 + [MISS] * 4
    calls = _extra_preds(monkeypatch, {(7,): [pred((JUNK, 0.95))] * 12, (5, 6): [pred()] * 12})
    train = wide_name_check(None, [answer], name, TWELVE, [], [(7,)], (5, 6), level=0.9, seed=0)
    assert (
        train.departs
        and train.extra_negatives == 0
        and train.diff.diff == pytest.approx(name_check([answer], name, TWELVE, [(7,)], level=0.9, seed=0).diff.diff)
    )
    wide = wide_name_check(None, [answer], name, TWELVE, EXTRA, [(7,)], (5, 6), level=0.9, seed=0)
    assert calls[-1] == (EXTRA, [(7,), (5, 6)])  # the answer's members and the name, on the extra images
    assert wide.diff.diff < 0 and not wide.departs and wide.extra_negatives == 12
    assert wide.to_dict(str)["extra_negatives"] == 12 and wide.to_dict(str)["name_kept"] is True
    # a narrowing (quiet where the name fires) keeps its win over the wider images
    calls = _extra_preds(monkeypatch, {(7,): [pred()] * 12, (5, 6): [pred((JUNK, 0.95))] * 12})
    narrow = wide_name_check(None, [answer], name, TWELVE, EXTRA, [(7,)], (5, 6), level=0.9, seed=0)
    assert narrow.departs and narrow.diff.diff > train.diff.diff
    assert wide_name_check(None, [answer], name, TWELVE, EXTRA, [(7,)], (5, 6), level=0, seed=0) is None


def test_the_pipelines_check_reads_and_charges_the_extra_negatives(monkeypatch):
    answer, name = [HIT] * 12, [HIT] * 8 + [MISS] * 4
    monkeypatch.setattr(pipeline, "predict", lambda backend, feats, images, prompts: [answer, name])
    _extra_preds(monkeypatch, {(7,): [pred((JUNK, 0.95))] * 12, (5, 6): [pred()] * 12})
    rows = [_row((7,), answer, TWELVE), _row((5, 6), name, TWELVE)]
    ctx = SimpleNamespace(
        obj=_Obj(TWELVE), cfg=load_config(), name_seq=(5, 6), seed=3, backend=None, extra_negatives=EXTRA
    )
    c = pipeline._check_name(ctx, rows)
    assert c is not None and not c.departs and c.extra_negatives == 12 and ctx.obj.charged == 2 * (12 + 12)
    ctx.extra_negatives = ()
    c = pipeline._check_name(ctx, rows)
    assert c.departs and c.extra_negatives == 0
    ctx.obj, ctx.extra_negatives = _Obj(TWELVE, room=47), EXTRA  # 48 forwards with the extra images: without them
    c = pipeline._check_name(ctx, rows)
    assert c.departs and c.extra_negatives == 0 and ctx.obj.charged == 24
    ctx.obj = _Obj(TWELVE, room=23)
    assert pipeline._check_name(ctx, rows) is None


def test_narrows_only_where_every_member_adds_words_to_the_name():
    red_circle = (736, 2763)
    assert nc.narrows([(2661, 736, 2763)], red_circle)  # "large red circle"
    assert nc.narrows([(736, 2763, 5589), (2763, 9, 736)], red_circle)  # each member, any order
    assert nc.narrows([(736, 2763), (2661, 736, 2763)], red_circle)  # the name and a narrowing of it
    assert not nc.narrows([(736, 2763)], red_circle)  # the name itself adds nothing
    assert not nc.narrows([(736,)], red_circle)  # drops a word: a broadening
    assert not nc.narrows([(736, 4, 9)], red_circle)  # swaps a word ("red circles")
    assert not nc.narrows([(2661, 736, 2763), (736, 9)], red_circle)  # one member broadens
    assert not nc.narrows([(5, 5)], (5, 5, 6)) and nc.narrows([(5, 6, 5)], (5, 5)) and not nc.narrows([(5, 6)], (5, 5))
    assert not nc.narrows([], red_circle) and not nc.narrows([(1, 2)], ())
    assert nc.check_level([(2661, 736, 2763)], red_circle, 0.95, 0.8) == 0.8
    assert nc.check_level([(736,)], red_circle, 0.95, 0.8) == 0.95
    assert nc.check_level([(2661, 736, 2763)], red_circle, 0, 0.8) == 0  # no check stays no check
    with pytest.raises(ValueError, match="narrowing_level"):
        load_config(overrides={"narrowing_level": 1.0})


def test_the_pipelines_check_is_looser_for_a_narrowing(monkeypatch):
    # the answer beats the name on 3 of 12 images: a win at 0.8, not at 0.99
    answer, name = [HIT] * 12, [HIT] * 9 + [MISS] * 3
    preds = {(5, 6, 7): answer, (9, 6): answer, (5, 6): name}
    monkeypatch.setattr(pipeline, "predict", lambda backend, feats, images, prompts: [preds[tuple(p)] for p in prompts])
    cfg = load_config(overrides={"name_level": 0.99, "narrowing_level": 0.8})
    for winner, level in (((5, 6, 7), 0.8), ((9, 6), 0.99)):
        rows = [_row(winner, answer, TWELVE), _row((5, 6), name, TWELVE)]
        ctx = SimpleNamespace(obj=_Obj(TWELVE), cfg=cfg, name_seq=(5, 6), seed=3, backend=None, extra_negatives=())
        c = pipeline._check_name(ctx, rows)
        assert c.diff.level == level and c.departs == (level == 0.8), (winner, c.diff)
