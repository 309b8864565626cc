"""Data passed between the backend's stages: image features, prompt features, grounding outputs."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class ImageFeatures:
    """Vision features of N images, everything the heads need (computed once per image).

    Attributes:
        fpn: FPN levels the heads read, finest first: [(N, C, 4g, 4g), (N, C, 2g, 2g), (N, C, g, g)]
            where g = image_size / patch_size.
        keys: content hash per image (cache keys).
        sizes: original (height, width) per image.
    """

    fpn: list[torch.Tensor]
    keys: list[str]
    sizes: list[tuple[int, int]]

    def __len__(self) -> int:
        return len(self.keys)

    def select(self, index: list[int] | torch.Tensor) -> ImageFeatures:
        """Features of a subset (or a repetition) of the images, in the given order."""
        idx = torch.as_tensor(index, dtype=torch.long)
        fpn = [level.index_select(0, idx.to(level.device)) for level in self.fpn]
        return ImageFeatures(fpn, [self.keys[i] for i in idx.tolist()], [self.sizes[i] for i in idx.tolist()])

    @staticmethod
    def concat(parts: list[ImageFeatures]) -> ImageFeatures:
        """Join features of several batches of images."""
        if not parts:
            raise ValueError("nothing to concatenate")
        fpn = [torch.cat([p.fpn[k] for p in parts]) for k in range(len(parts[0].fpn))]
        return ImageFeatures(fpn, [k for p in parts for k in p.keys], [s for p in parts for s in p.sizes])


@dataclass
class TextFeatures:
    """Per-token prompt features of P prompts, truncated to the longest prompt.

    Attributes:
        features: (P, T, C) projected prompt features (C = DETR width).
        mask: (P, T) bool, True at real tokens (SOT .. EOT), False at padding.
    """

    features: torch.Tensor
    mask: torch.Tensor

    def __len__(self) -> int:
        return self.features.shape[0]

    def select(self, index: list[int] | torch.Tensor) -> TextFeatures:
        idx = torch.as_tensor(index, dtype=torch.long, device=self.features.device)
        return TextFeatures(self.features.index_select(0, idx), self.mask.index_select(0, idx))


@dataclass
class GroundingOutput:
    """SAM 3 head outputs for a batch of (prompt, image) pairs. Leading dims ``*B`` are either
    (B,) for listed pairs or (P, I) for all prompts x all images.

    Attributes:
        mask_logits: (*B, Q, h, w) per-query mask logits at the finest FPN level (h = w = 4g); or,
            when the grounding call selected queries (``mask_index`` set), (N, h, w): only the
            selected masks, row n belonging to pair ``mask_index[n, 0]`` and query ``mask_index[n, 1]``.
        query_logits: (*B, Q) per-query classification logits.
        presence_logits: (*B,) image-level presence logit of the concept.
        semantic_logits: (*B, h, w) semantic segmentation logits (NaN for a pair none of whose queries a
            grounding call's selection kept: its pixel decoder did not run).
        boxes: (*B, Q, 4) boxes (x0, y0, x1, y1), normalized to [0, 1].
        mask_index: None (``mask_logits`` holds every query), or (N, 2) long: (flat pair index over
            the leading dims, query index) of each row of ``mask_logits``, ordered by pair then query.
    """

    mask_logits: torch.Tensor
    query_logits: torch.Tensor
    presence_logits: torch.Tensor
    semantic_logits: torch.Tensor
    boxes: torch.Tensor
    mask_index: torch.Tensor | None = None

    @property
    def num_pairs(self) -> int:
        return self.presence_logits.numel()

    def scores(self) -> torch.Tensor:
        """(*B, Q) detection scores as SAM 3 ranks them: sigmoid(query) x sigmoid(presence)."""
        return self.query_logits.sigmoid() * self.presence_logits.sigmoid().unsqueeze(-1)

    def pair_masks(self, pair: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(queries (K,), mask logits (K, h, w)) of one pair (flat index), dense or selected."""
        if self.mask_index is None:
            flat = self.mask_logits.reshape(-1, *self.mask_logits.shape[-3:])
            return torch.arange(flat.shape[1], device=flat.device), flat[pair]
        rows = (self.mask_index[:, 0] == pair).nonzero().squeeze(1)
        return self.mask_index[rows, 1], self.mask_logits.index_select(0, rows.to(self.mask_logits.device))

    def view(self, *lead: int) -> GroundingOutput:
        """Reshape the leading pair dimension, e.g. ``view(P, I)`` (selected masks stay flat)."""
        n_lead = self.presence_logits.dim()
        dense = [f.name for f in fields(self) if f.name != "mask_index"]
        if self.mask_index is not None:
            dense.remove("mask_logits")
        out = {name: getattr(self, name).reshape(*lead, *getattr(self, name).shape[n_lead:]) for name in dense}
        if self.mask_index is not None:
            out.update(mask_logits=self.mask_logits, mask_index=self.mask_index)
        return GroundingOutput(**out)

    @staticmethod
    def concat(parts: list[GroundingOutput]) -> GroundingOutput:
        """Join the outputs of consecutive batches of pairs (pair indices of selected masks shift)."""
        names = [f.name for f in fields(GroundingOutput) if f.name != "mask_index"]
        out = {name: torch.cat([getattr(p, name) for p in parts]) for name in names}
        selected = [p.mask_index is not None for p in parts]
        if any(selected):
            if not all(selected):
                raise ValueError("cannot join outputs with selected masks and outputs with all masks")
            offsets, index = 0, []
            for p in parts:
                assert p.mask_index is not None
                index.append(p.mask_index + torch.tensor([offsets, 0], device=p.mask_index.device))
                offsets += p.num_pairs
            out["mask_index"] = torch.cat(index)
        return GroundingOutput(**out)
