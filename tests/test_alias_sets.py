"""Alias sets: the union of detections, scored like one prompt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from alias_opt.data.targets import ImageEntry, TargetImage
from alias_opt.eval.alias_sets import merge_predictions, merge_split
from alias_opt.eval.boxes import ImageBoxes
from alias_opt.eval.metrics import ImagePredictions, score_predictions

H = W = 32


def box(x0, y0, x1, y1):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


A, B = box(2, 2, 12, 12), box(18, 18, 30, 30)  # two target instances of a union category


def test_union_finds_both_concepts_and_drops_duplicates():
    alias_a = ImagePredictions(np.stack([A, box(20, 0, 30, 8)]), [0.9, 0.2])  # finds A, one junk
    alias_b = ImagePredictions(np.stack([B, box(2, 2, 12, 11)]), [0.8, 0.5])  # finds B, and A again
    merged = merge_predictions([alias_a, alias_b])
    assert merged.scores.tolist() == [0.9, 0.8, 0.2]  # the second copy of A (0.5) is gone
    assert (merged.masks[0] == A).all() and (merged.masks[1] == B).all()
    target = TargetImage(ImageEntry(1, Path("1.png"), H, W), np.stack([A, B]), None, [1, 2])
    one = score_predictions([alias_a], [target])
    both = score_predictions([merged], [target])
    assert one.recall == 0.5 and both.recall == 1.0 and both.tp == 2
    assert both.ap50 > one.ap50


def test_merge_split_and_errors():
    empty = ImagePredictions(np.zeros((0, H, W), bool), [])
    full = ImagePredictions(A[None], [0.7])
    out = merge_split([[empty, full], [full, empty]])
    assert [len(p) for p in out] == [1, 1]
    assert len(merge_predictions([empty, empty])) == 0
    with pytest.raises(ValueError):
        merge_predictions([])
    with pytest.raises(ValueError):
        merge_predictions([full, ImagePredictions(np.zeros((1, 8, 8), bool), [0.1])])


# ------------------------------------------------ the set builder and its steps (alias_set, set_steps)
from dataclasses import replace  # noqa: E402
from types import SimpleNamespace  # noqa: E402

from alias_opt.config import load_config  # noqa: E402
from alias_opt.search import alias_set as aset  # noqa: E402
from alias_opt.search import cover, set_steps  # noqa: E402
from alias_opt.search.meter import Usage  # noqa: E402
from alias_opt.search.objective import Step  # noqa: E402

EMPTY = np.zeros((0, H, W), bool)
A1, A2, B2, B3 = box(1, 1, 9, 9), box(2, 20, 10, 30), box(18, 4, 30, 14), box(20, 20, 31, 31)
JUNK = box(12, 12, 16, 16)
MAX_AP_HALF = 51 / 101  # COCO's 101-point AP when half the targets are found first, at precision 1


def target(image_id, *masks):
    stack = np.stack(masks) if masks else EMPTY
    return TargetImage(ImageEntry(image_id, Path(f"{image_id}.png"), H, W), stack, None, list(range(len(masks))))


def pred(*pairs):
    return ImagePredictions(np.stack([m for m, _ in pairs]) if pairs else EMPTY, [s for _, s in pairs])


# a union category: concept a (A1, A2) and concept b (B2, B3); image 4 is a negative
IMAGES = [target(1, A1), target(2, A2, B2), target(3, B3), target(4)]
PREDS = {  # each alias alone on the four images
    (1,): [pred((A1, 0.9)), pred((A2, 0.8)), pred(), pred()],  # finds concept a
    (2,): [pred(), pred((B2, 0.85)), pred((B3, 0.7)), pred()],  # finds concept b
    (3,): [pred((JUNK, 0.95)), pred(), pred(), pred((JUNK, 0.95))],  # fires on nothing right
}


def test_covered_targets_and_residual_image():
    im = IMAGES[1]
    partial_b = box(18, 4, 30, 7)  # IoU with B2 = 0.25: not a match
    p = pred((A2, 0.9), (partial_b, 0.8), (B2, 0.2))  # B2 itself only below the score threshold 0.3
    assert set_steps.covered_targets(p, im).tolist() == [True, False]
    res = set_steps.residual_image(im, np.array([True, False]))
    assert res.n_targets == 1 and (res.masks[0] == B2).all() and res.ann_ids == [1]
    assert (res.ignore == A2).all()  # the covered target is an ignore region now
    assert set_steps.residual_image(im, np.array([True, True])) is None  # nothing left to find there
    assert set_steps.residual_image(im, np.array([False, False])) is im
    assert set_steps.residual_image(IMAGES[3], np.zeros(0, bool)) is IMAGES[3]  # negatives stay


def test_residual_plan_and_its_reasons():
    plan = set_steps.residual_plan(IMAGES, PREDS[(1,)], min_uncovered=0.2)
    assert (plan.n_targets, plan.uncovered, plan.reason) == (4, 2, "")
    assert plan.index == [1, 2, 3]  # image 1 (all covered) is left out, the negative kept
    assert [im.n_targets for im in plan.images] == [1, 1, 0]
    assert "finds no target" in set_steps.residual_plan(IMAGES, PREDS[(3,)], 0.2).reason
    assert "2 of 4 train targets missed" in set_steps.residual_plan(IMAGES, PREDS[(1,)], 0.6).reason
    assert set_steps.residual_plan([IMAGES[3]], [pred()], 0.2).reason == "no train targets"


def test_rank_additions_scores_the_union():
    single = cover.merged_metrics([PREDS[(1,)]], IMAGES)
    assert single.ap == pytest.approx(MAX_AP_HALF) and single.recall == 0.5
    ranked = set_steps.rank_additions([PREDS[(1,)]], {(3,): PREDS[(3,)], (2,): PREDS[(2,)]}, IMAGES)
    assert [s for s, _ in ranked] == [(2,), (3,)]
    assert ranked[0][1].ap == pytest.approx(1.0) and ranked[0][1].recall == 1.0
    # two junk detections rank first (0.95): precision 1/3 and 2/4 at the two hits, interpolated 1/2 to recall 0.5
    assert ranked[1][1].ap == pytest.approx(MAX_AP_HALF / 2)


def test_keep_set_margin():
    assert set_steps.keep_set(0.5, 0.6, 0.02) and not set_steps.keep_set(0.5, 0.51, 0.02)
    assert set_steps.keep_set(float("nan"), 0.1, 0.02) and not set_steps.keep_set(0.5, float("nan"), 0.02)


def test_best_member_replaces_one_alias_by_a_margin_and_a_set_within_it():
    """A member replaces a single answer only where it beats that alias's train AP by more than the
    margin; it replaces a kept set where it alone comes within the margin of the set's merged AP."""
    alone = {(1,): SimpleNamespace(ap=0.30), (2,): SimpleNamespace(ap=0.31), (3,): SimpleNamespace(ap=0.36)}
    assert set_steps.best_member([(1,)], [(1,), (2,)], alone, 0.30, 0.02) is None  # +0.01: not past the margin
    assert set_steps.best_member([(1,)], [(1,), (2,), (3,)], alone, 0.30, 0.02) == (3,)  # +0.06
    assert set_steps.best_member([(1,), (2,)], [(1,), (2,)], alone, 0.40, 0.02) is None  # the set adds 0.09
    assert set_steps.best_member([(1,), (3,)], [(1,), (3,)], alone, 0.37, 0.02) == (3,)  # (1,) adds 0.01
    tied = {(4, 5): SimpleNamespace(ap=0.5), (6,): SimpleNamespace(ap=0.5), (7,): SimpleNamespace(ap=float("nan"))}
    assert set_steps.best_member([(7,)], [(4, 5), (6,), (7,)], tied, float("nan"), 0.02) == (6,)  # fewer tokens


