"""Split a category's target instances into visual clusters: the members of a union.

A too-broad name that is the union of two concepts ("circle" where only the red and the purple circles
count) is answered by two narrowed aliases. Their words come from image evidence of each member alone:
pooled over all targets the concept vector averages the members away. Here each target instance gets a
descriptor (``instance_descriptors``), the descriptors are split in two (``two_means``) and each cluster
becomes a target set of its own (``cluster_images``: the other cluster's targets are ignored), which
the alias-set builder searches like a residual.

    desc = instance_descriptors(backend, images, feats, "query", name_ids)   # (N, C)
    labels = two_means(desc, seed)                                          # (N,) 0 / 1
    for sub, idx in cluster_images(images, labels): ...
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from scipy.cluster.vq import kmeans2

from alias_opt.config import SearchConfig
from alias_opt.data.targets import TargetImage
from alias_opt.search.context import make_context
from alias_opt.search.discrete import extensions
from alias_opt.search.embeddings import instance_mask_features, matched_queries
from alias_opt.search.meter import Usage
from alias_opt.search.objective import Seq, Step, tagged
from alias_opt.search.pipeline import SearchOutcome, search
from alias_opt.search.scorer import resize_masks
from sam3 import ImageFeatures, Sam3Backend

KINDS = ("query", "fpn")


@torch.no_grad()
def instance_descriptors(
    backend: Sam3Backend, images: Sequence[TargetImage], feats: ImageFeatures, kind: str, probe: Sequence[int] = ()
) -> np.ndarray:
    """(N, C) one descriptor per target instance of ``images`` (image then target order).

    Args:
        images: the train images, feats: their features.
        kind: ``query``: the scoring head's vector of the decoder query matched to the instance under
            the prompt ``probe`` (the model's detection space); ``fpn``: the image features pooled over
            the instance's mask, at the finest level (on world v2 the coarser levels and the query
            vectors split far fewer unions into their members: ``bench/union_clusters.py``).
        probe: token ids of the prompt the ``query`` descriptors are read under (e.g. the name).
    """
    grid = tuple(int(g) for g in feats.fpn[0].shape[-2:])
    targets = [resize_masks(np.asarray(im.masks, dtype=bool), grid) for im in images]
    if kind == "query":
        desc, _ = matched_queries(backend, feats, targets, probe)
    elif kind == "fpn":
        desc, _ = instance_mask_features(feats, targets, grid, level=0)
    else:
        raise ValueError(f"unknown descriptor {kind!r}; choose from {', '.join(KINDS)}")
    return desc.cpu().numpy()


def two_means(desc: np.ndarray, seed: int = 0, restarts: int = 10) -> np.ndarray:
    """(N,) labels 0 / 1 of the N descriptors ((N, C)) split by k-means on unit vectors around their
    mean (direction, not scale, says which concept an instance is), the best of ``restarts`` k-means++
    starts by within-cluster sum of squares; cluster 0 is the larger one. Fewer than two distinct
    descriptors: all 0."""
    x = np.asarray(desc, dtype=np.float64)
    x = x - x.mean(0, keepdims=True)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if len(x) < 2 or float(norms.max(initial=0.0)) < 1e-9:
        return np.zeros(len(x), dtype=np.int64)
    x = x / np.maximum(norms, 1e-9)
    best, labels = np.inf, np.zeros(len(x), dtype=np.int64)
    for r in range(restarts):
        centres, lab = kmeans2(x, 2, minit="++", seed=np.random.default_rng([seed, r]), iter=50)
        sse = float(((x - centres[lab]) ** 2).sum())
        if sse < best:
            best, labels = sse, lab
    if (labels == 1).sum() > (labels == 0).sum():
        labels = 1 - labels
    return labels.astype(np.int64)


def cluster_images(images: Sequence[TargetImage], labels: np.ndarray) -> list[tuple[list[TargetImage], list[int]]]:
    """Per cluster, the images a search of that cluster alone runs on, and their positions in ``images``.

    Args:
        images: I train images with N targets in all; labels: (N,) cluster of each target (image then
            target order, as ``instance_descriptors``).

    Returns:
        one (images, indices) per cluster 0, 1, ...: each positive image with the cluster's targets as
        targets and the others ignored (``TargetImage.only``), images holding none of the cluster's
        targets left out, every negative kept.
    """
    labels = np.asarray(labels)
    total = sum(im.n_targets for im in images)
    if len(labels) != total:
        raise ValueError(f"{len(labels)} labels for {total} targets")
    starts = np.cumsum([0] + [im.n_targets for im in images])
    out = []
    for c in range(int(labels.max(initial=-1)) + 1):
        sub, idx = [], []
        for i, im in enumerate(images):
            mine = labels[starts[i] : starts[i + 1]] == c
            if im.is_positive and not mine.any():
                continue
            sub.append(im.only(mine))
            idx.append(i)
        out.append((sub, idx))
    return out


def cluster_seed(seed: int, c: int) -> int:
    """The search seed of cluster ``c`` (0, 1) of a category searched with ``seed``."""
    return (int(seed) + 104729 * (c + 1)) % (1 << 32)


@dataclass
class ClusterSearch:
    """The searches of a category's target clusters.

    Attributes:
        sizes: train targets per cluster (larger first).
        outcomes: each cluster's search (none when ``skipped``).
        skipped: why no cluster was searched ("" when they were).
    """

    sizes: list[int]
    outcomes: list[SearchOutcome] = field(default_factory=list)
    skipped: str = ""

    def candidates(self, rerank: int) -> list[Seq]:
        """Each search's re-ranked candidates and its ``rerank`` best by loss, in cluster order."""
        out = []
        for o in self.outcomes:
            out += [tuple(r.token_ids) for r in o.reranked] + [tuple(s) for s in o.candidates[:rerank]]
        return list(dict.fromkeys(out))

    def usage(self) -> Usage:
        """The searches' work together."""
        return sum((o.usage for o in self.outcomes), Usage())

    def to_dict(self, decode: Callable[[Seq], str]) -> dict:
        """The record's ``extra["alias_set_search"]["clusters"]``: sizes, why skipped, each cluster's alias."""
        return {
            "sizes": self.sizes,
            "skipped": self.skipped,
            "aliases": [None if o.token_ids is None else decode(o.token_ids) for o in self.outcomes],
        }


