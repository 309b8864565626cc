"""The shapes world: coloured shapes with exact instance masks, as COCO datasets or training samples.

A *concept* is a colour x shape pair ("red circle"). An image holds a few concepts, each with one or
more instances of varied size, position and rotation, drawn over a neutral (low-saturation)
background; later shapes may partly cover earlier ones, and every instance mask is exactly the
pixels its colour shows in the image. Everything is deterministic by seed.

Dataset variants (category tables over the same images, see ``variant_categories``):
    named      one category per concept, named with the training words ("red circle").
    renamed    the same categories named with words sam3-toy never saw in training ("crimson disc").
    nameless   the same categories with empty names ("" : COCO needs a ``name`` key).
    composite  a category is the union of two concepts ("red circle or blue square").
Every category carries ``oracle_name``: the training words (a list of phrases for composite), so
reports can compare an alias with the words the model was trained on. Optimizers must not read it.

CLI (world v2, ``sam3.toy.world2``, unless ``--world v1``):
    python -m sam3.toy.world --out DIR --world v1 --variant named --images 200 --seed 7
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from sam3.toy import render, world2

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 35),
    "green": (30, 165, 50),
    "blue": (35, 70, 225),
    "yellow": (240, 215, 25),
    "purple": (150, 40, 190),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")
CONCEPTS: tuple[tuple[str, str], ...] = tuple((c, s) for c in COLOURS for s in SHAPES)

# The renaming table of the *renamed* variant: words never used in training (and never sampled as
# training negatives), each a single CLIP token.
RENAMED_COLOURS = {"red": "crimson", "green": "emerald", "blue": "azure", "yellow": "golden", "purple": "violet"}
RENAMED_SHAPES = {"circle": "disc", "square": "tile", "triangle": "wedge", "star": "spark"}
RENAMED_WORDS: tuple[str, ...] = tuple(RENAMED_COLOURS.values()) + tuple(RENAMED_SHAPES.values())

VARIANTS = ("named", "renamed", "nameless", "composite")
COLOUR_JITTER = 12  # per-channel jitter of an instance's flat colour
MIN_SIZE, MAX_SIZE = 40, 100  # shape extent (circumscribed diameter) in pixels
MIN_VISIBLE = 0.7  # an instance keeps at least this fraction of its pixels visible
MIN_SIDE, MAX_SIDE = 192, 256  # image width and height range


def concept_name(colour: str, shape: str) -> str:
    return f"{colour} {shape}"


@dataclass
class Instance:
    colour: str
    shape: str
    mask: np.ndarray  # (H, W) bool, the visible pixels
    drawn_area: int  # pixels of the whole shape before later shapes covered part of it

    @property
    def concept(self) -> tuple[str, str]:
        return (self.colour, self.shape)


@dataclass
class WorldImage:
    rgb: np.ndarray  # (H, W, 3) uint8
    instances: list[Instance]


# ---------------------------------------------------------------------------------------- drawing
def _shape_polygon(shape: str, cx: float, cy: float, r: float, rot: float) -> list[tuple[float, float]]:
    if shape == "square":
        pts = [
            (math.cos(rot + math.pi / 4 + k * math.pi / 2), math.sin(rot + math.pi / 4 + k * math.pi / 2))
            for k in range(4)
        ]
    elif shape == "triangle":
        pts = [(math.cos(rot + k * 2 * math.pi / 3), math.sin(rot + k * 2 * math.pi / 3)) for k in range(3)]
    elif shape == "star":
        pts = []
        for k in range(10):
            rad = 1.0 if k % 2 == 0 else 0.45
            a = rot + k * math.pi / 5
            pts.append((rad * math.cos(a), rad * math.sin(a)))
    else:
        raise ValueError(f"not a polygon shape: {shape}")
    return [(cx + r * x, cy + r * y) for x, y in pts]


def draw_shape_mask(shape: str, height: int, width: int, cx: float, cy: float, r: float, rot: float) -> np.ndarray:
    """Binary (H, W) mask of one shape (no anti-aliasing, so masks are exact)."""
    im = Image.new("L", (width, height), 0)
    d = ImageDraw.Draw(im)
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
    else:
        d.polygon(_shape_polygon(shape, cx, cy, r, rot), fill=1)
    return np.asarray(im, dtype=bool)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A neutral background: greys with a faint tint, flat, gradient, noise or stripes."""

    def neutral() -> np.ndarray:
        return np.clip(rng.uniform(35, 220) + rng.uniform(-18, 18, size=3), 0, 255)

    kind = rng.integers(4)
    a, b = neutral(), neutral()
    if kind == 0:
        bg = np.broadcast_to(a, (height, width, 3)).astype(np.float64)
    elif kind == 1:  # linear gradient in a random direction
        ang = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:height, 0:width]
        t = xx * np.cos(ang) + yy * np.sin(ang)
        t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
        bg = a[None, None] * (1 - t[..., None]) + b[None, None] * t[..., None]
    elif kind == 2:  # smooth blotches
        small = rng.uniform(0, 1, size=(rng.integers(3, 8), rng.integers(3, 8)))
        t = np.asarray(Image.fromarray((small * 255).astype(np.uint8)).resize((width, height), Image.BICUBIC)) / 255.0
        bg = a[None, None] * (1 - t[..., None]) + b[None, None] * t[..., None]
    else:  # stripes
        period = rng.integers(8, 40)
        ang = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:height, 0:width]
        t = ((xx * np.cos(ang) + yy * np.sin(ang)) // period) % 2
        bg = np.where(t[..., None] > 0, a[None, None], b[None, None]).astype(np.float64)
    bg = bg + rng.normal(0, rng.uniform(0, 10), size=(height, width, 3))
    return np.clip(np.rint(bg), 0, 255).astype(np.uint8)


def render_image(
    rng: np.random.Generator,
    height: int | None = None,
    width: int | None = None,
    max_concepts: int = 3,
    p_related: float = 0.0,
) -> WorldImage:
    """One world image: 1-``max_concepts`` concepts with 1-3 instances each (placements that do not
    fit are dropped). With ``p_related`` > 0, each concept after the first shares a colour or a shape
    with an earlier one with that probability (in-image distractors for training); the defaults are
    the held-out world, and draw exactly what they always drew.
    """
    if height is None:
        height = int(rng.integers(MIN_SIDE, MAX_SIDE + 1))
    if width is None:
        width = int(rng.integers(MIN_SIDE, MAX_SIDE + 1))
    rgb = _background(rng, height, width)
    n_concepts = int(rng.integers(1, max_concepts + 1))
    if p_related > 0:
        chosen = _related_concepts(rng, n_concepts, p_related)
    else:
        chosen = rng.choice(len(CONCEPTS), size=n_concepts, replace=False)
    plan: list[tuple[str, str]] = []
    for ci in chosen:
        plan += [CONCEPTS[ci]] * int(rng.choice([1, 1, 2, 2, 3]))
    order = rng.permutation(len(plan))
    full: list[np.ndarray] = []
    visible: list[np.ndarray] = []
    kept: list[tuple[str, str, np.ndarray]] = []
    for k in order:
        colour, shape = plan[k]
        for _ in range(25):
            size = rng.uniform(MIN_SIZE, MAX_SIZE) * min(height, width) / MAX_SIDE * 1.15
            r = size / 2
            cx = rng.uniform(r * 0.6, width - r * 0.6)  # may touch the border a little
            cy = rng.uniform(r * 0.6, height - r * 0.6)
            m = draw_shape_mask(shape, height, width, cx, cy, r, rng.uniform(0, 2 * np.pi))
            if m.sum() < 60:
                continue
            if all((v & ~m).sum() >= MIN_VISIBLE * f.sum() for v, f in zip(visible, full)):
                break
        else:
            continue
        visible = [v & ~m for v in visible]
        full.append(m)
        visible.append(m.copy())
        base = np.array(COLOURS[colour], dtype=np.int64)
        colour_px = np.clip(base + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, size=3), 0, 255).astype(np.uint8)
        rgb[m] = colour_px
        kept.append((colour, shape, m))
    instances = [Instance(c, s, v, int(f.sum())) for (c, s, f), v in zip(kept, visible)]
    return WorldImage(rgb, instances)


