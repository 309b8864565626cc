"""alias_opt.eval.metrics and alias_opt.eval.matching on hand-made masks with known answers."""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from alias_opt.data.loader import ImageEntry, TargetImage
from alias_opt.eval.matching import hungarian_match
from alias_opt.eval.metrics import (
    ImagePredictions,
    Thresholds,
    coco_mask_ap,
    compare,
    score_predictions,
)
from alias_opt.eval.predict import evaluate_prompts, predict
from tests.coco_synth import disc_mask, rect_mask

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools.*")

H, W = 20, 24


def target(i: int, masks: list[np.ndarray], ignore: np.ndarray | None = None, ann_ids=None) -> TargetImage:
    arr = np.stack(masks) if masks else np.zeros((0, H, W), bool)
    return TargetImage(ImageEntry(i, Path(f"{i}.png"), H, W), arr, ignore, ann_ids)


def pred(masks: list[np.ndarray], scores: list[float]) -> ImagePredictions:
    return ImagePredictions(np.stack(masks) if masks else np.zeros((0, H, W), bool), scores)


A = rect_mask(H, W, 1, 1, 7, 7)  # 36 px
B = rect_mask(H, W, 10, 2, 16, 8)  # 36 px
C = rect_mask(H, W, 2, 12, 10, 18)  # 48 px
EMPTY = np.zeros((H, W), bool)


def test_hungarian_beats_greedy():
    iou = np.array([[0.6, 0.9], [0.0, 0.55]])  # greedy (best first) takes (0, 1) and strands pred 1
    assert sorted(hungarian_match(iou, 0.5)) == [(0, 0), (1, 1)]
    assert hungarian_match(np.array([[0.4]]), 0.5) == []
    assert hungarian_match(np.zeros((0, 3)), 0.5) == []
    # Equal counts: the larger total IoU wins.
    assert sorted(hungarian_match(np.array([[0.9, 0.6], [0.6, 0.0]]), 0.5)) == [(0, 1), (1, 0)]


def test_precision_recall_f1():
    half_b = rect_mask(H, W, 10, 2, 13, 8)  # IoU 0.5 with B: a match at the threshold
    images = [target(1, [A, B]), target(2, [C]), target(3, [])]
    preds = [
        pred([A, half_b, C, EMPTY], [0.9, 0.8, 0.7, 0.2]),  # C on image 1 is wrong; EMPTY is below 0.3
        pred([rect_mask(H, W, 0, 0, 3, 3)], [0.95]),  # misses C
        pred([B], [0.5]),  # false positive on the negative
    ]
    m = score_predictions(preds, images)
    assert (m.tp, m.fp, m.fn, m.n_targets, m.n_detections) == (2, 3, 1, 3, 5)
    assert m.precision == pytest.approx(0.4) and m.recall == pytest.approx(2 / 3)
    assert m.f1 == pytest.approx(2 * 0.4 * (2 / 3) / (0.4 + 2 / 3))
    assert (m.n_pos_images, m.n_neg_images, m.fp_rate) == (2, 1, 1.0)
    strict = score_predictions(preds, images, Thresholds(iou=0.51))
    assert strict.tp == 1


def test_miou_on_unions_with_ignore():
    ignore = rect_mask(H, W, 0, 15, W, H)  # rows 15.. : C (rows 12..17) keeps rows 12..14 = 24 px
    images = [target(1, [A, B]), target(2, [C], ignore=ignore)]
    preds = [
        pred([A], [0.9]),  # union IoU = 36 / 72
        pred([rect_mask(H, W, 2, 12, 10, H)], [0.9]),  # C plus more, all of it inside the ignore rows
    ]
    m = score_predictions(preds, images)
    assert m.miou == pytest.approx((0.5 + 1.0) / 2)
    half = score_predictions([pred([A, B], [0.9, 0.9]), pred([rect_mask(H, W, 2, 12, 6, 15)], [0.9])], images)
    assert half.miou == pytest.approx((1.0 + 12 / 24) / 2)
    nothing = score_predictions([pred([], []), pred([A], [0.1])], images)  # no kept masks
    assert nothing.miou == 0.0 and nothing.recall == 0.0 and nothing.precision == 0.0 and nothing.f1 == 0.0


