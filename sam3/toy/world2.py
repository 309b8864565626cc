"""Shapes world v2: COCO datasets of shapes with four attributes and a real-sized vocabulary.

Instances have a size, a fill, a colour and a shape (``sam3.toy.vocab``), drawn by
``sam3.toy.render`` with exact masks. A *category* is a union of clauses (partial attribute
assignments); an instance is annotated under every category one of whose clauses it satisfies.
Category tables (deterministic by seed) per variant:

    named      20 categories at mixed granularity ("green", "red circle", "small hollow star",
               "large solid blue heart"), named with the canonical training words.
    renamed    the same categories (and images) named with reserved words sam3-toy v2 never saw.
    nameless   the same categories (and images) with empty names.
    policy     16 categories whose name is a plausible training phrase but whose annotation is
               narrower: "red circle" with only the large ones annotated (an extra attribute), or
               "square" with only the blue and green ones (a subset of values).
    composite  10 categories, each the union of two colour x shape concepts ("red circle or blue star").

Every category carries ``oracle_name`` (the canonical training phrase of its annotation: a list
of phrases for a union) and ``clauses``; optimizers never read either. Images are planned from the
table so that each category has positives, and near misses (instances that share all but one
attribute with a category, or that match a policy name but not its annotation) in the same images.

CLI (``python -m sam3.toy.world`` with ``--world v2``, the default, calls ``write_dataset``):
    python -m sam3.toy.world --out DIR --variant policy --images 200 --seed 7 [--style shifted]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from sam3.toy import render, vocab

VARIANTS = ("named", "renamed", "nameless", "policy", "composite")
TABLE_STREAM = 0x7AB  # SeedSequence([seed, TABLE_STREAM, ...]) draws category tables
IMAGE_STREAM = 0x1A6  # SeedSequence([seed, IMAGE_STREAM, variant, i]) draws dataset image i
NAMED_GRANULARITY = (3, 8, 6, 3)  # named categories with 1, 2, 3 and 4 attributes


@dataclass(frozen=True)
class Category:
    """One category: the union of ``clauses``, called ``name`` (``broad`` is the clause the name
    says where it is wider than the annotation, as in the policy variant)."""

    id: int
    name: str
    clauses: tuple[dict[str, str], ...]  # the annotation: instances matching any clause
    broad: dict[str, str] | None = None  # policy: what the name says

    def oracle(self) -> str | list[str]:
        names = [vocab.phrase(c) for c in self.clauses]
        return names[0] if len(names) == 1 else names

    def matches(self, attrs: dict[str, str]) -> bool:
        return any(vocab.matches(c, attrs) for c in self.clauses)

    def to_coco(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "supercategory": "shape",
            "oracle_name": self.oracle(),
            "clauses": [dict(c) for c in self.clauses],
        }


def _key(clause: dict[str, str]) -> tuple:
    return tuple(sorted(clause.items()))


def _random_clause(rng: np.random.Generator, n_attrs: int) -> dict[str, str]:
    """A clause of ``n_attrs`` attributes that names a colour or a shape."""
    while True:
        attrs = [vocab.ATTRIBUTES[i] for i in sorted(rng.choice(4, size=n_attrs, replace=False))]
        if "colour" in attrs or "shape" in attrs:
            return {a: vocab.VALUES[a][int(rng.integers(len(vocab.VALUES[a])))] for a in attrs}


def _named_clauses(seed: int) -> list[dict[str, str]]:
    rng = np.random.default_rng(np.random.SeedSequence([seed, TABLE_STREAM, 1]))
    out, seen = [], set()
    for n_attrs, count in enumerate(NAMED_GRANULARITY, start=1):
        while sum(len(c) == n_attrs for c in out) < count:
            c = _random_clause(rng, n_attrs)
            if _key(c) not in seen:
                seen.add(_key(c))
                out.append(c)
    return out


def _policy_categories(seed: int, n_extra: int = 10, n_subset: int = 6) -> list[Category]:
    """Names wider than their annotation: an extra attribute, or a subset of two colours/shapes."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, TABLE_STREAM, 2]))
    cats, seen = [], set()
    while len(cats) < n_extra + n_subset:
        subset = len(cats) >= n_extra
        broad = _random_clause(rng, int(rng.integers(1, 3)))
        free = [a for a in vocab.ATTRIBUTES if a not in broad and (not subset or a in ("colour", "shape"))]
        if not free or _key(broad) in seen:
            continue
        attr = free[int(rng.integers(len(free)))]
        if subset:
            values = rng.choice(len(vocab.VALUES[attr]), size=2, replace=False)
            clauses = tuple({**broad, attr: vocab.VALUES[attr][int(v)]} for v in sorted(values))
        else:
            clauses = ({**broad, attr: vocab.VALUES[attr][int(rng.integers(len(vocab.VALUES[attr])))]},)
        seen.add(_key(broad))
        cats.append(Category(len(cats) + 1, vocab.phrase(broad), clauses, broad))
    return cats


def _composite_categories(seed: int, n: int = 10) -> list[Category]:
    rng = np.random.default_rng(np.random.SeedSequence([seed, TABLE_STREAM, 3]))
    concepts = [{"colour": c, "shape": s} for c in vocab.VALUES["colour"] for s in vocab.VALUES["shape"]]
    perm = rng.permutation(len(concepts))[: 2 * n]
    cats = []
    for k in range(n):
        pair = (concepts[perm[2 * k]], concepts[perm[2 * k + 1]])
        cats.append(Category(k + 1, " or ".join(vocab.phrase(c) for c in pair), pair))
    return cats


