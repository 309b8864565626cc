"""Discovery benchmark: vocabulary-index recall and per-candidate cost, measured in one run.

(a) recall: for every category of a toy-world dataset, whether each training word's token (the
    category's ``oracle_name``) is in the top-K shortlist, per single index view and for the pooled
    shortlist screened by the model (what discovery uses); prints recall@K.
(b) cost: the wall time of scoring discrete candidates on one category's train images as discovery
    does (text encoded once per candidate, cached image features, candidates x images batched, the
    loss), screened and unscreened, next to a naive loop (one candidate at a time, full forward
    from pixels, no cache): ms per prompt-image pair and ms per candidate.

    python bench/discovery_bench.py recall --model toy --images 120 --seed 11
    python bench/discovery_bench.py cost --model toy --candidates 64
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from alias_opt.config import load_config  # noqa: E402
from alias_opt.data.loader import CocoDataset  # noqa: E402
from alias_opt.discover import encode  # noqa: E402
from alias_opt.search.objective import Objective  # noqa: E402
from alias_opt.search.projection import CandidateFilter  # noqa: E402
from alias_opt.search.shortlist import allowed_tokens, build_indexes, pooled_shortlist  # noqa: E402
from sam3 import Sam3Backend  # noqa: E402
from sam3.preprocess import preprocess  # noqa: E402
from sam3.toy.world import write_dataset  # noqa: E402


def _dataset(args) -> Path:
    out = Path(tempfile.mkdtemp(prefix="discovery_bench_"))
    if args.world == "v2":
        from sam3.toy import world2

        world2.write_dataset(out, args.variant, args.images, args.seed)
    else:
        write_dataset(out, args.variant, args.images, args.seed)
    return out


def _oracle_words(oracle) -> list[str]:
    """The distinct words of an ``oracle_name`` (a phrase, or a list of phrases for a union)."""
    phrases = [oracle] if isinstance(oracle, str) else list(oracle)
    return list(dict.fromkeys(w for p in phrases for w in p.split()))


def recall(args, backend: Sam3Backend) -> dict:
    """Training-word recall of the top-k shortlist: per single index view (no model screening), of the
    whole pool, and of the pooled shortlist (views pooled, then screened by the model), as discovery
    builds it."""
    ds = CocoDataset.open(_dataset(args))
    cfg = load_config(args.config)
    tok = backend.tokenizer
    indexes = build_indexes(backend, cfg)
    single = [*cfg.index.views]
    rows = []
    for ts in ds.target_sets(seed=args.seed):
        feats = encode(backend, ts.train)
        filt = CandidateFilter(tok, allowed_tokens(backend, cfg, ts.name), cfg.max_len, cfg.roundtrip)
        words = [tok.encode(w, special=False)[0] for w in _oracle_words(ts.oracle_name)]
        name = tuple(tok.encode(ts.name, special=False)) if ts.name else None
        probes = [()] + ([name] if name else [])
        row = {"category": ts.category_id, "oracle": ts.oracle_name}
        for view in single:  # one view alone: its top k, unscreened
            obj = Objective(backend, ts.train, cfg.loss, feats=feats, screen_images=cfg.screen_images)
            short = pooled_shortlist(obj, indexes, filt, args.k, probes, [view], args.k)
            row[view] = [w in short for w in words]
        obj = Objective(backend, ts.train, cfg.loss, feats=feats, screen_images=cfg.screen_images)
        qualify = name if cfg.index.screen_with_name else None
        pool = pooled_shortlist(obj, indexes, filt, cfg.index.pool, probes, cfg.index.views, cfg.index.pool, qualify)
        short = pool[: args.k]
        row["pool"] = [w in pool for w in words]
        row["pooled+screened"] = [w in short for w in words]
        row["ranks"] = [short.index(w) if w in short else None for w in words]
        row["new_word"] = [w not in (name or ()) for w in words]  # a word the name lacks (policy: the narrowing)
        rows.append(row)
        print(json.dumps(row), flush=True)
    keys = [*single, "pool", "pooled+screened"]
    summary = {
        k: {
            "word_recall": float(np.mean([x for r in rows for x in r[k]])),
            "all_words": float(np.mean([all(r[k]) for r in rows])),
        }
        for k in keys
    }
    new = {
        k: float(np.mean([x for r in rows for x, n in zip(r[k], r["new_word"]) if n] or [np.nan]))
        for k in ("pool", "pooled+screened")
    }
    return {"k": args.k, "pool": cfg.index.pool, "categories": len(rows), "recall": summary, "new_word_recall": new}


def cost(args, backend: Sam3Backend) -> dict:
    ds = CocoDataset.open(_dataset(args))
    ts = ds.target_sets(seed=args.seed)[0]
    cfg = load_config(args.config)
    images = ts.train
    rng = np.random.default_rng(0)
    feats = encode(backend, images)
    filt = CandidateFilter(backend.tokenizer, allowed_tokens(backend, cfg, ts.name), cfg.max_len)
    cands = filt.accept([tuple(rng.integers(300, 40000, int(rng.integers(1, 4)))) for _ in range(args.candidates)])
    n, m = len(cands), len(images)
    out = {"images": m, "candidates": n, "device": str(backend.device), "threads": torch.get_num_threads()}

    obj = Objective(backend, images, cfg.loss, feats=feats)
    t = time.perf_counter()
    obj.losses(cands)
    dt = time.perf_counter() - t
    out["batched_ms_per_pair"] = 1000 * dt / (n * m)
    out["batched_ms_per_candidate"] = 1000 * dt / n

    obj = Objective(
        backend, images, cfg.loss, feats=feats, screen_images=cfg.screen_images, screen_keep=cfg.screen_keep
    )
    t = time.perf_counter()
    obj.score(cands)
    dt = time.perf_counter() - t
    out["screened_ms_per_candidate"] = 1000 * dt / n
    out["screened_pairs_per_candidate"] = obj.usage().forward / n

    rgbs = [im.image.load() for im in images]
    k = max(1, min(args.naive, n))
    t = time.perf_counter()
    with torch.no_grad():
        for seq in cands[:k]:  # one candidate at a time, every image from pixels, no cache
            ids, mask = backend.prompt_ids([seq])
            for rgb in rgbs:
                px = preprocess([rgb], backend.image_size).to(backend.device, backend.dtype)
                backend.model(pixel_values=px, input_ids=ids, attention_mask=mask.long())
    dt = time.perf_counter() - t
    out["naive_ms_per_candidate"] = 1000 * dt / k
    out["speedup_batched"] = out["naive_ms_per_candidate"] / out["batched_ms_per_candidate"]
    out["speedup_screened"] = out["naive_ms_per_candidate"] / out["screened_ms_per_candidate"]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "what", choices=("recall", "cost"), help="recall: training-word recall of the shortlist; cost: ms per candidate"
    )
    ap.add_argument("--model", default="toy", help="model source (default the shipped toy model)")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--world", choices=("v1", "v2"), default="v1", help="shapes world v1 (9 words) or v2 (386)")
    ap.add_argument("--variant", default="renamed", help="toy-world variant to generate")
    ap.add_argument("--images", type=int, default=120, help="images in the generated world")
    ap.add_argument("--seed", type=int, default=11, help="world seed of the generated dataset")
    ap.add_argument(
        "--config",
        help="discovery config JSON",
        default=str(Path(__file__).resolve().parents[1] / "configs" / "default.json"),
    )
    ap.add_argument("--k", type=int, default=64, help="shortlist size")
    ap.add_argument("--candidates", type=int, default=64, help="candidates timed in the batched path")
    ap.add_argument("--naive", type=int, default=4, help="candidates timed in the naive loop")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    backend = Sam3Backend.load(args.model, device=args.device)
    result = recall(args, backend) if args.what == "recall" else cost(args, backend)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