def test_a_residual_member_better_alone_than_the_kept_set_is_the_answer(monkeypatch):
    """The first search settled on (5,), which finds one target behind two junk detections; the residual
    search finds (6,), which finds all four. The set (5,) | (6,) beats (5,), but (6,) alone beats the set
    (the junk ranks first in the merge): with set_member_single the answer is (6,) alone."""
    monkeypatch.setitem(PREDS, (5,), [pred((A1, 0.9)), pred((JUNK, 0.95)), pred(), pred((JUNK, 0.95))])
    monkeypatch.setitem(PREDS, (6,), [pred((A1, 0.8)), pred((A2, 0.8), (B2, 0.8)), pred((B3, 0.8)), pred()])

    _fake_residual_search(monkeypatch, (6,))
    first = _first(token_ids=(5,), candidates=[(5,)], splits=[], insertions=[])
    on = load_config(overrides={"max_aliases": 3, "set_level": 0, "set_member_single": True})
    res = aset.build_alias_set(None, IMAGES, _Feats(), None, on, 0, first)
    assert res.built == [(5,), (6,)] and res.built_ap < 0.7  # two junk detections rank first in the merge
    assert not res.kept and res.members == [(6,)] and res.first_single == (5,)
    assert res.metrics.ap == pytest.approx(1.0) and res.single_ap == pytest.approx(1.0)
    assert res.to_dict(lambda s: f"t{s[0]}")["first_single"] == "t5"
    off = aset.build_alias_set(None, IMAGES, _Feats(), None, replace(on, set_member_single=False), 0, first)
    assert off.kept and off.members == [(5,), (6,)] and off.first_single is None


