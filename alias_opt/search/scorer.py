"""The scorer of one target set: batched ``ground`` + the set loss on cached image features.

A ``Scorer`` holds the frozen backend, the train images' cached features, their target masks (and
ignore weights) on the model's mask grid and the loss weights. It computes losses and nothing else:
no memo, no budget (``alias_opt.search.objective`` adds those). Text is encoded once per prompt and
shared by all images; image features are never recomputed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from alias_opt.config import LossConfig
from alias_opt.dist import DistContext, image_shard
from alias_opt.search.embeddings import concept_vector
from alias_opt.search.losses import COMPONENTS, PairTargets, set_loss
from sam3 import ImageFeatures, Sam3Backend, TextFeatures

Seq = tuple[int, ...]


def resize_masks(masks: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """(K, H, W) bool -> (K, h*w) float in [0, 1]: antialiased bilinear, like the image itself."""
    if masks.shape[0] == 0:
        return torch.zeros(0, size[0] * size[1])
    t = torch.from_numpy(np.ascontiguousarray(masks)).float()[:, None]
    r = F.interpolate(t, size=size, mode="bilinear", antialias=True, align_corners=False)
    return r[:, 0].clamp(0, 1).flatten(1)


class Scorer:
    """Set-level mask loss of prompts on one target set's train images.

    Args:
        backend: the frozen SAM 3.
        images: train images with ``masks`` (K, H, W) bool and ``ignore`` (H, W) bool or None
            (``alias_opt.data.targets.TargetImage``); K = 0 on negative images.
        loss: loss weights.
        feats: their image features (default: encoded here, from ``image.load()``).
        shard: ranks that share the pairs by image (default: ``alias_opt.dist.image_shard()``, the
            enclosing ``image_sharding`` block's); each rank grounds its images' pairs and the losses
            and gradients are all-reduced, so every rank returns the same numbers.
    """

    def __init__(
        self,
        backend: Sam3Backend,
        images: Sequence,
        loss: LossConfig | None = None,
        feats: ImageFeatures | None = None,
        shard: DistContext | None = None,
    ):
        self.shard = shard if shard is not None else image_shard()
        if not images:
            raise ValueError("an objective needs at least one train image")
        self.backend = backend
        self.images = list(images)
        self.cfg = loss or LossConfig()
        self.feats = feats if feats is not None else backend.encode_images([im.image.load() for im in self.images])
        if len(self.feats) != len(self.images):
            raise ValueError(f"{len(self.feats)} image features for {len(self.images)} images")
        grid = tuple(self.feats.fpn[0].shape[-2:])
        self.grid: tuple[int, int] = (int(grid[0]), int(grid[1]))
        self.targets = [resize_masks(np.asarray(im.masks, dtype=bool), self.grid) for im in self.images]
        self.weights = [
            None
            if im.ignore is None or not np.asarray(im.ignore).any()
            else 1 - resize_masks(np.asarray(im.ignore, dtype=bool)[None], self.grid)[0]
            for im in self.images
        ]
        self.positive = np.array([t.shape[0] > 0 for t in self.targets])
        if not self.positive.any():
            raise ValueError("an objective needs at least one image with target masks")
        self.all_idx = np.arange(len(self.images))

    @property
    def n_images(self) -> int:
        return len(self.images)

    def image_weights(self, idx: np.ndarray) -> torch.Tensor:
        """Weights w_i such that sum_i w_i * l_i is one prompt's loss over images ``idx``: the mean over
        positive images plus ``negative_weight`` x the mean over negative images, over 1 + negative_weight."""
        pos = self.positive[idx]
        w = np.zeros(len(idx))
        nw = self.cfg.negative_weight
        has_neg = (~pos).any() and nw > 0
        if pos.any():
            w[pos] = 1.0 / pos.sum() / ((1 + nw) if has_neg else 1)
        if has_neg:
            w[~pos] = (nw / (1 + nw) if pos.any() else 1.0) / (~pos).sum()
        return torch.as_tensor(w, dtype=torch.float32)

    def aggregate(self, pair_loss: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
        """(P, n) per-pair losses on images ``idx`` -> (P,) (see ``image_weights``)."""
        return pair_loss @ self.image_weights(idx).to(pair_loss)

    def pair_losses(self, text: TextFeatures, idx: np.ndarray, grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-pair losses of P encoded prompts on images ``idx``.

        Args:
            text: P encoded prompts.
            idx: (n,) train image indices.
            grad: back-propagate the loss batch by batch into ``text.features`` (whose graph the caller
                completes), so that one batch's activations are freed before the next.

        Returns:
            (P, n) loss and (P, n, 5) components (``alias_opt.search.losses.COMPONENTS``).
        """
        P, n = len(text), len(idx)
        full = len(idx) == self.n_images and (idx == self.all_idx).all()
        feats = self.feats if full else self.feats.select(idx.tolist())
        mine = self.shard.owns(n) if self.shard is not None else torch.ones(n, dtype=torch.bool)  # (n,)
        pairs = torch.nonzero(mine.repeat(P)).flatten()  # this rank's pairs, prompt-major
        p_idx = pairs // n
        i_idx = pairs % n
        out_loss = torch.zeros(P * n)
        out_comp = torch.zeros(P * n, len(COMPONENTS))
        # per-prompt weights so that sum(weight * pair_loss) = sum over prompts of the aggregated loss
        w_img = self.image_weights(idx)
        for sl, out in self.backend.iter_ground_pairs(text, feats, p_idx, i_idx):
            glob = idx[i_idx[sl].numpy()]
            targets = PairTargets([self.targets[i] for i in glob], [self.weights[i] for i in glob])
            loss, comps = set_loss(
                out.mask_logits, out.query_logits, out.presence_logits, out.semantic_logits, targets, self.cfg
            )
            if grad:
                (loss * w_img[i_idx[sl]].to(loss.device)).sum().backward()
            out_loss[pairs[sl]] = loss.detach().float().cpu()
            out_comp[pairs[sl]] = comps.float().cpu()
        if self.shard is not None:  # every pair was computed by exactly one rank: the sum is exact
            self.shard.all_reduce_sum(out_loss)
            self.shard.all_reduce_sum(out_comp)
        return out_loss.view(P, n), out_comp.view(P, n, -1)

    def loss_grad(self, embeds: torch.Tensor, mask: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
        """Aggregated loss of P input-embedding prompts, back-propagated to ``embeds``.

        Args:
            embeds: (P, T, Dt) input embeddings incl. SOT/EOT, part of an autograd graph.
            mask: (P, T) True at SOT .. EOT.
            idx: (n,) train image indices.

        Returns:
            (P,) detached losses; ``.grad`` of the leaves upstream of ``embeds`` is accumulated.
        """
        with torch.enable_grad():
            text = self.backend.encode_text(embeds=embeds, mask=mask)
            leaf = text.features.detach().requires_grad_(True)
            pair, _ = self.pair_losses(TextFeatures(leaf, text.mask), idx, grad=True)
            grad = leaf.grad
            if self.shard is not None:  # each rank holds its images' share of the gradient
                grad = self.shard.all_reduce_sum(grad if grad is not None else torch.zeros_like(leaf))
            if grad is not None and text.features.requires_grad:
                text.features.backward(grad)
        return self.aggregate(pair, idx)

    @torch.no_grad()
    def seq_losses(self, seqs: Sequence[Seq], idx: np.ndarray) -> list[float]:
        """Aggregated loss of discrete sequences on images ``idx`` plus ``length_penalty`` per token.

        Args:
            seqs: P token sequences (no SOT/EOT).
            idx: (n,) train image indices.

        Returns:
            P losses (lower is better).
        """
        text = self.backend.encode_text(self.backend.prompt_ids(list(seqs)))
        pair, _ = self.pair_losses(text, idx)
        agg = self.aggregate(pair, idx)
        return [float(v) + self.cfg.length_penalty * len(s) for s, v in zip(seqs, agg.tolist())]

    def concept(self, space: str, probes: Sequence[Seq]) -> torch.Tensor:
        """The concept vector of the targets in ``space`` (``alias_opt.search.embeddings.concept_vector``);
        ``len(probes) * n_images`` pair forwards unless ``space`` is ``text``."""
        return concept_vector(self.backend, self.feats, self.targets, self.grid, space, probes)