def split_targets(
    backend: Sam3Backend, images: Sequence[TargetImage], feats: ImageFeatures, cfg: SearchConfig, seed: int
) -> tuple[np.ndarray, list[int], str]:
    """The train targets split in two (``fpn`` descriptors, ``two_means``): (N,) labels, the two
    clusters' sizes (larger first) and why not to use the split ("" to use it: the smaller cluster must
    hold at least 2 and ``cfg.set_min_uncovered`` of the targets)."""
    labels = two_means(instance_descriptors(backend, images, feats, "fpn"), seed=seed)
    sizes = [int((labels == c).sum()) for c in (0, 1)]
    skipped = ""
    if sizes[1] < max(2, cfg.set_min_uncovered * len(labels)):
        skipped = f"the smaller cluster holds {sizes[1]} of {len(labels)} train targets"
    return labels, sizes, skipped


def search_clusters(
    backend: Sam3Backend,
    images: Sequence[TargetImage],
    feats: ImageFeatures,
    name: str | None,
    cfg: SearchConfig,
    seed: int,
    indexes: Mapping | None = None,
    on_step: Callable[[Step], None] | None = None,
) -> ClusterSearch:
    """Split the train targets in two (``fpn`` descriptors, ``two_means``) and search each cluster alone
    (``cluster_images``) with ``cfg`` and ``cluster_seed``; skipped where the smaller cluster holds fewer
    than ``cfg.set_min_uncovered`` of the targets (or fewer than 2).

    Args:
        backend: the frozen SAM 3; images, feats: the train images and their features.
        name: the category's name (each search re-ranks it, as the first does).
        seed: the category's search seed; indexes, on_step: passed to each search (phases ``cluster<c>:``).
    """
    labels, sizes, skipped = split_targets(backend, images, feats, cfg, seed)
    result = ClusterSearch(sizes, skipped=skipped)
    if skipped:
        return result
    for c, (sub, idx) in enumerate(cluster_images(images, labels)):
        out = search(
            backend,
            sub,
            feats.select(idx),
            name,
            cfg,
            cluster_seed(seed, c),
            indexes=indexes,
            on_step=tagged(on_step, f"cluster{c}:"),
        )
        result.outcomes.append(out)
    return result


