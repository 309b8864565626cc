"""Pairs of the name's insertions (alias_opt.search.pairs) on hand-made masks and tiny arrays, and the
set builder's use of them where the single alias is too broad."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from alias_opt.config import load_config
from alias_opt.search import alias_set as aset
from alias_opt.search import pairs
from tests.test_alias_sets import A2, BROAD, IMAGES, JUNK, MAX_AP_HALF, PREDS, _fake_world, _Feats, _first, box, pred


def test_image_hits_match_in_score_order_and_keep_the_rest_as_false_positives():
    im = IMAGES[1]  # targets A2, B2
    near_a2 = box(2, 20, 10, 29)  # IoU with A2 8/9: a match, but scored below A2 itself
    h = pairs.image_hits(pred((near_a2, 0.5), (A2, 0.9), (JUNK, 0.7), (box(18, 4, 30, 7), 0.8)), im)
    assert h.tp.tolist() == [0.9, 0.0]  # A2 by its best detection; B2 only overlapped at IoU 0.25
    assert sorted(h.fp.tolist()) == [0.5, 0.7, 0.8]  # the duplicate of A2 is a false positive too
    neg = pairs.image_hits(pred((JUNK, 0.95)), IMAGES[3])
    assert neg.tp.size == 0 and neg.fp.tolist() == [0.95]


def test_box_hits_match_boxes_like_image_hits_match_masks():
    """The box estimate on (x, y, w, h) boxes: the same greedy score-order matching as masks."""
    from alias_opt.eval.boxes import ImageBoxes, target_boxes

    gt = target_boxes(IMAGES[1])  # A2, B2 as boxes
    assert gt.shape == (2, 4) and gt.tolist() == [[2, 20, 8, 10], [18, 4, 12, 10]]
    dets = ImageBoxes(
        scores=np.array([0.9, 0.8, 0.7, 0.5]),
        boxes=np.array([[2, 20, 8, 10], [18, 4, 12, 3], [2, 21, 8, 9], [18, 4, 12, 10]], dtype=float),
    )
    h = pairs.box_hits(dets, gt)
    assert h.tp.tolist() == [0.9, 0.5]  # A2, B2 by their exact boxes (0.8 meets B2 at IoU 0.3)
    assert sorted(h.fp.tolist()) == [0.7, 0.8]  # the near-duplicate of A2 (IoU 0.9) comes after it
    none = pairs.box_hits(ImageBoxes(np.array([0.4]), np.array([[0.0, 0, 5, 5]])), np.zeros((0, 4)))
    assert none.tp.size == 0 and none.fp.tolist() == [0.4]


@pytest.fixture(scope="module")
def toy_world(tmp_path_factory):
    """The shipped toy model, a small named world's images of its first category and their features."""
    from sam3.loading import TOY_DIR

    if not (TOY_DIR / "config.json").is_file():
        pytest.skip("the toy model is not shipped")
    from alias_opt.data.loader import CocoDataset
    from sam3 import Sam3Backend
    from sam3.toy.world import write_dataset

    d = tmp_path_factory.mktemp("pairs_toy")
    write_dataset(d / "w", "named", images=6, seed=2)
    ts = CocoDataset.open(d / "w").target_sets(max_negatives=2)[0]
    backend = Sam3Backend.load("toy", device="cpu", cache_dir=d / "f")
    images = ts.train + ts.test
    return backend, images, backend.encode_images([im.image.load() for im in images])


def test_box_predictions_skip_the_pixel_decoder_and_keep_the_lean_detections(toy_world, monkeypatch):
    """On the shipped toy model: ``predict_boxes`` runs no pixel decoder, keeps exactly the detections a
    lean mask prediction keeps (same scores), and its boxes sit on those detections' masks."""
    from pycocotools import mask as mask_utils

    from alias_opt.eval.boxes import box_iou, predict_boxes
    from alias_opt.eval.predict import predict
    from alias_opt.search import cover
    from sam3 import grounding

    backend, images, feats = toy_world
    prompts = [backend.tokenizer.encode(w, special=False) for w in ("red", "circle", "red circle")]
    lean = predict(backend, feats, images, prompts, cover.lean(cover.DEFAULT_THRESHOLDS))

    def no_pixel_decoder(*args, **kwargs):
        raise AssertionError("the pixel decoder ran")

    monkeypatch.setattr(grounding, "pixel_embed", no_pixel_decoder)
    boxes = predict_boxes(backend, feats, images, prompts, cover.COVER_MIN_SCORE)
    ious = []
    for bp, lp in zip(boxes, lean):
        for b, g in zip(bp, lp):
            assert np.allclose(b.scores, g.scores, atol=1e-5) and b.boxes.shape == (len(g.scores), 4)
            if len(g.scores):
                mask_boxes = np.asarray(mask_utils.toBbox(g.rles)).reshape(-1, 4)
                ious += np.diag(box_iou(b.boxes, mask_boxes)).tolist()
    assert len(ious) >= 5 and np.median(ious) > 0.5  # the box head's box and the mask's box agree


