"""The best mask IoU a model can reach when it predicts masks on an S x S grid.

Each instance mask of held-out shapes-world images (``world.image_rng(seed, i)``, the images of
``python -m sam3.toy.world --seed SEED``) is area-downsampled to S x S, as training targets are
(``sam3.toy.train.instance_targets``), turned into logits, upsampled bilinearly to the image size
and thresholded at 0, as ``bench/toy_quality.py`` does with predicted mask logits; the IoU with the
exact mask is what a perfect S x S prediction would score. Prints, per shape and grid side, the mean
IoU and the share of instances at IoU >= 0.5 (what AP50 needs) and >= 0.75.

    python bench/mask_grid_ceiling.py --sides 24,48 --images 200 --seed 777
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
import torch
import torch.nn.functional as F

from sam3.toy import world


def ceiling_iou(mask: np.ndarray, side: int) -> float:
    """IoU of ``mask`` (H, W) bool with its own S x S area-downsampled, bilinearly upsampled copy."""
    m = torch.from_numpy(mask.astype(np.float32))[None, None]  # (1, 1, H, W)
    small = F.interpolate(m, size=(side, side), mode="area")  # (1, 1, S, S)
    logits = torch.logit(small.clamp(1e-4, 1 - 1e-4))
    up = F.interpolate(logits, size=mask.shape, mode="bilinear", align_corners=False)[0, 0] > 0
    gt = torch.from_numpy(mask)
    return float((up & gt).sum() / (up | gt).sum())


def main(argv: list[str] | None = None) -> dict[tuple[str, int], list[float]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sides", default="24,48", help="comma-separated mask grid sides to check")
    ap.add_argument("--images", type=int, default=200, help="held-out world images")
    ap.add_argument("--seed", type=int, default=777, help="world seed of the held-out images")
    args = ap.parse_args(argv)
    sides = [int(s) for s in args.sides.split(",")]
    ious: dict[tuple[str, int], list[float]] = defaultdict(list)
    for i in range(args.images):
        for inst in world.render_image(world.image_rng(args.seed, i)).instances:
            for side in sides:
                ious[inst.shape, side].append(ceiling_iou(inst.mask, side))
    for (shape, side), v in sorted(ious.items()):
        a = np.array(v)
        print(
            f"{shape:9s} {side:3d}x{side:<3d} n {len(a):4d}  mean IoU {a.mean():.3f}  "
            f"IoU>=0.5 {(a >= 0.5).mean():.3f}  IoU>=0.75 {(a >= 0.75).mean():.3f}"
        )
    return dict(ious)


if __name__ == "__main__":
    main()
