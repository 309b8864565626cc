"""Soft prompts: continuous token embeddings injected at the text encoder's input, optimised by Adam
on the set-level mask loss (``alias_opt.search.objective``).

Several restarts run together as one batch of prompts, each with its own length, initialised from
the concept's shortlist, the natural name, or random allowed tokens. In PEZ mode (Wen et al. 2023,
"Hard prompts made easy") the forward pass uses the *projected* tokens (nearest allowed token of
each soft embedding) while the update is applied to the continuous embeddings (straight-through);
the projected sequences are scored as discrete candidates along the way and the best one seen is
kept. Without PEZ the soft prompt itself is optimised and projected once at the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from alias_opt.config import SoftConfig
from alias_opt.eval.metrics import DEFAULT_THRESHOLDS, PromptMetrics, Thresholds, score_predictions
from alias_opt.eval.predict import predict_text
from alias_opt.search.embeddings import ProjectionIndex
from alias_opt.search.objective import Objective, Seq
from alias_opt.search.phase_result import PhaseResult, PhaseTimer, until_spent
from alias_opt.search.projection import CandidateFilter, embed_prompts, project_sequences
from sam3 import ImageFeatures, Sam3Backend


@dataclass
class SoftResult(PhaseResult):
    """A soft-prompt phase's result: the best projected sequences and the soft prompts themselves.

    Attributes:
        soft: (R, L, Dt) final continuous embeddings of the R restarts (rows padded to the longest).
        lengths: tokens per restart.
        soft_losses: the last mini-batch loss of each restart.
    """

    soft: torch.Tensor | None = None
    lengths: list[int] = field(default_factory=list)
    soft_losses: list[float] = field(default_factory=list)


def initial_sequences(
    sources: Sequence[str],
    restarts: int,
    lengths: Sequence[int],
    shortlist: Sequence[int],
    name: Seq | None,
    filt: CandidateFilter,
    rng: np.random.Generator,
) -> list[Seq]:
    """Initial token sequences of the restarts (sources and lengths are cycled over restarts).

    ``shortlist``: restart j starts from shortlist token j (in order) followed by random shortlist
    tokens; ``name``: the natural name's tokens (cut or padded with shortlist tokens to the
    restart's length; skipped if there is no name); ``random``: random allowed tokens.
    """
    shortlist = [int(t) for t in shortlist] or filt.allowed_ids[:1].tolist()
    sources = [s for s in sources if s != "name" or name] or ["shortlist"]
    out: list[Seq] = []
    k_short = 0
    for r in range(restarts):
        src, n = sources[r % len(sources)], int(lengths[r % len(lengths)])
        if src == "shortlist":
            head = shortlist[k_short % len(shortlist)]
            k_short += 1
            seq = [head, *rng.choice(shortlist, size=n - 1)]
        elif src == "name":
            assert name is not None
            seq = list(name[:n]) + list(rng.choice(shortlist, size=max(0, n - len(name))))
        elif src == "random":
            seq = list(rng.choice(filt.allowed_ids, size=n))
        else:
            raise ValueError(f"unknown soft-prompt init {src!r}; use shortlist, name or random")
        out.append(tuple(int(t) for t in seq))
    return out


def optimize_soft(
    obj: Objective,
    inits: Sequence[Seq],
    cfg: SoftConfig,
    proj: ProjectionIndex,
    filt: CandidateFilter,
    pez: bool | None = None,
) -> SoftResult:
    """Optimise one soft prompt per initial sequence; returns the best projected sequences and the
    soft prompts. Stops early, with what it has, when the budget runs out."""
    pez = cfg.pez if pez is None else pez
    timer = PhaseTimer(obj, "pez" if pez else "soft")
    backend = obj.backend
    table = backend.token_embeddings.detach()
    tok = backend.tokenizer
    lengths = [len(s) for s in inits]
    L = max(lengths)
    init = torch.stack([torch.cat([table[list(s)], table[[tok.eot_id] * (L - len(s))]]) for s in inits]).float()
    scale = float(table[torch.as_tensor(filt.allowed_ids[:: max(1, len(filt.allowed_ids) // 4096)])].float().std())
    soft = torch.nn.Parameter(init.clone())
    opt = torch.optim.Adam([soft], lr=cfg.lr * scale)
    seen: list[Seq] = []
    losses = torch.full((len(inits),), float("nan"))
    with until_spent():
        for step in range(cfg.steps):
            if obj.exhausted:
                break
            idx = obj.sample_images(cfg.batch_images)
            if pez:
                ids = torch.as_tensor(proj.project(soft.detach()), dtype=torch.long)
                fwd = soft + (table[ids].float() - soft).detach()  # straight-through
            else:
                fwd = soft
            rows = [fwd[r, :n] for r, n in enumerate(lengths)]
            embeds, mask = embed_prompts(table.float(), tok.sot_id, tok.eot_id, rows)
            opt.zero_grad(set_to_none=True)
            losses = obj.loss_grad(embeds, mask, idx)
            opt.step()
            last = step == cfg.steps - 1
            if pez and (step % cfg.eval_every == 0 or last):
                cands = filt.accept(project_sequences(proj, soft.detach(), lengths))
                seen += cands
                obj.score(cands)
            obj.record(timer.phase, step, float(losses.mean()), batch_losses=[round(float(v), 4) for v in losses])
    cands = filt.accept(project_sequences(proj, soft.detach(), lengths))
    seen += cands
    with until_spent():
        obj.score(cands, screen=False)
    return SoftResult(
        **vars(timer.result(seen)), soft=soft.detach().clone(), lengths=lengths, soft_losses=losses.tolist()
    )


@torch.no_grad()
def soft_metrics(
    backend: Sam3Backend,
    images: Sequence,
    embeds: torch.Tensor,
    mask: torch.Tensor,
    feats: ImageFeatures,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> list[PromptMetrics]:
    """Metrics of P soft prompts through ``encode_text(embeds=...)``: the same predictions and scoring as
    ``evaluate_prompts``.

    Args:
        embeds: (P, T, Dt) input embeddings incl. SOT/EOT; mask: (P, T).
        images: TargetImages; feats: their features.

    Returns:
        P PromptMetrics.
    """
    per = predict_text(backend, feats, images, backend.encode_text(embeds=embeds, mask=mask), thresholds)
    return [score_predictions(p, images, thresholds) for p in per]
