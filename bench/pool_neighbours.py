"""Pool neighbours: do the token-embedding neighbours of the screened pool's tokens hold the words it misses?

The search tries only tokens of the screened shortlist pool (``alias_opt.search.shortlist.pooled_shortlist``). With
``index.neighbours`` the nearest tokens (``ProjectionIndex.neighbours``) of its best ``index.neighbour_heads`` join
it, screened the same way; with ``index.neighbour_gate`` the rest of the pool's neighbours are screened too and join
where they screen within the pool's best ``neighbour_gate``. For each category of finished world-v2 runs this builds
the pool per (heads, neighbours, gate) setting exactly as discovery does (``SearchContext.screened_pool``, cut to
``max(index.pool, index.shortlist)``; screening is memoised, so each token is paid once) and reports how many tokens
join (tokens the first setting's pool lacks), how many sequences were screened (cumulative over the settings in the
given order: list them cheapest first), and, of the attribute values the category's exact phrase adds to its name (a
value counts as held when any of its trained words, ``sam3.toy.vocab.WORDS``, is), the share the pool holds and the
share its first ``index.shortlist`` (the shortlist) holds.

    python bench/pool_neighbours.py --run results/wv2d/policy_s4545_n240_p20 --settings 0x0,32x4,32x4g64 --threads 2
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
from alias_opt.search.memo import Split  # noqa: E402
from bench.pool_depth import category_contexts, runs_parser  # noqa: E402
from sam3 import Sam3Backend  # noqa: E402
from sam3.toy import vocab  # noqa: E402


def settings(text: str) -> list[tuple[int, int, int]]:
    """ "0x0,32x4,32x4g64" -> [(0, 0, 0), (32, 4, 0), (32, 4, 64)]: (heads, neighbours, gate) triples."""
    out = []
    for item in text.split(","):
        hk, _, gate = item.partition("g")
        h, k = hk.split("x")
        out.append((int(h), int(k), int(gate or 0)))
    return out


def label(heads: int, k: int, gate: int) -> str:
    """The setting as written on the command line."""
    return f"{heads}x{k}" + (f"g{gate}" if gate else "")


def main(argv: list[str] | None = None) -> int:
    ap = runs_parser(__doc__.splitlines()[0])
    ap.add_argument("--settings", default="0x0,32x4,32x4g64", help="comma-separated HEADSxNEIGHBOURS[gGATE] to compare")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    grid = settings(args.settings)
    backend = Sam3Backend.load(args.model)
    tok = backend.tokenizer
    ix = cfg.index
    rows = []
    for run, ts, ctx, values in category_contexts(args.run, cfg, backend):
        name_words = set(ts.name.split()) if ts.name else set()
        values = [av for av in values if not name_words & set(vocab.WORDS[av])]  # what the phrase adds
        groups = [{tok.encode(w, special=False)[0] for w in vocab.WORDS[av]} for av in values]
        row = {"run": run.name, "category": ts.category_id, "name": ts.name}
        row["values"] = [f"{a}={v}" for a, v in values]
        base, start = None, len(ctx.obj.memo.sequences(Split.SCREEN))
        for heads, k, gate in grid:
            pool = ctx.screened_pool(replace(ix, neighbours=k, neighbour_heads=heads, neighbour_gate=gate))
            base = set(pool) if base is None else base
            row[label(heads, k, gate)] = {
                "pool_size": len(pool),
                "joined": len(set(pool) - base),
                "screened": len(ctx.obj.memo.sequences(Split.SCREEN)) - start,  # cumulative
                "pool": [bool(g & set(pool)) for g in groups],
                "shortlist": [bool(g & set(pool[: ix.shortlist])) for g in groups],
            }
        print(json.dumps(row), flush=True)
        rows.append(row)
    table = {}
    for setting in grid:
        key = label(*setting)
        held = [h for r in rows for h in r[key]["pool"]]
        short = [h for r in rows for h in r[key]["shortlist"]]
        table[key] = {
            "values": len(held),
            "pool_recall": float(np.mean(held)) if held else float("nan"),
            "shortlist_recall": float(np.mean(short)) if short else float("nan"),
            "joined_mean": float(np.mean([r[key]["joined"] for r in rows])) if rows else float("nan"),
            "pool_mean": float(np.mean([r[key]["pool_size"] for r in rows])) if rows else float("nan"),
        }
        t = table[key]
        print(
            f"{key:>8}: {t['values']} values, pool holds {t['pool_recall']:.3f}, shortlist@{ix.shortlist} "
            f"{t['shortlist_recall']:.3f}, {t['joined_mean']:.0f} tokens join (pool {t['pool_mean']:.0f})"
        )
    if args.out:
        args.out.write_text(json.dumps({"settings": args.settings, "rows": rows, "table": table}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
