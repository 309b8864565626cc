"""bench/toy_quality.py's account of where AP50 is lost, on a hand-made COCO set."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

# pycocotools 2.0.11 decode() itself warns under numpy 2, whatever the data
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

_spec = importlib.util.spec_from_file_location("toy_quality", Path(__file__).parents[1] / "bench" / "toy_quality.py")
toy_quality = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(toy_quality)


def _rle(rows: slice, cols: slice) -> dict:
    m = np.zeros((20, 20), dtype=np.uint8)
    m[rows, cols] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    return {**rle, "counts": rle["counts"].decode("ascii")}


def test_ap50_losses_sorts_false_detections(tmp_path):
    a, b = _rle(slice(2, 8), slice(2, 8)), _rle(slice(10, 16), slice(10, 16))
    anns = [
        {"id": i + 1, "image_id": 1, "category_id": c, "segmentation": m, "area": 36, "bbox": bb, "iscrowd": 0}
        for i, (c, m, bb) in enumerate([(1, a, [2, 2, 6, 6]), (2, b, [10, 10, 6, 6])])
    ]
    data = {
        "images": [{"id": 1, "width": 20, "height": 20, "file_name": "x.png"}],
        "categories": [{"id": 1, "name": "red circle"}, {"id": 2, "name": "red star"}],
        "annotations": anns,
    }
    (tmp_path / "a.json").write_text(json.dumps(data))
    coco = toy_quality.quiet_coco(tmp_path / "a.json")
    dets = [
        (1, a, 0.9),  # true
        (1, a, 0.8),  # duplicate: the red circle is already matched
        (1, b, 0.7),  # confusion: "red circle" on the red star
        (1, _rle(slice(0, 2), slice(12, 20)), 0.6),  # junk: covers nothing
        (1, _rle(slice(0, 2), slice(0, 8)), 0.1),  # junk below the threshold: not counted
        (2, b, 0.9),  # true
    ]
    results = [{"image_id": 1, "category_id": c, "segmentation": m, "score": s} for c, m, s in dets]
    ev = toy_quality.coco_eval(coco, results)
    lost = toy_quality.ap50_losses(coco, ev, threshold=0.3)
    assert lost == {"recall50": 1.0, "true": 2, "duplicate": 1, "confusion": 1, "junk": 1}
    aps = toy_quality.per_category_ap(coco, ev)
    assert aps[2]["ap50"] == pytest.approx(1.0) and aps[1]["ap50"] == pytest.approx(1.0)
    assert toy_quality.ap50_losses(coco, None, 0.3)["true"] == 0
