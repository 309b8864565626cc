"""Mask pictures from hand-made masks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from alias_opt.eval.figures import (
    PROMPT_COLOURS,
    TARGET_COLOUR,
    FigureRow,
    Panel,
    draw_figure,
    overlay,
    pick_images,
)

H = W = 40


def _box(x0, y0, x1, y1):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_overlay_colours_inside_masks_only():
    rgb = np.full((H, W, 3), 100, np.uint8)
    m = _box(5, 5, 15, 15)
    out = overlay(rgb, m[None], TARGET_COLOUR, alpha=1.0)
    assert (out[m] == np.rint(255 * np.array(TARGET_COLOUR))).all()  # the target colour inside
    assert (out[~m] == 100).all()  # the image's colour outside
    half = overlay(rgb, m[None], (1.0, 0.0, 0.0), alpha=0.5)
    assert half[6, 6].tolist() == [178, 50, 50] and half[30, 30].tolist() == [100, 100, 100]
    assert (overlay(rgb, np.zeros((0, H, W), bool), TARGET_COLOUR) == rgb).all()


def test_pick_images_is_deterministic_and_mixed():
    positive = [i % 3 == 0 for i in range(30)]
    picked = pick_images(positive, 6)
    assert picked == pick_images(positive, 6) and len(picked) == 6
    assert 1 <= sum(positive[i] for i in picked) <= 5
    assert pick_images([True, True], 6) == [0, 1]


def test_draw_figure_png(tmp_path):
    rgb = np.full((H, W, 3), 200, np.uint8)
    target = _box(4, 4, 20, 20)
    row = FigureRow(
        "img1",
        rgb,
        target[None],
        [
            Panel('name "red"', np.stack([target, _box(25, 25, 35, 35)]), [0.9, 0.4], 0.5),
            Panel('alias "red circle"', target[None], [0.95], 1.0),
        ],
    )
    neg = FigureRow("img2", rgb, np.zeros((0, H, W), bool), [Panel("n", np.zeros((0, H, W), bool), [], math.nan)] * 2)
    path = draw_figure(tmp_path / "figs" / "cat.png", [row, neg], "category 1")
    px = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3).astype(int)
    blended = np.rint(0.55 * 200 + 0.45 * 255 * np.array(TARGET_COLOUR))
    alias = np.rint(0.55 * 200 + 0.45 * 255 * np.array(PROMPT_COLOURS[1]))
    assert (np.abs(px - blended).max(1) <= 2).sum() > 100  # target overlay pixels are in the PNG
    assert (np.abs(px - alias).max(1) <= 2).sum() > 100
    assert (np.abs(px - 200).max(1) == 0).sum() > 1000  # untouched image pixels keep their colour
    assert not list((tmp_path / "figs").glob("*.tmp.png"))
    with pytest.raises(ValueError):
        draw_figure(tmp_path / "x.png", [], "empty")
