"""Drawing for shapes world v2: shapes of two sizes, solid or hollow, over photograph-like backgrounds.

An instance is drawn as exact pixels (no anti-aliasing) and its mask is the pixels it shows in the
image: a hollow shape is a band along its outline (its inside shows what is behind it), and later
instances cover earlier ones. Backgrounds are flat colours of any hue and saturation, gradients,
blotches, stripes, checks or coloured noise; then per-pixel noise and a mild Gaussian blur over the
whole image. A ``Style`` holds the ranges these are drawn from: ``TRAIN_STYLE`` is what training
and the default datasets use, ``SHIFTED_STYLE`` lies outside it (more noise, more blur, heavier
occlusion) for the robustness bench.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage

from sam3.toy import vocab

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 40),
    "orange": (245, 135, 20),
    "yellow": (240, 220, 30),
    "green": (40, 170, 60),
    "teal": (20, 165, 165),
    "blue": (40, 80, 225),
    "purple": (140, 50, 190),
    "pink": (245, 130, 195),
}
COLOUR_JITTER = 12  # per-channel jitter of an instance's flat colour
SIZE_RANGES = {"small": (0.055, 0.085), "large": (0.14, 0.21)}  # circumscribed radius / image's shorter side
HOLLOW_BAND = 0.35  # band width of a hollow shape, as a fraction of its radius (at least MIN_BAND px)
MIN_BAND = 3
MIN_CONTRAST = 90.0  # RGB distance between an instance's colour and the mean of what it is drawn over
MIN_SIDE, MAX_SIDE = 192, 256  # image width and height range


@dataclass(frozen=True)
class Style:
    """Ranges of an image's nuisance factors (each drawn uniformly per image)."""

    noise: tuple[float, float] = (0.0, 12.0)  # std of per-pixel Gaussian noise, 0-255 scale
    blur: tuple[float, float] = (0.0, 1.0)  # Gaussian blur radius of the whole image, pixels
    min_visible: tuple[float, float] = (0.45, 0.85)  # least visible fraction of an occluded instance
    instances: tuple[int, int] = (2, 7)  # instances per image (placements that do not fit are dropped)


TRAIN_STYLE = Style()
SHIFTED_STYLE = Style(noise=(16.0, 28.0), blur=(1.3, 2.0), min_visible=(0.25, 0.4), instances=(5, 9))
STYLES = {"train": TRAIN_STYLE, "shifted": SHIFTED_STYLE}


@dataclass
class Instance:
    attrs: dict[str, str]  # size, fill, colour, shape
    mask: np.ndarray  # (H, W) bool, the visible pixels
    drawn_area: int  # pixels of the whole drawn shape before later shapes covered part of it

    def matches(self, clause: vocab.Clause) -> bool:
        return vocab.matches(clause, self.attrs)


@dataclass
class WorldImage:
    rgb: np.ndarray  # (H, W, 3) uint8
    instances: list[Instance]


def _unit_polygon(shape: str, rot: float) -> list[tuple[float, float]]:
    if shape == "square":
        pts = [(math.cos(math.pi / 4 + k * math.pi / 2), math.sin(math.pi / 4 + k * math.pi / 2)) for k in range(4)]
    elif shape == "triangle":
        pts = [
            (math.cos(k * 2 * math.pi / 3 - math.pi / 2), math.sin(k * 2 * math.pi / 3 - math.pi / 2)) for k in range(3)
        ]
    elif shape == "star":
        pts = [
            (
                (1.0 if k % 2 == 0 else 0.45) * math.cos(k * math.pi / 5 - math.pi / 2),
                (1.0 if k % 2 == 0 else 0.45) * math.sin(k * math.pi / 5 - math.pi / 2),
            )
            for k in range(10)
        ]
    elif shape == "heart":
        t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        pts = list(zip(x / 17.0, (y + 2.5) / 17.0))
    elif shape == "cross":
        a = 0.34
        pts = [
            (a, -1),
            (a, -a),
            (1, -a),
            (1, a),
            (a, a),
            (a, 1),
            (-a, 1),
            (-a, a),
            (-1, a),
            (-1, -a),
            (-a, -a),
            (-a, -1),
        ]
    else:
        raise ValueError(f"not a polygon shape: {shape}")
    c, s = math.cos(rot), math.sin(rot)
    return [(x * c - y * s, x * s + y * c) for x, y in pts]


def draw_shape_mask(
    shape: str, fill: str, height: int, width: int, cx: float, cy: float, r: float, rot: float
) -> np.ndarray:
    """Binary (H, W) mask of the pixels one shape paints: the whole shape, or a band along its outline."""
    im = Image.new("L", (width, height), 0)
    d = ImageDraw.Draw(im)
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
    else:
        d.polygon([(cx + r * x, cy + r * y) for x, y in _unit_polygon(shape, rot)], fill=1)
    m = np.asarray(im, dtype=bool)
    if fill == "hollow":
        band = max(MIN_BAND, int(round(HOLLOW_BAND * r)))
        box = _box(m, 1)  # erode the shape's bounding box with a margin: the same result, far cheaper
        if box is not None:
            m = m.copy()
            m[box] &= ~ndimage.binary_erosion(m[box], iterations=band)
    return m


