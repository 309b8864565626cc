"""Concept embeddings and FAISS indexes over SAM 3's 49,408-token vocabulary.

* ``token_table``: a vector per vocabulary token, in a space where the model itself compares text
  with images, for the single-token prompt SOT + t + EOT; computed once per model and cached on disk.
    - ``scoring``: the text side of SAM 3's detection-scoring head (``Sam3DotProductScoring``:
      text_mlp -> norm -> mean pool -> text_proj). A query's score logit for prompt t is
      query_proj(q) . table[t] / sqrt(d).
    - ``key``: the cross-attention keys of the first DETR-encoder (image <- text fusion) layer at
      the token's position.
    - ``text``: the prompt features pooled over the prompt (same width as the FPN features).
    - ``embed``: the token-embedding table itself (the text encoder's input). It has no concept
      vector; its use is ``distinct``: tokens a model was trained on moved far from the bulk of
      rarely seen ones, so the most distinct rows are the model's known words.
* ``concept_vector``: what the target masks look like in that space, from SAM 3's own features:
    - ``scoring``: the mean query_proj of decoder queries whose masks match the targets minus that of
      the other queries (and of all queries on negative images), under one or more probe prompts;
    - ``key``: the mean cross-attention query of the fusion layer over target pixels minus that over
      the other pixels;
    - ``text``: FPN features pooled over each target mask, averaged over instances
      (``pooled_mask_features``), minus the pooled background.
  A token's inner product with the concept vector says how much more the model would respond to it
  on the targets than elsewhere: the ``VocabularyIndex`` shortlist is the top of that ranking.
* ``ProjectionIndex``: FAISS over the token-embedding table (the text encoder's input space) for
  projecting soft embeddings to their nearest allowed tokens, and for token neighbours.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import faiss
import numpy as np
import torch

from alias_opt.config import SPACES, TABLE_SPACES
from sam3 import ImageFeatures, Sam3Backend
from sam3.cache import default_cache_dir
from sam3.set_matching import hungarian, pairwise_costs

logger = logging.getLogger(__name__)

INDEX_VERSION = "1"


def default_index_dir() -> Path:
    """``$SAM3_ALIAS_INDEX_CACHE`` or the ``index`` folder beside the feature cache."""
    env = os.environ.get("SAM3_ALIAS_INDEX_CACHE")
    return Path(env) if env else default_cache_dir().parent / "index"


# ---------------------------------------------------------------------------------------- spaces
def _scoring_text(backend: Sam3Backend, feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The scoring head's text vector of prompt features (P, T, C) -> (P, C)."""
    head = backend.model.dot_product_scoring
    x = head.text_mlp_out_norm(head.text_mlp(feats) + feats)
    return head.text_proj(head._pool_text_features(x, mask))


def _fusion_layer(backend: Sam3Backend):
    return backend.model.detr_encoder.layers[0]


@torch.no_grad()
def prompt_vectors(backend: Sam3Backend, seqs: Sequence[Sequence[int]], space: str) -> torch.Tensor:
    """(P, C) vectors of prompts in ``space`` (see module doc)."""
    text = backend.encode_text(backend.prompt_ids(seqs))
    f, m = text.features, text.mask
    if space == "scoring":
        return _scoring_text(backend, f, m).float()
    if space == "text":
        w = m.to(f.dtype).unsqueeze(-1)
        return ((f * w).sum(1) / w.sum(1)).float()
    if space == "key":
        keys = _fusion_layer(backend).cross_attn.k_proj(f)  # (P, T, C)
        w = m.clone()
        w[:, 0] = False  # SOT is the same for every prompt
        lengths = m.sum(1)
        w[torch.arange(len(m)), lengths - 1] = False  # and so is EOT
        w = w.to(f.dtype).unsqueeze(-1)
        return ((keys * w).sum(1) / w.sum(1).clamp_min(1)).float()
    raise ValueError(f"unknown space {space!r}; choose from {', '.join(SPACES)}")