def _related_concepts(rng: np.random.Generator, n: int, p_related: float) -> list[int]:
    """``n`` distinct concept indices; each after the first shares a colour or shape with an earlier
    one with probability ``p_related`` (when such a concept is left)."""
    chosen = [int(rng.integers(len(CONCEPTS)))]
    while len(chosen) < n:
        free = [i for i in range(len(CONCEPTS)) if i not in chosen]
        related = [i for i in free if any(set(CONCEPTS[i]) & set(CONCEPTS[j]) for j in chosen)]
        pool = related if related and rng.random() < p_related else free
        chosen.append(pool[int(rng.integers(len(pool)))])
    return chosen


def image_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of dataset image ``index`` under ``seed`` (training uses a different stream)."""
    return np.random.default_rng(np.random.SeedSequence([seed, index]))


# ---------------------------------------------------------------------------------------- COCO
def variant_categories(variant: str, seed: int = 0) -> tuple[list[dict], dict[tuple[str, str], int]]:
    """Category table of a variant and the concept -> category id map.

    composite pairs the 20 concepts into 10 unions with a seeded permutation.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    cats: list[dict] = []
    lookup: dict[tuple[str, str], int] = {}
    if variant == "composite":
        perm = np.random.default_rng(np.random.SeedSequence([seed, 0xC0])).permutation(len(CONCEPTS))
        for k in range(0, len(perm) - 1, 2):
            a, b = CONCEPTS[perm[k]], CONCEPTS[perm[k + 1]]
            cid = k // 2 + 1
            names = [concept_name(*a), concept_name(*b)]
            cats.append({"id": cid, "name": " or ".join(names), "supercategory": "shape", "oracle_name": names})
            lookup[a] = lookup[b] = cid
        return cats, lookup
    for cid, (colour, shape) in enumerate(CONCEPTS, start=1):
        oracle = concept_name(colour, shape)
        if variant == "named":
            name = oracle
        elif variant == "renamed":
            name = concept_name(RENAMED_COLOURS[colour], RENAMED_SHAPES[shape])
        else:
            name = ""
        cats.append({"id": cid, "name": name, "supercategory": "shape", "oracle_name": oracle})
        lookup[(colour, shape)] = cid
    return cats, lookup


