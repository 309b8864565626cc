"""One cell of a strategy comparison: a (strategy, category, seed) run and its held-out scores.

``open_bench`` opens what all cells share (dataset split, model, vocabulary index); ``Bench``
prepares a category once (train/test features, the natural name's and oracle words' held-out
metrics); ``run_cell`` runs one strategy on it (``alias_opt.search.strategies.run_strategy``) and scores
the result, its anytime curve and (for ``soft``) the soft prompt on the test split, with its paired
bootstrap verdict against the name, its learning curve and its detections on the category's figure
image (one held-out image, the same for every strategy and seed: ``figure_image``). The runner and CLI
are ``alias_opt.compare``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from alias_opt.compare.records import CELL_VERSION, CategoryInfo, Cell, CurvePoint, LossPoint, Shown, SoftCell
from alias_opt.config import SearchConfig
from alias_opt.data.loader import CocoDataset, TargetImage, TargetSet
from alias_opt.discover import JsonlWriter, check_negatives, encode, train_images
from alias_opt.eval.bootstrap import RESAMPLES, ImageMatches, verdict_vs
from alias_opt.eval.figures import pick_images
from alias_opt.eval.metrics import (
    ImagePredictions,
    PromptMetrics,
    Thresholds,
    coco_mask_ap,
    score_with_matches,
)
from alias_opt.eval.predict import predict, predict_text
from alias_opt.export import dataset_hash
from alias_opt.search.pipeline import SearchOutcome, search, search_seed
from alias_opt.search.strategies import NAMES
from sam3 import ImageFeatures, Sam3Backend

logger = logging.getLogger(__name__)

FRACTIONS = (0.125, 0.25, 0.5, 1.0)  # budget fractions of the anytime curve


@dataclass
class CompareSetup:
    """What a comparison runs; the same for every strategy."""

    dataset: str  # COCO annotation JSON or its folder
    model: str = "toy"  # model source (see Sam3Backend.load)
    strategies: list[str] = field(default_factory=lambda: list(NAMES))
    budget: int = 2000  # forward-equivalents per (strategy, category, seed)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    categories: list[int] | None = None  # category ids (default all)
    split_seed: int = 0  # train/test split seed, shared by every strategy and seed
    fractions: tuple[float, ...] = FRACTIONS  # budget fractions at which the anytime curve is read

    def validate(self) -> CompareSetup:
        unknown = [s for s in self.strategies if s not in NAMES]
        if unknown:
            raise ValueError(f"unknown strategy {unknown[0]!r}; choose from {', '.join(NAMES)}")
        if not self.strategies:
            raise ValueError("no strategy to compare")
        if self.budget < 1:
            raise ValueError(f"--budget must be a positive number of forward passes; got {self.budget}")
        if not self.seeds:
            raise ValueError("give at least one seed")
        return self


def strategy_slug(name: str) -> str:
    """A file-name-safe form of a strategy name (``pez+evolution`` -> ``pez_evolution``)."""
    return name.replace("+", "_")


def cell_seed(seed: int, category_id: int) -> int:
    """The search seed of one cell: ``search_seed``, as ``alias_opt.discover`` derives it."""
    return search_seed(seed, category_id)


def _ap(m: PromptMetrics | None) -> float:
    return math.nan if m is None else float(m.ap)


def _ap50(m: PromptMetrics | None) -> float:
    return math.nan if m is None else float(m.ap50)


# ---------------------------------------------------------------------------------------- bench
@dataclass
class CategoryData:
    """One category's fixed inputs: its split, image features and baselines (computed once)."""

    ts: TargetSet
    train: list[TargetImage]
    train_feats: ImageFeatures
    test_feats: ImageFeatures | None
    info: CategoryInfo  # names, baseline metrics, image counts, the figure image
    name_matches: list[ImageMatches] | None  # the name's per-image held-out matches (for the bootstrap)
    shown: int | None  # index in ts.test of the figure image (None without test images)


