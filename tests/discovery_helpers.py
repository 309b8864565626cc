"""Small synthetic target sets for the discovery tests (alias_opt.search.objective and the search phases)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from alias_opt.data.loader import ImageEntry, TargetImage


def synthetic_images(n_pos: int = 5, n_neg: int = 3, size: tuple[int, int] = (40, 48), seed: int = 0):
    """Random RGB arrays and TargetImages: positives hold 1-2 rectangular instances, negatives none."""
    rng = np.random.default_rng(seed)
    h, w = size
    arrays, images = [], []
    for i in range(n_pos + n_neg):
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        k = int(rng.integers(1, 3)) if i < n_pos else 0
        masks = np.zeros((k, h, w), dtype=bool)
        for j in range(k):
            y, x = int(rng.integers(0, h - 12)), int(rng.integers(0, w - 12))
            masks[j, y : y + 12, x : x + 12] = True
            rgb[masks[j]] = (220, 30, 35)
        arrays.append(rgb)
        images.append(TargetImage(ImageEntry(i + 1, Path(f"synthetic/{i}.png"), h, w), masks=masks))
    return arrays, images


def objective(backend, n_pos: int = 5, n_neg: int = 3, **kw):
    from alias_opt.search.objective import Objective

    arrays, images = synthetic_images(n_pos, n_neg)
    return Objective(backend, images, feats=backend.encode_images(arrays), **kw)


def renamed_world(out: Path, n_categories: int, images: int = 24, seed: int = 5) -> tuple[Path, list[int]]:
    """A small renamed toy world in ``out`` and up to ``n_categories`` category ids that have at
    least two positive train images (the split of ``target_sets(max_negatives=4)``)."""
    from alias_opt.data.loader import CocoDataset
    from sam3.toy.world import write_dataset

    write_dataset(out, "renamed", images=images, seed=seed)
    ds = CocoDataset.open(out)
    cats = [ts.category_id for ts in ds.target_sets(max_negatives=4) if sum(t.is_positive for t in ts.train) >= 2]
    return out, cats[:n_categories]


def toy_crimson_discs(tmp: Path):
    """sam3-toy, the "crimson disc" target set of a 60-image renamed toy world (red circles under a name the
    toy never learned; 20 negatives) and its train features; skips where sam3-toy is not trained."""
    import pytest
    import torch

    from alias_opt.data.loader import CocoDataset
    from sam3 import Sam3Backend
    from sam3.loading import TOY_DIR

    if not (TOY_DIR / "config.json").is_file():
        pytest.skip("sam3-toy is not trained yet")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    b = Sam3Backend.load("toy", device="cpu", cache_dir=tmp / "cache")
    data, _ = renamed_world(tmp / "world", 20, images=60, seed=5)
    ts = next(t for t in CocoDataset.open(data).target_sets(max_negatives=20) if t.name == "crimson disc")
    return b, ts, b.encode_images([im.image.load() for im in ts.train])
