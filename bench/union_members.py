"""Union members: can the name's one-token insertions find a union category's members?

A *policy* category whose annotation is a union ("circle" where only the red and the purple circles count)
is answered by a cover set of two narrowed names ("red circle | purple circle"). The cover set searches
among the single search's best candidates, which a too-broad name fills with its own variants, and, with
``set_split`` (``alias_opt.search.alias_set``), among the name's insertions. This bench measures, per union
category of a generated world-v2 dataset, with the discovery context a run builds (its config, split and
search seed):

    pool_ranks      each member word's rank in the model-screened pool (``SearchContext``'s pooled shortlist)
    loss_ranks      each member's rank among all insertions of pool tokens into the name by screening loss
                    (what ``set_split`` takes the first 4 x set_split of)
    ap_ranks        each member's rank by train AP among the insertions of the pool's best ``--top`` tokens
    name_train_ap, oracle_train_ap, member_train_aps
                    train AP of the name, of the oracle's members merged, of each member alone (is the
                    union a search problem, or does the exact set not beat the name on train either?)
    cover           ``greedy_cover`` among the ``--keep`` best of those by train AP, and its train AP
    found           the cover holds every member
    prec_ranks      each member's rank by train precision (detections above the score threshold matched
                    one-to-one at IoU 0.5) among those insertions that find at least ``--min-hits`` targets
    pcover, pfound  the same cover among the ``--keep`` best by precision
    pair_rank       the members' pair's rank among all pairs of those insertions by estimated merged AP50
                    (``alias_opt.search.pairs``; the set builder takes the best ``PAIRS``), pairs: the best;
                    matched by mask IoU
    box_pair_rank, box_pairs
                    the same with detections matched by box IoU (``box_hits``: the default estimate,
                    ``set_pair_boxes``)

    python bench/union_members.py --model toy-v2 --seed 6161 --images 240 --threads 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alias_opt.config import load_config  # noqa: E402
from alias_opt.data.loader import CocoDataset  # noqa: E402
from alias_opt.discover import encode, train_images  # noqa: E402
from alias_opt.eval.boxes import predict_boxes, target_boxes  # noqa: E402
from alias_opt.eval.metrics import DEFAULT_THRESHOLDS  # noqa: E402
from alias_opt.eval.predict import predict  # noqa: E402
from alias_opt.search.context import make_context  # noqa: E402
from alias_opt.search.cover import COVER_MIN_SCORE, PAIRS, above, best_splits, greedy_cover, merged_metrics  # noqa: E402
from alias_opt.search.discrete import extensions  # noqa: E402
from alias_opt.search.pairs import best_pairs, box_hits, image_hits, join  # noqa: E402
from alias_opt.search.pipeline import search_seed  # noqa: E402
from alias_opt.search.set_steps import covered_targets  # noqa: E402
from sam3 import Sam3Backend  # noqa: E402
from sam3.toy import world2  # noqa: E402


def _rank(order: list, item) -> int | None:
    return order.index(item) if item in order else None


def by_precision(preds: dict, images, min_hits: int) -> list:
    """The sequences of ``preds`` that find at least ``min_hits`` train targets, by precision (then hits)."""
    rows = []
    for s, pr in preds.items():
        tp = fp = 0
        for p, im in zip(pr, images):
            hit = covered_targets(p, im)
            tp += int(hit.sum())
            fp += len(p.kept(DEFAULT_THRESHOLDS.score)) - int(hit.sum())
        if tp >= min_hits:
            rows.append((-tp / max(1, tp + fp), -tp, s))
    return [s for *_, s in sorted(rows, key=lambda r: r[:2])]


def in_best(rows: list[dict], key: str) -> float | None:
    """The share of ``rows`` whose members' pair ranks among the best ``PAIRS`` by ``key``."""
    return float(np.mean([r[key] is not None and r[key] < PAIRS for r in rows])) if rows else None