class Bench:
    """The backend, vocabulary index, configuration and target sets of one comparison.

    Args:
        backend: the frozen SAM 3.
        sets: the target sets (one split for all strategies and seeds).
        cfg: the search settings (one config schema: ``alias_opt.config.SearchConfig``).
        indexes: vocabulary indexes by space, shared by the cells (more are built on first use).
        thresholds: held-out metric thresholds.
        settings: JSON-ready description of everything a cell's result depends on.

    ``resamples`` (default 1000) is the bootstrap's per verdict; 0 skips the verdicts (tuning).
    """

    resamples: int = RESAMPLES

    def __init__(self, backend, sets, cfg: SearchConfig, indexes: dict, thresholds: Thresholds, settings: dict):
        self.backend = backend
        self.sets = {ts.category_id: ts for ts in sets}
        self.cfg = cfg
        self.indexes = indexes
        self.thresholds = thresholds
        self.settings = settings
        self.key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]
        self._cats: dict[int, CategoryData] = {}
        self._infos: dict[int, CategoryInfo] = {}

    def category(self, cid: int) -> CategoryData:
        """A category's data (features of one category are kept at a time)."""
        if cid not in self._cats:
            self._cats = {cid: self._prepare(self.sets[cid])}
            self._infos[cid] = self._cats[cid].info
        return self._cats[cid]

    def info(self, cid: int) -> CategoryInfo:
        """A category's baselines and image counts."""
        return self._infos[cid] if cid in self._infos else self.category(cid).info

    def _prepare(self, ts: TargetSet) -> CategoryData:
        b = self.backend
        train = train_images(ts, self.cfg, self.settings["split_seed"])
        train_feats = encode(b, train)
        test_feats = encode(b, ts.test) if ts.test else None
        tok = b.tokenizer
        oracle = [ts.oracle_name] if isinstance(ts.oracle_name, str) else list(ts.oracle_name or [])
        prompts = ([tok.encode(ts.name, special=False)] if ts.name else []) + [
            tok.encode(o, special=False) for o in oracle
        ]
        preds = predict(b, test_feats, ts.test, prompts, self.thresholds) if ts.test and prompts else []
        scored = [score_with_matches(p, ts.test, self.thresholds) for p in preds] or [(None, None)] * len(prompts)
        m = [x for x, _ in scored]
        name_m = m[0] if ts.name else None
        oracle_m = m[1:] if ts.name else m
        best_o = int(np.argmax([_ap(x) if not math.isnan(_ap(x)) else -1 for x in oracle_m])) if oracle else None
        shown = figure_image(ts.test)
        info = CategoryInfo(
            category_id=ts.category_id,
            name=ts.name,
            name_ap=_ap(name_m),
            name_test_metrics=name_m.to_dict() if name_m else None,
            oracle_text=oracle[best_o] if best_o is not None else None,
            oracle_ap=_ap(oracle_m[best_o]) if best_o is not None else math.nan,
            n_train=len(train),
            n_train_pos=sum(t.is_positive for t in train),
            n_test=len(ts.test),
            n_test_pos=sum(t.is_positive for t in ts.test),
            shown_image_id=ts.test[shown].image.image_id if shown is not None else None,
            name_shown=self.shown(ts, shown, preds[0]) if ts.name and preds and shown is not None else None,
        )
        name_matches = scored[0][1] if ts.name else None
        return CategoryData(ts, train, train_feats, test_feats, info, name_matches, shown)

    def shown(self, ts: TargetSet, i: int, preds: list[ImagePredictions]) -> Shown:
        """A prompt's detections on the figure image ``ts.test[i]`` (from its held-out predictions)."""
        im = ts.test[i]
        return Shown.of(preds[i], im.image.image_id, self.thresholds.score, coco_mask_ap([preds[i]], [im])[0])


def figure_image(test: list[TargetImage]) -> int | None:
    """The held-out image a category's figure row shows: the first image with targets among
    ``pick_images``' deterministic pick (else the first picked)."""
    picked = pick_images([im.is_positive for im in test])
    return next((i for i in picked if test[i].is_positive), picked[0] if picked else None)