def categories(variant: str, seed: int = 0) -> list[Category]:
    """The category table of ``variant`` under world seed ``seed``."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    if variant == "policy":
        return _policy_categories(seed)
    if variant == "composite":
        return _composite_categories(seed)
    words = {"named": "trained", "renamed": "reserved"}.get(variant)
    return [
        Category(i, vocab.phrase(c, words=words) if words else "", (c,))
        for i, c in enumerate(_named_clauses(seed), start=1)
    ]


def _near_miss(rng: np.random.Generator, clause: dict[str, str]) -> dict[str, str]:
    """A full assignment that agrees with ``clause`` on all but one of its attributes."""
    attrs = vocab.completion(clause, rng)
    changed = list(clause)[int(rng.integers(len(clause)))]
    others = [v for v in vocab.VALUES[changed] if v != clause[changed]]
    attrs[changed] = others[int(rng.integers(len(others)))]
    return attrs


def plan_image(rng: np.random.Generator, table: list[Category], style: render.Style) -> list[dict[str, str]]:
    """The instances of one dataset image: positives of 1-3 categories (none in 1 image of 10),
    their near misses, and random others, at most ``style.instances[1]``."""
    plan: list[dict[str, str]] = []
    n_cats = 0 if rng.random() < 0.1 else int(rng.integers(1, 4))
    for ci in rng.choice(len(table), size=min(n_cats, len(table)), replace=False):
        cat = table[int(ci)]
        clause = cat.clauses[int(rng.integers(len(cat.clauses)))]
        plan += [vocab.completion(clause, rng) for _ in range(int(rng.integers(1, 3)))]
        if cat.broad is not None and rng.random() < 0.7:  # matches the name, not the annotation
            while True:
                attrs = vocab.completion(cat.broad, rng)
                if not cat.matches(attrs):
                    break
            plan.append(attrs)
        elif rng.random() < 0.5:
            plan.append(_near_miss(rng, clause))
    lo, hi = style.instances
    while len(plan) < lo or (len(plan) < hi and rng.random() < 0.3):
        plan.append(vocab.random_attrs(rng))
    return plan[:hi]


def encode_rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _render(
    table: list[Category], seed: int, stream: str, i: int, style: str
) -> tuple[np.ndarray, list[tuple[dict, np.ndarray, list[int]]]]:
    """Dataset image ``i`` of a world: its pixels (H, W, 3) and, per instance, its attributes, mask
    (H, W) and the ids of the categories it is annotated under."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, IMAGE_STREAM, VARIANTS.index(stream), i]))
    img = render.render_image(rng, plan_image(rng, table, render.STYLES[style]), render.STYLES[style])
    return img.rgb, [(inst.attrs, inst.mask, [c.id for c in table if c.matches(inst.attrs)]) for inst in img.instances]


def write_dataset(
    out: str | Path,
    variant: str = "policy",
    images: int = 100,
    seed: int = 0,
    style: str = "train",
    min_positives: int = 0,
) -> Path:
    """Write ``images`` world-v2 images (PNG) and ``annotations.json`` (COCO, RLE masks) to ``out``.

    named, renamed and nameless share their images (same table); the other variants draw their own.
    With ``min_positives``, images ``images``, ``images + 1``, ... of the same stream follow, each kept
    only if it holds an instance of a category with fewer than ``min_positives`` positive images, until
    every category has that many (a benchmark's rare categories topped up; the first ``images`` images
    are those of the plain world). ``info`` records how many images were drawn.

    Returns:
        the path of annotations.json.
    """
    if style not in render.STYLES:
        raise ValueError(f"unknown style {style!r}; choose from {', '.join(render.STYLES)}")
    if images < 1 or min_positives < 0:
        raise ValueError(f"need images >= 1 and min_positives >= 0 (got {images}, {min_positives})")
    out = Path(out)
    img_dir = out / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    table = categories(variant, seed)
    stream = {"renamed": "named", "nameless": "named"}.get(variant, variant)
    positives = dict.fromkeys((c.id for c in table), 0)  # category id -> positive images so far
    coco_images, annotations = [], []
    i, limit = 0, images + (50 * max(images, 100) if min_positives else 0)  # limit: draws before giving up
    while i < images or min(positives.values()) < min_positives:
        if i >= limit:
            short = {c.name: positives[c.id] for c in table if positives[c.id] < min_positives}
            raise RuntimeError(f"{i} images drawn and still fewer than {min_positives} positive images: {short}")
        rgb, instances = _render(table, seed, stream, i, style)
        cats = {cid for _, _, ids in instances for cid in ids}
        drawn, i = i, i + 1  # drawn: this image's index in the stream; i: images drawn so far
        if drawn >= images and not any(positives[cid] < min_positives for cid in cats):
            continue  # a top-up image must help a short category
        for cid in cats:
            positives[cid] += 1
        h, w = rgb.shape[:2]
        image_id = len(coco_images) + 1
        name = f"{drawn:06d}.png"
        Image.fromarray(rgb).save(img_dir / name)
        coco_images.append({"id": image_id, "file_name": f"images/{name}", "width": w, "height": h})
        for attrs, mask, ids in instances:
            rle = encode_rle(mask)
            bbox = [float(v) for v in mask_utils.toBbox(rle)]
            for cid in ids:
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": cid,
                        "segmentation": rle,
                        "area": float(mask.sum()),
                        "bbox": bbox,
                        "iscrowd": 0,
                        "attributes": dict(attrs),
                    }
                )
    data = {
        "info": {
            "description": f"sam3-alias shapes world v2, variant {variant}",
            "version": "2",
            "seed": seed,
            "variant": variant,
            "style": style,
            **({"min_positives": min_positives, "images_drawn": i} if min_positives else {}),
        },
        "licenses": [],
        "images": coco_images,
        "annotations": annotations,
        "categories": [c.to_coco() for c in table],
    }
    path = out / "annotations.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)
    return path
