"""Pool neighbours: do the token-embedding neighbours of the screened pool's best tokens hold the words it misses?

The search tries only tokens of the screened shortlist pool (``alias_opt.search.shortlist.pooled_shortlist``).
With ``index.neighbours`` the nearest tokens (``ProjectionIndex.neighbours``) of its best ``index.neighbour_heads``
join it, screened the same way. For each category of finished world-v2 runs this builds the pool without them
(the config's views, screened alone and before the name) and reports, per (heads, neighbours) setting, how many
tokens join and, of the attribute values the category's exact phrase adds to its name (a value counts as held
when any of its trained words, ``sam3.toy.vocab.WORDS``, is), the share the pool holds and the share its first
``index.shortlist`` (the shortlist, ranked with the newcomers) holds, without and with them.

    python bench/pool_neighbours.py --run results/wv2d/policy_s4545_n240_p20 --settings 0x0,16x4,32x4,48x4 --threads 2
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alias_opt.config import load_config  # noqa: E402
from alias_opt.search.shortlist import head_neighbours, qualifier_losses  # noqa: E402
from bench.pool_depth import category_contexts, runs_parser  # noqa: E402
from sam3 import Sam3Backend  # noqa: E402
from sam3.toy import vocab  # noqa: E402


def settings(text: str) -> list[tuple[int, int]]:
    """ "0x0,32x4" -> [(0, 0), (32, 4)]: (heads, neighbours) pairs."""
    return [(int(h), int(k)) for h, k in (s.split("x") for s in text.split(","))]


def best_losses(ctx, tokens: list[int]) -> np.ndarray:
    """(N,) each token's better screening loss, alone or before the name (as ``pooled_shortlist`` ranks)."""
    losses = ctx.obj.screen_losses([(t,) for t in tokens])
    if ctx.name_seq and ctx.cfg.index.screen_with_name:
        losses = np.minimum(losses, qualifier_losses(ctx.obj, ctx.filt, tokens, ctx.name_seq))
    return losses


def main(argv: list[str] | None = None) -> int:
    ap = runs_parser(__doc__.splitlines()[0])
    ap.add_argument("--settings", default="0x0,16x4,32x4,48x4", help="comma-separated HEADSxNEIGHBOURS to compare")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    cfg = replace(cfg, index=replace(cfg.index, neighbours=0))  # the views' pool; the settings are replayed here
    grid = settings(args.settings)
    backend = Sam3Backend.load(args.model)
    tok = backend.tokenizer
    rows = []
    for run, ts, ctx, values in category_contexts(args.run, cfg, backend):
        pool = ctx.pool()
        name_words = set(ts.name.split()) if ts.name else set()
        values = [av for av in values if not name_words & set(vocab.WORDS[av])]  # what the phrase adds
        groups = [{tok.encode(w, special=False)[0] for w in vocab.WORDS[av]} for av in values]
        row = {"run": run.name, "category": ts.category_id, "name": ts.name}
        row["values"] = [f"{a}={v}" for a, v in values]
        for heads, k in grid:
            near = head_neighbours(pool, ctx.proj.neighbours(pool[:heads], k)) if heads and k else []
            near = [s[0] for s in ctx.filt.accept([(t,) for t in near]) if len(s) == 1 and s[0] not in set(pool)]
            tokens = pool + near
            ranked = [tokens[i] for i in np.argsort(best_losses(ctx, tokens), kind="stable")]
            short = set(ranked[: cfg.index.shortlist])
            row[f"{heads}x{k}"] = {
                "joined": len(near),
                "pool": [bool(g & set(tokens)) for g in groups],
                "shortlist": [bool(g & short) for g in groups],
            }
        print(json.dumps(row), flush=True)
        rows.append(row)
    table = {}
    for heads, k in grid:
        key = f"{heads}x{k}"
        held = [h for r in rows for h in r[key]["pool"]]
        short = [h for r in rows for h in r[key]["shortlist"]]
        table[key] = {
            "values": len(held),
            "pool_recall": float(np.mean(held)) if held else float("nan"),
            "shortlist_recall": float(np.mean(short)) if short else float("nan"),
            "joined_mean": float(np.mean([r[key]["joined"] for r in rows])) if rows else float("nan"),
        }
        t = table[key]
        print(
            f"{key:>6}: {t['values']} values, pool holds {t['pool_recall']:.3f}, shortlist@{cfg.index.shortlist} "
            f"{t['shortlist_recall']:.3f}, {t['joined_mean']:.0f} tokens join"
        )
    if args.out:
        args.out.write_text(json.dumps({"settings": args.settings, "rows": rows, "table": table}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