def test_ap50_is_cocos_101_point_ap():
    assert pairs.ap50(np.array([0.9, 0.8]), np.zeros(0)) == pytest.approx(1.0)
    assert pairs.ap50(np.array([0.9, 0.0]), np.zeros(0)) == pytest.approx(MAX_AP_HALF)
    # a false positive above both hits: precision 1/2 then 2/3, interpolated to 2/3 over all recall points
    assert pairs.ap50(np.array([0.9, 0.8]), np.array([0.95])) == pytest.approx(2 / 3)
    assert pairs.ap50(np.array([0.0, 0.0]), np.array([0.4])) == 0.0
    assert np.isnan(pairs.ap50(np.zeros(0), np.array([0.4])))


def _hits(seq):
    return pairs.join([pairs.image_hits(p, im) for p, im in zip(PREDS[seq], IMAGES)])


def test_best_pairs_rank_the_complementary_members_first():
    hits = {s: _hits(s) for s in [(3,), (1,), (2,)]}
    assert pairs.ap50(hits[(1,)].tp, hits[(1,)].fp) == pytest.approx(MAX_AP_HALF)  # each member alone: half
    ranked = pairs.best_pairs(hits, 2)
    assert [(a, b) for a, b, _ in ranked] == [((1,), (2,)), ((3,), (1,))]  # ties: the pairs' order
    assert ranked[0][2] == pytest.approx(1.0)
    assert ranked[1][2] == pytest.approx(MAX_AP_HALF / 2)  # junk at 0.95 before each of a's hits
    assert pairs.pair_members(ranked) == [(1,), (2,), (3,)]
    assert pairs.best_pairs({(1,): hits[(1,)]}, 3) == []


def test_a_too_broad_alias_is_split_by_the_pairs_of_its_insertions(monkeypatch):
    calls = []
    _fake_world(monkeypatch, calls)
    monkeypatch.setitem(PREDS, (4,), BROAD)  # precision 4/5: "too broad" below set_pair_precision 0.9
    first = _first(token_ids=(4,), candidates=[(4,)], splits=[], insertions=[(3,), (1,), (2,)])
    cfg = load_config(overrides={"set_level": 0, "set_pair_precision": 0.9, "set_min_uncovered": 0.01})
    res = aset.build_alias_set(None, IMAGES, _Feats(), "a or b", cfg, seed=0, first=first)
    assert [(a, b) for a, b, _ in res.pairs] == [((1,), (2,)), ((3,), (1,)), ((3,), (2,))]
    assert res.insertions == 3 and res.kept and res.members == [(1,), (2,)]
    assert calls == [] and res.rounds == [] and "already wins" in res.rounds_skipped  # no residual search
    # the broad alias, the three insertions (lean: masks above COVER_MIN_SCORE only), then the pairs' three
    # members again in full (max_dets detections) for the cover set's exact merged metrics
    assert res.usage.forward == 4 + 3 * 4 + 3 * 4
    d = res.to_dict(str)
    assert d["pairs"][0] == {"members": ["(1,)", "(2,)"], "ap50_estimate": 1.0} and d["insertions"] == 3
    # where the alias is precise enough (0.8, not below the default set_pair_precision 0.8) the insertions are
    # not scored: the cover pool is the first search's candidates only, and the residual round runs as before
    # (nothing uncovered: it stops); set_cluster_precision gates the cluster insertions only
    for over in ({}, {"set_cluster_precision": 0.9}):
        cfg = load_config(overrides={"set_level": 0, **over})
        precise = aset.build_alias_set(None, IMAGES, _Feats(), "a or b", cfg, 0, first)
        assert precise.pairs == [] and precise.insertions == 0 and precise.rounds_skipped == ""
        assert precise.members == [(4,)] and len(precise.rounds) == 1
    with pytest.raises(ValueError, match="set_pair_precision"):
        load_config(overrides={"set_pair_precision": 1.5})


