"""What every phase of one search works with: the ``SearchContext`` of one (target set, seed).

It holds the objective (``alias_opt.search.objective``), the candidate filter, the vocabulary
indexes (built on first use), the natural name's tokens, the budget and the results of the phases
run so far, and it builds, once, what several phases share: the concept's shortlist, the ranked
single tokens and the projection index.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from alias_opt.config import IndexConfig, SearchConfig
from alias_opt.eval.metrics import PromptMetrics, score_predictions
from alias_opt.eval.predict import evaluate_prompts, predict, predict_images
from alias_opt.search.discrete import extensions
from alias_opt.search.embeddings import ProjectionIndex, VocabularyIndex
from alias_opt.search.objective import Objective, Seq, Step
from alias_opt.search.phase_result import PhaseResult
from alias_opt.search.projection import CandidateFilter
from alias_opt.search.shortlist import (
    allowed_tokens,
    build_shortlist,
    narrowing_losses,
    pooled_shortlist,
    view_spaces,
)
from sam3 import ImageFeatures, Sam3Backend


@dataclass
class KeptSoft:
    """The soft prompt a ``soft`` phase keeps: its restart with the best train AP.

    Attributes:
        embeds: (1, T, Dt) input embeddings incl. SOT/EOT, for ``encode_text(embeds=..., mask=...)``.
        mask: (1, T) True at SOT .. EOT.
        train_metrics: its metrics on the train images (``alias_opt.eval.metrics.PromptMetrics``).
        restart: which restart it is.
    """

    embeds: torch.Tensor
    mask: torch.Tensor
    train_metrics: object
    restart: int


@dataclass
class SearchContext:
    """One (target set, seed)'s search state, shared by its phases.

    Attributes:
        obj: the objective on the train images (with the search's budget).
        filt: the candidate filter (allowed tokens, max length, round trip).
        cfg: the search settings.
        rng: the search's random numbers (phases draw from it in pipeline order).
        name_seq: the natural name's tokens if all are allowed, else None (a probe, a soft-prompt init,
            an evolution seed and a re-ranking candidate).
        budget: forward-equivalents of the whole search (0: none).
        start: the objective's cost when the search started.
        results: the phases' results so far, in order.
        last: whether the phase now running is the pipeline's last (under a budget it then restarts
            until the budget is spent).
        kept_soft: the ``soft`` phase's kept prompt.
        seed: the search seed (the name check's resampling seed).
        extra_negatives: images without the category the name check reads besides the train images.
    """

    obj: Objective
    filt: CandidateFilter
    cfg: SearchConfig
    rng: np.random.Generator
    name_seq: Seq | None
    indexes: dict[str, VocabularyIndex] = field(default_factory=dict)
    budget: int = 0
    start: int = 0
    results: list[PhaseResult] = field(default_factory=list)
    last: bool = False
    kept_soft: KeptSoft | None = None
    seed: int = 0
    extra_negatives: Sequence = ()
    _proj: ProjectionIndex | None = None
    _synonyms: ProjectionIndex | None = None
    _shortlist: list[int] | None = None
    _pool: list[int] | None = None
    _vocab_order: list[int] | None = None
    _metrics: dict[Seq, PromptMetrics] = field(default_factory=dict)  # train metrics by sequence
    _wide: dict[Seq, float] = field(default_factory=dict)  # AP over train + extra negatives by sequence
    _ranked: tuple[int, list[int]] | None = None  # (id of the scan result, its singles by train AP)
    _narrowing: dict[tuple[Seq, int], list[int]] = field(default_factory=dict)  # narrowing tokens by (base, head)

    @property
    def backend(self) -> Sam3Backend:
        return self.obj.backend

    @property
    def proj(self) -> ProjectionIndex:
        """Nearest-allowed-token index of the token-embedding table (built on first use)."""
        if self._proj is None:
            self._proj = ProjectionIndex(
                self.backend.token_embeddings, self.filt.allowed, self.cfg.index.projection_metric
            )
        return self._proj

    @property
    def synonym_index(self) -> ProjectionIndex:
        """Cosine nearest-allowed-token index of the token table, for the synonym test (built on first use)."""
        if self._synonyms is None:
            self._synonyms = ProjectionIndex(self.backend.token_embeddings, self.filt.allowed, "cosine")
        return self._synonyms

    def index(self, space: str) -> VocabularyIndex:
        """The vocabulary index of ``space`` (built, or read from its disk cache, on first use)."""
        if space not in self.indexes:
            self.indexes[space] = VocabularyIndex.build(self.backend, space, self.cfg.index.cache_dir)
        return self.indexes[space]

    def probes(self) -> list[Seq]:
        """The prompts whose decoder states give the concept vector: the empty prompt and the name."""
        return [()] + ([self.name_seq] if self.name_seq else [])

    def shortlist(self) -> list[int]:
        """The concept's shortlist of allowed tokens, best first (``index.views`` pooled and screened by
        the model, else the top of ``index.space``); its probes and screening are paid by the objective."""
        if self._shortlist is None:
            ix = self.cfg.index
            if ix.views:
                self._pool = self.screened_pool(ix)  # the whole screened pool, best first (kept for ``splits``)
                self._shortlist = self._pool[: ix.shortlist]
            else:
                self._shortlist = build_shortlist(
                    self.obj,
                    self.index(ix.space),
                    self.filt,
                    ix.shortlist,
                    self.probes(),
                    ix.probe_rounds,
                    ix.two_sided,
                )
        return self._shortlist

    def screened_pool(self, ix: IndexConfig) -> list[int]:
        """The pool ``index.views`` give, screened by the model and grown by its tokens' neighbours as ``ix`` says
        (``pooled_shortlist``), best first; ``shortlist`` keeps the config's, ``bench/pool_neighbours.py`` compares
        others (screening is memoised, so a token is paid once across them)."""
        indexes = {s: self.index(s) for s in view_spaces(self.cfg)}  # index.space first
        return pooled_shortlist(
            self.obj,
            indexes,
            self.filt,
            max(ix.pool, ix.shortlist),
            self.probes(),
            ix.views,
            ix.pool,
            qualify=self.name_seq if ix.screen_with_name else None,
            neighbours=(lambda ids: self.proj.neighbours(ids, ix.neighbours)) if ix.neighbours else None,
            heads=ix.neighbour_heads,
            gate=ix.neighbour_gate,
        )

    def built_shortlist(self) -> list[int]:
        """The shortlist if a phase built one, else [] (builds nothing)."""
        return list(self._shortlist or [])

    def pool(self) -> list[int]:
        """The whole model-screened pool the shortlist is the head of, best first (the shortlist itself
        without ``index.views``); built with the shortlist."""
        short = self.shortlist()
        return list(self._pool) if self._pool is not None else short

    def insertions(self, n: int) -> list[Seq]:
        """The name's one-token insertions (every position) of the pool's first ``n`` tokens that the
        filter accepts, in pool order; [] without a name or where no phase built the pool (a strategy
        without a shortlist, "random": building it here would spend its budget). Unscreened, free."""
        if self.name_seq is None or n <= 0 or self._shortlist is None:
            return []
        return [c for c in self.filt.accept(extensions([self.name_seq], self.pool()[:n])) if c != self.name_seq]

    def splits(self, n: int) -> list[Seq]:
        """The ``n`` best one-token insertions of the pooled shortlist's tokens into the name by screening
        loss ("red" + "circle", "large red" + "square"): the members a too-broad name splits into where it
        names a union ("circle" for red and purple circles). [] without a name or with n = 0; paid."""
        cands = self.insertions(len(self.pool())) if n > 0 else []
        if not cands:
            return []
        losses = self.obj.screen_losses(cands)
        return [cands[i] for i in np.argsort(losses, kind="stable")[:n]]

    def vocabulary_order(self) -> list[int]:
        """Every allowed token, in the concept's order in ``index.space`` (one probe round; paid)."""
        if self._vocab_order is None:
            self._vocab_order = build_shortlist(
                self.obj, self.index(self.cfg.index.space), self.filt, len(self.filt.allowed_ids), self.probes(), 1
            )
        return self._vocab_order

    def result(self, *phases: str) -> PhaseResult | None:
        """The latest result of one of ``phases`` (None if none ran)."""
        return next((r for r in reversed(self.results) if r.phase in phases), None)

    def ranked_singles(self) -> list[int]:
        """The shortlist, best single tokens first: the scan's ``scan_ranked`` best fully scored singles (by
        loss) ordered by train AP (best first; paid once, ``train_metrics``; by loss where the budget cannot
        pay), then its other fully scored ones (by loss), then those it screened out (by screening loss),
        then the rest of the shortlist in its order.

        Train AP, not loss: on world v2 a token the model never learned ("gardeners", "watkins") that
        fires weakly everywhere has a lower set loss than a real word that fires on more than the targets
        ("red" for large solid red shapes: loss 3.0 vs 2.2, train AP 0.68 vs 0.25), and the best singles
        are the bases the next phases narrow."""
        scan = self.result("scan")
        if scan is None:
            return list(self.shortlist())
        if self._ranked is None or self._ranked[0] != id(scan):
            full = [c for c in scan.candidates if self.obj.loss_of(c) is not None]  # by loss (scan order)
            n = self.cfg.scan_ranked or len(full)
            head, tail = full[:n], full[n:]
            rest = [c for c in scan.candidates if c not in set(full)]
            metrics = self.train_metrics(head)
            if all(m is not None for m in metrics):
                head = [head[i] for i in np.argsort([-metric_ap(m) for m in metrics], kind="stable")]
            self._ranked = (id(scan), [c[0] for c in head + tail + rest])
        ranked = self._ranked[1]
        return ranked + [t for t in self.shortlist() if t not in ranked]

    def train_metrics(self, seqs: Sequence[Seq]) -> list[PromptMetrics | None]:
        """Train-split metrics of ``seqs`` (memoized; a new one costs a forward per train image, charged
        to the objective); None for those the budget cannot pay for."""
        obj = self.obj
        new = [s for s in dict.fromkeys(tuple(s) for s in seqs) if s not in self._metrics]
        room = obj.remaining()
        k = len(new) if not math.isfinite(room) else min(len(new), int(room // max(1, obj.n_images)))
        if k > 0:
            metrics = evaluate_prompts(self.backend, obj.images, [list(s) for s in new[:k]], feats=obj.feats)
            self._metrics.update(zip(new[:k], metrics))
            obj.charge(k * obj.n_images)
        return [self._metrics.get(tuple(s)) for s in seqs]

    def train_aps(self, seqs: Sequence[Seq]) -> list[float]:
        """The batched train AP of ``seqs`` (``train_metrics``: memoized, charged); -inf where a sequence fails
        the filter (an edited alias must still round-trip) or the budget is spent, -1 where NaN."""
        ok = [s for s in seqs if self.filt(s) == s]
        metrics = dict(zip(ok, self.train_metrics(ok)))
        return [-math.inf if metrics.get(s) is None else metric_ap(metrics[s]) for s in seqs]

    def ap_ranked(self, n: int) -> list[Seq]:
        """The ``n`` fully scored sequences (the name aside) with the best train AP paid for so far, best first
        (nothing new is paid)."""
        seqs = [s for s in self._metrics if s != self.name_seq and self.obj.loss_of(s) is not None]
        return sorted(seqs, key=lambda s: -metric_ap(self._metrics[s]))[:n]

    def wide_aps(self, seqs: Sequence[Seq]) -> list[float | None]:
        """COCO AP of ``seqs`` over the train images and the extra negatives (memoized; a new one costs a
        forward per image of both, charged to the objective); None for those the budget cannot pay for, and
        for all without extra negatives."""
        obj, extra = self.obj, list(self.extra_negatives)
        if not extra:
            return [None for _ in seqs]
        n = obj.n_images + len(extra)
        new = [s for s in dict.fromkeys(tuple(s) for s in seqs) if s not in self._wide]
        room = obj.remaining()
        k = len(new) if not math.isfinite(room) else min(len(new), int(room // n))
        if k > 0:
            prompts = [list(s) for s in new[:k]]
            train = predict(self.backend, obj.feats, obj.images, prompts)
            more = predict_images(self.backend, extra, prompts)  # encoded a chunk at a time
            images = [*obj.images, *extra]
            self._wide.update((s, score_predictions([*a, *b], images).ap) for s, a, b in zip(new, train, more))
            obj.charge(k * n)
        return [self._wide.get(tuple(s)) for s in seqs]

    def knows_name(self) -> bool:
        """Whether the model knows the category name: its train AP (memoized; the re-ranking scores the
        name anyway) reaches ``cfg.known_name_ap``. False without a usable name; True where the budget
        cannot pay for the check (nothing is assumed unknown on no evidence)."""
        if self.name_seq is None:
            return False
        return known_name(self.train_metrics([self.name_seq])[0], self.cfg.known_name_ap)

    def narrowing(self, base: Seq, n: int, head: int = 0) -> list[int]:
        """The ``n`` tokens of the screened pool (its first ``head``; 0: all of it) that best narrow
        ``base`` when placed beside it ("large" + "red", "red" + "star"), by the better screening loss of
        the two orders (paid once per base and ``head``).
        A size or fill word screens badly alone (it fires on every small shape), so the shortlist, ranked
        by how tokens do alone, leaves it out; next to a colour word it is what the targets need."""
        key = (tuple(base), int(head))
        if key not in self._narrowing:
            pool = [t for t in (self.pool()[:head] if head > 0 else self.pool()) if (t,) != key[0]]
            losses = narrowing_losses(self.obj, self.filt, pool, key[0])
            self._narrowing[key] = [pool[i] for i in np.argsort(losses, kind="stable") if np.isfinite(losses[i])]
        return self._narrowing[key][:n]

    def share(self, amount: float):
        """Context manager: under a budget, the objective capped at ``amount`` more forward-equivalents
        (``BudgetExhausted`` inside is swallowed); without one, nothing."""
        if not self.budget:
            return contextlib.nullcontext()
        return self.obj.capped(self.obj.spent + amount)

    def restarting(self) -> bool:
        """Whether the running phase should restart until the budget is spent (the last phase, budgeted)."""
        return bool(self.budget) and self.last


def known_name(m: PromptMetrics | None, min_ap: float) -> bool:
    """Whether a name with train metrics ``m`` is one the model knows (its AP reaches ``min_ap``);
    True where ``m`` is missing (not scored: nothing is assumed unknown on no evidence)."""
    return m is None or metric_ap(m) >= min_ap


def metric_ap(m: PromptMetrics) -> float:
    """A metric's AP for ranking: -1 where it is NaN (no positives)."""
    return -1.0 if math.isnan(m.ap) else float(m.ap)


def make_context(
    backend: Sam3Backend,
    images: Sequence,
    feats: ImageFeatures,
    name: str | None,
    cfg: SearchConfig,
    seed: int,
    indexes: Mapping[str, VocabularyIndex] | None = None,
    on_step: Callable[[Step], None] | None = None,
    extra_negatives: Sequence = (),
) -> SearchContext:
    """The SearchContext of one (target set, seed) with an uncapped objective (the pipeline sets the budget).

    Args:
        backend: the frozen SAM 3.
        images: the train images (``TargetImage``); feats: their features.
        name: the category's natural name (None if nameless).
        cfg: the search settings.
        seed: the search seed (``search_seed``).
        indexes: vocabulary indexes by space; a dict is shared (those built on first use are added to it).
        on_step: called with every recorded step.
        extra_negatives: images without the category for the name check (``TargetImage``; not searched on).
    """
    filt = CandidateFilter(backend.tokenizer, allowed_tokens(backend, cfg, name), cfg.max_len, cfg.roundtrip)
    obj = Objective(
        backend,
        images,
        cfg.loss,
        feats=feats,
        allowed=filt.allowed,
        screen_images=cfg.screen_images,
        screen_keep=cfg.screen_keep,
        seed=seed,
        on_step=on_step,
    )
    ids = backend.tokenizer.encode(name, special=False) if name else []
    # any length: the name is the baseline the alias must beat on train (seeds go through the filter)
    name_seq = tuple(ids) if ids and bool(filt.allowed[ids].all()) else None
    shared = indexes if isinstance(indexes, dict) else dict(indexes or {})  # indexes built here are kept there
    return SearchContext(
        obj, filt, cfg, np.random.default_rng(seed), name_seq, shared, seed=int(seed), extra_negatives=extra_negatives
    )
