"""Alias discovery end to end: per category, the search phases, held-out scoring, checkpoints.

    run(dataset, output, model="toy", cfg=load_config("configs/fast.json"))

Per category (``discover``): build the ``Objective`` on the train images, the concept's vocabulary
shortlist, then the strategy's phases (default ``pez+evolution``: shortlist scan -> PEZ soft prompt
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
from alias_opt.discrete_search import random_search, scan
from alias_opt.embeddings import ProjectionIndex, VocabularyIndex, concept_vector
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


def allowed_tokens(backend: Sam3Backend, cfg: SearchConfig, name: str | None) -> torch.Tensor:
    """The (V,) allowed-token mask of a category under ``cfg`` (never special tokens)."""
    block: list[str | int] = [int(b) if isinstance(b, int) or str(b).isdigit() else str(b) for b in cfg.blocklist]
    return backend.tokenizer.allowed_mask(
        ascii_only=cfg.ascii_only, blocklist=block, block_words_of=(name or "") if cfg.block_name else ""
    )


def build_shortlist(
    obj: Objective,
    vocab: VocabularyIndex,
    filt: CandidateFilter,
    k: int,
    probes: Sequence[Seq],
    rounds: int = 1,
    two_sided: bool = False,
) -> list[int]:
    """The concept's top-k allowed tokens in the vocabulary index.

    Round 1 probes the model with ``probes`` (the empty prompt and the name); each further round
    probes with the best single token of the previous shortlist (scored on the screening images)
    and merges its shortlist into the first, alternating. With ``two_sided`` half of each
    shortlist comes from the bottom of the ranking (alternating with the top).
    """

    def search(concept: torch.Tensor) -> list[int]:
        top = [int(t) for t in vocab.search(concept, k, allowed=filt.allowed)[0]]
        if not two_sided:
            return top
        bottom = [int(t) for t in vocab.search(-concept, k, allowed=filt.allowed)[0]]
        return _interleave(top, bottom, k)

    concept = _concept(obj, vocab.space, probes)
    shortlist = search(concept)
    for _ in range(1, rounds):
        if vocab.space == "text" or not shortlist:
            break
        singles = filt.accept([(t,) for t in shortlist])
        losses = obj.losses(singles, obj.screen_idx, key="screen")
        best = singles[int(np.argmin(losses))]
        concept = _concept(obj, vocab.space, [best])
        shortlist = _interleave(search(concept), shortlist, k)
    return shortlist


def view_spaces(cfg: SearchConfig) -> list[str]:
    """The index spaces a config needs: ``index.space`` and every space its views name."""
    spaces = [cfg.index.space]
    for view in cfg.index.views:
        space = view.partition(":")[2] if view.startswith("distinct") else view.lstrip("+-")
        spaces.append(space or cfg.index.space)
    return list(dict.fromkeys(spaces))


def build_indexes(backend: Sam3Backend, cfg: SearchConfig) -> dict[str, VocabularyIndex]:
    """The vocabulary indexes of a config, by space, ``index.space`` first (each cached on disk)."""
    return {s: VocabularyIndex.build(backend, s, cfg.index.cache_dir) for s in view_spaces(cfg)}


def _concept(obj: Objective, space: str, probes: Sequence[Seq]) -> torch.Tensor:
    """The concept vector of ``obj``'s targets; its probe forwards are charged to ``obj``."""
    if space != "text":
        obj.counter.forward += len(probes) * obj.n_images
    return concept_vector(obj.backend, obj.feats, obj.targets, obj.grid, space, probes)


def _interleave(a: Sequence[int], b: Sequence[int], k: int) -> list[int]:
    """a[0], b[0], a[1], b[1], ... without repeats, cut to k."""
    out: list[int] = []
    for x, y in zip(a, b):
        out += [x, y]
    return list(dict.fromkeys([*out, *a, *b]))[:k]