def encode_rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def write_dataset(out: str | Path, variant: str = "named", images: int = 100, seed: int = 0) -> Path:
    """Write ``images`` world images (PNG) and ``annotations.json`` (COCO, RLE masks) to ``out``.

    Returns:
        the path of annotations.json.
    """
    out = Path(out)
    img_dir = out / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    cats, lookup = variant_categories(variant, seed)
    coco_images, annotations = [], []
    for i in range(images):
        world = render_image(image_rng(seed, i))
        h, w = world.rgb.shape[:2]
        name = f"{i:06d}.png"
        Image.fromarray(world.rgb).save(img_dir / name)
        coco_images.append({"id": i + 1, "file_name": f"images/{name}", "width": w, "height": h})
        for inst in world.instances:
            rle = encode_rle(inst.mask)
            x, y, bw, bh = (float(v) for v in mask_utils.toBbox(rle))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": lookup[inst.concept],
                    "segmentation": rle,
                    "area": float(inst.mask.sum()),
                    "bbox": [x, y, bw, bh],
                    "iscrowd": 0,
                }
            )
    data = {
        "info": {
            "description": f"sam3-alias shapes world, variant {variant}",
            "version": "1",
            "seed": seed,
            "variant": variant,
        },
        "licenses": [],
        "images": coco_images,
        "annotations": annotations,
        "categories": cats,
    }
    path = out / "annotations.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Write a shapes-world COCO dataset (world v2 by default).")
    ap.add_argument("--out", required=True, help="output directory (images/ + annotations.json)")
    ap.add_argument(
        "--world",
        default="v2",
        choices=("v1", "v2"),
        help="v2: 4 attributes and a real vocabulary (sam3.toy.world2); v1: the 20 colour x shape concepts",
    )
    ap.add_argument(
        "--variant",
        default="named",
        choices=sorted(set(VARIANTS) | set(world2.VARIANTS)),
        help="category table: named, renamed, nameless, composite; policy (v2 only)",
    )
    ap.add_argument("--images", type=int, default=100, help="number of images")
    ap.add_argument("--seed", type=int, default=0, help="world seed: the same seed gives the same dataset")
    ap.add_argument(
        "--style",
        default="train",
        choices=sorted(render.STYLES),
        help="v2 only: nuisance ranges; 'shifted' lies outside the training ranges",
    )
    ap.add_argument(
        "--min-positives",
        type=int,
        default=0,
        help="v2 only: draw more images of the same stream, keeping those that hold a category with fewer "
        "positive images, until every category has this many (0: exactly --images images)",
    )
    args = ap.parse_args(argv)
    if args.world == "v2":
        path = world2.write_dataset(args.out, args.variant, args.images, args.seed, args.style, args.min_positives)
    elif args.variant not in VARIANTS or args.style != "train" or args.min_positives:
        ap.error(f"--world v1 has the variants {', '.join(VARIANTS)}, only --style train and no --min-positives")
    else:
        path = write_dataset(args.out, args.variant, args.images, args.seed)
    n = len(json.loads(Path(path).read_text())["images"])
    print(f"wrote {n} images and {path}")


if __name__ == "__main__":
    main()