def test_a_union_member_found_alone_is_paired_before_any_residual_search(monkeypatch):
    """A precise single alias that finds half the targets (concept a of a union) would start a residual
    search; the pairs of the name's insertions are tried first, and they already win."""
    calls = []
    _fake_world(monkeypatch, calls)
    first = _first(token_ids=(1,), candidates=[(1,)], splits=[], insertions=[(3,), (1,), (2,)])
    res = aset.build_alias_set(None, IMAGES, _Feats(), "a or b", load_config(overrides={"set_level": 0}), 0, first)
    assert res.insertions == 3 and res.pairs[0][:2] == ((1,), (2,))
    assert calls == [] and res.rounds == [] and res.kept and res.members == [(1,), (2,)]
    # with the pairs off the residual search finds the other member, as before
    off = load_config(overrides={"set_level": 0, "set_pair_tokens": 0})
    plain = _first(token_ids=(1,), candidates=[(1,)], splits=[], insertions=[])
    res = aset.build_alias_set(None, IMAGES, _Feats(), "a or b", off, 0, plain)
    assert len(calls) == 1 and res.pairs == [] and res.rounds[0].searched


def test_insertions_are_predicted_lean_with_mask_estimates(monkeypatch):
    """With set_pair_boxes off, the pair estimate reads detections above COVER_MIN_SCORE only, so the
    insertions are predicted with thresholds that compute no other masks; the cover pool's members are
    predicted in full."""
    from alias_opt.search import cover

    calls = []
    _fake_world(monkeypatch, [])
    full = cover.predict

    def recording(backend, feats, images, prompts, thresholds=None):
        calls.append(([tuple(p) for p in prompts], thresholds))
        return full(backend, feats, images, prompts, thresholds)

    monkeypatch.setattr(cover, "predict", recording)
    first = _first(token_ids=(1,), candidates=[(1,)], splits=[], insertions=[(3,), (1,), (2,)])
    cfg = load_config(overrides={"set_level": 0, "set_pair_boxes": False})
    aset.build_alias_set(None, IMAGES, _Feats(), "a or b", cfg, 0, first)
    lean = [(p, t) for p, t in calls if t.max_dets == 0]
    assert len(lean) == 1 and set(lean[0][0]) == {(3,), (2,)}  # (1,) was already predicted in full
    assert lean[0][1].score == cover.COVER_MIN_SCORE
    assert all(t.max_dets == 100 for p, t in calls if (p, t) not in lean)


def test_insertions_are_predicted_as_boxes_by_default(monkeypatch):
    """By default (set_pair_boxes) every insertion is predicted once as boxes above COVER_MIN_SCORE, none
    with masks; the pairs come out as with masks on these hand-made boxes."""
    from alias_opt.search import cover

    _fake_world(monkeypatch, [])
    box_calls, mask_calls = [], []
    boxes, full = cover.predict_boxes, cover.predict

    def rec_boxes(backend, feats, images, prompts, min_score):
        box_calls.append(([tuple(p) for p in prompts], min_score))
        return boxes(backend, feats, images, prompts, min_score)

    def rec_masks(backend, feats, images, prompts, thresholds=None):
        mask_calls.append(thresholds)
        return full(backend, feats, images, prompts, thresholds)

    monkeypatch.setattr(cover, "predict_boxes", rec_boxes)
    monkeypatch.setattr(cover, "predict", rec_masks)
    first = _first(token_ids=(1,), candidates=[(1,)], splits=[], insertions=[(3,), (1,), (2,)])
    res = aset.build_alias_set(None, IMAGES, _Feats(), "a or b", load_config(overrides={"set_level": 0}), 0, first)
    assert box_calls == [([(3,), (1,), (2,)], cover.COVER_MIN_SCORE)]
    assert mask_calls and all(t.max_dets == 100 for t in mask_calls)  # no lean mask prediction
    assert [(a, b) for a, b, _ in res.pairs] == [((1,), (2,)), ((3,), (1,)), ((3,), (2,))]


def test_lean_thresholds_keep_the_same_detections_above_the_floor(toy_world):
    """On the shipped toy model: a lean prediction is the full one's detections above COVER_MIN_SCORE."""
    from alias_opt.eval.predict import predict
    from alias_opt.search import cover

    backend, images, feats = toy_world
    prompts = [backend.tokenizer.encode(w, special=False) for w in ("red", "circle")]
    full = predict(backend, feats, images, prompts)
    lean = predict(backend, feats, images, prompts, cover.lean(cover.DEFAULT_THRESHOLDS))
    n_lean = 0
    for fp, lp in zip(full, lean):
        for f, g in zip(fp, lp):
            kept = cover.above(f, cover.COVER_MIN_SCORE)
            assert np.allclose(kept.scores, g.scores) and kept.rles == g.rles
            assert len(f.scores) > len(g.scores)  # every query kept in full, a few in lean
            n_lean += len(g.scores)
    assert n_lean > 0  # some detections pass the floor