def run_cell(
    bench: Bench, cid: int, strategy: str, seed: int, budget: int, out: Path | None = None, progress=None
) -> Cell:
    """Run one (strategy, category, seed) cell and score it on the held-out split.

    With ``out``, the step history goes to ``out/history/...`` and the soft prompt to ``out/soft/...``;
    with ``progress`` (an ``alias_opt.progress.RunProgress``) its line follows the search's steps.
    """
    cat = bench.category(cid)
    ts, b, cfg = cat.ts, bench.backend, bench.cfg
    stem = f"{cid}-seed{seed}"
    writer = JsonlWriter(out / "history" / strategy_slug(strategy) / f"{stem}.jsonl") if out else None
    on_step = progress.tee(writer or (lambda st: None)) if progress is not None else writer
    try:  # the one pipeline main.py runs, with this cell's budget
        res = search(
            b,
            cat.train,
            cat.train_feats,
            ts.name,
            cfg,
            cell_seed(seed, cid),
            budget,
            strategy,
            bench.indexes,
            on_step,
            extra_negatives=check_negatives(ts, cfg),
        )
    finally:
        if writer:
            writer.close()
    counter = res.usage.as_dict()
    fractions = bench.settings["fractions"]
    points = [(f, _best_at(res, f * budget)) for f in fractions if f < 1]
    final = list(res.token_ids) if res.token_ids else None
    prompts = ([final] if final else []) + [list(p.token_ids) for _, p in points if p is not None]
    unique = [list(p) for p in dict.fromkeys(tuple(p) for p in prompts)]
    metrics, matches, preds = {}, None, None
    if unique and ts.test:
        for p, pr in zip(unique, predict(b, cat.test_feats, ts.test, unique, bench.thresholds)):
            metrics[tuple(p)], mt = score_with_matches(pr, ts.test, bench.thresholds)
            if tuple(p) == tuple(final or ()):
                matches, preds = mt, pr
    has_pos = cat.info.n_test_pos > 0
    nothing = 0.0 if has_pos else math.nan  # no alias within the budget: it finds nothing

    def ap_of(ids) -> float:
        return _ap(metrics.get(tuple(ids))) if ids else nothing

    alias_m = metrics.get(tuple(final)) if final else None
    soft = None
    if res.kept_soft is not None:
        soft, matches, preds = _soft_cell(bench, cat, res, out, strategy, stem)
    ap = soft.ap if soft else ap_of(final)
    curve = [
        CurvePoint(f, round(f * budget), list(p.token_ids) if p else None, ap_of(p.token_ids if p else None))
        for f, p in points
    ]
    verdict, diff = (
        verdict_vs(matches, cat.name_matches, bench.resamples, seed=cid) if bench.resamples else ("n/a", None)
    )
    losses = [LossPoint(int(p.cost), float(p.loss)) for p in res.trace]
    if losses:  # the curve runs to the cell's cost
        losses.append(LossPoint(int(counter["cost"]), min(p.loss for p in losses)))
    return Cell(
        version=CELL_VERSION,
        settings=bench.key,
        strategy=strategy,
        category_id=cid,
        category_name=ts.name,
        seed=seed,
        budget=budget,
        token_ids=final,
        text=b.tokenizer.decode(final) if final else None,
        roundtrips=b.tokenizer.roundtrips(final) if final else None,
        train_loss=res.loss,
        train_ap=_ap(res.train_metrics),
        alias_ap=ap_of(final),
        test_metrics=alias_m.to_dict() if alias_m else None,
        soft=soft,
        note="" if final else "no candidate within the budget",
        **counter,
        wall_time=round(res.wall_time, 3),
        ms_per_pair=round(1000 * res.wall_time / max(1, counter["cost"]), 3),
        reranked=[r.to_dict() for r in res.reranked],
        ap=ap,
        ap50=soft.ap50 if soft else _ap50(alias_m),
        curve=[*curve, CurvePoint(1.0, budget, final, ap)],
        name_ap=cat.info.name_ap,
        vs_name=verdict,
        vs_name_interval=diff,
        losses=losses,
        shown=bench.shown(ts, cat.shown, preds) if preds is not None and cat.shown is not None else None,
    )