def test_a_member_that_replaces_the_answer_is_pruned_alone(monkeypatch):
    """The residual search finds (6, 9): token 9 lifts B3 above (5,)'s junk, which counts beside (5,) (the
    set's tidying keeps it) but not alone, where (6,) finds the same four targets. Once (6, 9) replaces
    the answer alone, it is tidied against its own train AP: 9 goes (5454 "stars solid star", pruned
    beside "star square", was the answer alone)."""
    monkeypatch.setitem(PREDS, (5,), [pred((A1, 0.9)), pred((JUNK, 0.95)), pred(), pred((JUNK, 0.95))])
    monkeypatch.setitem(PREDS, (6,), [pred((A1, 0.8)), pred((A2, 0.8), (B2, 0.8)), pred((B3, 0.8)), pred()])
    monkeypatch.setitem(PREDS, (6, 9), [pred((A1, 0.8)), pred((A2, 0.8), (B2, 0.8)), pred((B3, 0.96)), pred()])
    monkeypatch.setitem(PREDS, (9,), [pred(), pred(), pred(), pred()])

    _fake_residual_search(monkeypatch, (6, 9))
    first = _first(token_ids=(5,), candidates=[(5,)], splits=[], insertions=[])
    cfg = load_config(overrides={"max_aliases": 3, "set_level": 0, "set_member_single": True})
    res = aset.build_alias_set(None, IMAGES, _Feats(), None, cfg, 0, first)
    assert res.built == [(5,), (6, 9)]  # beside (5,), dropping 9 costs ~0.08 train AP: kept
    assert res.members == [(6,)] and res.first_single == (5,) and res.single_dropped == (9,)
    assert res.metrics.ap == pytest.approx(1.0) and res.single_ap == pytest.approx(1.0)
    assert res.to_dict(lambda s: f"t{s[0]}")["single_dropped"] == [9]
    off = aset.build_alias_set(None, IMAGES, _Feats(), None, replace(cfg, prune_tolerance=-1), 0, first)
    assert off.members == [(6, 9)] and off.single_dropped == ()