def _box(m: np.ndarray, margin: int) -> tuple[slice, slice] | None:
    """The bounding box of ``m``'s pixels grown by ``margin`` (clipped to the image), or None if empty.

    A morphological operation of reach <= ``margin`` on the box equals the same on the whole image
    (outside the box there is nothing, as scipy's default border assumes at the image edge)."""
    rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
    if rows.size == 0:
        return None
    h, w = m.shape
    return (
        slice(max(0, rows[0] - margin), min(h, rows[-1] + 1 + margin)),
        slice(max(0, cols[0] - margin), min(w, cols[-1] + 1 + margin)),
    )


def _dilated(m: np.ndarray, iterations: int) -> np.ndarray:
    """``ndimage.binary_dilation(m, iterations=...)`` computed on ``m``'s bounding box only."""
    out = np.zeros_like(m)
    box = _box(m, iterations)
    if box is not None:
        out[box] = ndimage.binary_dilation(m[box], iterations=iterations)
    return out


def _colour(rng: np.random.Generator) -> np.ndarray:
    """Any hue and saturation: mostly uniform RGB, sometimes a grey."""
    if rng.random() < 0.2:
        return np.full(3, rng.uniform(20, 235)) + rng.uniform(-10, 10, size=3)
    return rng.uniform(0, 255, size=3)


def background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W, 3) float background: flat, gradient, blotches, stripes, checks or coloured noise."""
    a, b = _colour(rng), _colour(rng)
    kind = int(rng.integers(6))
    yy, xx = np.mgrid[0:height, 0:width]
    if kind == 0:
        return np.broadcast_to(a, (height, width, 3)).astype(np.float64)
    if kind == 1:  # linear gradient in a random direction
        ang = rng.uniform(0, 2 * np.pi)
        t = xx * np.cos(ang) + yy * np.sin(ang)
        t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
    elif kind == 2:  # smooth blotches
        small = rng.uniform(0, 1, size=(int(rng.integers(3, 8)), int(rng.integers(3, 8))))
        t = np.asarray(Image.fromarray((small * 255).astype(np.uint8)).resize((width, height), Image.BICUBIC)) / 255.0
    elif kind == 3:  # stripes
        period, ang = int(rng.integers(8, 40)), rng.uniform(0, np.pi)
        t = (((xx * np.cos(ang) + yy * np.sin(ang)) // period) % 2).astype(np.float64)
    elif kind == 4:  # checks
        period = int(rng.integers(10, 40))
        t = ((xx // period + yy // period) % 2).astype(np.float64)
    else:  # coloured texture: low-resolution noise upsampled
        k = int(rng.integers(12, 48))
        small = rng.uniform(0, 1, size=(k, k))
        t = np.asarray(Image.fromarray((small * 255).astype(np.uint8)).resize((width, height), Image.NEAREST)) / 255.0
    return a[None, None] * (1 - t[..., None]) + b[None, None] * t[..., None]


def render_image(
    rng: np.random.Generator,
    plan: list[dict[str, str]],
    style: Style = TRAIN_STYLE,
    height: int | None = None,
    width: int | None = None,
) -> WorldImage:
    """Draw the instances of ``plan`` (full attribute assignments) in a random order.

    Placements are retried until every earlier instance keeps ``min_visible`` of its pixels, the
    instance stands out from what is under it (``MIN_CONTRAST``) and it does not touch an earlier
    instance of its own colour; an instance that cannot be placed is dropped.
    """
    if height is None:
        height = int(rng.integers(MIN_SIDE, MAX_SIDE + 1))
    if width is None:
        width = int(rng.integers(MIN_SIDE, MAX_SIDE + 1))
    canvas = background(rng, height, width)
    noise = rng.uniform(*style.noise)
    blur = rng.uniform(*style.blur)
    min_visible = rng.uniform(*style.min_visible)
    side = min(height, width)
    drawn: list[np.ndarray] = []
    visible: list[np.ndarray] = []
    kept: list[dict[str, str]] = []
    for k in rng.permutation(len(plan)):
        attrs = plan[k]
        base = np.array(COLOURS[attrs["colour"]], dtype=np.float64)
        colour = np.clip(base + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, size=3), 0, 255)
        for _ in range(30):
            r = rng.uniform(*SIZE_RANGES[attrs["size"]]) * side
            cx, cy = rng.uniform(r * 0.7, width - r * 0.7), rng.uniform(r * 0.7, height - r * 0.7)
            m = draw_shape_mask(attrs["shape"], attrs["fill"], height, width, cx, cy, r, rng.uniform(0, 2 * np.pi))
            if m.sum() < 30 or np.linalg.norm(canvas[m].mean(0) - colour) < MIN_CONTRAST:
                continue
            same = [j for j in range(len(kept)) if kept[j]["colour"] == attrs["colour"]]
            if same:
                near = _dilated(m, 2)
                if any((near & visible[j]).any() for j in same):
                    continue
            if all((v & ~m).sum() >= min_visible * f.sum() for v, f in zip(visible, drawn)):
                break
        else:
            continue
        visible = [v & ~m for v in visible]
        drawn.append(m)
        visible.append(m.copy())
        canvas[m] = colour
        kept.append(dict(attrs))
    canvas = canvas + rng.normal(0, noise, size=canvas.shape) if noise > 0 else canvas
    img = Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8))
    if blur > 0.05:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    instances = [Instance(a, v, int(f.sum())) for a, v, f in zip(kept, visible, drawn)]
    return WorldImage(np.array(img), [i for i in instances if i.mask.any()])