CLUSTER_POOL = 128  # pooled shortlist a cluster's insertions are drawn from (the whole set's search has its own)
CLUSTER_TOKENS = 16  # the pool tokens that best narrow the name on a cluster, whose insertions are screened


@dataclass
class ClusterSplit:
    """The name's one-token insertions that best fit each visual cluster of the targets alone.

    Attributes:
        sizes: train targets per cluster (larger first).
        insertions: per cluster, its best insertions by the cluster's screening loss (best first).
        skipped: why none were sought ("" when they were).
        forwards: pair forwards spent (screening on the clusters' images).
    """

    sizes: list[int]
    insertions: list[list[Seq]] = field(default_factory=list)
    skipped: str = ""
    forwards: int = 0

    def candidates(self) -> list[Seq]:
        """The clusters' insertions interleaved (each cluster's best first), no repeats."""
        out = [s for rank in zip(*self.insertions) for s in rank] if self.insertions else []
        out += [s for ins in self.insertions for s in ins]  # the longer list's tail
        return list(dict.fromkeys(out))

    def to_dict(self, decode: Callable[[Seq], str]) -> dict:
        """The record's ``extra["alias_set_search"]["cluster_split"]``."""
        return {
            "sizes": self.sizes,
            "skipped": self.skipped,
            "insertions": [[decode(s) for s in ins] for ins in self.insertions],
            "forward_passes": self.forwards,
        }


def cluster_insertions(
    backend: Sam3Backend,
    images: Sequence[TargetImage],
    feats: ImageFeatures,
    name: str | None,
    cfg: SearchConfig,
    seed: int,
    n: int,
    indexes: Mapping | None = None,
) -> ClusterSplit:
    """Split the train targets in two (as ``search_clusters``) and, per cluster, screen the name's
    one-token insertions against that cluster's targets alone (the other's ignored): the pool tokens
    of the cluster's own concept (``CLUSTER_POOL``) that best narrow the name on it
    (``SearchContext.narrowing``), each inserted everywhere (``extensions``); its ``n`` best by
    screening loss. A fraction of a cluster search's cost: no soft prompt, no evolution.

    Args:
        images, feats: the train images and their features; name: the category's name (nothing is
            sought without one the filter accepts).
        cfg: the search settings (its index views; the pool capped at ``CLUSTER_POOL``).
        seed: the category's search seed (each cluster's context is seeded with ``cluster_seed``).
        n: insertions kept per cluster.
    """
    labels, sizes, skipped = split_targets(backend, images, feats, cfg, seed)
    result = ClusterSplit(sizes, skipped=skipped)
    if skipped:
        return result
    ccfg = replace(cfg, index=replace(cfg.index, pool=min(cfg.index.pool, CLUSTER_POOL)))
    for c, (sub, idx) in enumerate(cluster_images(images, labels)):
        ctx = make_context(backend, sub, feats.select(idx), name, ccfg, cluster_seed(seed, c), indexes=indexes)
        if ctx.name_seq is None:
            result.skipped = "no name the filter accepts"
            result.insertions = []
            return result
        tokens = ctx.narrowing(ctx.name_seq, CLUSTER_TOKENS)
        cands = [s for s in ctx.filt.accept(extensions([ctx.name_seq], tokens)) if s != ctx.name_seq]
        losses = ctx.obj.screen_losses(cands) if cands else np.zeros(0)
        result.insertions.append([cands[i] for i in np.argsort(losses, kind="stable")[:n]])
        result.forwards += ctx.obj.usage().forward
    return result