def union_rows(args, backend: Sam3Backend, data: Path) -> list[dict]:
    """One row per union category of ``data`` (see the module doc)."""
    cfg = load_config(args.config)
    tok = backend.tokenizer
    rows = []
    sets = CocoDataset.open(data).target_sets(
        seed=cfg.seed, train_fraction=cfg.train_fraction, max_negatives=cfg.max_negatives
    )
    for ts in sets:
        if isinstance(ts.oracle_name, str) or not ts.name:
            continue
        t0 = time.perf_counter()
        images = train_images(ts, cfg, cfg.seed)
        feats = encode(backend, images)
        ctx = make_context(backend, images, feats, ts.name, cfg, search_seed(cfg.seed, ts.category_id))
        pool, name = ctx.pool(), ctx.name_seq
        members = [tuple(tok.encode(p, special=False)) for p in ts.oracle_name]
        words = [w for m in members for w in m if w not in name]
        by_loss = ctx.splits(10**6)
        ins = [c for c in ctx.filt.accept(extensions([name], pool[: args.top])) if c != name]
        preds = predict(backend, feats, images, [list(s) for s in ins])
        trimmed = {s: [above(p, COVER_MIN_SCORE) for p in pr] for s, pr in zip(ins, preds)}
        by_ap = best_splits(trimmed, images, len(ins))
        cover, m = greedy_cover({s: trimmed[s] for s in by_ap[: args.keep]}, images, cfg.max_aliases, margin=0.02)
        by_prec = by_precision(dict(zip(ins, preds)), images, args.min_hits)
        pcover, pm = greedy_cover({s: trimmed[s] for s in by_prec[: args.keep]}, images, cfg.max_aliases, margin=0.02)
        hits = {s: join([image_hits(p, im) for p, im in zip(trimmed[s], images)]) for s in ins}
        ranked = best_pairs(hits, 10**6)
        pair_order = [frozenset((a, b)) for a, b, _ in ranked]
        gt = [target_boxes(im) for im in images]
        found = predict_boxes(backend, feats, images, ins, COVER_MIN_SCORE)
        box_ranked = best_pairs({s: join([box_hits(p, b) for p, b in zip(ps, gt)]) for s, ps in zip(ins, found)}, 10**6)
        ref = predict(backend, feats, images, [list(name)] + [list(s) for s in members])
        ref = [[above(p, COVER_MIN_SCORE) for p in pr] for pr in ref]
        name_m, oracle_m = merged_metrics(ref[:1], images), merged_metrics(ref[1:], images)
        member_aps = [round(float(merged_metrics([r], images).ap), 4) for r in ref[1:]]
        rows.append(
            {
                "category": ts.category_id,
                "name": ts.name,
                "oracle": ts.oracle_name,
                "pool_ranks": [_rank(pool, w) for w in words],
                "insertions": len(by_loss),
                "loss_ranks": [_rank(by_loss, s) for s in members],
                "ap_ranks": [_rank(by_ap, s) for s in members],
                "cover": [tok.decode(list(s)) for s in cover],
                "cover_train_ap": None if m is None else round(float(m.ap), 4),
                "found": all(s in cover for s in members),
                "prec_ranks": [_rank(by_prec, s) for s in members],
                "pcover": [tok.decode(list(s)) for s in pcover],
                "pcover_train_ap": None if pm is None else round(float(pm.ap), 4),
                "pfound": all(s in pcover for s in members),
                "pair_rank": _rank(pair_order, frozenset(members)),
                "pairs": [f"{tok.decode(list(a))} | {tok.decode(list(b))} ({e:.3f})" for a, b, e in ranked[:PAIRS]],
                "box_pair_rank": _rank([frozenset((a, b)) for a, b, _ in box_ranked], frozenset(members)),
                "box_pairs": [f"{tok.decode(list(a))} | {tok.decode(list(b))} ({e:.3f})" for a, b, e in box_ranked[:4]],
                "name_train_ap": round(float(name_m.ap), 4),
                "oracle_train_ap": round(float(oracle_m.ap), 4),
                "member_train_aps": member_aps,
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="toy-v2", help="a world-v2 model source (default the shipped sam3-toy v2)")
    ap.add_argument("--seed", type=int, default=6161, help="world seed of the generated policy dataset")
    ap.add_argument("--images", type=int, default=240, help="images in the generated world")
    ap.add_argument("--config", default=str(REPO / "configs" / "fast.json"), help="discovery config JSON")
    ap.add_argument("--top", type=int, default=32, help="pool tokens whose insertions are ranked by train AP")
    ap.add_argument("--keep", type=int, default=16, help="insertions (best by train AP) the cover chooses among")
    ap.add_argument("--min-hits", type=int, default=2, help="targets an insertion must find to rank by precision")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    backend = Sam3Backend.load(args.model)
    data = Path(tempfile.mkdtemp(prefix="union_members_"))
    world2.write_dataset(data, "policy", args.images, args.seed)
    rows = union_rows(args, backend, data)
    loss_top64 = [all(r is not None and r < 64 for r in row["loss_ranks"]) for row in rows]
    print(
        json.dumps(
            {
                "unions": len(rows),
                "members_in_top64_by_screening_loss": float(np.mean(loss_top64)) if rows else None,
                "cover_finds_all_members": float(np.mean([r["found"] for r in rows])) if rows else None,
                "precision_cover_finds_all_members": float(np.mean([r["pfound"] for r in rows])) if rows else None,
                "pair_in_best_pairs_masks": in_best(rows, "pair_rank"),
                "pair_in_best_pairs_boxes": in_best(rows, "box_pair_rank"),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
