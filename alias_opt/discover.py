"""Alias discovery end to end: per category, the search phases, held-out scoring, checkpoints.

    run(dataset, output, model="toy", cfg=load_config("configs/default.json"))

Per category (``discover``): build the ``Objective`` on the train images, the concept's vocabulary
shortlist, then the strategy's phases (default ``pez+evolution``: shortlist scan -> one-token extensions
of the best singles -> PEZ soft prompt
-> evolutionary search), re-rank the best few candidates (and the natural name, so the alias is
never worse on train than the name) by train-split COCO AP; then, for a union of concepts, grow the
winner into an alias set (``discover_alias_set``: up to ``cfg.max_aliases`` aliases whose detections are
merged, kept only where it beats the single alias on train); score the set, the name and, for the
report only, the dataset's ``oracle_name`` on the held-out test split (``alias_opt.record``).

Outputs under ``--output`` (every file written atomically):
    categories/<id>.json   one finished category (an aliases.json with one record): the checkpoint
    history/<id>.jsonl     one line per search step (phase, step, loss, best, passes, wall time; an
                           alias set's residual searches' phases are tagged set<n>:)
    aliases.json           all finished categories (alias_opt.export schema)
    summary.json, report.txt  the held-out table and the win / tie / loss counts
``resume=True`` skips categories whose checkpoint matches the model, dataset, split and config, so
a run killed at any point (kill -9 included) continues without redoing or losing finished work; a
checkpoint made with other settings makes ``run`` refuse (``ResumeMismatch``, the differences listed)
before anything is written, unless ``overwrite=True`` (then those categories are redone).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from alias_opt.cli import pause_point
from alias_opt.config import SearchConfig
from alias_opt.data.loader import CocoDataset, TargetImage, TargetSet
from alias_opt.dist import DistContext, image_sharding, local_first
from alias_opt.eval.metrics import Thresholds
from alias_opt.eval.summary import summarize, write_reports
from alias_opt.eval.text import quote
from alias_opt.export import (
    AliasFile,
    AliasFileError,
    AliasRecord,
    read_aliases,
    write_aliases,
    write_json_atomic,
)
from alias_opt.progress import RunProgress
from alias_opt.record import category_record
from alias_opt.resume import check_resume, compatible, provenance
from alias_opt.search.alias_set import build_alias_set
from alias_opt.search.cover import encode_targets
from alias_opt.search.embeddings import VocabularyIndex
from alias_opt.search.objective import Step
from alias_opt.search.pipeline import SearchOutcome, search, search_seed
from alias_opt.search.set_result import AliasSetResult
from alias_opt.search.shortlist import build_indexes
from alias_opt.search.strategies import get_strategy
from sam3 import ImageFeatures, Sam3Backend

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------- discovery
def train_images(ts: TargetSet, cfg: SearchConfig, split_seed: int) -> list[TargetImage]:
    """The train images a search uses: all of ``ts.train``, or at most ``cfg.max_train_images`` of
    them (about a third negatives), drawn with the split seed (the same for every strategy and search
    seed) and kept in image-id order."""
    images = list(ts.train)
    if cfg.max_train_images and len(images) > cfg.max_train_images:
        rng = np.random.default_rng([split_seed, ts.category_id])
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


def check_negatives(ts: TargetSet, cfg: SearchConfig) -> list[TargetImage]:
    """The name check's (and the wide re-ranking's and the sharpening's) further negatives: the first
    ``cfg.name_negatives`` of ``ts.extra_negatives`` (``CocoDataset.target_sets(extra_negatives=...)`` draws them)."""
    return ts.extra_negatives[: cfg.name_negatives] if cfg.name_level or cfg.wide_rerank or cfg.sharpen else []


def encode(backend: Sam3Backend, images: Sequence[TargetImage]) -> ImageFeatures:
    """Image features of TargetImages, read in their JSON orientation (as alias_opt.eval.metrics does)."""
    return encode_targets(backend, images)


def discover_alias_set(
    backend: Sam3Backend,
    ts: TargetSet,
    cfg: SearchConfig,
    first: SearchOutcome,
    vocab: VocabularyIndex | Mapping[str, VocabularyIndex] | None = None,
    on_step: Callable[[Step], None] | None = None,
    feats: ImageFeatures | None = None,
) -> AliasSetResult | None:
    """Grow ``first``'s alias into an alias set (``alias_opt.search.alias_set.build_alias_set``) on the
    same train images; None with ``cfg.max_aliases == 1`` or when the search found no alias.

    Args:
        first: ``discover``'s outcome for ``ts`` with the same ``cfg``.
        vocab, on_step, feats: as for ``discover``.
    """
    if cfg.max_aliases <= 1 or first.token_ids is None:
        return None
    indexes = dict(vocab) if isinstance(vocab, Mapping) else {vocab.space: vocab} if vocab is not None else {}
    images = train_images(ts, cfg, cfg.seed)
    feats = feats if feats is not None else encode(backend, images)
    seed = search_seed(cfg.seed, ts.category_id)
    extra = check_negatives(ts, cfg)
    return build_alias_set(
        backend, images, feats, ts.name, cfg, seed, first, indexes=indexes, on_step=on_step, extra_negatives=extra
    )


def discover(
    backend: Sam3Backend,
    ts: TargetSet,
    cfg: SearchConfig,
    vocab: VocabularyIndex | Mapping[str, VocabularyIndex] | None = None,
    on_step: Callable[[Step], None] | None = None,
    feats: ImageFeatures | None = None,
) -> SearchOutcome:
    """Find an alias for one target set on its train split: ``cfg.strategy`` through the one search
    pipeline (``alias_opt.search.pipeline.search``) with ``cfg.budget`` and the search seed of
    (``cfg.seed``, category).

    Args:
        backend: the frozen SAM 3.
        ts: the target set (split with ``cfg.seed``).
        cfg: the search settings.
        vocab: an index, or indexes by space (``build_indexes``); others are built on first use.
        on_step: called with every recorded step.
        feats: features of ``train_images(ts, cfg, cfg.seed)`` (default: encoded here).

    Returns:
        the SearchOutcome.
    """
    indexes = dict(vocab) if isinstance(vocab, Mapping) else {vocab.space: vocab} if vocab is not None else {}
    images = train_images(ts, cfg, cfg.seed)
    if not any(im.is_positive for im in images):
        raise ValueError(f"category {ts.category_id} has no positive train image")
    feats = feats if feats is not None else encode(backend, images)
    seed = search_seed(cfg.seed, ts.category_id)
    splits = 4 * cfg.set_split if cfg.max_aliases > 1 and cfg.set_pool else 0  # the cover set's insertions
    pairs = cfg.set_pair_tokens if cfg.max_aliases > 1 and cfg.set_pool else 0  # the cover set's pairs
    return search(
        backend,
        images,
        feats,
        ts.name,
        cfg,
        seed,
        indexes=indexes,
        on_step=on_step,
        splits=splits,
        insertions=pairs,
        extra_negatives=check_negatives(ts, cfg),
    )


# ---------------------------------------------------------------------------------------- the run
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


class _NoHistory:
    """The history writer of a rank that does not write (image sharding: rank 0 writes)."""

    def __call__(self, st: Step) -> None:
        pass

    def close(self) -> None:
        pass


_no_history = _NoHistory()


def _save_soft(path: Path, soft) -> None:
    """Write a soft prompt (P, T, D) as safetensors, atomically."""
    from safetensors.torch import save_file

    path.parent.mkdir(exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({"soft": soft.float().contiguous()}, str(tmp))
    os.replace(tmp, path)


SHARD_MODES = ("categories", "images")  # how torchrun's ranks split a run (run(shard=...), main.py --shard)


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
    dtype: str = "auto",
    overwrite: bool = False,
    figures: bool = True,
    timings: dict | None = None,
    ctx: DistContext | None = None,
    shard: str = "categories",
) -> AliasFile:
    """Discover aliases for a dataset's categories and write the outputs (see the module doc).

    With a ``ctx`` of several ranks (``torchrun``) and ``shard="categories"``, each rank runs its
    shard of the categories (round robin) and writes their checkpoints. With ``shard="images"`` all
    ranks run every category together: each encodes its share of the category's images into the
    shared feature cache, the search grounds each rank's share of the prompt-image pairs and
    all-reduces losses and gradients (``alias_opt.dist.image_sharding``), and rank 0 writes the
    per-category files. Either way rank 0 writes the merged aliases.json, summary.json and reports
    once, and every rank returns the merged result.
    """
    if shard not in SHARD_MODES:
        raise ValueError(f"unknown shard mode {shard!r}; choose from {', '.join(SHARD_MODES)}")
    ctx = ctx or DistContext()
    by_image = shard == "images" and ctx.distributed
    writes = ctx.is_main or not by_image  # who writes a category's checkpoint, history, predictions
    thresholds = thresholds or Thresholds()
    out = Path(output)
    (out / "categories").mkdir(parents=True, exist_ok=True)
    ds = CocoDataset.open(dataset)
    sets = ds.target_sets(
        seed=cfg.seed,
        train_fraction=cfg.train_fraction,
        max_negatives=cfg.max_negatives,
        categories=categories,
        extra_negatives=cfg.name_negatives,
    )
    if not sets:
        raise ValueError(f"no usable target set in {ds.annotation_file}")
    backend = backend or Sam3Backend.load(model, device=device, dtype=dtype)
    prov = provenance(backend, model, ds, cfg, cfg.seed)
    if resume and not overwrite:  # refuse before anything is written
        check_resume(out, prov)
    with local_first(ctx):  # one rank per node fills the index cache, the others read it
        # strategies without a shortlist never read an index: at full size on a CPU a table costs hours
        vocab = build_indexes(backend, cfg) if get_strategy(cfg.strategy).needs_vocab else {}
    records: dict[int, AliasRecord] = {}
    bar = tqdm(
        sets if by_image else ctx.shard(sets), desc="categories", unit="cat", disable=not progress or not ctx.is_main
    )
    prog = RunProgress(bar, bar.total or len(sets), cfg.budget)
    with image_sharding(ctx if by_image else DistContext()):
        for ts in bar:
            ckpt = out / "categories" / f"{ts.category_id}.json"
            if resume and ckpt.is_file():
                try:
                    done = read_aliases(ckpt)
                    if compatible(done.provenance, prov) and done.aliases:
                        records[ts.category_id] = done.aliases[0]
                        prog.resumed()
                        bar.set_postfix_str(f"{ts.category_id}: resumed")
                        continue
                    logger.warning("%s was made with other settings; redoing category %s", ckpt, ts.category_id)
                except AliasFileError as exc:
                    logger.warning("unreadable checkpoint %s (%s); redoing category %s", ckpt, exc, ts.category_id)
            prog.start(ts.category_id, ts.name)
            writer = JsonlWriter(out / "history" / f"{ts.category_id}.jsonl") if writes else _no_history
            try:
                with prog.timed("encoding"):
                    if by_image:  # each rank encodes its share into the shared cache, then all read it
                        encode(backend, ctx.shard([*train_images(ts, cfg, cfg.seed), *ts.test]))
                        ctx.barrier()
                    feats = encode(backend, train_images(ts, cfg, cfg.seed))
                d = discover(backend, ts, cfg, vocab, on_step=prog.tee(writer), feats=feats)
                with prog.timed("alias sets"):
                    aset = discover_alias_set(backend, ts, cfg, d, vocab, on_step=prog.tee(writer), feats=feats)
                del feats
            finally:
                writer.close()
            in_phases = sum(getattr(r, "wall_time", 0.0) or 0.0 for r in d.phases)
            prog.timings["search"] += in_phases
            prog.timings["shortlist and re-rank"] += max(0.0, d.wall_time - in_phases)  # outside the phases
            with prog.timed("held-out scoring"):
                rec = category_record(
                    backend,
                    ts,
                    d,
                    thresholds,
                    predictions_path=out / "predictions" / f"{ts.category_id}.json" if writes else None,
                    alias_set=aset,
                )
            if d.soft is not None and d.soft.soft is not None:
                rec.extra["soft_prompt"] = f"soft/{ts.category_id}.safetensors"
                if writes:
                    _save_soft(out / rec.extra["soft_prompt"], d.soft.soft)
            if writes:
                write_aliases(ckpt, AliasFile(provenance=prov, aliases=[rec]))
            pause_point("category-checkpoint")  # kill -9 tests stop the run here
            records[ts.category_id] = rec
            prog.finish(f"done: {quote(rec.set_text, 40)} {rec.extra.get('vs_name', '')}".strip())
    prog.close()
    bar.close()
    if not by_image:  # every rank's share (sharding by image, every rank holds every record)
        records = {cid: rec for part in ctx.gather(records) for cid, rec in part.items()}
    result = AliasFile(provenance=prov, aliases=[records[ts.category_id] for ts in sets if ts.category_id in records])
    if not ctx.is_main:
        ctx.barrier()  # returns once rank 0 has written the merged outputs
        return result
    write_aliases(out / "aliases.json", result)
    summary = summarize(result)
    write_json_atomic(out / "summary.json", summary)
    with prog.timed("figures and reports"):
        write_reports(out, result, summary, {ts.category_id: ts for ts in sets}, thresholds.score, figures=figures)
    if timings is not None:
        timings.update(prog.timings)
    ctx.barrier()
    return result
