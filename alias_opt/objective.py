"""The objective of one target set: what every search phase optimises and pays for.

An ``Objective`` holds the backend, the cached image features of the train images, their target
masks on the model's mask grid and the loss weights. It offers

* ``loss_grad(embeds, mask, images)``: the differentiable loss of P input-embedding sequences
  (gradients reach ``embeds`` and anything upstream of it, e.g. one-hot token choices);
* ``losses(seqs, images)`` and ``score(seqs)``: the batched, memoized loss of discrete token
  sequences (lower is better), with screening on a few images before all;
* a cost counter (prompt-image pair forwards and backwards) and an optional budget, so that every
  phase pays in the same currency and stops when the budget is spent;
* the best sequence seen so far and a history of steps (for the JSONL log).

Text is encoded once per candidate and shared by all images; image features are never recomputed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from alias_opt.config import LossConfig
from alias_opt.losses import COMPONENTS, PairTargets, set_loss
from sam3 import ImageFeatures, Sam3Backend, TextFeatures

Seq = tuple[int, ...]
BACKWARD_COST = 2  # a pair backward costs about two pair forwards (measured on CPU: fwd+bwd / fwd ~ 3)


class BudgetExhausted(RuntimeError):
    """Raised by phases that cannot continue because the forward-pass budget is spent."""


@dataclass
class Counter:
    """Work done, in prompt-image pairs."""

    forward: int = 0  # pair forwards (with or without gradient)
    backward: int = 0  # pair backwards
    candidates: int = 0  # distinct discrete sequences scored (memo misses)
    memo_hits: int = 0

    @property
    def cost(self) -> int:
        """Forward-equivalents: what budgets are counted in."""
        return self.forward + BACKWARD_COST * self.backward

    def as_dict(self) -> dict[str, int]:
        return {
            "forward_passes": self.forward,
            "backward_passes": self.backward,
            "cost": self.cost,
            "candidates": self.candidates,
            "memo_hits": self.memo_hits,
        }


def resize_masks(masks: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """(K, H, W) bool -> (K, h*w) float in [0, 1]: antialiased bilinear, like the image itself."""
    if masks.shape[0] == 0:
        return torch.zeros(0, size[0] * size[1])
    t = torch.from_numpy(np.ascontiguousarray(masks)).float()[:, None]
    r = F.interpolate(t, size=size, mode="bilinear", antialias=True, align_corners=False)
    return r[:, 0].clamp(0, 1).flatten(1)


@dataclass
class Step:
    """One line of the JSONL history."""

    phase: str
    step: int
    loss: float
    best_loss: float
    best: list[int]
    forward_passes: int
    backward_passes: int
    wall_time: float
    extra: dict = field(default_factory=dict)


class Objective:
    """Loss and fitness of token sequences for one target set on its train images.

    Args:
        backend: the frozen SAM 3.
        images: train images with ``masks`` (K, H, W) bool and ``ignore`` (H, W) bool or None
            (``alias_opt.data_loader.TargetImage``); K = 0 on negative images.
        loss: loss weights.
        feats: their image features (default: encoded here, from ``image.load()``).
        allowed: (V,) bool mask of tokens a sequence may use (validated in ``score``).
        screen_images: size of the screening subset (positives and negatives).
        screen_keep: fraction of screened candidates scored on all images.
        budget: forward-equivalents this objective may spend (0: unlimited).
        seed: for the screening subset and image mini-batches.
        on_step: called with every recorded ``Step`` (e.g. a JSONL writer).
    """

    def __init__(
        self,
        backend: Sam3Backend,
        images: Sequence,
        loss: LossConfig | None = None,
        feats: ImageFeatures | None = None,
        allowed: torch.Tensor | None = None,
        screen_images: int = 6,
        screen_keep: float = 0.25,
        budget: int = 0,
        seed: int = 0,
        on_step: Callable[[Step], None] | None = None,
    ):
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
        self.allowed = allowed
        self.screen_keep = screen_keep
        self.budget = int(budget)
        self.rng = np.random.default_rng(seed)
        self.counter = Counter()
        self.memo: dict[tuple[Seq, str], float] = {}
        self.rejected: set[Seq] = set()  # screened out by ``score`` (never scored on all images)
        self.best: Seq | None = None
        self.best_loss = math.inf
        self.history: list[Step] = []
        self.on_step = on_step
        self.t0 = time.perf_counter()
        self.all_idx = np.arange(len(self.images))
        self.screen_idx = self._balanced(min(screen_images, len(self.images)), np.random.default_rng(seed))

    # ------------------------------------------------------------------ images
    @property
    def n_images(self) -> int:
        return len(self.images)

    def _balanced(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n image indices, about two thirds positives (all positives first if there are few)."""
        pos = np.flatnonzero(self.positive)
        neg = np.flatnonzero(~self.positive)
        if n >= len(self.images):
            return self.all_idx.copy()
        n_neg = min(len(neg), n // 3)
        n_pos = min(len(pos), n - n_neg)
        n_neg = min(len(neg), n - n_pos)
        idx = np.concatenate([rng.choice(pos, n_pos, replace=False), rng.choice(neg, n_neg, replace=False)])
        return np.sort(idx)

    def sample_images(self, n: int) -> np.ndarray:
        """A random balanced mini-batch of train image indices (for stochastic gradient steps)."""
        return self._balanced(n, self.rng)

    # ------------------------------------------------------------------ budget
    @property
    def exhausted(self) -> bool:
        return self.budget > 0 and self.counter.cost >= self.budget

    def remaining(self) -> float:
        return math.inf if self.budget <= 0 else self.budget - self.counter.cost

    # ------------------------------------------------------------------ losses
    def _aggregate(self, pair_loss: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
        """(P, n) per-pair losses on images ``idx`` -> (P,) (see ``_image_weights``)."""
        return pair_loss @ self._image_weights(idx).to(pair_loss)

    def _pairs(self, P: int, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(idx)
        p_idx = torch.arange(P).repeat_interleave(n)
        i_idx = torch.arange(n).repeat(P)
        return p_idx, i_idx

    def _pair_targets(self, idx: np.ndarray, local: torch.Tensor) -> PairTargets:
        glob = idx[local.numpy()]
        return PairTargets([self.targets[i] for i in glob], [self.weights[i] for i in glob])

    def pair_losses(self, text: TextFeatures, idx: np.ndarray, grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-pair losses of P encoded prompts on images ``idx``: (P, n) loss and (P, n, 5) components.

        With ``grad`` the loss is back-propagated batch by batch into ``text.features`` (whose graph
        must then be completed by the caller), so activations of one batch are freed before the next.
        """
        P, n = len(text), len(idx)
        feats = (
            self.feats.select(idx.tolist()) if len(idx) != self.n_images or (idx != self.all_idx).any() else self.feats
        )
        p_idx, i_idx = self._pairs(P, idx)
        out_loss = torch.zeros(P * n)
        out_comp = torch.zeros(P * n, len(COMPONENTS))
        # per-prompt weights so that sum(weight * pair_loss) = sum over prompts of the aggregated loss
        w_img = self._image_weights(idx)
        for sl, out in self.backend.iter_ground_pairs(text, feats, p_idx, i_idx):
            loss, comps = set_loss(
                out.mask_logits,
                out.query_logits,
                out.presence_logits,
                out.semantic_logits,
                self._pair_targets(idx, i_idx[sl]),
                self.cfg,
            )
            if grad:
                (loss * w_img[i_idx[sl]].to(loss.device)).sum().backward()
            out_loss[sl] = loss.detach().float().cpu()
            out_comp[sl] = comps.float().cpu()
        self.counter.forward += P * n
        if grad:
            self.counter.backward += P * n
        return out_loss.view(P, n), out_comp.view(P, n, -1)

    def _image_weights(self, idx: np.ndarray) -> torch.Tensor:
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

    def loss_grad(self, embeds: torch.Tensor, mask: torch.Tensor, idx: np.ndarray | None = None) -> torch.Tensor:
        """Aggregated loss of P input-embedding prompts, back-propagated to ``embeds``.

        Args:
            embeds: (P, T, Dt) input embeddings incl. SOT/EOT, part of an autograd graph.
            mask: (P, T) True at SOT .. EOT.
            idx: train image indices (default all).

        Returns:
            (P,) detached losses; ``.grad`` of the leaves upstream of ``embeds`` is accumulated.
        """
        idx = self.all_idx if idx is None else np.asarray(idx)
        with torch.enable_grad():
            text = self.backend.encode_text(embeds=embeds, mask=mask)
            leaf = text.features.detach().requires_grad_(True)
            pair, _ = self.pair_losses(TextFeatures(leaf, text.mask), idx, grad=True)
            if leaf.grad is not None and text.features.requires_grad:
                text.features.backward(leaf.grad)
        return self._aggregate(pair, idx)

    @torch.no_grad()
    def losses(self, seqs: Sequence[Seq], idx: np.ndarray | None = None, key: str | None = None) -> np.ndarray:
        """Aggregated loss of discrete sequences on images ``idx`` (default all), plus
        ``length_penalty`` per token, memoized by ``key``."""
        idx = self.all_idx if idx is None else np.asarray(idx)
        key = key or ("full" if len(idx) == self.n_images else "idx:" + ",".join(map(str, idx.tolist())))
        seqs = [tuple(int(t) for t in s) for s in seqs]
        todo = list(dict.fromkeys(s for s in seqs if (s, key) not in self.memo))
        self.counter.memo_hits += len(seqs) - len(todo)
        if todo:
            text = self.backend.encode_text(self.backend.prompt_ids(todo))
            pair, _ = self.pair_losses(text, idx)
            agg = self._aggregate(pair, idx)
            for s, v in zip(todo, agg.tolist()):
                self.memo[(s, key)] = float(v) + self.cfg.length_penalty * len(s)
            self.counter.candidates += len(todo) if key == "full" else 0
        return np.array([self.memo[(s, key)] for s in seqs], dtype=np.float64)

    def score(self, seqs: Iterable[Sequence[int]], screen: bool = True) -> np.ndarray:
        """Full-train loss of each sequence; ``inf`` for those screened out (or empty).

        With ``screen``, sequences never scored before are first scored on the screening images;
        the best ``screen_keep`` fraction of them (at least one), and up to as many more that screen
        at least as well as the best sequence so far, are then scored on all train images. A sequence screened
        out once stays out (``inf``) unless scored with ``screen=False``. Updates ``best``.
        """
        seqs = [tuple(int(t) for t in s) for s in seqs]
        out = np.full(len(seqs), math.inf)
        valid = [s for s in dict.fromkeys(seqs) if len(s) > 0]
        if screen:
            new = [s for s in valid if (s, "full") not in self.memo and s not in self.rejected]
            self.counter.memo_hits += sum(1 for s in valid if (s, "full") not in self.memo and s in self.rejected)
            keep_n = math.ceil(self.screen_keep * len(new))
            if new and keep_n < len(new) and len(self.screen_idx) < self.n_images:
                sl = self.losses(new, self.screen_idx, key="screen")
                bar = self.losses([self.best], self.screen_idx, key="screen")[0] if self.best else -math.inf
                order = np.argsort(sl, kind="stable")
                # the best fraction, plus up to as many more that screen at least as well as the best so far
                survivors = {new[i] for i in order[:keep_n]} | {
                    new[i] for i in order[keep_n : 2 * keep_n] if sl[i] <= bar
                }
                self.rejected.update(s for s in new if s not in survivors)
            full = [s for s in valid if (s, "full") in self.memo or s not in self.rejected]
        else:
            full = valid
        if full:
            self.losses(full)
        for i, s in enumerate(seqs):
            v = self.memo.get((s, "full"))
            if v is not None:
                out[i] = v
                if v < self.best_loss or (v == self.best_loss and self.best is not None and len(s) < len(self.best)):
                    self.best, self.best_loss = s, v
        return out

    def ranked(self, n: int | None = None) -> list[tuple[Seq, float]]:
        """Fully scored sequences, best first (ties: shorter first)."""
        items = [(s, v) for (s, k), v in self.memo.items() if k == "full"]
        items.sort(key=lambda sv: (sv[1], len(sv[0])))
        return items[:n] if n else items

    # ------------------------------------------------------------------ history
    def record(self, phase: str, step: int, loss: float, **extra) -> Step:
        st = Step(
            phase=phase,
            step=step,
            loss=float(loss),
            best_loss=float(self.best_loss),
            best=list(self.best or ()),
            forward_passes=self.counter.forward,
            backward_passes=self.counter.backward,
            wall_time=round(time.perf_counter() - self.t0, 3),
            extra=extra,
        )
        self.history.append(st)
        if self.on_step is not None:
            self.on_step(st)
        return st


@dataclass
class SearchResult:
    """What a phase hands to the next one (and what strategies report).

    Attributes:
        phase: the phase name.
        token_ids: the best sequence this phase found (None if it found none).
        loss: its full-train loss (inf if none).
        candidates: the phase's best distinct sequences, best first (seeds for the next phase).
        forward_passes / backward_passes: pair passes this phase spent.
        wall_time: seconds.
        extra: phase-specific results (e.g. the final soft embeddings).
    """

    phase: str
    token_ids: Seq | None
    loss: float
    candidates: list[Seq]
    forward_passes: int
    backward_passes: int
    wall_time: float
    extra: dict = field(default_factory=dict)


class PhaseTimer:
    """Measures one phase's passes and wall time on an objective."""

    def __init__(self, obj: Objective, phase: str):
        self.obj, self.phase = obj, phase
        self.f0, self.b0, self.t0 = obj.counter.forward, obj.counter.backward, time.perf_counter()

    def result(self, scored: Iterable[Seq], n: int = 16, **extra) -> SearchResult:
        """A SearchResult of the best ``n`` fully scored sequences among ``scored``."""
        ranked = sorted(
            {s: self.obj.memo[(s, "full")] for s in scored if (s, "full") in self.obj.memo}.items(),
            key=lambda sv: (sv[1], len(sv[0])),
        )
        best = ranked[0] if ranked else (None, math.inf)
        return SearchResult(
            phase=self.phase,
            token_ids=best[0],
            loss=float(best[1]),
            candidates=[s for s, _ in ranked[:n]],
            forward_passes=self.obj.counter.forward - self.f0,
            backward_passes=self.obj.counter.backward - self.b0,
            wall_time=time.perf_counter() - self.t0,
            extra=extra,
        )
