"""Which world-v2 attributes a model's *vision features* carry: linear probes per FPN cell.

Renders held-out world-v2 images in the training style (a probe stream no training step or
dataset seed reaches), runs the frozen vision encoder, and labels every FPN cell that lies on an
instance with that instance's size, fill, colour and shape. A linear softmax classifier per
(level, attribute) is fitted on the cells of the first images and scored on the cells of the rest.
An attribute the heads must tell apart but the features do not linearly carry (held-out accuracy
near chance) cannot be learned by the DETR heads either: it is the backbone that must change.
It takes about a minute, against ~3.5 minutes for ``bench/toy_quality_v2.py``, so it screens a
candidate model (or an intermediate checkpoint's export) before the full quality run.

    python bench/attribute_probe.py --model results/toy_v2w/model --images 160 --seed 31
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sam3 import Sam3Backend  # noqa: E402
from sam3.toy import vocab  # noqa: E402
from sam3.toy.attributes import cell_labels  # noqa: E402
from sam3.toy.prompts_v2 import training_image  # noqa: E402
from sam3.toy.train_config import TrainConfig  # noqa: E402

PROBE_STREAM = 0x9B0  # SeedSequence([seed, PROBE_STREAM, i]) draws probe image i


def fit_probe(x: torch.Tensor, y: torch.Tensor, classes: int, l2: float = 1e-3, iters: int = 200) -> torch.Tensor:
    """A linear softmax classifier (L-BFGS, L2 penalty) on standardized features.

    Args:
        x: (N, C) features; y: (N,) labels in [0, classes).

    Returns:
        (C + 1, classes) weights, the bias in the last row (apply with ``predict``).
    """
    w = torch.zeros(x.shape[1] + 1, classes, dtype=torch.float64, requires_grad=True)
    xb = torch.cat([x.double(), torch.ones(len(x), 1, dtype=torch.float64)], 1)  # (N, C + 1)
    opt = torch.optim.LBFGS([w], max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(xb @ w, y) + l2 * (w[:-1] ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach()


def predict(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(N,) class indices of ``fit_probe``'s classifier on (N, C) features."""
    return (torch.cat([x.double(), torch.ones(len(x), 1, dtype=torch.float64)], 1) @ w).argmax(1)


@dataclass
class ProbeResult:
    """Held-out accuracy of one (level, attribute) probe."""

    level: int  # FPN level, finest first
    grid: int  # its side, in cells
    attribute: str
    accuracy: float  # held-out cells classified right
    chance: float  # share of the held-out cells' most frequent training value
    cells: int  # held-out cells


def probe_levels(fpn: list[torch.Tensor], labels: list[torch.Tensor], n_train: int) -> list[ProbeResult]:
    """Fit and score a probe per (level, attribute) on instance cells.

    Args:
        fpn: per level (N, C, h, w) features of N images.
        labels: per level (N, 4, h, w) ``cell_labels``.
        n_train: the first ``n_train`` images train the probes, the rest score them.
    """
    out = []
    for lvl, (feat, lab) in enumerate(zip(fpn, labels)):
        x = feat.float().permute(0, 2, 3, 1)  # (N, h, w, C)
        on = lab[:, 0] > 0  # (N, h, w) cells on an instance
        train = on.clone()
        train[n_train:] = False
        test = on.clone()
        test[:n_train] = False
        mu, sd = x[train].mean(0), x[train].std(0).clamp_min(1e-6)
        xs = (x - mu) / sd
        for k, attr in enumerate(vocab.ATTRIBUTES):
            y = lab[:, k] - 1  # (N, h, w) value index on instance cells
            w = fit_probe(xs[train], y[train], len(vocab.VALUES[attr]))
            acc = float((predict(w, xs[test]) == y[test]).float().mean())
            chance = float((y[test] == torch.bincount(y[train]).argmax()).float().mean())
            out.append(ProbeResult(lvl, feat.shape[-1], attr, acc, chance, int(test.sum())))
    return out


def main(argv: list[str] | None = None) -> list[ProbeResult]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="model source (a world-v2 sam3-toy export)")
    ap.add_argument("--images", type=int, default=160, help="probe images (the first 70%% train the probes)")
    ap.add_argument("--seed", type=int, default=31, help="seed of the probe images (PROBE_STREAM)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = TrainConfig(world="v2")
    imgs = [
        training_image(np.random.default_rng(np.random.SeedSequence([args.seed, PROBE_STREAM, i])), cfg)
        for i in range(args.images)
    ]
    backend = Sam3Backend.load(args.model, use_cache=False)
    feats = backend.encode_images([im.rgb for im in imgs])
    labels = [torch.stack([cell_labels(im.instances, tuple(f.shape[-2:])) for im in imgs]) for f in feats.fpn]
    results = probe_levels(feats.fpn, labels, int(0.7 * args.images))
    print(f"model {args.model}: linear probes of the vision features, {args.images} images (seed {args.seed})")
    for r in results:
        print(
            f"  level {r.level} ({r.grid}x{r.grid})  {r.attribute:7s} held-out cell accuracy {r.accuracy:.3f}"
            f"  (chance {r.chance:.3f}, {r.cells} cells)"
        )
    return results


if __name__ == "__main__":
    main()
