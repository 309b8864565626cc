"""Member-guard probe: would a set whose every member must earn its place by a bootstrap have answered better?

A kept alias set replaces the single alias where its merged train AP wins a paired bootstrap over the train
images (``set_level``), and a kept known name where it passes the name check. Neither asks whether *each*
member is needed: on policy 5353 "large square" (large red | large teal squares) the set "large square
tangerine | turquoise large square | huge circles square" passed both (+0.238 [+0.049, +0.395] over the name
on train), then scored 0.269 held out against the name's 0.428. For each category of a finished world-v2
discovery run whose answer is a set, this re-scores the members on the run's train images plus the images
without the category that the name check reads (``TargetSet.extra_negatives``), and drops, one at a time,
the member whose removal costs the least merged AP while the paired bootstrap of AP(set) - AP(set without
it) at ``--level`` does not lie above zero. Where the guard changes the answer, both answers are scored on
the held-out images against the name (the run's verdict: ``alias_opt.eval.bootstrap.verdict_vs``, seeded by
the category id).

    python bench/member_guard.py --run <out>/policy_s5353_n240_p20 --config configs/default.json --threads 2

One JSON line per set answer, then a summary: sets changed, held-out AP summed over the changed ones (run
answer, guarded answer), and verdict counts against the name for both.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alias_opt.discover import encode, train_images  # noqa: E402
from alias_opt.eval.alias_sets import set_bootstrap  # noqa: E402
from alias_opt.eval.bootstrap import verdict_vs  # noqa: E402
from alias_opt.eval.metrics import DEFAULT_THRESHOLDS as THR  # noqa: E402
from alias_opt.eval.metrics import score_with_matches  # noqa: E402
from alias_opt.eval.predict import predict  # noqa: E402
from alias_opt.search.cover import merged  # noqa: E402
from alias_opt.search.pipeline import search_seed  # noqa: E402
from bench.finished_run import open_run, run_parser, run_records  # noqa: E402


def guard(members: list, preds: dict, images: list, level: float, seed: int) -> tuple[list, list[dict]]:
    """Drop members, weakest first, while the weakest's leave-one-out bootstrap is no win.

    Args:
        members: the set's token-id tuples; preds: each one's predictions on ``images``.

    Returns:
        (the members left, one dict per step: the weakest member's token ids, its AP cost and interval low end)
    """
    left, steps = list(members), []
    while len(left) > 1:
        diffs = []
        for m in left:
            rest = merged([preds[s] for s in left if s != m], THR)
            diffs.append((set_bootstrap([preds[s] for s in left], rest, images, level, seed, THR), m))
        diffs = [(d, m) for d, m in diffs if d is not None]
        if not diffs:
            break
        d, weakest = min(diffs, key=lambda x: x[0].diff)
        steps.append({"member": weakest, "diff": round(d.diff, 4), "low": round(d.low, 4), "win": d.verdict() == "win"})
        if d.verdict() == "win":
            break
        left.remove(weakest)
    return left, steps


def held_out(backend, ts, feats, answer: list, name_matches, seed: int) -> dict:
    """The answer's held-out AP and its verdict against the name (``feats``: the held-out images')."""
    parts = predict(backend, feats, ts.test, [list(s) for s in answer], THR)
    metrics, matches = score_with_matches(merged(parts, THR), ts.test, THR)
    verdict, diff = verdict_vs(matches, name_matches, seed=seed)
    return {"ap": round(metrics.ap, 4), "verdict": verdict, "diff": None if diff is None else round(diff.diff, 4)}


def main(argv: list[str] | None = None) -> int:
    ap = run_parser(__doc__.splitlines()[0])
    ap.add_argument("--level", type=float, default=0.5, help="coverage of each member's leave-one-out interval")
    ap.add_argument(
        "--negatives", type=int, default=-1, help="images without the category read besides train (-1: all the run's)"
    )
    args = ap.parse_args(argv)
    cfg, backend, sets = open_run(args)
    tok = backend.tokenizer
    rows = []
    for ts, rec in run_records(args.run, sets):
        if not ts.name:
            continue
        members = [tuple(m["token_ids"]) for m in rec.get("alias_set") or []]
        if len(members) < 2:
            continue
        extra = ts.extra_negatives if args.negatives < 0 else ts.extra_negatives[: args.negatives]
        images = [*train_images(ts, cfg, cfg.seed), *extra]
        preds = dict(zip(members, predict(backend, encode(backend, images), images, [list(s) for s in members], THR)))
        left, steps = guard(members, preds, images, args.level, search_seed(cfg.seed, ts.category_id))
        row = {
            "category": ts.category_id,
            "name": ts.name,
            "answer": " | ".join(tok.decode(list(s)) for s in members),
            "guarded": " | ".join(tok.decode(list(s)) for s in left),
            "steps": [{**s, "member": tok.decode(list(s["member"]))} for s in steps],
            "run_verdict": rec["extra"].get("vs_name"),
        }
        if left != members:
            name_ids = tok.encode(ts.name, special=False)
            feats = encode(backend, ts.test)
            name_metrics, name_matches = score_with_matches(
                predict(backend, feats, ts.test, [name_ids], THR)[0], ts.test, THR
            )
            row["held_out"] = {
                "name": round(name_metrics.ap, 4),
                "answer": held_out(backend, ts, feats, members, name_matches, ts.category_id),
                "guarded": held_out(backend, ts, feats, left, name_matches, ts.category_id),
            }
        rows.append(row)
        print(json.dumps(row), flush=True)
    changed = [r for r in rows if "held_out" in r]
    summary = {
        "set_answers": len(rows),
        "changed": len(changed),
        "held_out_ap_sum": {k: round(sum(r["held_out"][k]["ap"] for r in changed), 4) for k in ("answer", "guarded")},
        "verdicts": {
            k: {v: sum(r["held_out"][k]["verdict"] == v for r in changed) for v in ("win", "tie", "loss")}
            for k in ("answer", "guarded")
        },
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
