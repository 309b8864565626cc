"""The pairs' estimate by boxes vs by masks: time ratio and agreement, measured in one run.

Where a known name's single alias is too broad, the set builder scores each of the name's one-token
insertions (``SearchContext.insertions(cfg.set_pair_tokens)``) on all train images and ranks pairs of them
by an estimate of their merged AP50 (``alias_opt.search.pairs``). ``set_pair_boxes`` (the default) matches
the detections to the targets by box IoU, with no masks (``alias_opt.eval.boxes.predict_boxes``: the pixel
decoder never runs); off, by mask IoU on lean predictions (the masks of detections above
``COVER_MIN_SCORE`` only). Per category of a generated world-v2 dataset whose name the model knows, this
bench times both estimates on the same insertions (the same process, one after the other, same threads;
the mask estimate predicts every insertion here, where a run reuses the few already predicted in full)
and reports:

    insertions, pairs       insertions scored and train images x insertions (pair forwards)
    box_s, mask_s, ratio    wall seconds of each estimate and mask_s / box_s
    top_overlap             members shared by the two estimates' best ``PAIRS`` pairs (of the union of both)
    same_best               the two estimates' best pair is the same

    python bench/pair_estimate.py --model toy-v2 --seed 3131 --images 240 --threads 2 --categories 8
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
from alias_opt.eval.metrics import DEFAULT_THRESHOLDS  # noqa: E402
from alias_opt.search.context import make_context  # noqa: E402
from alias_opt.search.cover import PAIRS, insertion_pairs  # noqa: E402
from alias_opt.search.pairs import pair_members  # noqa: E402
from alias_opt.search.pipeline import search_seed  # noqa: E402
from sam3 import Sam3Backend  # noqa: E402
from sam3.toy import world2  # noqa: E402


def estimate_rows(args, backend: Sam3Backend, data: Path) -> list[dict]:
    """One row per category of ``data`` whose name the model knows (see the module doc)."""
    cfg = load_config(args.config)
    rows = []
    sets = CocoDataset.open(data).target_sets(
        seed=cfg.seed, train_fraction=cfg.train_fraction, max_negatives=cfg.max_negatives
    )
    for ts in sets:
        if not ts.name or (args.categories and ts.category_id not in args.categories):
            continue
        images = train_images(ts, cfg, cfg.seed)
        feats = encode(backend, images)
        ctx = make_context(backend, images, feats, ts.name, cfg, search_seed(cfg.seed, ts.category_id))
        ctx.pool()  # builds the model-screened pool the insertions are drawn from
        if not ctx.knows_name():
            continue
        ins = ctx.insertions(cfg.set_pair_tokens)
        timed = {}
        for boxes in (True, False):
            t0 = time.perf_counter()
            pairs, spent = insertion_pairs(backend, feats, images, ins, {}, DEFAULT_THRESHOLDS, boxes)
            timed[boxes] = (pairs, spent, time.perf_counter() - t0)
        (bp, spent, box_s), (mp, _, mask_s) = timed[True], timed[False]
        b_members, m_members = set(pair_members(bp)), set(pair_members(mp))
        rows.append(
            {
                "category": ts.category_id,
                "name": ts.name,
                "insertions": len(ins),
                "pairs": spent,
                "box_s": round(box_s, 1),
                "mask_s": round(mask_s, 1),
                "ratio": round(mask_s / box_s, 2) if box_s > 0 else None,
                "top_overlap": f"{len(b_members & m_members)}/{len(b_members | m_members)}",
                "same_best": bool(bp and mp and {*bp[0][:2]} == {*mp[0][:2]}),
                "box_best": [backend.tokenizer.decode(list(s)) for s in bp[0][:2]] if bp else None,
                "mask_best": [backend.tokenizer.decode(list(s)) for s in mp[0][:2]] if mp else None,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="toy-v2", help="a world-v2 model source (default the shipped sam3-toy v2)")
    ap.add_argument("--seed", type=int, default=3131, help="world seed of the generated policy dataset")
    ap.add_argument("--images", type=int, default=240, help="images in the generated world")
    ap.add_argument("--variant", default="policy", help="world-v2 variant (policy or named: the names it knows)")
    ap.add_argument("--config", default=str(REPO / "configs" / "default.json"), help="discovery config JSON")
    ap.add_argument("--categories", type=int, nargs="*", default=[], help="category ids (default: every known name)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    backend = Sam3Backend.load(args.model)
    data = Path(tempfile.mkdtemp(prefix="pair_estimate_"))
    world2.write_dataset(data, args.variant, args.images, args.seed)
    rows = estimate_rows(args, backend, data)
    box_s, mask_s = sum(r["box_s"] for r in rows), sum(r["mask_s"] for r in rows)
    summary = {
        "categories": len(rows),
        "box_s": round(box_s, 1),
        "mask_s": round(mask_s, 1),
        "ratio": round(mask_s / box_s, 2) if box_s else None,
        "same_best": float(np.mean([r["same_best"] for r in rows])) if rows else None,
        "pairs_kept": PAIRS,
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
