"""Paired bootstrap verdicts: AP recomputed from per-image matches equals COCOeval's; intervals behave."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from alias_opt.eval.bootstrap import ap_from_matches, evaluated_matches, paired_bootstrap

H = W = 40


def _rle(x0, y0, x1, y1):
    m = np.zeros((H, W), np.uint8)
    m[y0:y1, x0:x1] = 1
    r = mask_utils.encode(np.asfortranarray(m))
    r["counts"] = r["counts"].decode("ascii")
    return r


def _coco(images, anns):
    c = COCO()
    c.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "t"}]}
    with contextlib.redirect_stdout(io.StringIO()):
        c.createIndex()
    return c


def _ann(i, img, rle, **extra):
    return {
        "id": i,
        "image_id": img,
        "category_id": 1,
        "segmentation": rle,
        "area": float(mask_utils.area(rle)),
        "bbox": [float(v) for v in mask_utils.toBbox(rle)],
        **extra,
    }


def _world(rng, n_img, quality):
    """GT boxes per image and detections whose overlap with them grows with ``quality``."""
    images = [{"id": i, "height": H, "width": W} for i in range(1, n_img + 1)]
    gts, dts = [], []
    for img in range(1, n_img + 1):
        for _ in range(int(rng.integers(0, 3))):
            x, y = int(rng.integers(0, 25)), int(rng.integers(0, 25))
            gts.append(_ann(len(gts) + 1, img, _rle(x, y, x + 12, y + 12), iscrowd=0))
            shift = int(round((1 - quality) * rng.integers(0, 10)))
            dts.append(_ann(len(dts) + 1, img, _rle(x + shift, y, x + 12 + shift, y + 12), score=float(rng.random())))
        if rng.random() < 0.5:  # a false positive
            x, y = int(rng.integers(0, 25)), int(rng.integers(0, 25))
            dts.append(_ann(len(dts) + 1, img, _rle(x, y, x + 6, y + 6), score=float(rng.random())))
    return images, gts, dts


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ap_from_matches_equals_cocoeval(seed):
    rng = np.random.default_rng(seed)
    images, gts, dts = _world(rng, 12, 0.6)
    gt, dt = _coco(images, gts), _coco(images, dts)
    ev = COCOeval(_coco(images, gts), _coco(images, dts), iouType="segm")
    ev.params.imgIds = [im["id"] for im in images]
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    ap, ap50 = ap_from_matches(evaluated_matches(gt, dt, [im["id"] for im in images]))
    assert ap == pytest.approx(ev.stats[0], abs=1e-12) and ap50 == pytest.approx(ev.stats[1], abs=1e-12)
    assert 0 < ap < ap50 < 1
    # a resample with repeats equals COCOeval on a dataset holding those repeats as new images
    idx = np.array([0, 0, 3, 5, 5, 5, 7])
    matches = evaluated_matches(gt, dt, [im["id"] for im in images])
    rep_imgs, rep_gts, rep_dts = [], [], []
    for n, i in enumerate(idx, start=1):
        rep_imgs.append({"id": n, "height": H, "width": W})
        rep_gts += [{**g, "id": len(rep_gts) + k + 1, "image_id": n} for k, g in enumerate(gt.imgToAnns[i + 1])]
        rep_dts += [{**d, "id": len(rep_dts) + k + 1, "image_id": n} for k, d in enumerate(dt.imgToAnns[i + 1])]
    want = ap_from_matches(evaluated_matches(_coco(rep_imgs, rep_gts), _coco(rep_imgs, rep_dts), range(1, 8)))
    assert ap_from_matches(matches, idx) == pytest.approx(want, abs=1e-12)


def test_paired_bootstrap_verdicts():
    rng = np.random.default_rng(5)
    images, gts, good = _world(rng, 30, 1.0)
    rng = np.random.default_rng(5)
    _, _, bad = _world(rng, 30, 0.0)
    ids = [im["id"] for im in images]
    gt = _coco(images, gts)
    a = evaluated_matches(gt, _coco(images, good), ids)
    b = evaluated_matches(_coco(images, gts), _coco(images, bad), ids)
    better = paired_bootstrap(a, b, resamples=300)
    assert better.diff > 0.2 and better.low > 0 and better.verdict() == "win"
    assert paired_bootstrap(b, a, resamples=300).verdict() == "loss"
    same = paired_bootstrap(a, a, resamples=100)
    assert same.diff == 0 and same.low == same.high == 0 and same.verdict() == "tie"
    assert "95%" in better.describe()
    with pytest.raises(ValueError):
        paired_bootstrap(a, b[:-1])