def _fake_residual_search(monkeypatch, found):
    """``build_alias_set`` on ``PREDS``: predictions read from it, and every residual search finds ``found``."""

    def predict(backend, feats, images, prompts, thresholds=None):
        return [PREDS[tuple(p)] for p in prompts]

    def search(backend, images, feats, name, cfg, seed, indexes=None, on_step=None):
        return SimpleNamespace(reranked=[SimpleNamespace(token_ids=found)], candidates=[found], usage=Usage())

    monkeypatch.setattr(aset, "predict", predict)
    monkeypatch.setattr(cover, "predict", predict)
    monkeypatch.setattr(aset, "search", search)


class _Feats:
    def select(self, index):
        return ("selected", tuple(index))


def _first(**kw):
    """A first search's outcome as the set builder reads it (the name unknown: no insertions paired by it)."""
    return SimpleNamespace(name_ids=None, name_train_metrics=None, name_check=None, **kw)


def _fake_predict_boxes(backend, feats, images, prompts, min_score):
    """``predict_boxes`` on ``PREDS``: the boxes of the masks above ``min_score``, as a box head would give."""

    def boxes(p):
        keep = p.scores > min_score
        xywh = mask_utils.toBbox([r for r, k in zip(p.rles, keep) if k]) if keep.any() else np.zeros((0, 4))
        return ImageBoxes(p.scores[keep], np.asarray(xywh, dtype=np.float64).reshape(-1, 4))

    return [[boxes(p) for p in PREDS[tuple(s)]] for s in prompts]


def _fake_world(monkeypatch, calls):
    def predict(backend, feats, images, prompts, thresholds=None):
        return [PREDS[tuple(p)] for p in prompts]

    def search(backend, images, feats, name, cfg, seed, indexes=None, on_step=None):
        calls.append((images, feats, seed))
        if on_step is not None:
            on_step(Step("scan", 0, 1.0, 1.0, [3], 10, 0, 0.1))
        rows = [SimpleNamespace(token_ids=(3,))]
        return SimpleNamespace(reranked=rows, candidates=[(3,), (2,)], usage=Usage(forward=10, backward=1))

    monkeypatch.setattr(aset, "predict", predict)
    monkeypatch.setattr(cover, "predict", predict)
    monkeypatch.setattr(cover, "predict_boxes", _fake_predict_boxes)
    monkeypatch.setattr(aset, "search", search)


def test_build_alias_set_greedy_on_hand_made_masks(monkeypatch):
    calls = []
    _fake_world(monkeypatch, calls)
    first = _first(token_ids=(1,), candidates=[(1,), (3,)], splits=[], insertions=[])
    cfg = load_config(overrides={"max_aliases": 3, "set_level": 0})  # four images: no bootstrap
    steps = []
    res = aset.build_alias_set(None, IMAGES, _Feats(), "a or b", cfg, seed=5, first=first, on_step=steps.append)
    assert [st.phase for st in steps] == ["set1:scan"]  # the residual search's history lines are tagged
    assert len(calls) == 1  # round 2 found every target covered: no second search
    images, feats, seed = calls[0]
    assert feats == ("selected", (1, 2, 3)) and seed == set_steps.round_seed(5, 1)
    assert [im.n_targets for im in images] == [1, 1, 0] and (images[0].ignore == A2).all()
    assert res.kept and res.members == [(1,), (2,)] and res.built == [(1,), (2,)]
    assert res.single_ap == pytest.approx(MAX_AP_HALF) and res.metrics.ap == pytest.approx(1.0)
    assert [m.ap for m in res.member_metrics] == pytest.approx([MAX_AP_HALF, MAX_AP_HALF])
    assert [(r.uncovered, r.searched, r.tried, r.pick) for r in res.rounds] == [(2, True, 2, (2,)), (0, False, 0, None)]
    assert "0 of 4 train targets missed" in res.rounds[-1].stop
    assert res.usage.forward == 4 + 10 + 2 * 4  # the first alias on 4 images, the residual search, 2 candidates
    info = res.to_dict(lambda s: f"t{s[0]}")
    assert info["kept"] and info["built"][1] == {"token_ids": [2], "text": "t2"} and info["set_backward_passes"] == 1


