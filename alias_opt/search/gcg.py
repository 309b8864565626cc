"""Gradient-guided token swaps (GCG, Zou et al. 2023) on SAM 3's mask loss.

The loss gradient with respect to one-hot token choices (L, V) ranks, per position, the tokens whose
swap-in would lower the loss most to first order. A batch of single swaps drawn from the top-k of
each position (plus deletions, so aliases can get shorter) is scored together with the objective's
batched, screened, memoized fitness; the best replaces the current sequence if it is better.
The same first-order estimate at a new slot (``insertion_gradients``) proposes a sequence's insertions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from alias_opt.config import GcgConfig
from alias_opt.search.objective import Objective, Seq
from alias_opt.search.phase_result import PhaseResult, PhaseTimer, until_spent
from alias_opt.search.projection import CandidateFilter, embed_prompts


def token_gradients(obj: Objective, seqs: Sequence[Seq], idx: np.ndarray | None = None) -> list[torch.Tensor]:
    """Per sequence the (L, V) gradient of its loss w.r.t. one-hot token choices (one batched backward)."""
    backend = obj.backend
    table = backend.token_embeddings.detach().float()
    tok = backend.tokenizer
    onehots = []
    for s in seqs:
        oh = torch.zeros(len(s), table.shape[0], device=table.device)
        oh[torch.arange(len(s)), torch.as_tensor(s, device=table.device)] = 1.0
        onehots.append(oh.requires_grad_(True))
    with torch.enable_grad():
        embeds, mask = embed_prompts(table, tok.sot_id, tok.eot_id, [oh @ table for oh in onehots])
        obj.loss_grad(embeds, mask, idx)
    return [oh.grad.detach() if oh.grad is not None else torch.zeros_like(oh) for oh in onehots]


def insertion_gradients(obj: Objective, seq: Seq, allowed: torch.Tensor, idx: np.ndarray | None = None) -> torch.Tensor:
    """First-order loss change of inserting each token into each gap of ``seq`` (AutoPrompt/HotFlip at a new slot).

    Each of the L + 1 gaps gets a slot holding the allowed rows' mean embedding; one batched backward gives
    the loss gradient g_i at each slot, and token t's change at gap i is (E_t - slot) . g_i: ranking by E_t . g_i.
    A size word that narrows a shape alone badly ("small" 109th of the pool's tokens for "crosses") ranks 3rd to
    9th of the 49,406 allowed tokens in front of "crosses green" on the pair's hard images.

    Args:
        obj: the objective (its backend's token-embedding table (V, D)).
        seq: (L,) token ids.
        allowed: (V,) bool mask of usable tokens (the slot is their mean row).
        idx: train image indices (default all).
    Returns:
        (L + 1, V) one-hot-gradient-like scores, lower is better, rows in gap order (gap i: before seq[i]).
    """
    table = obj.backend.token_embeddings.detach().float()  # (V, D)
    tok = obj.backend.tokenizer
    slot = table[allowed.to(table.device)].mean(0)  # (D,)
    slots = slot.expand(len(seq) + 1, -1).clone().requires_grad_(True)  # (L + 1, D)
    ids = torch.as_tensor(seq, dtype=torch.long, device=table.device)
    rows = [torch.cat([table[ids[:i]], slots[i : i + 1], table[ids[i:]]]) for i in range(len(seq) + 1)]
    with torch.enable_grad():
        embeds, mask = embed_prompts(table, tok.sot_id, tok.eot_id, rows)  # (L + 1, L + 3, D)
        obj.loss_grad(embeds, mask, idx)
    grad = slots.grad if slots.grad is not None else torch.zeros_like(slots)
    return grad @ table.T  # (L + 1, V)


def slot_insertions(seq: Seq, top: torch.Tensor) -> list[Seq]:
    """``seq`` with each of ``top``'s tokens inserted at its row's gap, gap by gap, no repeats.

    Args:
        seq: (L,) token ids.
        top: (L + 1, k) token ids per gap (``top_tokens`` of ``insertion_gradients``); row i: before seq[i].
    Returns:
        up to (L + 1) * k sequences of length L + 1.
    """
    out = ((*seq[:i], int(t), *seq[i:]) for i in range(min(top.shape[0], len(seq) + 1)) for t in top[i].tolist())
    return list(dict.fromkeys(out))


def top_tokens(grad: torch.Tensor, allowed: torch.Tensor, k: int) -> torch.Tensor:
    """(L, V) gradient -> (L, k) allowed tokens with the most negative gradient per position."""
    g = grad.clone().float()
    g[:, ~allowed.to(g.device)] = float("inf")
    return (-g).topk(min(k, int(allowed.sum())), dim=1).indices.cpu()


def sample_swaps(seq: Seq, top: torch.Tensor, n: int, rng: np.random.Generator, deletions: bool = True) -> list[Seq]:
    """``n`` distinct single-token swaps of ``seq`` drawn from ``top`` (L, k) (plus all deletions)."""
    out: dict[Seq, None] = {}
    L, k = top.shape
    tries = 0
    while len(out) < n and tries < 4 * n:
        tries += 1
        pos = int(rng.integers(L))
        tok = int(top[pos, int(rng.integers(k))])
        if tok == seq[pos]:
            continue
        out[seq[:pos] + (tok,) + seq[pos + 1 :]] = None
    if deletions and len(seq) > 1:
        for pos in range(len(seq)):
            out[seq[:pos] + seq[pos + 1 :]] = None
    return list(out)


def gcg(
    obj: Objective,
    start: Seq,
    cfg: GcgConfig,
    filt: CandidateFilter,
    rng: np.random.Generator,
    grad_images: int = 8,
) -> PhaseResult:
    """Greedy coordinate descent from ``start`` with gradient-proposed single swaps."""
    timer = PhaseTimer(obj, "gcg")
    cur = filt(start) or start
    seen: list[Seq] = [cur]
    with until_spent():
        cur_loss = float(obj.score([cur], screen=False)[0])
        stale = 0
        for step in range(cfg.steps):
            if obj.exhausted or stale >= cfg.patience:
                break
            grad = token_gradients(obj, [cur], obj.sample_images(grad_images))[0]
            cands = filt.accept(sample_swaps(cur, top_tokens(grad, filt.allowed, cfg.topk), cfg.candidates, rng))
            if not cands:
                break
            seen += cands
            losses = obj.score(cands)
            j = int(np.argmin(losses))
            if losses[j] < cur_loss:
                cur, cur_loss, stale = cands[j], float(losses[j]), 0
            else:
                stale += 1
            obj.record("gcg", step, cur_loss, current=list(cur), scored=len(cands))
    return timer.result(seen)
