"""Alias discovery end to end: per category, the search phases, held-out scoring, checkpoints.

    run(dataset, output, model="toy", cfg=load_config("configs/fast.json"))

Per category (``discover``): build the ``Objective`` on the train images, the concept's vocabulary
shortlist, then the strategy's phases (default ``pez+evolution``: shortlist scan -> one-token extensions
of the best singles -> PEZ soft prompt
-> evolutionary search), re-rank the best few candidates (and the natural name, so the alias is
never worse on train than the name) by train-split COCO AP, and score the winner, the name and,
for the report only, the dataset's ``oracle_name`` on the held-out test split.

Outputs under ``--output`` (every file written atomically):
    categories/<id>.json   one finished category (an aliases.json with one record): the checkpoint
    history/<id>.jsonl     one line per search step (phase, step, loss, best, passes, wall time)
    aliases.json           all finished categories (alias_opt.export schema)
    summary.json, report.txt  the held-out table and the win / tie / loss counts
``resume=True`` skips categories whose checkpoint matches the model, dataset, split and config, so
a run killed at any point (kill -9 included) continues without redoing or losing finished work.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from alias_opt.config import SearchConfig
from alias_opt.data_loader import CocoDataset, TargetImage, TargetSet
from alias_opt.discrete_search import extend, random_search, scan
from alias_opt.embeddings import ProjectionIndex, VocabularyIndex
from alias_opt.evolution import Mutator, evolve, seed_population
from alias_opt.export import (
    AliasFile,
    AliasFileError,
    AliasRecord,
    Provenance,
    dataset_hash,
    read_aliases,
    write_aliases,
    write_json_atomic,
)
from alias_opt.gcg import gcg
from alias_opt.metrics import PromptMetrics, Thresholds, compare, evaluate_prompts
from alias_opt.objective import Objective, SearchResult, Seq, Step
from alias_opt.projection import CandidateFilter
from alias_opt.run_summary import format_summary, format_table, summarize
from alias_opt.shortlist import allowed_tokens, build_indexes, build_shortlist, pooled_shortlist, view_spaces
from alias_opt.soft_prompt import initial_sequences, optimize_soft
from sam3 import ImageFeatures, Sam3Backend

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------- discovery
@dataclass
class Discovery:
    """The outcome of one category's search (before held-out scoring)."""

    token_ids: list[int]
    strategy: str
    train_loss: float
    train_metrics: PromptMetrics | None
    name_ids: list[int] | None
    name_train_metrics: PromptMetrics | None
    shortlist: list[int]
    phases: list[dict]
    reranked: list[dict]
    counter: dict
    wall_time: float
    soft: torch.Tensor | None = None
    extra: dict = field(default_factory=dict)


