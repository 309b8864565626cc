"""Mask pictures: what an alias finds next to what the name finds, on held-out images.

One PNG per category: a row per picked image, a column per panel (the target masks, then each
prompt's detections above the score threshold), each a translucent colour overlay with outlines,
each detection's score at its mask, the image's AP in the panel title and a legend. Colours are
Okabe and Ito's colour-blind-safe palette. Drawing reads saved predictions only; it never runs the
model. ``overlay`` is the pure pixel step the tests check.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

# Okabe-Ito: distinguishable with the common colour-vision deficiencies
TARGET_COLOUR = (0 / 255, 158 / 255, 115 / 255)  # bluish green
PROMPT_COLOURS = (
    (213 / 255, 94 / 255, 0 / 255),
    (0 / 255, 114 / 255, 178 / 255),
    (204 / 255, 121 / 255, 167 / 255),
    (230 / 255, 159 / 255, 0 / 255),
)  # vermillion (the name), blue (the alias), purple, orange
ALPHA = 0.45  # overlay opacity


@dataclass
class Panel:
    """One prompt's detections on one image."""

    label: str  # legend text, e.g. 'name "red circle"'
    masks: np.ndarray  # (D, H, W) bool detections above the score threshold
    scores: Sequence[float]  # (D,) their scores
    ap: float  # the prompt's AP on this image (NaN on an image without targets)


@dataclass
class FigureRow:
    """One image of the figure: its pixels, its target masks and each prompt's panel."""

    title: str  # e.g. the file name
    rgb: np.ndarray  # (H, W, 3) uint8
    targets: np.ndarray  # (K, H, W) bool
    panels: list[Panel]


def overlay(rgb: np.ndarray, masks: np.ndarray, colour: Sequence[float], alpha: float = ALPHA) -> np.ndarray:
    """``rgb`` with the union of ``masks`` blended towards ``colour``; pixels outside every mask unchanged.

    Args:
        rgb: (H, W, 3) uint8.
        masks: (D, H, W) bool.
        colour: RGB in [0, 1].
    Returns:
        (H, W, 3) uint8.
    """
    out = rgb.astype(np.float64)
    if len(masks):
        m = np.asarray(masks, bool).any(0)
        out[m] = (1 - alpha) * out[m] + alpha * 255.0 * np.asarray(colour)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def pick_images(positive: Sequence[bool], n: int = 6) -> list[int]:
    """A deterministic pick of up to ``n`` image indices: about two thirds with targets, the rest
    without, evenly spaced through the split."""
    pos = [i for i, p in enumerate(positive) if p]
    neg = [i for i, p in enumerate(positive) if not p]
    n_neg = min(len(neg), max(n - len(pos), n // 3))
    n_pos = min(len(pos), n - n_neg)

    def spread(idx: list[int], k: int) -> list[int]:
        return [idx[int(j * len(idx) / k)] for j in range(k)] if k else []

    return sorted(spread(pos, n_pos) + spread(neg, n_neg))


def _draw(ax, rgb: np.ndarray, masks: np.ndarray, colour, scores: Sequence[float] | None = None) -> None:
    ax.imshow(overlay(rgb, masks, colour), interpolation="nearest")
    for k, m in enumerate(masks):
        if m.any():
            ax.contour(m.astype(float), levels=[0.5], colors=["white"], linewidths=2.6)  # visible on any colour
            ax.contour(m.astype(float), levels=[0.5], colors=[colour], linewidths=1.3)
            if scores is not None:
                ys, xs = np.nonzero(m)
                ax.text(
                    xs.mean(),
                    ys.mean(),
                    f"{scores[k]:.2f}",
                    color="white",
                    fontsize=7,
                    ha="center",
                    va="center",
                    bbox={"facecolor": colour, "alpha": 0.8, "pad": 1, "linewidth": 0},
                )
    ax.set_xticks([])
    ax.set_yticks([])


def draw_figure(path: str | Path, rows: Sequence[FigureRow], title: str) -> Path:
    """Write the grid of ``rows`` (images) x (targets + panels) to ``path`` (PNG)."""
    if not rows:
        raise ValueError("a figure needs at least one image")
    n_cols = 1 + len(rows[0].panels)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(2.6 * n_cols, 2.6 * len(rows) + 0.8), squeeze=False)
    for r, row in enumerate(rows):
        _draw(axes[r, 0], row.rgb, row.targets, TARGET_COLOUR)
        axes[r, 0].set_title(f"{row.title}: {len(row.targets)} target(s)", fontsize=8)
        for c, panel in enumerate(row.panels, start=1):
            _draw(axes[r, c], row.rgb, panel.masks, PROMPT_COLOURS[(c - 1) % len(PROMPT_COLOURS)], panel.scores)
            ap = "no target" if math.isnan(panel.ap) else f"AP {panel.ap:.2f}"
            axes[r, c].set_title(f"{len(panel.masks)} detection(s), {ap}", fontsize=8)
    handles = [Patch(color=TARGET_COLOUR, label="target masks")]
    handles += [
        Patch(color=PROMPT_COLOURS[k % len(PROMPT_COLOURS)], label=p.label) for k, p in enumerate(rows[0].panels)
    ]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path
