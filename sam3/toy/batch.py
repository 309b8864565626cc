"""One training step's data: fresh world images, prompts for them, and their set targets.

Deterministic by (seed, step): ``make_batch`` draws a step's images and prompts from ``step_rng``,
a stream no dataset seed reaches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from sam3.preprocess import preprocess
from sam3.tokenizer import Sam3Tokenizer
from sam3.toy import world
from sam3.toy.attributes import cell_labels
from sam3.toy.prompts_v2 import PromptSamplerV2, training_image
from sam3.toy.set_loss import SetTarget
from sam3.toy.train_config import TrainConfig

OBJECT_WORD = "object"  # the prompt for every instance
TRAIN_STREAM = 0x5A3  # SeedSequence([seed, TRAIN_STREAM, step, i]) never equals a dataset image's [seed, i]


class PromptSampler:
    """Turns a world image into (prompt token ids, target instance indices) pairs."""

    def __init__(self, tokenizer: Sam3Tokenizer, cfg: TrainConfig):
        self.cfg = cfg
        self.word_ids = {w: tokenizer.encode(w, special=False) for w in (*world.COLOURS, *world.SHAPES, OBJECT_WORD)}
        for w, ids in self.word_ids.items():
            if len(ids) != 1:
                raise ValueError(f"training word {w!r} is not a single CLIP token: {ids}")
        banned = set(tokenizer.special_ids)
        for w in (*self.word_ids, *world.RENAMED_WORDS):
            banned.update(tokenizer.encode(w, special=False))
        pool = np.ones(tokenizer.vocab_size, dtype=bool)
        pool[sorted(banned)] = False
        self.random_pool = np.flatnonzero(pool)

    def trained_ids(self) -> set[int]:
        """Token ids of every trained word."""
        return {i for ids in self.word_ids.values() for i in ids}

    def phrase(self, *words: str) -> list[int]:
        return [i for w in words for i in self.word_ids[w]]

    def sample(self, rng: np.random.Generator, img: world.WorldImage, k: int) -> list[tuple[list[int], list[int]]]:
        """``k`` prompts for an image: (token ids, indices of the instances they name)."""
        cfg = self.cfg
        insts = img.instances
        present = sorted({inst.concept for inst in insts})
        colours = sorted({c for c, _ in present})
        shapes = sorted({s for _, s in present})
        absent = [c for c in world.CONCEPTS if c not in present]
        hard = [c for c in absent if c[0] in colours or c[1] in shapes]
        forms = {
            "concept": (present, absent),
            "colour": (colours, [c for c in world.COLOURS if c not in colours]),
            "shape": (shapes, [s for s in world.SHAPES if s not in shapes]),
        }
        edges = np.cumsum([cfg.p_concept, cfg.p_colour, cfg.p_shape])
        out = []
        for _ in range(k):
            r = rng.random()
            if edges[-1] <= r < edges[-1] + cfg.p_object and insts:
                out.append((self.phrase(OBJECT_WORD), list(range(len(insts)))))
                continue
            if r >= edges[-1]:
                n = int(rng.integers(1, 4))
                out.append(([int(t) for t in rng.choice(self.random_pool, size=n)], []))
                continue
            form = "concept" if r < edges[0] else "colour" if r < edges[1] else "shape"
            pos, neg = forms[form]
            if pos and (not neg or rng.random() < cfg.p_positive):
                pick = pos[rng.integers(len(pos))]
                words = pick if form == "concept" else (pick,)
                out.append((self.phrase(*words), [i for i, t in enumerate(insts) if set(words) <= {t.colour, t.shape}]))
                continue
            if form == "concept" and hard and rng.random() < cfg.p_hard_negative:
                neg = hard
            pick = neg[rng.integers(len(neg))]
            out.append((self.phrase(*(pick if form == "concept" else (pick,))), []))
        return out


def instance_targets(img: world.WorldImage, indices: list[int], size: tuple[int, int]) -> SetTarget:
    """Masks (area-downsampled to ``size``) and normalized xyxy boxes of the listed instances."""
    h, w = size
    if not indices:
        return SetTarget(torch.zeros(0, h, w), torch.zeros(0, 4))
    full = torch.from_numpy(np.stack([img.instances[i].mask for i in indices])).float()
    H, W = full.shape[-2:]
    masks = F.interpolate(full[:, None], size=(h, w), mode="area")[:, 0]
    boxes = []
    for m in full:
        ys = torch.nonzero(m.any(1)).flatten()
        xs = torch.nonzero(m.any(0)).flatten()
        boxes.append([xs[0] / W, ys[0] / H, (xs[-1] + 1) / W, (ys[-1] + 1) / H])
    return SetTarget(masks, torch.tensor(boxes, dtype=torch.float32))


def step_rng(seed: int, step: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, TRAIN_STREAM, step]))


@dataclass
class Batch:
    """One training step's images, prompts and targets."""

    pixels: torch.Tensor  # (I, 3, S, S) the step's images, preprocessed
    prompts: list[list[int]]  # B prompts as token ids (no SOT/EOT)
    img_idx: torch.Tensor  # (B,) row of ``pixels`` each prompt grounds in
    targets: list[SetTarget]  # B targets, masks at the model's mask size
    attr_labels: torch.Tensor | None = None  # (I, 4, h, w) cell labels at the mask size (cfg.attr_weight > 0)


def make_sampler(tokenizer: Sam3Tokenizer, cfg: TrainConfig):
    """The prompt sampler of ``cfg.world``: ``PromptSampler`` (v1) or ``prompts_v2.PromptSamplerV2``."""
    if cfg.world == "v2":
        return PromptSamplerV2(tokenizer, cfg)
    return PromptSampler(tokenizer, cfg)


def make_batch(
    sampler: PromptSampler, cfg: TrainConfig, step: int, image_size: int, mask_size: tuple[int, int]
) -> Batch:
    """Step ``step``'s images (``cfg.images_per_step``), K prompts per image and their targets."""
    rng = step_rng(cfg.seed, step)
    if cfg.world == "v2":
        imgs = [training_image(rng, cfg) for _ in range(cfg.images_per_step)]
    else:
        imgs = [
            world.render_image(rng, max_concepts=cfg.world_max_concepts, p_related=cfg.p_related_concept)
            for _ in range(cfg.images_per_step)
        ]
    prompts, img_idx, targets = [], [], []
    for i, img in enumerate(imgs):
        for ids, inst in sampler.sample(rng, img, cfg.prompts_per_image):
            prompts.append(ids)
            img_idx.append(i)
            targets.append(instance_targets(img, inst, mask_size))
    pixels = preprocess([im.rgb for im in imgs], image_size)
    attr = torch.stack([cell_labels(im.instances, mask_size) for im in imgs]) if cfg.attr_weight > 0 else None
    return Batch(pixels, prompts, torch.tensor(img_idx), targets, attr)


def batch_sizes(config) -> tuple[int, tuple[int, int]]:
    """The input side and the (H, W) of the predicted masks (and so of the targets) of a ``Sam3Config``."""
    grid = config.vision_config.backbone_feature_sizes[0]
    return int(config.vision_config.backbone_config.image_size), (int(grid[0]), int(grid[1]))


def pad_prompts(prompts: list[list[int]], tokenizer: Sam3Tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """SOT + ids + EOT, padded with EOT to the longest; mask True at real tokens (as the backend does)."""
    rows = [[tokenizer.sot_id, *p, tokenizer.eot_id] for p in prompts]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.eot_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask
