"""Tiny synthetic COCO datasets for tests: shapes drawn with PIL, masks as polygons or RLE."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils


def rle_of(mask: np.ndarray, compressed: bool = True) -> dict:
    """COCO RLE of a (H, W) bool mask; ``compressed=False`` gives the uncompressed counts list."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    if compressed:
        return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
    flat = mask.astype(np.uint8).flatten(order="F")
    counts, current, run = [], 0, 0
    for v in flat:
        if v == current:
            run += 1
        else:
            counts.append(run)
            current, run = v, 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": [int(c) for c in counts]}


def rect_mask(h: int, w: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def disc_mask(h: int, w: int, cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def write_shapes_dataset(
    root: Path,
    n_images: int = 6,
    size: int = 48,
    seed: int = 0,
    names: tuple[str | None, ...] = ("red square", "blue circle"),
) -> Path:
    """A dataset of red squares and blue discs on grey (one category per shape, RLE masks).

    Category ids are 1.. in the order of ``names`` (None or "" = nameless). Every image holds
    shapes of a random subset of the categories; image ``n_images - 1`` holds none (a negative for
    all). Returns the annotation JSON path (images in ``root/images``).
    """
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    colours = [(220, 30, 30), (30, 60, 220), (30, 200, 60)]
    cell = size // 3  # shapes sit in distinct cells of a 3 x 3 grid: no overlaps
    images, anns = [], []
    for i in range(n_images):
        img = Image.new("RGB", (size, size), (128, 128, 128))
        draw = ImageDraw.Draw(img)
        present = [] if i == n_images - 1 else [c for c in range(len(names)) if rng.random() < 0.7] or [i % len(names)]
        cells = iter(rng.permutation(9))
        for c in present:
            for _ in range(int(rng.integers(1, 3))):
                r = int(rng.integers(cell // 4, cell // 2))
                gy, gx = divmod(int(next(cells)), 3)
                cx, cy = (int(g * cell + v) for g, v in zip((gx, gy), rng.integers(r, cell - r + 1, 2)))
                box = (cx - r, cy - r, cx + r - 1, cy + r - 1)
                if c % 2 == 0:
                    draw.rectangle(box, fill=colours[c % 3])
                    mask = rect_mask(size, size, cx - r, cy - r, cx + r, cy + r)
                else:
                    draw.ellipse(box, fill=colours[c % 3])
                    mask = np.asarray(_ellipse_mask(size, box))
                anns.append(
                    {
                        "id": len(anns) + 1,
                        "image_id": i + 1,
                        "category_id": c + 1,
                        "segmentation": rle_of(mask),
                        "iscrowd": 0,
                        "area": int(mask.sum()),
                        "bbox": [
                            float(v)
                            for v in mask_utils.toBbox(mask_utils.encode(np.asfortranarray(mask.astype(np.uint8))))
                        ],
                    }
                )
        name = f"img{i:02d}.png"
        img.save(root / "images" / name)
        images.append({"id": i + 1, "file_name": name, "height": size, "width": size})
    cats = [{"id": k + 1, "name": n or ""} for k, n in enumerate(names)]
    path = root / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


def _ellipse_mask(size: int, box: tuple[int, int, int, int]) -> np.ndarray:
    m = Image.new("L", (size, size), 0)
    ImageDraw.Draw(m).ellipse(box, fill=1)
    return np.asarray(m).astype(bool)


def write_coco(
    root: Path,
    images: list[dict],
    annotations: list[dict],
    categories: list[dict] | None = None,
    json_name: str = "annotations.json",
    image_dir: str = "",
    make_files: bool = True,
    extra: dict | None = None,
) -> Path:
    """Write a COCO JSON and (unless told not to) a plain PNG for every image record."""
    root.mkdir(parents=True, exist_ok=True)
    if make_files:
        for im in images:
            path = root / image_dir / im["file_name"]
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (im["width"], im["height"]), (100, 110, 120)).save(path)
    data = {"images": images, "annotations": annotations}
    if categories is not None:
        data["categories"] = categories
    data.update(extra or {})
    path = root / json_name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path