def test_fp_rate_uses_score_threshold():
    images = [target(1, [A]), target(2, []), target(3, []), target(4, []), target(5, [])]
    preds = [pred([A], [0.9]), pred([B], [0.31]), pred([B], [0.3]), pred([], []), pred([C, B], [0.05, 0.9])]
    m = score_predictions(preds, images)
    assert m.fp_rate == pytest.approx(2 / 4)  # score must exceed 0.3, as in SAM 3's post-processing
    assert score_predictions(preds, images, Thresholds(score=0.95)).fp_rate == 0.0
    only_pos = score_predictions(preds[:1], images[:1])
    assert math.isnan(only_pos.fp_rate) and only_pos.ap == pytest.approx(1.0)


def test_crowd_detection_is_neither_right_nor_wrong():
    crowd = rect_mask(H, W, 12, 10, 22, 19)
    images = [target(1, [A], ignore=crowd)]
    preds = [pred([A, rect_mask(H, W, 13, 11, 20, 18)], [0.5, 0.9])]  # the higher score lies in the crowd
    m = score_predictions(preds, images)
    assert (m.tp, m.fp, m.precision) == (1, 0, 1.0)
    assert m.ap == pytest.approx(1.0)  # COCO ignores detections matched to crowd regions


def test_ap_known_value_and_id_zero():
    images = [target(1, [A, B], ann_ids=[0, 0])]  # id 0 (and duplicated): remapped privately
    preds = [pred([A, C, B], [0.9, 0.8, 0.7])]  # TP, FP, TP: precision 1 to recall .5, then 2/3
    ap, ap50 = coco_mask_ap(preds, images)
    expected = (51 * 1.0 + 50 * (2 / 3)) / 101  # COCO's 101 recall points
    assert ap == pytest.approx(expected) and ap50 == pytest.approx(expected)
    m = score_predictions(preds, images, Thresholds(score=0.75))  # AP ignores the score threshold
    assert m.ap == pytest.approx(expected) and m.recall == 0.5
    assert math.isnan(coco_mask_ap([pred([A], [0.9])], [target(1, [])])[0])  # no targets: undefined
    # IoU 0.64 (32 px inside a 50 px target): a match at IoU thresholds .50, .55, .60 of the ten.
    loose = coco_mask_ap([pred([rect_mask(H, W, 0, 0, 8, 4)], [0.9])], [target(1, [rect_mask(H, W, 0, 0, 10, 5)])])
    assert loose == (pytest.approx(0.3), pytest.approx(1.0))
    assert coco_mask_ap([pred([], [])], [target(1, [A])]) == (0.0, 0.0)  # targets, no detections


def _random_case(rng):
    images, preds = [], []
    for i in range(6):
        targets = [disc_mask(H, W, *rng.uniform(4, 18, 2), rng.uniform(2, 6)) for _ in range(int(rng.integers(0, 3)))]
        crowd = rect_mask(H, W, 0, 0, 6, 6) if i == 2 else None
        images.append(target(i + 1, targets, ignore=crowd))
        dets = [np.roll(t, int(rng.integers(-2, 3)), axis=1) for t in targets]
        dets += [disc_mask(H, W, *rng.uniform(3, 18, 2), rng.uniform(2, 5)) for _ in range(int(rng.integers(0, 3)))]
        preds.append(pred(dets, list(rng.uniform(0, 1, len(dets)))))
    return images, preds