def test_a_residual_pick_below_the_margin_is_not_taken_and_no_round_follows(monkeypatch):
    """A member must earn its place: the residual search's pick (2,) raises the set's train AP from 0.505
    to 1.0, not by more than set_margin 0.6, so it is not taken and no second residual search runs."""
    calls = []
    _fake_world(monkeypatch, calls)
    first = _first(token_ids=(1,), candidates=[(1,)], splits=[], insertions=[])
    cfg = load_config(overrides={"max_aliases": 3, "set_margin": 0.6, "set_level": 0})
    res = aset.build_alias_set(None, IMAGES, _Feats(), None, cfg, seed=0, first=first)
    assert not res.kept and res.members == [(1,)] and res.built == [(1,)]
    assert res.metrics.ap == pytest.approx(MAX_AP_HALF) and res.built_ap == pytest.approx(MAX_AP_HALF)
    assert len(calls) == 1 and len(res.rounds) == 1 and res.rounds[0].searched and res.rounds[0].pick is None
    assert "by more than 0.6" in res.rounds[0].stop
    taken = aset.build_alias_set(None, IMAGES, _Feats(), None, replace(cfg, set_margin=0.4), seed=0, first=first)
    assert taken.rounds[0].pick == (2,) and taken.built == [(1,), (2,)] and taken.kept  # +0.495 > 0.4


def test_a_set_addition_loses_its_inert_tokens(monkeypatch):
    """The residual search's winner "b + filler" (2, 9) finds concept b as (2,) does; the filler token 9
    alone finds nothing, so it is dropped and the set's second member is (2,)."""
    monkeypatch.setitem(PREDS, (2, 9), PREDS[(2,)])
    monkeypatch.setitem(PREDS, (9,), [pred(), pred(), pred(), pred()])

    _fake_residual_search(monkeypatch, (2, 9))
    first = _first(token_ids=(1,), candidates=[(1,)], splits=[], insertions=[])
    cfg = load_config(overrides={"max_aliases": 2, "set_level": 0})
    res = aset.build_alias_set(None, IMAGES, _Feats(), None, cfg, 0, first)
    assert res.kept and res.members == [(1,), (2,)] and res.metrics.ap == pytest.approx(1.0)
    assert res.rounds[0].pick == (2,) and res.rounds[0].pruned == (9,)
    assert res.rounds[0].to_dict(str)["pruned"] == [9] and res.rounds[0].restored == ()  # no name: none back
    assert res.usage.forward == 4 + 4 + 2 * 4  # first alias, the one candidate, its two one-token deletions
    off = aset.build_alias_set(
        None,
        IMAGES,
        _Feats(),
        None,
        load_config(overrides={"max_aliases": 2, "prune_tolerance": -1, "set_level": 0}),
        0,
        first,
    )
    assert off.members == [(1,), (2, 9)] and off.rounds[0].pruned == ()


# a too-broad alias (4,) finds every target but fires first on the negative image: the best single alias
BROAD = [pred((A1, 0.6)), pred((A2, 0.6), (B2, 0.6)), pred((B3, 0.6)), pred((JUNK, 0.95))]