def _best_at(res: SearchOutcome, cost: float):
    """The best sequence of ``res``'s trace found within ``cost`` forward-equivalents (None if none)."""
    found = [p for p in res.trace if p.cost <= cost]
    return found[-1] if found else None


def _soft_cell(
    bench: Bench, cat: CategoryData, res: SearchOutcome, out: Path | None, strategy: str, stem: str
) -> tuple[SoftCell, list[ImageMatches] | None, list[ImagePredictions] | None]:
    """The kept soft prompt scored on the test split (the predictions and scoring of ``soft_metrics``),
    its per-image matches and predictions; its safetensors file written under ``out``."""
    kept = res.kept_soft
    embeds, mask = kept.embeds.float(), kept.mask
    test, matches, preds = None, None, None
    if cat.ts.test:
        text = bench.backend.encode_text(embeds=embeds, mask=mask)
        preds = predict_text(bench.backend, cat.test_feats, cat.ts.test, text, bench.thresholds)[0]
        test, matches = score_with_matches(preds, cat.ts.test, bench.thresholds)
    entry = SoftCell(
        ap=_ap(test),
        ap50=_ap50(test),
        test_metrics=test.to_dict() if test else None,
        train_ap=_ap(kept.train_metrics),
        restart=kept.restart,
        test_score_sum=soft_score_sum(bench.backend, embeds, mask, cat.test_feats),
        file=None,
    )
    if out is not None:
        from safetensors.torch import save_file

        path = out / "soft" / strategy_slug(strategy) / f"{stem}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        meta = {"model_fingerprint": bench.backend.fingerprint, "category_id": str(cat.ts.category_id)}
        save_file({"embeds": embeds.contiguous(), "mask": mask.contiguous()}, str(tmp), metadata=meta)
        tmp.replace(path)
        entry.file = str(path.relative_to(out))
    return entry, matches, preds


@torch.no_grad()
def soft_score_sum(backend: Sam3Backend, embeds: torch.Tensor, mask: torch.Tensor, feats: ImageFeatures | None):
    """Sum of every detection score (sigmoid(query) x sigmoid(presence)) of a soft prompt on images: a
    fingerprint that a saved soft prompt, fed back through ``encode_text(embeds=...)``, must reproduce."""
    if feats is None:
        return math.nan
    return float(backend.ground(backend.encode_text(embeds=embeds, mask=mask), feats).scores().double().sum())


def load_soft_prompt(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(embeds (1, T, D), mask (1, T)) of a saved soft prompt, for ``encode_text(embeds=, mask=)``."""
    from safetensors.torch import load_file

    data = load_file(str(path))
    return data["embeds"], data["mask"].bool()


def open_bench(
    setup: CompareSetup,
    cfg: SearchConfig,
    backend: Sam3Backend | None = None,
    device: str = "auto",
    thresholds: Thresholds | None = None,
    dtype: str = "auto",
) -> Bench:
    """Open the dataset, load the model and the vocabulary index: everything cells share."""
    ds = CocoDataset.open(setup.dataset)
    sets = ds.target_sets(
        seed=setup.split_seed,
        train_fraction=cfg.train_fraction,
        max_negatives=cfg.max_negatives,
        categories=setup.categories,
        extra_negatives=cfg.name_negatives,
    )
    usable = [ts for ts in sets if any(t.is_positive for t in ts.train)]
    for ts in sets:
        if ts not in usable:
            logger.warning("category %s has no positive train image; left out", ts.category_id)
    if not usable:
        raise ValueError(f"no usable category in {ds.annotation_file}")
    backend = backend or Sam3Backend.load(setup.model, device=device, dtype=dtype)
    settings = {
        "model_fingerprint": backend.fingerprint,
        "dataset_path": str(ds.annotation_file),
        "dataset_hash": dataset_hash(ds.annotation_file),
        "split_seed": setup.split_seed,
        "budget": setup.budget,
        "fractions": list(setup.fractions),
        "config": cfg.to_dict(),
        "thresholds": asdict(thresholds or Thresholds()),
    }
    return Bench(backend, usable, cfg, {}, thresholds or Thresholds(), settings)