def train_images(ts: TargetSet, cfg: SearchConfig, rng: np.random.Generator) -> list[TargetImage]:
    """The train images a search uses: all of ``ts.train``, or at most ``cfg.max_train_images`` of
    them (about a third negatives), drawn with ``rng`` and kept in image-id order."""
    images = list(ts.train)
    if cfg.max_train_images and len(images) > cfg.max_train_images:
        pos = [im for im in images if im.is_positive]
        neg = [im for im in images if not im.is_positive]
        n_neg = min(len(neg), cfg.max_train_images // 3)
        n_pos = min(len(pos), cfg.max_train_images - n_neg)
        keep = [pos[i] for i in sorted(rng.choice(len(pos), n_pos, replace=False))]
        keep += [
            neg[i] for i in sorted(rng.choice(len(neg), min(len(neg), cfg.max_train_images - n_pos), replace=False))
        ]
        images = sorted(keep, key=lambda t: t.image.image_id)
    return images


def encode(backend: Sam3Backend, images: Sequence[TargetImage]) -> ImageFeatures:
    """Image features of TargetImages, read in their JSON orientation (as alias_opt.metrics does)."""
    return backend.encode_images([im.image.load() for im in images])


def _phase_dict(r: SearchResult) -> dict:
    return {
        "phase": r.phase,
        "best": list(r.token_ids) if r.token_ids else None,
        "loss": r.loss if math.isfinite(r.loss) else None,
        "forward_passes": r.forward_passes,
        "backward_passes": r.backward_passes,
        "wall_time": round(r.wall_time, 3),
    }


def discover(
    backend: Sam3Backend,
    ts: TargetSet,
    cfg: SearchConfig,
    vocab: VocabularyIndex | Mapping[str, VocabularyIndex],
    on_step: Callable[[Step], None] | None = None,
    feats: ImageFeatures | None = None,
) -> Discovery:
    """Find an alias for one target set on its train split (see the module doc).

    ``vocab``: the index of ``cfg.index.space``, or ``build_indexes(backend, cfg)`` (needed when
    ``cfg.index.views`` names other spaces).
    """
    given = dict(vocab) if isinstance(vocab, Mapping) else {vocab.space: vocab}
    # every space the config needs, index.space first; built (from the disk cache) where not given
    indexes = {s: given.get(s) or VocabularyIndex.build(backend, s, cfg.index.cache_dir) for s in view_spaces(cfg)}
    t0 = time.perf_counter()
    seed = int.from_bytes(hashlib.sha256(f"{cfg.seed}:{ts.category_id}".encode()).digest()[:4], "little")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    images = train_images(ts, cfg, rng)
    if not any(im.is_positive for im in images):
        raise ValueError(f"category {ts.category_id} has no positive train image")
    feats = feats if feats is not None else encode(backend, images)
    allowed = allowed_tokens(backend, cfg, ts.name)
    filt = CandidateFilter(backend.tokenizer, allowed, cfg.max_len, cfg.roundtrip)
    obj = Objective(
        backend,
        images,
        cfg.loss,
        feats=feats,
        allowed=filt.allowed,
        screen_images=cfg.screen_images,
        screen_keep=cfg.screen_keep,
        budget=cfg.budget,
        seed=seed,
        on_step=on_step,
    )
    tok = backend.tokenizer
    name_ids = tok.encode(ts.name, special=False) if ts.name else None
    name_seq = tuple(name_ids) if name_ids and bool(filt.allowed[name_ids].all()) else None
    if name_seq is not None:
        obj.score([name_seq], screen=False)

    probes: list[Seq] = [()] + ([name_seq] if name_seq else [])
    if cfg.index.views:
        shortlist = pooled_shortlist(obj, indexes, filt, cfg.index.shortlist, probes, cfg.index.views, cfg.index.pool)
    else:
        shortlist = build_shortlist(
            obj,
            indexes[cfg.index.space],
            filt,
            cfg.index.shortlist,
            probes,
            cfg.index.probe_rounds,
            cfg.index.two_sided,
        )
    proj = ProjectionIndex(backend.token_embeddings, filt.allowed, cfg.index.projection_metric)
    phases: list[SearchResult] = []
    soft = None
    s = cfg.strategy

    if s in ("scan", "pez", "pez+gcg", "pez+evolution", "evolution"):
        phases.append(scan(obj, shortlist[: cfg.scan_size], filt))
    ranked_singles = [t[0] for t in phases[0].candidates] if phases else shortlist
    ranked_singles += [t for t in shortlist if t not in ranked_singles]
    if cfg.extend_bases and s in ("pez+evolution", "evolution"):
        bases = [(t,) for t in ranked_singles[: cfg.extend_bases]]
        phases.append(extend(obj, bases, shortlist[: cfg.scan_size], filt))

    if s in ("soft", "projection", "pez", "pez+gcg", "pez+evolution"):
        lengths = [min(n, cfg.max_len) for n in cfg.soft.lengths] or [cfg.max_len]
        inits = initial_sequences(cfg.soft.inits, cfg.soft.restarts, lengths, ranked_singles, name_seq, filt, rng)
        res = optimize_soft(obj, inits, cfg.soft, proj, filt, pez=s not in ("soft", "projection"))
        soft = res.extra.get("soft")
        phases.append(res)
    if s == "pez+gcg":
        start = phases[-1].token_ids or (ranked_singles[0],)
        phases.append(gcg(obj, start, cfg.gcg, filt, rng, cfg.soft.batch_images))
    if s in ("pez+evolution", "evolution"):
        seeds = [c for r in phases[1:] for c in r.candidates] + ([name_seq] if name_seq else [])
        singles = [(t,) for t in ranked_singles]
        pop = seed_population(seeds, singles[: cfg.evolution.population], cfg.evolution.shortlist_pairs, filt)
        mutator = Mutator(ranked_singles, proj, cfg.evolution.neighbours, cfg.max_len, rng)
        phases.append(evolve(obj, pop, cfg.evolution, filt, mutator, rng, cfg.soft.batch_images))
    if s == "random":
        phases.append(random_search(obj, filt, rng, lengths=tuple(range(1, cfg.max_len + 1))))

    # re-rank the best few (and the name) by train AP: the loss is a proxy, AP is what is judged
    pool = [sv[0] for sv in obj.ranked(cfg.rerank)]
    if name_seq is not None and name_seq not in pool:
        pool.append(name_seq)
    if not pool:
        pool = [(ranked_singles[0],)]
        obj.score(pool, screen=False)
    metrics = evaluate_prompts(backend, images, [list(p) for p in pool], feats=feats)
    obj.counter.forward += len(pool) * len(images)
    rows = []
    for p, m in zip(pool, metrics):
        ap = m.ap if not math.isnan(m.ap) else -1.0
        rows.append((p, ap, obj.memo.get((p, "full"), math.inf), m))
    # the best train AP wins; within ``rerank_tolerance`` of it, the lowest loss (shorter on ties)
    top_ap = max(r[1] for r in rows)
    rows.sort(key=lambda r: (r[1] < top_ap - cfg.rerank_tolerance, r[2], len(r[0]), -r[1]))
    best, _, best_loss, best_m = rows[0]
    name_m = next((r[3] for r in rows if r[0] == name_seq), None)
    strategy = "name" if best == name_seq and s != "name" else s
    obj.record("rerank", 0, best_loss, candidates=len(pool), best_ap=best_m.ap)
    return Discovery(
        token_ids=list(best),
        strategy=strategy,
        train_loss=float(best_loss),
        train_metrics=best_m,
        name_ids=name_ids,
        name_train_metrics=name_m,
        shortlist=shortlist,
        phases=[_phase_dict(r) for r in phases],
        reranked=[
            {
                "token_ids": list(p),
                "text": tok.decode(p),
                "train_ap": m.ap,
                "loss": loss if math.isfinite(loss) else None,
            }
            for p, _, loss, m in rows
        ],
        counter=obj.counter.as_dict(),
        wall_time=time.perf_counter() - t0,
        soft=soft,
    )


# ---------------------------------------------------------------------------------------- the run
def _oracle_phrases(oracle) -> list[str]:
    if oracle is None:
        return []
    return [oracle] if isinstance(oracle, str) else [str(o) for o in oracle]


class JsonlWriter:
    """Appends Steps to a JSONL file (line-buffered; a crash loses at most the line being written)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(path, "w", buffering=1, encoding="utf-8")  # noqa: SIM115 (closed by close())

    def __call__(self, st: Step) -> None:
        row = dataclasses.asdict(st)
        row["loss"] = row["loss"] if math.isfinite(row["loss"]) else None
        row["best_loss"] = row["best_loss"] if math.isfinite(row["best_loss"]) else None
        self.fh.write(json.dumps(row) + "\n")

    def close(self) -> None:
        self.fh.close()


def _provenance(backend: Sam3Backend, model: str, ds: CocoDataset, cfg: SearchConfig, split_seed: int) -> Provenance:
    return Provenance(
        model_fingerprint=backend.fingerprint,
        model_source=str(model),
        dataset_path=str(ds.annotation_file),
        dataset_hash=dataset_hash(ds.annotation_file),
        split_seed=split_seed,
        train_fraction=cfg.train_fraction,
        max_negatives=cfg.max_negatives,
        config=cfg.to_dict(),
        seed=cfg.seed,
    )


def _compatible(a: Provenance, b: Provenance) -> bool:
    keys = ("model_fingerprint", "dataset_hash", "split_seed", "train_fraction", "max_negatives", "seed")
    return all(getattr(a, k) == getattr(b, k) for k in keys) and a.config == b.config


def category_record(
    backend: Sam3Backend, ts: TargetSet, d: Discovery, thresholds: Thresholds, feats: ImageFeatures | None = None
) -> AliasRecord:
    """Score the alias, the name and the oracle phrases on the held-out split; the export record."""
    tok = backend.tokenizer
    prompts: list[list[int]] = [d.token_ids]
    if d.name_ids:
        prompts.append(d.name_ids)
    oracle = _oracle_phrases(ts.oracle_name)
    prompts += [tok.encode(o, special=False) for o in oracle]
    test = ts.test
    metrics = (
        evaluate_prompts(
            backend, test, prompts, feats=feats if feats is not None else encode(backend, test), thresholds=thresholds
        )
        if test
        else [None] * len(prompts)
    )
    alias_m = metrics[0]
    name_m = metrics[1] if d.name_ids else None
    oracle_m = metrics[2 if d.name_ids else 1 :]
    extra = {
        "train_loss": d.train_loss,
        "shortlist": d.shortlist[:32],
        "phases": d.phases,
        "reranked": d.reranked,
        **d.counter,
        "wall_time": round(d.wall_time, 3),
        "ms_per_pair": round(1000 * d.wall_time / max(1, d.counter["cost"]), 3),
        "history": f"history/{ts.category_id}.jsonl",
    }
    if oracle:
        best = int(np.nanargmax([m.ap if m is not None and not math.isnan(m.ap) else -1 for m in oracle_m]))
        extra["oracle_text"] = oracle[best]
        extra["oracle_test_metrics"] = oracle_m[best].to_dict() if oracle_m[best] is not None else None
    if alias_m is not None and name_m is not None:
        extra["vs_name"] = compare(alias_m.ap, name_m.ap)
    return AliasRecord(
        category_id=ts.category_id,
        category_name=ts.name,
        token_ids=list(d.token_ids),
        text=tok.decode(d.token_ids),
        roundtrips=tok.roundtrips(d.token_ids),
        strategy=d.strategy,
        train_metrics=d.train_metrics,
        test_metrics=alias_m,
        baseline_text=ts.name,
        baseline_train_metrics=d.name_train_metrics,
        baseline_test_metrics=name_m,
        extra=extra,
    )


def run(
    dataset: str | Path,
    output: str | Path,
    cfg: SearchConfig,
    model: str = "toy",
    categories: Sequence[int] | None = None,
    resume: bool = False,
    device: str = "auto",
    backend: Sam3Backend | None = None,
    progress: bool = True,
    thresholds: Thresholds | None = None,
) -> AliasFile:
    """Discover aliases for a dataset's categories and write the outputs (see the module doc)."""
    thresholds = thresholds or Thresholds()
    out = Path(output)
    (out / "categories").mkdir(parents=True, exist_ok=True)
    ds = CocoDataset.open(dataset)
    sets = ds.target_sets(
        seed=cfg.seed, train_fraction=cfg.train_fraction, max_negatives=cfg.max_negatives, categories=categories
    )
    if not sets:
        raise ValueError(f"no usable target set in {ds.annotation_file}")
    backend = backend or Sam3Backend.load(model, device=device)
    prov = _provenance(backend, model, ds, cfg, cfg.seed)
    vocab = build_indexes(backend, cfg)
    records: dict[int, AliasRecord] = {}
    bar = tqdm(sets, desc="categories", unit="cat", disable=not progress)
    for ts in bar:
        ckpt = out / "categories" / f"{ts.category_id}.json"
        if resume and ckpt.is_file():
            try:
                done = read_aliases(ckpt)
                if _compatible(done.provenance, prov) and done.aliases:
                    records[ts.category_id] = done.aliases[0]
                    bar.set_postfix_str(f"{ts.category_id}: resumed")
                    continue
                logger.warning("%s was made with other settings; redoing category %s", ckpt, ts.category_id)
            except AliasFileError as exc:
                logger.warning("unreadable checkpoint %s (%s); redoing category %s", ckpt, exc, ts.category_id)
        bar.set_postfix_str(f"{ts.category_id} {ts.name or ''}".strip())
        writer = JsonlWriter(out / "history" / f"{ts.category_id}.jsonl")
        try:
            d = discover(backend, ts, cfg, vocab, on_step=writer)
        finally:
            writer.close()
        rec = category_record(backend, ts, d, thresholds)
        if d.soft is not None:
            from safetensors.torch import save_file

            soft_path = out / "soft" / f"{ts.category_id}.safetensors"
            soft_path.parent.mkdir(exist_ok=True)
            tmp = soft_path.with_suffix(".tmp")
            save_file({"soft": d.soft.float().contiguous()}, str(tmp))
            os.replace(tmp, soft_path)
            rec.extra["soft_prompt"] = f"soft/{ts.category_id}.safetensors"
        write_aliases(ckpt, AliasFile(provenance=prov, aliases=[rec]))
        records[ts.category_id] = rec
        bar.set_postfix_str(f"{ts.category_id}: {rec.text!r} {rec.extra.get('vs_name', '')}")
    bar.close()
    result = AliasFile(provenance=prov, aliases=[records[ts.category_id] for ts in sets if ts.category_id in records])
    write_aliases(out / "aliases.json", result)
    summary = summarize(result)
    write_json_atomic(out / "summary.json", summary)
    text = format_table(result) + "\n\n" + format_summary(summary) + "\n"
    tmp = out / ".report.txt.tmp"
    tmp.write_text(text)
    os.replace(tmp, out / "report.txt")
    return result