def test_ap_agrees_with_direct_cocoeval(tmp_path):
    images, preds = _random_case(np.random.default_rng(1))
    from alias_opt.data.loader import encode_masks

    gt = {"images": [], "annotations": [], "categories": [{"id": 7, "name": "x"}]}
    results = []
    for im, p in zip(images, preds):
        gt["images"].append({"id": 100 + im.image.image_id, "height": H, "width": W})
        regions = [(m, 0) for m in im.masks] + ([(im.ignore, 1)] if im.ignore is not None else [])
        for m, crowd in regions:
            rle = encode_masks(m[None])[0]
            gt["annotations"].append(
                {
                    "id": len(gt["annotations"]) + 1,
                    "image_id": 100 + im.image.image_id,
                    "category_id": 7,
                    "segmentation": {**rle, "counts": rle["counts"].decode()},
                    "area": float(m.sum()),
                    "iscrowd": crowd,
                    "bbox": [0, 0, 1, 1],
                }
            )
        for rle, s in zip(p.rles, p.scores):
            results.append(
                {
                    "image_id": 100 + im.image.image_id,
                    "category_id": 7,
                    "score": float(s),
                    "segmentation": {**rle, "counts": rle["counts"].decode()},
                }
            )
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(results))
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(tmp_path / "gt.json"))
        ev = COCOeval(coco, coco.loadRes(str(tmp_path / "dt.json")), "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    ap, ap50 = coco_mask_ap(preds, images)
    assert 0.05 < ap < 0.95  # a case that tests something
    assert ap == pytest.approx(ev.stats[0], abs=1e-9) and ap50 == pytest.approx(ev.stats[1], abs=1e-9)
    # Our private ground truth is rebuilt per call: images' data are not touched.
    assert coco_mask_ap(preds, images) == (ap, ap50)


def test_compare_margin():
    assert compare(0.52, 0.5) == "win"
    assert compare(0.509, 0.5) == "tie" and compare(0.491, 0.5) == "tie"
    assert compare(0.48, 0.5) == "loss"
    assert compare(float("nan"), 0.5) == "n/a"


def test_defaults_are_sam3s():
    from transformers.models.sam3.processing_sam3 import Sam3Processor

    sig = inspect.signature(Sam3Processor.post_process_instance_segmentation)
    assert Thresholds().score == sig.parameters["threshold"].default
    assert Thresholds().mask == sig.parameters["mask_threshold"].default


def test_predict_matches_sam3_post_processing(tiny_backend):
    b = tiny_backend
    rng = np.random.default_rng(0)
    sizes = [(30, 40), (25, 25)]
    arrays = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in sizes]
    images = [
        TargetImage(ImageEntry(k, Path(f"{k}.png"), h, w), np.zeros((0, h, w), bool), None, [])
        for k, (h, w) in enumerate(sizes)
    ]
    feats = b.encode_images(arrays)
    prompts = [b.tokenizer.encode("red circle", special=False), [320]]
    th = Thresholds(score=0.0, max_dets=3)
    out = predict(b, feats, images, prompts, th)
    assert len(out) == 2 and len(out[0]) == 2
    ground = b.ground(b.encode_text(ids=b.prompt_ids(prompts)), feats)
    for p in range(2):
        for i, (h, w) in enumerate(sizes):
            got = out[p][i]
            scores = ground.scores()[p, i]
            ref = torch.sort(scores, descending=True, stable=True)
            np.testing.assert_allclose(got.scores, ref.values.numpy(), rtol=1e-6)  # all above 0.0
            probs = ground.mask_logits[p, i][ref.indices].float().sigmoid()[None]
            want = (F.interpolate(probs, size=(h, w), mode="bilinear", align_corners=False)[0] > 0.5).numpy()
            assert got.masks.shape == (b.num_queries, h, w)
            np.testing.assert_array_equal(got.masks, want)
    top = predict(b, feats, images, prompts, Thresholds(score=1.0, max_dets=3))
    assert len(top[0][0]) == 3  # AP keeps the top max_dets even when none passes the score threshold
    with_feats = evaluate_prompts(b, images, prompts, feats=feats)
    assert len(with_feats) == 2 and math.isnan(with_feats[0].ap)  # no targets anywhere


def test_evaluate_prompts_encodes_when_no_features(tiny_backend, tmp_path):
    from PIL import Image

    masks = [rect_mask(H, W, 2, 2, 12, 12), rect_mask(H, W, 8, 4, 20, 16)]
    images = []
    for k, m in enumerate(masks):
        Image.fromarray((m * 200).astype(np.uint8)).save(tmp_path / f"{k}.png")
        images.append(TargetImage(ImageEntry(k, tmp_path / f"{k}.png", H, W), m[None], None, [k + 1]))
    images.append(TargetImage(ImageEntry(9, tmp_path / "0.png", H, W), np.zeros((0, H, W), bool), None, []))
    got = evaluate_prompts(tiny_backend, images, ["square", [320, 1125]], chunk=2)
    feats = tiny_backend.encode_images([im.image.load() for im in images])
    want = evaluate_prompts(tiny_backend, images, ["square", [320, 1125]], feats=feats)
    assert [g.to_dict() for g in got] == [w.to_dict() for w in want]
    assert got[0].n_pos_images == 2 and got[0].n_neg_images == 1
