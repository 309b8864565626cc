"""Which token sequences an alias may be, and how continuous embeddings become such sequences.

``CandidateFilter`` is the single gate every search phase sends its candidates through: no special
tokens (never), only allowed tokens (ASCII-only and blocklists are options of the allowed mask),
length 1..max_len, and by default only sequences whose decoded text round-trips through the
tokenizer, so that the exported text works as a plain prompt in any SAM 3 front end. A sequence that
does not round-trip is replaced by its canonical form ``encode(decode(seq))`` when that passes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

from alias_opt.search.embeddings import ProjectionIndex
from sam3 import Sam3Tokenizer

Seq = tuple[int, ...]


class CandidateFilter:
    """Validates and canonicalizes candidate sequences (memoized).

    Args:
        tokenizer: the model's tokenizer.
        allowed: (V,) bool mask of usable tokens (special tokens are removed here regardless).
        max_len: longest alias.
        roundtrip: accept only sequences whose text round-trips.
    """

    def __init__(self, tokenizer: Sam3Tokenizer, allowed: torch.Tensor, max_len: int, roundtrip: bool = True):
        self.tokenizer = tokenizer
        allowed = torch.as_tensor(allowed).bool().clone().cpu()
        allowed[sorted(tokenizer.special_ids)] = False
        self.allowed = allowed
        self._allowed_np = allowed.numpy()
        self.allowed_ids = np.flatnonzero(self._allowed_np)
        self.max_len = max_len
        self.roundtrip = roundtrip
        self._memo: dict[Seq, Seq | None] = {}

    def _ok(self, seq: Seq) -> bool:
        return 1 <= len(seq) <= self.max_len and bool(self._allowed_np[list(seq)].all())

    def __call__(self, seq: Iterable[int]) -> Seq | None:
        """The accepted form of ``seq`` (itself or its canonical re-encoding), or None."""
        seq = tuple(int(t) for t in seq)
        if seq in self._memo:
            return self._memo[seq]
        out: Seq | None = None
        if all(0 <= t < len(self._allowed_np) for t in seq) and self._ok(seq):
            if not self.roundtrip or self.tokenizer.roundtrips(seq):
                out = seq
            else:
                canon = tuple(self.tokenizer.encode(self.tokenizer.decode(seq), special=False))
                if self._ok(canon) and self.tokenizer.roundtrips(canon):
                    out = canon
        self._memo[seq] = out
        return out

    def with_max_len(self, max_len: int) -> CandidateFilter:
        """This filter (itself where ``max_len`` is its own) with another longest alias."""
        if max_len == self.max_len:
            return self
        return CandidateFilter(self.tokenizer, self.allowed, max_len, self.roundtrip)

    def accept(self, seqs: Iterable[Iterable[int]]) -> list[Seq]:
        """Accepted forms of ``seqs``, deduplicated, in order."""
        out = (self(s) for s in seqs)
        return list(dict.fromkeys(s for s in out if s is not None))


def project_sequences(index: ProjectionIndex, soft: torch.Tensor, lengths: Sequence[int]) -> list[Seq]:
    """Nearest allowed token per soft embedding: (R, L, D) with per-row lengths -> R sequences."""
    ids = index.project(soft)
    return [tuple(int(t) for t in ids[r, :n]) for r, n in enumerate(lengths)]


def embed_prompts(
    table: torch.Tensor, sot: int, eot: int, rows: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Wrap per-prompt (L_r, D) embeddings in SOT/EOT embeddings and pad with EOT.

    Returns:
        embeds (P, T, D) (differentiable w.r.t. ``rows``) and mask (P, T), T = 2 + max L_r.
    """
    width = 2 + max(r.shape[0] for r in rows)
    e_sot, e_eot = table[sot], table[eot]
    out, mask = [], torch.zeros(len(rows), width, dtype=torch.bool, device=table.device)
    for p, r in enumerate(rows):
        pad = width - 2 - r.shape[0]
        out.append(torch.cat([e_sot[None], r.to(table.dtype), e_eot[None].expand(1 + pad, -1)]))
        mask[p, : r.shape[0] + 2] = True
    return torch.stack(out), mask


def random_sequences(rng: np.random.Generator, pool: np.ndarray, n: int, lengths: Sequence[int]) -> list[Seq]:
    """n sequences of tokens drawn from ``pool``, lengths drawn from ``lengths``."""
    return [tuple(int(t) for t in rng.choice(pool, size=int(rng.choice(lengths)))) for _ in range(n)]