def pooled_shortlist(
    obj: Objective,
    indexes: Mapping[str, VocabularyIndex],
    filt: CandidateFilter,
    k: int,
    probes: Sequence[Seq],
    views: Sequence[str],
    pool: int,
) -> list[int]:
    """A shortlist screened by the model itself from a pool drawn from several index views.

    Each view contributes its top ``pool / len(views)`` allowed tokens, taken in turn: ``SPACE``
    (nearest to the concept vector in that space), ``-SPACE`` (the other end of the same ranking:
    the concept vector's sign is only as good as the probe, and a model's known words lie far out
    on either side) and ``distinct`` / ``distinct:SPACE`` (the model's most distinctive tokens,
    concept-free). The pooled tokens are scored as one-token aliases on the screening images; the
    best k, best first, are the shortlist.
    """
    per = max(1, -(-pool // max(1, len(views))))
    concepts: dict[str, torch.Tensor] = {}
    lists: list[list[int]] = []
    for view in views:
        if view.startswith("distinct"):
            space = view.partition(":")[2] or next(iter(indexes))
            lists.append([int(t) for t in indexes[space].distinct(per, filt.allowed)])
            continue
        sign, space = (-1.0, view[1:]) if view.startswith("-") else (1.0, view.lstrip("+"))
        if space not in concepts:
            concepts[space] = _concept(obj, space, probes)
        lists.append([int(t) for t in indexes[space].search(sign * concepts[space], per, allowed=filt.allowed)[0]])
    pooled: list[int] = []
    for row in zip(*lists):
        pooled += row
    singles = filt.accept([(t,) for t in dict.fromkeys(pooled)][:pool])
    losses = obj.losses(singles, obj.screen_idx, key="screen")
    return [singles[i][0] for i in np.argsort(losses, kind="stable")[:k]]


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
    indexes = dict(vocab) if isinstance(vocab, Mapping) else {vocab.space: vocab}
    for space in view_spaces(cfg):  # spaces the views need and the caller did not give
        if space not in indexes:
            indexes[space] = VocabularyIndex.build(backend, space, cfg.index.cache_dir)
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


# ---------------------------------------------------------------------------------------- report
def _ap(m: PromptMetrics | dict | None) -> float:
    if m is None:
        return math.nan
    v = m.get("ap") if isinstance(m, dict) else m.ap
    return math.nan if v is None else float(v)


def summarize(f: AliasFile, margin: float = 0.01, ratio: float = 0.9) -> dict:
    """Win/tie/loss vs the name, the oracle ratio and mean APs on the held-out split."""
    rows = []
    for r in f.aliases:
        a, n, o = _ap(r.test_metrics), _ap(r.baseline_test_metrics), _ap(r.extra.get("oracle_test_metrics"))
        rows.append(
            {
                "category_id": r.category_id,
                "name": r.category_name,
                "alias": r.text,
                "token_ids": r.token_ids,
                "alias_ap": a,
                "name_ap": n,
                "oracle_ap": o,
                "vs_name": compare(a, n, margin) if not (math.isnan(a) or math.isnan(n)) else "n/a",
                "oracle_ratio": a / o if o and not math.isnan(o) and o > 0 else math.nan,
                "forward_passes": r.extra.get("forward_passes"),
                "wall_time": r.extra.get("wall_time"),
            }
        )

    def mean(key: str) -> float:
        v = [x[key] for x in rows if not math.isnan(x[key])]
        return float(np.mean(v)) if v else math.nan

    n = len(rows)
    with_o = [x for x in rows if not math.isnan(x["oracle_ratio"])]
    return {
        "categories": n,
        "win": sum(x["vs_name"] == "win" for x in rows),
        "tie": sum(x["vs_name"] == "tie" for x in rows),
        "loss": sum(x["vs_name"] == "loss" for x in rows),
        "no_baseline": sum(x["vs_name"] == "n/a" for x in rows),
        "mean_alias_ap": mean("alias_ap"),
        "mean_name_ap": mean("name_ap"),
        "mean_oracle_ap": mean("oracle_ap"),
        f"oracle_ratio_ge_{ratio}": sum(x["oracle_ratio"] >= ratio for x in with_o),
        "with_oracle": len(with_o),
        "wall_time": float(np.nansum([x["wall_time"] or 0 for x in rows])),
        "rows": rows,
    }


def _f(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def format_table(f: AliasFile) -> str:
    """The held-out table: one row per category."""
    head = ("id", "name", "alias", "AP alias", "AP name", "AP oracle", "alias/oracle", "vs name", "s")
    rows = []
    for x in summarize(f)["rows"]:
        rows.append(
            (
                str(x["category_id"]),
                (x["name"] or "(none)")[:24],
                repr(x["alias"])[:28],
                _f(x["alias_ap"]),
                _f(x["name_ap"]),
                _f(x["oracle_ap"]),
                _f(x["oracle_ratio"]),
                x["vs_name"],
                f"{x['wall_time'] or 0:.0f}",
            )
        )
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    line = lambda r: "  ".join(v.ljust(w) if i < 3 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([line(head), "  ".join("-" * w for w in widths), *map(line, rows)])


def format_summary(s: dict) -> str:
    n = s["categories"]
    parts = [
        f"held-out: alias beats name in {s['win']}/{n} (tie {s['tie']}, loss {s['loss']}"
        + (f", no name {s['no_baseline']}" if s["no_baseline"] else "")
        + ")",
        f"mean AP alias {_f(s['mean_alias_ap'])}, name {_f(s['mean_name_ap'])}, oracle {_f(s['mean_oracle_ap'])}",
    ]
    if s["with_oracle"]:
        key = next(k for k in s if k.startswith("oracle_ratio_ge_"))
        parts.append(f"alias >= {key.rsplit('_', 1)[1]} x oracle AP in {s[key]}/{s['with_oracle']}")
    parts.append(f"search time {s['wall_time']:.0f} s")
    return " | ".join(parts)