def test_greedy_cover_finds_the_narrow_pair_under_a_broad_single():
    cands = {(4,): BROAD, (1,): PREDS[(1,)], (3,): PREDS[(3,)], (2,): PREDS[(2,)]}
    broad = cover.merged_metrics([BROAD], IMAGES)
    assert broad.ap == pytest.approx(0.8, abs=0.01)  # precision 4/5 at full recall: better than either half (0.505)
    chosen, m = cover.greedy_cover(cands, IMAGES, k=3)
    assert chosen == [(1,), (2,)] and m.ap == pytest.approx(1.0)  # the pair; no third member raises it
    one, m1 = cover.greedy_cover(cands, IMAGES, k=1)
    assert one == [(4,)] and m1.ap == pytest.approx(broad.ap)
    assert cover.greedy_cover({}, IMAGES, k=3) == ([], None)
    strict, _ = cover.greedy_cover(cands, IMAGES, k=3, margin=0.3)  # the pair raises AP by 0.2 only
    assert strict == [(4,)]
    # a pair that beats no single: the single alone
    only, _ = cover.greedy_cover({(4,): BROAD, (3,): PREDS[(3,)]}, IMAGES, k=3)
    assert only == [(4,)]


def test_build_alias_set_takes_the_cover_set_where_no_target_is_left(monkeypatch):
    calls = []
    _fake_world(monkeypatch, calls)
    monkeypatch.setitem(PREDS, (4,), BROAD)
    first = _first(token_ids=(4,), candidates=[(4,), (3,), (1,), (2,)], splits=[], insertions=[])
    cfg = load_config(overrides={"set_level": 0})  # the margins alone: four images are too few for a bootstrap
    res = aset.build_alias_set(None, IMAGES, _Feats(), "a or b", cfg, seed=0, first=first)
    assert calls == [] and "0 of 4 train targets missed" in res.rounds[0].stop  # the broad alias covers all
    assert res.cover == [(1,), (2,)] and res.cover_ap == pytest.approx(1.0)
    assert res.kept and res.members == [(1,), (2,)] and res.metrics.ap == pytest.approx(1.0)
    assert res.single_ap == pytest.approx(0.8, abs=0.01)
    assert res.usage.forward == 4 + 3 * 4  # the broad alias, then the three other candidates
    off = aset.build_alias_set(None, IMAGES, _Feats(), "a or b", load_config(overrides={"set_pool": 0}), 0, first)
    assert not off.kept and off.members == [(4,)] and off.cover == []
    # at 95% the paired bootstrap over four images cannot call the cover a win: resamples without the
    # negative image (the broad alias's only false positive) tie, so the single alias stays
    strict = aset.build_alias_set(
        None, IMAGES, _Feats(), "a or b", load_config(overrides={"set_level": 0.95}), 0, first
    )
    assert strict.cover == [(1,), (2,)] and strict.built == [(1,), (2,)]
    assert not strict.kept and strict.members == [(4,)]
    d = strict.set_vs_single
    assert d.diff == pytest.approx(0.2, abs=0.01) and d.low == pytest.approx(0.0) and d.verdict() == "tie"
    assert strict.to_dict(str)["set_vs_single"]["level"] == 0.95
    # so at the default 50%: (3/4)^4 = 32% of the resamples lack the negative image, more than the 25% below
    # the middle half; at 30% coverage the interval's foot is past them and the cover is kept
    middle = aset.build_alias_set(None, IMAGES, _Feats(), "a or b", load_config(), 0, first)
    assert not middle.kept and middle.set_vs_single.level == 0.5 and middle.set_vs_single.low == pytest.approx(0.0)
    loose = aset.build_alias_set(None, IMAGES, _Feats(), "a or b", load_config(overrides={"set_level": 0.3}), 0, first)
    assert loose.kept and loose.members == [(1,), (2,)] and loose.set_vs_single.low > 0


def test_a_better_single_in_the_cover_pool_replaces_the_first_alias(monkeypatch):
    """The cover pool is scored on train anyway: where its best is one alias that beats the first search's
    winner (re-ranked among a few candidates only), that alias is the answer, a one-member cover set."""
    _fake_world(monkeypatch, [])
    monkeypatch.setitem(PREDS, (4,), BROAD)
    first = _first(token_ids=(3,), candidates=[(3,), (4,)], splits=[], insertions=[])
    res = aset.build_alias_set(None, IMAGES, _Feats(), None, load_config(overrides={"set_level": 0}), 0, first)
    assert res.cover == [(4,)] and res.kept and res.members == [(4,)]
    assert res.metrics.ap == pytest.approx(0.8, abs=0.01) and res.single_ap < 0.1
    strict = aset.build_alias_set(None, IMAGES, _Feats(), None, load_config(overrides={"set_margin": 0.9}), 0, first)
    assert strict.built == [(4,)] and not strict.kept and strict.members == [(3,)]  # not past the margin


