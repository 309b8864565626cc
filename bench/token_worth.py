"""Token worth probe: does each token of a finished run's alias earn its place on held-out images too?

Pruning (``prune_tolerance``) keeps a token when dropping it costs more than the tolerance in *train* AP.
On ~20 train images a filler word can pass that test by chance ("circles hickman"). For each category of
a finished world-v2 discovery run whose answer is one alias of two or more tokens, this drops each token
in turn and scores the shorter alias on the run's train and held-out images. A token is *inert held out*
when dropping it costs at most ``--tolerance`` held-out AP; the summary gives the share of aliases with
such a token (issue 20, item 5: readable aliases).

    python bench/token_worth.py --run results/wv2d/renamed_s4646_n240 --config configs/fast.json --threads 2
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alias_opt.discover import encode, train_images  # noqa: E402
from alias_opt.eval.bootstrap import ap_from_matches  # noqa: E402
from alias_opt.eval.metrics import coco_matches  # noqa: E402
from alias_opt.eval.predict import predict  # noqa: E402
from bench.finished_run import open_run, run_parser  # noqa: E402


def drop_each(seq: list[int]) -> list[list[int]]:
    """``seq`` without its i-th token, for each i (in order)."""
    return [seq[:i] + seq[i + 1 :] for i in range(len(seq))]


def aps(backend, images, prompts: list[list[int]]) -> list[float]:
    """COCO mask AP@[.5:.95] of each prompt on ``images`` (NaN where they hold no target)."""
    feats = encode(backend, images)
    out = []
    for preds in predict(backend, feats, images, prompts):
        m = coco_matches(preds, images)
        out.append(float("nan") if m is None else ap_from_matches(m)[0])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = run_parser(__doc__.splitlines()[0])
    ap.add_argument("--tolerance", type=float, default=0.01, help="held-out AP a token must be worth")
    args = ap.parse_args(argv)
    cfg, backend, sets = open_run(args)
    tok = backend.tokenizer
    rows, singles = [], 0
    for ts in sets:
        path = args.run / "run" / "categories" / f"{ts.category_id}.json"
        if not path.exists():
            continue
        rec = json.loads(path.read_text())["aliases"][0]
        seq = list(rec["token_ids"])
        if len(rec.get("alias_set") or [1]) > 1:
            continue
        singles += 1
        if len(seq) < 2:
            continue
        prompts = [seq, *drop_each(seq)]
        tr = aps(backend, train_images(ts, cfg, cfg.seed), prompts)
        te = aps(backend, ts.test, prompts)
        tokens = [
            {
                "token": tok.decode([t]),
                "train_cost": round(tr[0] - tr[i + 1], 4),  # AP lost by dropping it
                "held_out_cost": round(te[0] - te[i + 1], 4),
            }
            for i, t in enumerate(seq)
        ]
        row = {
            "category": ts.category_id,
            "alias": rec["text"],
            "train_ap": round(tr[0], 4),
            "held_out_ap": round(te[0], 4),
            "tokens": tokens,
            "inert_held_out": [t["token"] for t in tokens if t["held_out_cost"] <= args.tolerance],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    inert = [r for r in rows if r["inert_held_out"]]
    print(
        json.dumps(
            {
                "single_alias_answers": singles,
                "multi_token": len(rows),
                "with_a_token_inert_held_out": len(inert),
                "share_of_single_aliases": round(len(inert) / singles, 3) if singles else None,
                "tolerance": args.tolerance,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
