"""Dense attribute supervision of a sam3-toy vision encoder (world v2).

The set-prediction loss of ``sam3.toy.train`` never taught sam3-toy v2's ViT the shapes: a linear
probe of its FPN cells (``bench/attribute_probe.py``) reads size, fill and colour but shape at
chance after 16,000 steps. Here every FPN cell on an instance is told that instance's size, fill,
colour and shape through a throwaway linear head (a 1x1 conv per level), a signal per cell instead
of per prompt. ``sam3.toy.pretrain_vision`` trains the vision encoder with it alone (stage A), and
``sam3.toy.train`` adds it to the set loss with ``TrainConfig.attr_weight`` (``AttrTraining``); the head
is never exported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from sam3.toy import render, vocab
from sam3.toy.train_config import TrainConfig

BACKGROUND_WEIGHT = 0.2  # weight of the cells off every instance (class 0) in each attribute's loss


def cell_labels(instances: list[render.Instance], size: tuple[int, int]) -> torch.Tensor:
    """Per-cell attribute labels of one image on a ``size`` grid (nearest sampling of the visible masks).

    Args:
        instances: the image's instances (visible masks, attributes).
        size: (h, w) of the grid.

    Returns:
        (4, h, w) long: per attribute of ``vocab.ATTRIBUTES``, 0 on background cells, else the index of
        the instance's value in ``vocab.VALUES[attribute]`` plus one.
    """
    if not instances:
        return torch.zeros((len(vocab.ATTRIBUTES), *size), dtype=torch.long)
    full = np.zeros((len(vocab.ATTRIBUTES), *instances[0].mask.shape), dtype=np.int64)
    for inst in instances:
        for k, attr in enumerate(vocab.ATTRIBUTES):
            full[k][inst.mask] = vocab.VALUES[attr].index(inst.attrs[attr]) + 1
    grid = F.interpolate(torch.from_numpy(full)[None].float(), size=size, mode="nearest")[0]  # (4, h, w)
    return grid.long()


def classes_per_attribute() -> list[int]:
    """Classes of each attribute's cell labels: its values plus background."""
    return [len(vocab.VALUES[a]) + 1 for a in vocab.ATTRIBUTES]


class AttributeHead(torch.nn.Module):
    """One 1x1 conv per FPN level: channels -> every attribute's classes, concatenated."""

    def __init__(self, channels: int, levels: int):
        super().__init__()
        self.sizes = classes_per_attribute()
        self.convs = torch.nn.ModuleList(torch.nn.Conv2d(channels, sum(self.sizes), 1) for _ in range(levels))

    def forward(self, fpn: list[torch.Tensor]) -> list[list[torch.Tensor]]:
        """Per level, per attribute (N, classes, h, w) logits of (N, C, h, w) features."""
        return [list(conv(x).split(self.sizes, dim=1)) for conv, x in zip(self.convs, fpn)]


def attribute_loss(logits: list[list[torch.Tensor]], labels: list[torch.Tensor]) -> torch.Tensor:
    """Mean over levels and attributes of the per-cell cross-entropy (background weighted down).

    Args:
        logits: ``AttributeHead`` output.
        labels: per level (N, 4, h, w) ``cell_labels``.
    """
    terms = []
    for level, lab in zip(logits, labels):
        for k, out in enumerate(level):
            weight = torch.ones(out.shape[1], device=out.device)
            weight[0] = BACKGROUND_WEIGHT
            terms.append(F.cross_entropy(out, lab[:, k], weight=weight))
    return torch.stack(terms).mean()


def cell_accuracy(logits: list[torch.Tensor], labels: torch.Tensor) -> list[float]:
    """Per attribute, the share of instance cells whose value the logits of one level get right.

    Args:
        logits: per attribute (N, classes, h, w), one level of ``AttributeHead`` output.
        labels: (N, 4, h, w) ``cell_labels`` of that level.
    """
    on = labels[:, 0] > 0
    if not on.any():
        return [float("nan")] * len(logits)
    return [float((out.argmax(1)[on] == labels[:, k][on]).float().mean()) for k, out in enumerate(logits)]


@dataclass
class AttrTraining:
    """The dense attribute loss's throwaway head and its own AdamW (``cfg.attr_weight`` > 0)."""

    head: AttributeHead
    optimizer: torch.optim.AdamW

    @classmethod
    def build(cls, model, cfg: TrainConfig, state: dict | None, device: str) -> AttrTraining | None:
        """None when the loss is off; else a head restored from ``state`` where it holds one (a run that
        switches the loss on at a resume starts a fresh head)."""
        if cfg.attr_weight <= 0:
            return None
        head = AttributeHead(model.config.vision_config.fpn_hidden_size, levels=3).to(device)
        opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=0.0, betas=(0.9, 0.98))
        if state is not None and "attr_head" in state:
            head.load_state_dict(state["attr_head"])
            opt.load_state_dict(state["attr_optimizer"])
        return cls(head, opt)

    def loss(self, vis, labels: torch.Tensor) -> torch.Tensor:
        """The dense loss on the first three FPN levels; ``labels`` (I, 4, h, w) at the finest level's size."""
        fpn = list(vis.fpn_hidden_states[:3])
        per_level = [
            F.interpolate(labels[:, None].float(), size=(4, *x.shape[-2:]), mode="nearest")[:, 0].long() for x in fpn
        ]  # (I, 4, h_l, w_l) each
        return attribute_loss(self.head(fpn), per_level)

    def step(self, lr: float, grad_clip: float) -> None:
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        torch.nn.utils.clip_grad_norm_(self.head.parameters(), grad_clip)
        self.optimizer.step()

    def state(self) -> dict:
        return {"attr_head": self.head.state_dict(), "attr_optimizer": self.optimizer.state_dict()}