def test_no_pairs_for_a_name_the_model_does_not_know(monkeypatch):
    """A never-trained (renamed) name finds nothing on train: its insertions are not scored, and the
    residual search runs as without pairs; a known name's are."""
    calls = []
    _fake_world(monkeypatch, calls)
    cfg = load_config(overrides={"set_level": 0})
    for name_ap, paired in ((0.0, False), (0.04, False), (0.05, True), (0.3, True)):
        first = SimpleNamespace(
            name_ids=None,
            name_train_metrics=SimpleNamespace(ap=name_ap),  # only its AP is read
            token_ids=(1,),
            candidates=[(1,)],
            splits=[],
            insertions=[(3,), (1,), (2,)],
        )
        calls.clear()
        res = aset.build_alias_set(None, IMAGES, _Feats(), "a or b", cfg, 0, first)
        assert (res.insertions == 3) == paired, name_ap
        assert (len(calls) == 0) == paired  # unpaired: the residual search finds the other member


def test_residual_searches_after_a_losing_pairs_cover_set_are_a_setting(monkeypatch):
    """Where the pairs' cover set ran and did not win (here the only insertion, junk (3,), pairs with
    nothing), the residual search still runs with set_residual_after_pairs on (configs/thorough.json) and
    finds the other member; off (the default) it does not, and the single alias stays."""
    calls = []
    _fake_world(monkeypatch, calls)
    first = _first(token_ids=(1,), candidates=[(1,)], splits=[], insertions=[(3,)])
    on_cfg = load_config(overrides={"set_level": 0, "set_residual_after_pairs": True})
    on = aset.build_alias_set(None, IMAGES, _Feats(), "a or b", on_cfg, 0, first)
    assert on.insertions == 1 and on.pairs == [] and len(calls) == 1 and on.kept and on.members == [(1,), (2,)]
    calls.clear()
    cfg = load_config(overrides={"set_level": 0})
    off = aset.build_alias_set(None, IMAGES, _Feats(), "a or b", cfg, 0, first)
    assert calls == [] and off.rounds == [] and "set_residual_after_pairs off" in off.rounds_skipped
    assert not off.kept and off.members == [(1,)]
    assert load_config("configs/thorough.json").set_residual_after_pairs is True


def test_the_pairs_cover_set_is_chosen_with_the_name_checks_negatives(monkeypatch):
    """The name (4,) finds all four train targets at 0.6 (one junk at 0.55 below them: train AP 1.0, precision
    0.8, too broad for set_pair_precision 0.9); the union's members (1,) | (2,) tie it on train, so on the train
    images alone the name stays. On three images without the category the name fires on junk at 0.95 and the
    members on nothing: read with them (``set_negatives``), the pair beats the name and is kept."""
    from pycocotools import mask as mask_utils

    from alias_opt.eval.boxes import ImageBoxes
    from alias_opt.eval.metrics import score_predictions
    from alias_opt.search import cover
    from tests.test_alias_sets import A1, A2, B2, B3, target

    negatives = [target(5), target(6), target(7)]
    name = [pred((A1, 0.6)), pred((A2, 0.6), (B2, 0.6)), pred((B3, 0.6)), pred((JUNK, 0.55))]
    world = {  # image id -> prediction, per sequence
        (4,): dict(zip([1, 2, 3, 4, 5, 6, 7], [*name, *[pred((JUNK, 0.95))] * 3])),
        **{s: dict(zip([1, 2, 3, 4, 5, 6, 7], [*PREDS[s], *[pred()] * 3])) for s in [(1,), (2,), (3,)]},
    }

    def predict(backend, feats, images, prompts, thresholds=None):
        return [[world[tuple(p)][im.image.image_id] for im in images] for p in prompts]

    def predict_boxes(backend, feats, images, prompts, min_score):
        def boxes(p):
            keep = p.scores > min_score
            xywh = mask_utils.toBbox([r for r, k in zip(p.rles, keep) if k]) if keep.any() else np.zeros((0, 4))
            return ImageBoxes(p.scores[keep], np.asarray(xywh, dtype=np.float64).reshape(-1, 4))

        return [[boxes(p) for p in ps] for ps in predict(backend, feats, images, prompts)]

    encoded = []
    monkeypatch.setattr(aset, "predict", predict)
    monkeypatch.setattr(cover, "predict", predict)
    monkeypatch.setattr(cover, "predict_boxes", predict_boxes)
    monkeypatch.setattr(cover, "encode_targets", lambda backend, ims: encoded.append(ims) or "negative features")
    monkeypatch.setattr(cover, "ImageFeatures", SimpleNamespace(concat=lambda parts: tuple(parts)))
    known = score_predictions(name, IMAGES)
    assert known.ap == pytest.approx(1.0)
    first = SimpleNamespace(
        token_ids=(4,),
        candidates=[(4,)],
        splits=[],
        insertions=[(3,), (1,), (2,)],
        name_ids=(4,),
        name_train_metrics=known,
        name_check=None,
    )
    over = {"set_level": 0, "name_level": 0, "set_pair_precision": 0.9, "restore_tolerance": -1}

    def build(n):
        cfg = load_config(overrides={**over, "set_negatives": n})
        return aset.build_alias_set(None, IMAGES, _Feats(), "name", cfg, 0, first, extra_negatives=negatives)

    alone = build(0)
    assert alone.members == [(4,)] and not alone.kept and alone.negatives == 0 and encoded == []
    assert alone.pairs[0][:2] == ((1,), (2,))  # the pair is found either way; only the train AP ties
    res = build(2)
    assert encoded == [negatives[:2]] and res.negatives == 2 and res.to_dict(str)["negatives"] == 2
    assert res.kept and res.members == [(1,), (2,)]
    assert res.built_ap == pytest.approx(1.0) and res.cover_ap == pytest.approx(1.0)
    # the record's train metrics stay on the four train images: the pair merged, the name alone
    assert res.metrics.ap == pytest.approx(1.0) and res.single_ap == pytest.approx(1.0)
    assert [m.ap for m in res.member_metrics] == pytest.approx([MAX_AP_HALF, MAX_AP_HALF])
    # the name on the two negatives, then the insertions' boxes and the cover pool on all six images
    assert res.usage.forward == 4 + 1 * 2 + 3 * 6 + 3 * 6
    with pytest.raises(ValueError, match="set_negatives"):
        load_config(overrides={"set_negatives": -1})


