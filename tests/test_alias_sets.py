"""Alias sets: the union of detections, scored like one prompt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from alias_opt.data.targets import ImageEntry, TargetImage
from alias_opt.eval.alias_sets import merge_predictions, merge_split
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