def test_cover_pool_takes_the_best_splits_by_train_ap(monkeypatch):
    """The union's members are only among the name's insertions (``first.splits``), not among the first
    search's candidates: the best ``set_split`` of them by train AP join the cover pool and the cover is found."""
    calls = []
    _fake_world(monkeypatch, calls)
    monkeypatch.setitem(PREDS, (4,), BROAD)
    three = {(3,): PREDS[(3,)], (2,): PREDS[(2,)], (1,): PREDS[(1,)]}
    assert cover.best_splits(three, IMAGES, 2) == [(2,), (1,)]  # equal APs: their order
    first = _first(token_ids=(4,), candidates=[(4,), (3,)], splits=[(3,), (2,), (1,)], insertions=[])
    assert load_config().set_split == 0  # off by default (config/search.py says why)
    cfg = load_config(overrides={"set_level": 0, "set_split": 2})
    res = aset.build_alias_set(None, IMAGES, _Feats(), "a or b", cfg, seed=0, first=first)
    assert res.split_pool == [(2,), (1,)]  # (3,) is already a candidate: not a split
    assert sorted(res.cover) == [(1,), (2,)] and res.kept and res.metrics.ap == pytest.approx(1.0)
    assert res.to_dict(str)["split_pool"] == ["(2,)", "(1,)"]
    one = aset.build_alias_set(
        None, IMAGES, _Feats(), "a or b", load_config(overrides={"set_level": 0, "set_split": 1}), 0, first
    )
    assert one.split_pool == [(2,)] and not one.kept  # one member alone is no better than the broad alias
    off = aset.build_alias_set(
        None, IMAGES, _Feats(), "a or b", load_config(overrides={"set_level": 0, "set_split": 0}), 0, first
    )
    assert off.split_pool == [] and not off.kept
    with pytest.raises(ValueError, match="set_split"):
        load_config(overrides={"set_split": -1})


def test_max_aliases_validated():
    with pytest.raises(ValueError, match="max_aliases"):
        load_config(overrides={"max_aliases": 0})
    assert load_config().max_aliases == 3


def test_residual_searches_add_no_third_word(monkeypatch):
    """A residual search runs on the targets the single alias missed, where the name finds little: it
    would count as a name the model does not know, so ``extend_depth`` is 1 there whatever the config."""
    _fake_world(monkeypatch, [])
    seen = []
    fake = aset.search

    def search(backend, images, feats, name, cfg, seed, indexes=None, on_step=None):
        seen.append(cfg.extend_depth)
        return fake(backend, images, feats, name, cfg, seed, indexes, on_step)

    monkeypatch.setattr(aset, "search", search)
    first = _first(token_ids=(1,), candidates=[(1,)], splits=[], insertions=[])
    cfg = load_config(overrides={"max_aliases": 2, "set_level": 0, "extend_depth": 2})
    aset.build_alias_set(None, IMAGES, _Feats(), "a or b", cfg, 0, first)
    assert seen == [1] and cfg.extend_depth == 2  # the caller's config is left as it was


