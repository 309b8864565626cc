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
# the rest of Okabe-Ito, for figures with more prompt columns (after PROMPT_COLOURS)
MORE_COLOURS = (
    (86 / 255, 180 / 255, 233 / 255),
    (240 / 255, 228 / 255, 66 / 255),
    (0.0, 0.0, 0.0),
)  # sky blue, yellow, black
PALETTE = PROMPT_COLOURS + MORE_COLOURS
ALPHA = 0.45  # overlay opacity


@dataclass
class Panel:
    """One prompt's detections on one image."""

    label: str  # legend text, e.g. 'name "red circle"'
    masks: np.ndarray  # (D, H, W) bool detections above the score threshold
    scores: Sequence[float]  # (D,) their scores
    ap: float  # the prompt's AP on this image (NaN on an image without targets)
    detail: str = ""  # shown in the panel's title on every row (e.g. this row's alias), where label is not


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
            ax.contour(m.astype(float), levels=[0.5], colors=["white"], linewidths=3.4)  # visible on any colour
            ax.contour(m.astype(float), levels=[0.5], colors=[colour], linewidths=1.8)
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


def _short(label: str, width: int = 34) -> str:
    return label if len(label) <= width else label[: width - 3] + "..."


def draw_figure(path: str | Path, rows: Sequence[FigureRow], title: str, note: str = "") -> Path:
    """Write the grid of ``rows`` (images) x (targets + panels) to ``path`` (PNG); the first row's
    titles name each column's prompt, ``note`` goes under the legend."""
    if not rows:
        raise ValueError("a figure needs at least one image")
    n_cols = 1 + len(rows[0].panels)
    extra = 0.35 if any(p.detail for row in rows for p in row.panels) else 0.0  # a title line more per row
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(2.6 * n_cols, (2.6 + extra) * len(rows) + 0.8), squeeze=False)
    for r, row in enumerate(rows):
        _draw(axes[r, 0], row.rgb, row.targets, TARGET_COLOUR)
        head = "targets\n" if r == 0 else ""
        axes[r, 0].set_title(f"{head}{row.title}: {len(row.targets)} target(s)", fontsize=8)
        for c, panel in enumerate(row.panels, start=1):
            _draw(axes[r, c], row.rgb, panel.masks, PALETTE[(c - 1) % len(PALETTE)], panel.scores)
            ap = "no target" if math.isnan(panel.ap) else f"image AP {panel.ap:.2f}"
            head = f"{_short(panel.label)}\n" if r == 0 else ""
            detail = f"{_short(panel.detail)}\n" if panel.detail else ""
            axes[r, c].set_title(f"{head}{detail}{len(panel.masks)} shown, {ap}", fontsize=8)
    handles = [Patch(color=TARGET_COLOUR, label="target masks")]
    handles += [Patch(color=PALETTE[k % len(PALETTE)], label=p.label) for k, p in enumerate(rows[0].panels)]
    fig.legend(
        handles=handles,
        loc="lower center",
        ncol=len(handles),
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(0.5, 0.022 if note else 0.0),
    )
    if note:
        fig.text(0.5, 0.004, note, ha="center", va="bottom", fontsize=7, color="0.3")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.06 if note else 0.05, 1, 0.97))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path


# ---------------------------------------------------------------------- from saved predictions
def _rle_json(rle: dict) -> dict:
    counts = rle["counts"]
    return {"size": list(rle["size"]), "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def save_predictions(path: str | Path, category_id: int, image_ids: Sequence[int], prompts, score: float) -> None:
    """Write what a figure needs of one category's held-out predictions: per prompt and image the
    detections scoring above ``score`` (RLE masks and scores) and the image's AP (JSON, atomically).

    Args:
        prompts: ``(label, ImagePredictions per image, AP per image)`` per prompt, images in ``image_ids`` order.
    """
    from alias_opt.export import write_json_atomic

    data = {"category_id": category_id, "image_ids": list(image_ids), "score_threshold": score, "prompts": []}
    for label, preds, aps in prompts:
        rows = []
        for p, ap in zip(preds, aps):
            keep = p.kept(score)
            rows.append(
                {
                    "height": p.height,
                    "width": p.width,
                    "scores": [round(float(p.scores[i]), 4) for i in keep],
                    "rles": [_rle_json(p.rles[i]) for i in keep],
                    "ap": None if math.isnan(ap) else ap,
                }
            )
        data["prompts"].append({"label": label, "images": rows})
    write_json_atomic(path, data)


def image_aps(preds, images) -> list[float]:
    """Each image's COCO mask AP of its predictions (NaN on an image without targets)."""
    from alias_opt.eval.metrics import coco_mask_ap

    return [coco_mask_ap([p], [im])[0] for p, im in zip(preds, images)]


def load_predictions(path: str | Path) -> dict:
    """Read ``save_predictions``' file: the JSON with each image's ``ImagePredictions`` under ``pred``."""
    import json

    from alias_opt.eval.metrics import ImagePredictions

    data = json.loads(Path(path).read_text(encoding="utf-8"))
    for prompt in data["prompts"]:
        for row in prompt["images"]:
            rles = [{"size": r["size"], "counts": r["counts"].encode("ascii")} for r in row["rles"]]
            row["pred"] = ImagePredictions(rles=rles, scores=row["scores"], height=row["height"], width=row["width"])
            row["ap"] = math.nan if row["ap"] is None else float(row["ap"])
    return data


def draw_category(
    path: str | Path,
    title: str,
    images: Sequence,
    prompts: Sequence[tuple[str, Sequence, Sequence[float]]],
    score: float,
    n: int = 6,
) -> Path | None:
    """Draw one category's figure: ``n`` images picked by ``pick_images`` (with and without targets),
    the target masks and each prompt's detections scoring above ``score``.

    Args:
        images: the split's ``TargetImage``s (their pixels are read here; unreadable ones are skipped).
        prompts: ``(label, ImagePredictions per image, AP per image)`` per prompt.
    Returns:
        the PNG's path, or None when no picked image could be read.
    """
    from alias_opt.data.loader import ImageReadError

    rows = []
    for i in pick_images([im.is_positive for im in images], n):
        im = images[i]
        try:
            rgb = im.image.load()
        except (ImageReadError, OSError):
            continue
        panels = []
        for label, preds, aps in prompts:
            p = preds[i]
            keep = p.kept(score)
            masks = p.masks[keep] if keep else np.zeros((0, p.height, p.width), bool)
            panels.append(Panel(label, masks, [float(p.scores[k]) for k in keep], aps[i]))
        rows.append(FigureRow(Path(str(im.image.path)).name, rgb, im.masks, panels))
    note = (
        f"shown: detections scoring > {score:g}, their score at each mask; image AP: COCO mask AP on that image "
        "over all detections, those below the threshold too"
    )
    return draw_figure(path, rows, title, note) if rows else None