def _atomic_save(path: Path, writer) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        writer(str(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def token_table(backend: Sam3Backend, space: str, cache_dir: str | Path | None = None, batch: int = 4096) -> np.ndarray:
    """(V, C) float32 vector of every single-token prompt SOT + t + EOT in ``space``; cached on disk
    under ``cache_dir/<model fingerprint>/<space>.npy`` (written atomically). ``embed``: the
    token-embedding table (not cached: the model holds it)."""
    if space == "embed":
        return np.ascontiguousarray(backend.token_embeddings.detach().float().cpu().numpy(), dtype=np.float32)
    if space not in SPACES:
        raise ValueError(f"unknown space {space!r}; choose from {', '.join(TABLE_SPACES)}")
    root = Path(cache_dir) if cache_dir is not None else default_index_dir()
    path = root / backend.fingerprint / f"{space}-v{INDEX_VERSION}.npy"
    if path.is_file():
        try:
            table = np.load(path)
            if table.shape[0] == backend.vocab_size:
                return table
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable index cache %s: %s", path, exc)
    rows = []
    for start in range(0, backend.vocab_size, batch):
        ids = [[t] for t in range(start, min(start + batch, backend.vocab_size))]
        rows.append(prompt_vectors(backend, ids, space).cpu().numpy())
    table = np.ascontiguousarray(np.concatenate(rows), dtype=np.float32)

    def write(p: str) -> None:
        with open(p, "wb") as fh:
            np.save(fh, table)

    _atomic_save(path, write)
    return table


# ---------------------------------------------------------------------------------------- concept
@contextmanager
def _capture(module: torch.nn.Module, name: str, store: dict):
    """Record the keyword argument ``name`` of every call of ``module``."""

    def hook(mod, args, kwargs):
        store.setdefault(name, []).append(kwargs[name].detach())

    handle = module.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield store
    finally:
        handle.remove()


def _grid_targets(targets: Sequence[torch.Tensor], size: tuple[int, int], grid: tuple[int, int]) -> list[torch.Tensor]:
    """(K, h*w) targets on the mask grid -> (K, H'*W') on another grid (area average)."""
    out = []
    for t in targets:
        if t.shape[0] == 0:
            out.append(t.new_zeros(0, size[0] * size[1]))
            continue
        x = t.view(-1, 1, *grid)
        out.append(torch.nn.functional.adaptive_avg_pool2d(x, size).flatten(1))
    return out


@torch.no_grad()
def instance_mask_features(
    feats: ImageFeatures, targets: Sequence[torch.Tensor], grid: tuple[int, int], level: int = -1
) -> tuple[torch.Tensor, torch.Tensor]:
    """FPN features pooled over each target mask, and over each image's background.

    Args:
        feats: image features of N images; targets: per image (K, h*w) masks on the mask grid ``grid``.

    Returns:
        (sum K, C) one row per target, in image then target order; (N, C) pooled outside all targets.
    """
    fpn = feats.fpn[level].float()  # (N, C, H', W')
    size = tuple(fpn.shape[-2:])
    tg = _grid_targets(targets, size, grid)
    flat = fpn.flatten(2)  # (N, C, HW)
    inst, bg = [flat.new_zeros(0, flat.shape[1])], []
    for n, t in enumerate(tg):
        t = t.to(flat.device)
        if t.shape[0]:
            inst.append((t @ flat[n].T) / t.sum(1, keepdim=True).clamp_min(1e-6))  # (K, C)
        outside = 1 - (t.amax(0) if t.shape[0] else torch.zeros(flat.shape[-1], device=flat.device))
        bg.append((flat[n] @ outside) / outside.sum().clamp_min(1e-6))
    return torch.cat(inst), torch.stack(bg)


def pooled_mask_features(feats: ImageFeatures, targets: Sequence[torch.Tensor], grid: tuple[int, int], level: int = -1):
    """FPN features pooled over each target mask, averaged over instances; and over the background.

    Args:
        feats: image features; targets: per image (K, h*w) masks on the mask grid ``grid``.

    Returns:
        (C,) concept embedding, (C,) background embedding (pooled outside all targets, all images).
    """
    inst, bg = instance_mask_features(feats, targets, grid, level)
    if not len(inst):
        raise ValueError("no target masks to pool")
    return inst.mean(0), bg.mean(0)


@torch.no_grad()
def matched_queries(
    backend: Sam3Backend, feats: ImageFeatures, targets: Sequence[torch.Tensor], probe: Sequence[int] = ()
) -> tuple[torch.Tensor, torch.Tensor]:
    """The scoring head's query vectors (``query_proj`` of the last decoder layer) under the prompt
    ``probe``, split into the queries matched one-to-one to the targets (Hungarian on dice + 10 focal,
    as SAM 3's matcher) and all others (every query of a negative image).

    Args:
        feats: image features of N images; targets: per image (K, h*w) target masks on the mask grid.

    Returns:
        (sum K, C) the matched query of each target, in image then target order; (M, C) the others.
    """
    text = backend.encode_text(backend.prompt_ids([probe]))
    n = len(feats)
    p_idx, i_idx = torch.zeros(n, dtype=torch.long), torch.arange(n)
    store: dict = {}
    with _capture(backend.model.dot_product_scoring, "decoder_hidden_states", store):
        outs = [o for _, o in backend.iter_ground_pairs(text, feats, p_idx, i_idx)]
    hidden = torch.cat([h[-1] for h in store["decoder_hidden_states"]])  # (n, Q, C)
    q = backend.model.dot_product_scoring.query_proj(hidden).float()
    masks = torch.cat([o.mask_logits for o in outs]).float().flatten(2)  # (n, Q, hw)
    pos, neg = [q.new_zeros(0, q.shape[-1])], []
    for i, t in enumerate(targets):
        if t.shape[0] == 0:
            neg.append(q[i])
            continue
        dice, focal = pairwise_costs(masks[i], t.to(masks.device), 0.25, 2.0)
        rows, cols = hungarian(dice + 10 * focal)
        pos.append(q[i][rows[np.argsort(cols)]])  # target order
        sel = torch.ones(q.shape[1], dtype=torch.bool)
        sel[rows] = False
        neg.append(q[i][sel])
    return torch.cat(pos), torch.cat(neg)


@torch.no_grad()
def concept_vector(
    backend: Sam3Backend,
    feats: ImageFeatures,
    targets: Sequence[torch.Tensor],
    grid: tuple[int, int],
    space: str = "scoring",
    probes: Sequence[Sequence[int]] = ((),),
) -> torch.Tensor:
    """(C,) vector of the target set in ``space``; its inner product with ``token_table`` ranks tokens.

    Args:
        feats: features of the images; targets: per image (K, h*w) target masks on the mask grid
            (K = 0 on negative images); grid: (h, w).
        probes: prompts run through the decoder (``scoring``) or fusion layer (``key``) to read
            image-side vectors; their concept vectors are averaged.
    """
    if space == "text":
        concept, background = pooled_mask_features(feats, targets, grid)
        return concept - background
    pos_img = [i for i, t in enumerate(targets) if t.shape[0] > 0]
    if not pos_img:
        raise ValueError("no target masks")
    vecs = []
    for probe in probes:
        if space == "scoring":
            pos, neg = matched_queries(backend, feats, targets, probe)
            vecs.append(pos.mean(0) - neg.mean(0))
        elif space == "key":
            text = backend.encode_text(backend.prompt_ids([probe]))
            n = len(feats)
            p_idx, i_idx = torch.zeros(n, dtype=torch.long), torch.arange(n)
            store: dict = {}
            layer = _fusion_layer(backend)
            with _capture(layer.cross_attn, "query", store):
                for _ in backend.iter_ground_pairs(text, feats, p_idx, i_idx):
                    pass
            hq = torch.cat(store["query"])  # (n, HW, C): normed image tokens entering text cross-attention
            qv = layer.cross_attn.q_proj(hq).float()
            size = tuple(feats.fpn[-1].shape[-2:])
            tg = _grid_targets(targets, size, grid)
            pos_w = torch.stack([t.amax(0) if t.shape[0] else torch.zeros(qv.shape[1]) for t in tg]).to(qv)
            neg_w = 1 - pos_w
            vp = (pos_w[..., None] * qv).sum((0, 1)) / pos_w.sum().clamp_min(1e-6)
            vn = (neg_w[..., None] * qv).sum((0, 1)) / neg_w.sum().clamp_min(1e-6)
            vecs.append(vp - vn)
        else:
            raise ValueError(f"unknown space {space!r}; choose from {', '.join(SPACES)}")
    return torch.stack(vecs).mean(0)


# ---------------------------------------------------------------------------------------- indexes
def _selector(allowed: torch.Tensor | np.ndarray | None):
    if allowed is None:
        return None
    ids = np.flatnonzero(np.asarray(allowed)).astype(np.int64)
    return faiss.SearchParameters(sel=faiss.IDSelectorBatch(ids))


class VocabularyIndex:
    """FAISS inner-product index over ``token_table`` rows: concept vector -> token shortlist."""

    def __init__(self, table: np.ndarray, space: str):
        self.space = space
        self.table = np.ascontiguousarray(table, dtype=np.float32)
        self.index = faiss.IndexFlatIP(self.table.shape[1])
        self.index.add(self.table)

    @classmethod
    def build(
        cls, backend: Sam3Backend, space: str = "scoring", cache_dir: str | Path | None = None
    ) -> VocabularyIndex:
        return cls(token_table(backend, space, cache_dir), space)

    def distinct(self, k: int = 64, allowed=None) -> np.ndarray:
        """The k allowed tokens whose single-token prompts lie farthest from the mean prompt vector:
        the words the model treats most distinctly (concept-free; in a model trained on a small
        vocabulary, its trained words)."""
        if not hasattr(self, "_distinct"):
            centred = self.table - self.table.mean(0, keepdims=True)
            self._distinct = np.argsort(-np.linalg.norm(centred, axis=1), kind="stable")
        order = self._distinct
        if allowed is not None:
            order = order[np.asarray(allowed)[order]]
        return order[:k]

    def search(self, concept: torch.Tensor | np.ndarray, k: int = 64, allowed=None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k allowed tokens by inner product with ``concept``: (ids, scores), best first."""
        q = np.asarray(torch.as_tensor(concept).detach().float().cpu(), dtype=np.float32).reshape(1, -1)
        D, I = self.index.search(q, k, params=_selector(allowed))
        keep = I[0] >= 0
        return I[0][keep], D[0][keep]


class ProjectionIndex:
    """FAISS over the token-embedding table: nearest allowed tokens of soft embeddings."""

    def __init__(self, embeddings: torch.Tensor, allowed: torch.Tensor | None = None, metric: str = "l2"):
        table = embeddings.detach().float().cpu().numpy()
        self.metric = metric
        if metric == "cosine":
            table = table / np.linalg.norm(table, axis=1, keepdims=True).clip(1e-8)
            self.index = faiss.IndexFlatIP(table.shape[1])
        elif metric == "l2":
            self.index = faiss.IndexFlatL2(table.shape[1])
        else:
            raise ValueError(f"unknown metric {metric!r}; use l2 or cosine")
        self.index.add(np.ascontiguousarray(table, dtype=np.float32))
        self.allowed = None if allowed is None else torch.as_tensor(allowed).bool().cpu()
        self._params = _selector(self.allowed)

    def _query(self, x: torch.Tensor | np.ndarray) -> np.ndarray:
        q = np.asarray(torch.as_tensor(x).detach().float().cpu(), dtype=np.float32).reshape(-1, self.index.d)
        if self.metric == "cosine":
            q = q / np.linalg.norm(q, axis=1, keepdims=True).clip(1e-8)
        return np.ascontiguousarray(q)

    def project(self, x: torch.Tensor | np.ndarray) -> np.ndarray:
        """(..., D) embeddings -> (...) ids of the nearest allowed tokens."""
        shape = tuple(x.shape[:-1])
        _, I = self.index.search(self._query(x), 1, params=self._params)
        return I[:, 0].reshape(shape)

    def neighbours(self, ids: Sequence[int] | np.ndarray, k: int) -> np.ndarray:
        """(N, k) nearest allowed tokens of each token (itself excluded)."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        vecs = self.index.reconstruct_batch(ids)
        _, I = self.index.search(np.ascontiguousarray(vecs), k + 1, params=self._params)
        out = np.empty((len(ids), k), dtype=np.int64)
        for r, (tok, row) in enumerate(zip(ids, I)):
            row = [t for t in row if t != tok and t >= 0][:k]
            out[r] = row + [row[-1] if row else tok] * (k - len(row))
        return out