def test_a_member_gets_the_names_word_back_where_it_costs_nothing(monkeypatch):
    """``tidy_addition``: member (2,) finds concept b; with the name's word 5 it still does ((5, 2) and
    (2, 5) predict as (2,)), so 5 goes back in; the name word 7 would lose concept b, so it stays out; an
    unknown name (train AP below known_name_ap) gives nothing back."""
    for seq in ((5, 2), (2, 5)):
        monkeypatch.setitem(PREDS, seq, PREDS[(2,)])
    for seq in ((7, 2), (2, 7), (5,), (7,)):  # the name's words alone find nothing
        monkeypatch.setitem(PREDS, seq, [pred(), pred(), pred(), pred()])

    def predict(backend, feats, images, prompts, thresholds=None):
        return [PREDS[tuple(p)] for p in prompts]

    monkeypatch.setattr(cover, "predict", predict)
    cfg = load_config(overrides={"max_aliases": 2, "restore_tolerance": 0.01})
    current = [PREDS[(1,)]]
    m = cover.merged_metrics([*current, PREDS[(2,)]], IMAGES, set_steps.DEFAULT_THRESHOLDS)

    def tidy(name_ids, name_metrics=None, config=cfg):
        first = SimpleNamespace(name_ids=name_ids, name_train_metrics=name_metrics)
        preds = {}
        out = cover.tidy_addition(
            None, None, IMAGES, current, preds, (2,), m, [(1,)], first, config, set_steps.DEFAULT_THRESHOLDS
        )
        return out.seq, out.metrics.ap

    assert tidy((5,)) == ((5, 2), pytest.approx(1.0))
    first = SimpleNamespace(name_ids=(5,), name_train_metrics=None)
    out = cover.tidy_addition(
        None, None, IMAGES, current, {}, (2,), m, [(1,)], first, cfg, set_steps.DEFAULT_THRESHOLDS
    )
    # forwards: (5, 2) and (2, 5) for the put-back, then (5,) for the pruning (5 is kept, 2 may go)
    assert out.added == (5,) and out.replaced == () and out.dropped == () and out.forwards == 3 * len(IMAGES)
    assert tidy((7,)) == ((2,), pytest.approx(1.0))
    unknown = score_predictions(PREDS[(3,)], IMAGES)  # fires on nothing right: AP 0
    assert tidy((5,), unknown) == ((2,), pytest.approx(1.0))
    assert tidy((5,), config=replace(cfg, restore_tolerance=-1))[0] == (2,)


def test_cover_members_record_the_names_words_put_back(monkeypatch):
    """``cover_set``: member (2,) takes the name's word 5 back at no cost ((5, 2) predicts as (2,)), member
    (1,) does not ((5, 1) and (1, 5) find nothing); the result says which, per member, and so does the JSON."""
    monkeypatch.setitem(PREDS, (5, 2), PREDS[(2,)])
    monkeypatch.setitem(PREDS, (2, 5), PREDS[(2,)])
    for seq in ((5, 1), (1, 5), (5,)):
        monkeypatch.setitem(PREDS, seq, [pred(), pred(), pred(), pred()])
    monkeypatch.setattr(cover, "predict", lambda backend, feats, images, prompts, thresholds=None: [
        PREDS[tuple(p)] for p in prompts
    ])  # fmt: skip
    first = SimpleNamespace(candidates=[(1,), (2,)], splits=[], name_ids=(5,), name_train_metrics=None)
    cfg = load_config(overrides={"max_aliases": 2, "restore_tolerance": 0.01})
    step = cover.cover_set(None, None, IMAGES, first, {}, cfg, set_steps.DEFAULT_THRESHOLDS)
    assert step.members == [(1,), (5, 2)] and step.restored == [(), (5,)]
    assert step.metrics.ap == pytest.approx(1.0) and step.usage.forward > 2 * len(IMAGES)
    res = aset.AliasSetResult(
        members=step.members, member_metrics=[], metrics=step.metrics, single_ap=0.5, built=step.members,
        built_ap=1.0, kept=True, cover=step.members, cover_ap=1.0, cover_restored=step.restored,
    )  # fmt: skip
    assert [m["restored"] for m in res.to_dict(str)["cover"]] == [[], [5]]
