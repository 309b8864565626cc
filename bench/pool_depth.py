"""Pool depth: how many of a concept's attribute values the shortlist pool holds, per tokens taken from each view.

The search only ever tries tokens of the shortlist pool (``alias_opt.search.shortlist.view_pool``: each index view's
top ``index.pool / len(index.views)`` tokens, pooled); a concept whose word is missing there cannot be found
(renamed 8686 "lavender": "purple" at ranks 109-261 of the five views, 80 taken from each, so the answer was
"hearts", 0.34 x the oracle's AP). For each category of finished world-v2 runs this reads each view's ranking of
the vocabulary once (the concept vectors as the search computes them, no screening) and reports, per depth (tokens
per view), the share of the categories' attribute values (a value counts as found when any of its trained words,
``sam3.toy.vocab.WORDS``, is in the pool), the share of categories with all values found, and the mean pool size
(what screening costs: two screening forwards per pool token and screening image). ``--out`` also keeps each
view's ranking, so other depths per view can be replayed without the model.

    python bench/pool_depth.py --run results/wv2d/renamed_s7676_n240_p20 --run results/wv2d/policy_s7676_n240_p20 \
        --config configs/default.json --depths 40,80,120,160 --threads 2
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alias_opt.config import load_config  # noqa: E402
from alias_opt.data.loader import CocoDataset  # noqa: E402
from alias_opt.discover import encode, train_images  # noqa: E402
from alias_opt.search.context import make_context  # noqa: E402
from alias_opt.search.pipeline import search_seed  # noqa: E402
from alias_opt.search.shortlist import view_lists, view_spaces  # noqa: E402
from sam3 import Sam3Backend  # noqa: E402
from sam3.toy import vocab  # noqa: E402


def first_rank(rankings: Sequence[Sequence[int]], words: set[int]) -> int | None:
    """The best (lowest) position any of ``words`` holds in any view's ranking; None where none holds one."""
    found = [r.index(t) for r in rankings for t in words if t in r]
    return min(found) if found else None


def pool_size(rankings: Sequence[Sequence[int]], depth: int) -> int:
    """Distinct tokens in the pool that takes the first ``depth`` tokens of each view."""
    return len({t for r in rankings for t in r[:depth]})


def depth_table(rows: Sequence[Mapping], depths: Sequence[int]) -> dict[int, dict[str, float]]:
    """Per depth: the share of attribute values found (``first_rank`` < depth), the share of categories with
    every value found, and the mean pool size.

    Args:
        rows: one per category: ``ranks`` (the first rank of each of its values, None: beyond the deepest
            ranking) and ``pool_sizes`` ({depth: pool size}).
    """
    out = {}
    for d in depths:
        hit = [[r is not None and r < d for r in row["ranks"]] for row in rows]
        out[d] = {
            "value_recall": float(np.mean([h for hs in hit for h in hs])) if any(hit) else float("nan"),
            "all_values": float(np.mean([all(hs) for hs in hit])) if hit else float("nan"),
            "pool": float(np.mean([row["pool_sizes"][d] for row in rows])) if rows else float("nan"),
        }
    return out


def runs_parser(description: str) -> argparse.ArgumentParser:
    """A parser with ``--run`` (repeated), ``--config``, ``--model``, ``--threads`` and ``--out``."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--run", type=Path, action="append", required=True, help="a finished run's dataset folder (repeat)")
    ap.add_argument("--config", default=str(REPO / "configs" / "default.json"), help="the config whose views are read")
    ap.add_argument("--model", default="toy-v2", help="the runs' model source")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--out", type=Path, default=None, help="also write the rows and the table as JSON here")
    return ap


def category_contexts(runs: Sequence[Path], cfg, backend: Sam3Backend) -> Iterator[tuple[Path, object, object, list]]:
    """Per category of the finished runs: (run, target set, its search context as discovery builds it, its
    attribute values as (attribute, value) pairs, from the dataset's clauses)."""
    for run in runs:
        cats = {c["id"]: c for c in json.loads((run / "annotations.json").read_text())["categories"]}
        sets = CocoDataset.open(run).target_sets(
            seed=cfg.seed, train_fraction=cfg.train_fraction, max_negatives=cfg.max_negatives
        )
        for ts in sets:
            images = train_images(ts, cfg, cfg.seed)
            seed = search_seed(cfg.seed, ts.category_id)
            ctx = make_context(backend, images, encode(backend, images), ts.name, cfg, seed)
            values = list(dict.fromkeys((a, v) for cl in cats[ts.category_id]["clauses"] for a, v in cl.items()))
            yield run, ts, ctx, values


def main(argv: list[str] | None = None) -> int:
    ap = runs_parser(__doc__.splitlines()[0])
    ap.add_argument("--depths", default="40,80,120,160", help="comma-separated tokens taken from each view")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    depths = sorted(int(x) for x in args.depths.split(","))
    backend = Sam3Backend.load(args.model)
    tok = backend.tokenizer
    rows = []
    for run, ts, ctx, values in category_contexts(args.run, cfg, backend):
        indexes = {s: ctx.index(s) for s in view_spaces(cfg)}
        rankings = view_lists(ctx.obj, indexes, ctx.filt, ctx.probes(), cfg.index.views, 0, depths[-1])
        groups = [{tok.encode(w, special=False)[0] for w in vocab.WORDS[av]} for av in values]
        row = {
            "run": run.name,
            "category": ts.category_id,
            "name": ts.name,
            "values": [f"{a}={v}" for a, v in values],
            "ranks": [first_rank(rankings, g) for g in groups],
            "pool_sizes": {d: pool_size(rankings, d) for d in depths},
            "view_ranks": {v: [first_rank([r], g) for g in groups] for v, r in zip(cfg.index.views, rankings)},
        }
        print(json.dumps(row), flush=True)
        rows.append({**row, "rankings": rankings})  # in --out only: other depths per view can be replayed
    table = depth_table(rows, depths)
    for d, t in table.items():
        v, a, p = t["value_recall"], t["all_values"], t["pool"]
        print(f"{d:4d} tokens a view: values {v:.3f}, all of a category's {a:.3f}, pool {p:.0f}")
    if args.out:
        args.out.write_text(json.dumps({"views": cfg.index.views, "rows": rows, "table": table}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
