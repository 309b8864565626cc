"""What every comparison strategy works with: its settings, its context and the shared helpers.

* ``StrategyConfig``: the discovery phases' settings (``SearchConfig``) plus the comparison's knobs,
  read from one JSON file (``load_strategy_config``);
* ``Context``: one (target set, seed)'s capped objective, candidate filter, vocabulary index and
  lazily built projection index (``make_context``);
* ``shortlist``: the concept's vocabulary shortlist, its probe forwards charged to the budget;
* ``soft_metrics``: held-out metrics of soft prompts (input embeddings) through the backend.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from alias_opt.budget import BudgetedObjective, BudgetExhausted, count_pairs
from alias_opt.config import SearchConfig, load_config, read_config_json
from alias_opt.embeddings import ProjectionIndex, VocabularyIndex
from alias_opt.metrics import DEFAULT_THRESHOLDS, PromptMetrics, Thresholds, predict_text, score_predictions
from alias_opt.objective import Seq, Step
from alias_opt.projection import CandidateFilter
from alias_opt.shortlist import allowed_tokens, build_shortlist
from sam3 import ImageFeatures, Sam3Backend


@dataclass
class StrategyConfig:
    """Settings of the comparison strategies: the discovery phases' settings plus the knobs that only
    the comparison needs. In a config file the knobs sit under a ``"compare"`` key, beside the
    ``SearchConfig`` keys (so any discovery config, e.g. configs/fast.json, is a valid one)."""

    search: SearchConfig = field(default_factory=SearchConfig)  # phase settings (alias_opt.config)
    soft_fraction: float = 0.4  # share of the budget PEZ may use in pez+gcg and pez+evolution
    optuna_batch: int = 8  # TPE trials asked, then scored together in one batched call
    optuna_startup: int = 16  # random trials before TPE builds its model
    optuna_screen: bool = True  # screen TPE proposals on a few images before all (like the other phases)
    scan_chunk: int = 256  # tokens per scoring call of the exhaustive scan
    random_batch: int = 32  # sequences per scoring call of random search

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> StrategyConfig:
        self.search.validate()
        if not 0 < self.soft_fraction < 1:
            raise ValueError(f"compare.soft_fraction must be in (0, 1); got {self.soft_fraction}")
        for key in ("optuna_batch", "scan_chunk", "random_batch"):
            if getattr(self, key) < 1:
                raise ValueError(f"compare.{key} must be at least 1")
        return self


def load_strategy_config(path: str | Path | None = None, overrides: dict | None = None) -> StrategyConfig:
    """A StrategyConfig from a JSON file (SearchConfig keys + an optional ``compare`` object) and
    overrides in the same layout. Unknown keys are errors."""
    data: dict = {}
    if path is not None:
        data = read_config_json(path)
    data = deep_merge(data, overrides or {})
    knobs = data.pop("compare", {}) or {}
    cfg = StrategyConfig(search=load_config(None, data))
    names = {f.name for f in fields(StrategyConfig)} - {"search"}
    for key, value in knobs.items():
        if key.startswith("_"):
            continue
        if key not in names:
            raise ValueError(f"unknown config key compare.{key!r}; known: {', '.join(sorted(names))}")
        current = getattr(cfg, key)
        ok = isinstance(value, bool) if isinstance(current, bool) else isinstance(value, (int, float))
        if not ok or (isinstance(current, int) and not isinstance(current, bool) and value != int(value)):
            raise ValueError(f"config key compare.{key} must be {type(current).__name__}; got {value!r}")
        setattr(cfg, key, type(current)(value))
    return cfg.validate()


def deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# ---------------------------------------------------------------------------------------- context
@dataclass
class Context:
    """One target set's objective and the search machinery around it (one per cell).

    Attributes:
        obj: the capped objective on the train images.
        filt: the candidate filter (allowed tokens, max length, round trip).
        vocab: the vocabulary index (for shortlists; None for strategies that need none).
        name_seq: the natural name's tokens if all are allowed, else None (a soft-prompt init only).
        projection_metric: metric of the projection index (built on first use).
    """

    obj: BudgetedObjective
    filt: CandidateFilter
    vocab: VocabularyIndex | None
    name_seq: Seq | None
    projection_metric: str = "l2"
    _proj: ProjectionIndex | None = None
    _shortlists: dict = field(default_factory=dict)

    @property
    def backend(self) -> Sam3Backend:
        return self.obj.backend

    @property
    def proj(self) -> ProjectionIndex:
        if self._proj is None:
            self._proj = ProjectionIndex(self.backend.token_embeddings, self.filt.allowed, self.projection_metric)
        return self._proj


def make_context(
    backend: Sam3Backend,
    images: Sequence,
    feats: ImageFeatures,
    name: str | None,
    cfg: StrategyConfig,
    vocab: VocabularyIndex | None,
    seed: int,
    on_step: Callable[[Step], None] | None = None,
) -> Context:
    """The Context of one (target set, seed): the objective is uncapped until ``run_strategy``."""
    s = cfg.search
    filt = CandidateFilter(backend.tokenizer, allowed_tokens(backend, s, name), s.max_len, s.roundtrip)
    obj = BudgetedObjective(
        backend,
        images,
        s.loss,
        feats=feats,
        allowed=filt.allowed,
        screen_images=s.screen_images,
        screen_keep=s.screen_keep,
        seed=seed,
        on_step=on_step,
    )
    ids = backend.tokenizer.encode(name, special=False) if name else []
    name_seq = tuple(ids) if ids and len(ids) <= s.max_len and bool(filt.allowed[ids].all()) else None
    return Context(obj, filt, vocab, name_seq, s.index.projection_metric)


def shortlist(ctx: Context, cfg: StrategyConfig, k: int | None = None, rounds: int | None = None) -> list[int]:
    """The concept's top-k allowed tokens (``alias_opt.shortlist.build_shortlist``), charged to the
    budget: its vocabulary probes ground the images outside the objective and are counted here."""
    k = cfg.search.index.shortlist if k is None else k
    rounds = cfg.search.index.probe_rounds if rounds is None else rounds
    if (k, rounds) in ctx._shortlists:
        return ctx._shortlists[(k, rounds)]
    if ctx.vocab is None:
        raise ValueError("this strategy needs a vocabulary index (Context.vocab)")
    obj = ctx.obj
    probes: list[Seq] = [()] + ([ctx.name_seq] if ctx.name_seq else [])
    worst = rounds * len(probes) * obj.n_images + (rounds - 1) * min(k, cfg.search.index.shortlist) * len(
        obj.screen_idx
    )
    if worst > obj.remaining():
        raise BudgetExhausted(f"no budget left for the vocabulary probes ({worst} forwards)")
    # index.two_sided (half of the shortlist from the bottom of the ranking) where the config has it
    two_sided = {"two_sided": True} if getattr(cfg.search.index, "two_sided", False) else {}
    f0 = obj.counter.forward
    with count_pairs(obj.backend) as box:
        ids = build_shortlist(obj, ctx.vocab, ctx.filt, k, probes, rounds, **two_sided)
    obj.charge(box[0] - (obj.counter.forward - f0))
    ctx._shortlists[(k, rounds)] = ids
    return ids


@torch.no_grad()
def soft_metrics(
    backend: Sam3Backend,
    images: Sequence,
    embeds: torch.Tensor,
    mask: torch.Tensor,
    feats: ImageFeatures,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> list[PromptMetrics]:
    """Metrics of P soft prompts ((P, T, Dt) input embeddings incl. SOT/EOT, (P, T) mask) on images,
    through ``encode_text(embeds=...)``: the same predictions and scoring as ``evaluate_prompts``."""
    per = predict_text(backend, feats, images, backend.encode_text(embeds=embeds, mask=mask), thresholds)
    return [score_predictions(p, images, thresholds) for p in per]
