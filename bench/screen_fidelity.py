"""Screen fidelity: does the scan fully score one of the concept's words, per screening setting?

The search screens each candidate on ``screen_images`` train images (a third of them negatives) and scores the
best ``screen_keep`` share on all of them; the scan's fully scored singles, ranked by train AP, are the bases the
extension phase narrows. Where the concept's colour or shape word screens out, the search narrows a chance token
("mini disc" on renamed 7676: "circle" 54th of the pool on its six screening images, 3rd on all of them).

For each category of a finished world-v2 run this scores every token of the category's pool (built as the search
builds it: the index views, ``index.pool``) alone and placed before the name, on every train image, once. It then
draws ``--draws`` balanced screening subsets per ``--screens`` size, rebuilds the shortlist (the best
``index.shortlist`` by the better of the two screening losses) and the scan's survivors (the best ``--keeps``
share of ``scan_size`` by screening loss alone), and reports the chance that a survivor is one of the oracle's
colour or shape words (``sam3.toy.vocab.WORDS``; categories without either are left out).

    python bench/screen_fidelity.py --run results/wv2d/renamed_s7676_n240_p20 --config configs/fast.json --threads 2
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alias_opt.discover import encode, train_images  # noqa: E402
from alias_opt.search.context import make_context  # noqa: E402
from alias_opt.search.pipeline import search_seed  # noqa: E402
from alias_opt.search.shortlist import view_pool, view_spaces  # noqa: E402
from bench.finished_run import open_run, run_parser  # noqa: E402
from sam3.toy import vocab  # noqa: E402

ALONE_ATTRS = ("colour", "shape")  # attributes whose word alone can be a scan's best single


def subset_loss(losses: np.ndarray, positive: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """(T,) the objective's aggregate of per-image losses (T, n) on images ``idx``: the mean over positive images
    and the mean over negative ones, averaged (``Scorer.image_weights`` with ``negative_weight`` 1)."""
    pos, neg = idx[positive[idx]], idx[~positive[idx]]
    if len(neg) == 0:
        return losses[:, pos].mean(1)
    return (losses[:, pos].mean(1) + losses[:, neg].mean(1)) / 2


def balanced_subset(positive: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` image indices, a third negatives (``Objective._balanced``'s rule)."""
    pos, neg = np.flatnonzero(positive), np.flatnonzero(~positive)
    if n >= len(positive):
        return np.arange(len(positive))
    n_neg = min(len(neg), n // 3)
    n_pos = min(len(pos), n - n_neg)
    n_neg = min(len(neg), n - n_pos)
    return np.sort(np.concatenate([rng.choice(pos, n_pos, replace=False), rng.choice(neg, n_neg, replace=False)]))


def scan_survivors(
    alone: np.ndarray, qual: np.ndarray | None, shortlist: int, scan_size: int, keep: float
) -> np.ndarray:
    """Pool rows the scan scores on all images: the shortlist is the best ``shortlist`` rows by the better of
    ``alone`` and ``qual`` (T,) screening losses; the survivors are the best ``keep`` share of its first
    ``scan_size`` rows by ``alone``."""
    rank = alone if qual is None else np.minimum(alone, qual)
    short = np.argsort(rank, kind="stable")[:shortlist][:scan_size]
    return short[np.argsort(alone[short], kind="stable")[: int(np.ceil(keep * len(short)))]]


def pool_losses(backend, cfg, ts, seed: int):
    """(pool tokens, (T, n) losses alone, (T, n) losses before the name or None, (n,) positive) on the train images."""
    images = train_images(ts, cfg, cfg.seed)
    ctx = make_context(backend, images, encode(backend, images), ts.name, cfg, seed)
    indexes = {s: ctx.index(s) for s in view_spaces(cfg)}
    pool = view_pool(ctx.obj, indexes, ctx.filt, ctx.probes(), cfg.index.views, cfg.index.pool)
    scorer = ctx.obj.scorer

    def losses(seqs):
        rows = []
        for i in range(0, len(seqs), 64):
            text = backend.encode_text(backend.prompt_ids([list(s) for s in seqs[i : i + 64]]))
            rows.append(scorer.pair_losses(text, scorer.all_idx)[0].numpy())
        return np.concatenate(rows)

    alone = losses([(t,) for t in pool])
    qual = None
    if ctx.name_seq is not None:
        pairs = [ctx.filt((t, *ctx.name_seq)) for t in pool]
        qual = losses([p or (t,) for p, t in zip(pairs, pool)])
        qual[[p is None for p in pairs]] = np.inf
    return pool, alone, qual, scorer.positive


def main(argv: list[str] | None = None) -> int:
    ap = run_parser(__doc__.splitlines()[0])
    ap.add_argument("--screens", default="6,12", help="comma-separated screening subset sizes")
    ap.add_argument("--keeps", default="0.25,0.5,1.0", help="comma-separated shares of the scan scored on all images")
    ap.add_argument("--draws", type=int, default=40, help="screening subsets drawn per size and category")
    ap.add_argument("--categories", default="", help="comma-separated category ids (default: all)")
    ap.add_argument("--out", type=Path, default=None, help="also write the table as JSON here")
    args = ap.parse_args(argv)
    cfg, backend, sets = open_run(args)
    tok = backend.tokenizer
    screens = [int(x) for x in args.screens.split(",")]
    keeps = [float(x) for x in args.keeps.split(",")]
    only = {int(c) for c in args.categories.split(",") if c}
    clauses = {c["id"]: c["clauses"] for c in json.loads((args.run / "annotations.json").read_text())["categories"]}
    rng = np.random.default_rng(0)
    hits: dict[tuple[int, float], list[float]] = {(s, k): [] for s in screens for k in keeps}
    for ts in sets:
        if only and ts.category_id not in only:
            continue
        words = {
            tok.encode(w, special=False)[0]
            for cl in clauses[ts.category_id]
            for a, v in cl.items()
            if a in ALONE_ATTRS
            for w in vocab.WORDS[(a, v)]
        }
        if not words:
            continue
        pool, alone, qual, positive = pool_losses(backend, cfg, ts, search_seed(cfg.seed, ts.category_id))
        is_word = np.array([t in words for t in pool])
        row = []
        for s in screens:
            draws = [balanced_subset(positive, s, rng) for _ in range(args.draws)]
            for k in keeps:
                got = [
                    is_word[
                        scan_survivors(
                            subset_loss(alone, positive, idx),
                            None if qual is None else subset_loss(qual, positive, idx),
                            cfg.index.shortlist,
                            cfg.scan_size,
                            k,
                        )
                    ].any()
                    for idx in draws
                ]
                hits[(s, k)].append(float(np.mean(got)))
                row.append(f"{s}/{k:g} {np.mean(got):.2f}")
        print(f"{ts.category_id:3d} {ts.name!r:30s} pool {len(pool):4d}  " + "  ".join(row), flush=True)
    table = {f"screen {s}, keep {k:g}": round(float(np.mean(v)), 3) for (s, k), v in hits.items() if v}
    for key, v in table.items():
        print(f"{key}: P(a colour or shape word of the oracle is fully scored) = {v}")
    if args.out:
        args.out.write_text(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