def _coco_ap50(tp, fp):
    """COCO's 101-point AP, written the way pycocotools' accumulate is: hits before false positives at an
    equal score (a stable sort), the precision envelope read at each recall point's first index."""
    found = tp[tp > 0]
    scores = np.concatenate([found, fp])
    if scores.size == 0:
        return 0.0
    is_tp = np.concatenate([np.ones(found.size, bool), np.zeros(fp.size, bool)])[np.argsort(-scores, kind="mergesort")]
    tps = np.cumsum(is_tp, dtype=np.float64)
    precision = np.maximum.accumulate((tps / np.arange(1, is_tp.size + 1))[::-1])[::-1]
    inds = np.searchsorted(tps / len(tp), np.linspace(0.0, 1.0, 101), side="left")
    return float(precision[inds[inds < is_tp.size]].sum() / 101)


@pytest.mark.parametrize("grid", [False, True])  # True: scores on a 0.1 grid, so ties everywhere
def test_the_batched_pair_estimate_equals_cocos_ap_of_each_merged_pair(grid):
    rng = np.random.default_rng(7 + grid)
    for _ in range(40):
        k, m = int(rng.integers(1, 25)), int(rng.integers(2, 7))
        hits = []
        for _ in range(m):
            tp, fp = rng.random(k) * (rng.random(k) < 0.5), rng.random(int(rng.integers(0, 6)))
            hits.append(pairs.Hits(*(np.round(x, 1) for x in (tp, fp))) if grid else pairs.Hits(tp, fp))
        ref = [
            _coco_ap50(np.maximum(a.tp, b.tp), np.concatenate([a.fp, b.fp]))
            for i, a in enumerate(hits)
            for b in hits[i + 1 :]
        ]
        est = pairs.pairs_ap50(hits)
        assert est.shape == (m * (m - 1) // 2,)
        assert est.tolist() == ref  # the same floats, not just close: ties stay ties
        ranked = pairs.best_pairs({(i,): h for i, h in enumerate(hits)}, 3)
        order = sorted(range(len(ref)), key=lambda r: (-ref[r], r))[:3]
        assert [e for _, _, e in ranked] == [ref[r] for r in order]
        assert [pairs.ap50(h.tp, h.fp) for h in hits] == [_coco_ap50(h.tp, h.fp) for h in hits]


def test_the_batched_pair_estimate_handles_no_targets_and_one_prompt():
    none = pairs.Hits(np.zeros(0), np.array([0.3]))
    assert np.isnan(pairs.pairs_ap50([none, none])).all()
    assert pairs.pairs_ap50([none]).size == 0
    assert pairs.pairs_ap50([pairs.Hits(np.zeros(2), np.zeros(0))] * 2).tolist() == [0.0]
