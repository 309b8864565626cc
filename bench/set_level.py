"""Set-level probe: how sure must the train bootstrap be before a built alias set replaces the single alias?

A built set is kept only where its merged train AP beats the single alias's by more than ``set_margin`` and
the paired bootstrap interval over the train images (``set_level``: 0.5 by default, 0.95 until this bench)
lies above zero (``alias_opt.search.alias_set.set_wins``). On ~20 positive train images a union's right set
("lemon heart | tangerine heart" for the orange and yellow hearts) often beats the single alias by 0.03-0.05
train AP with an interval that just reaches below zero, and is dropped. For each category of a finished
world-v2 discovery run whose set search built two or more members, this re-scores the built set and the single
alias it was weighed against on the run's train images, decides at each ``--levels`` value (the same
resamples: the intervals are nested) and scores both held out, so the held-out AP of the answer each level
would give is summed over the run.

    python bench/set_level.py --run results/wv2d/policy_s9494_n240_p20 --config configs/fast.json --threads 2
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alias_opt.discover import encode, train_images  # noqa: E402
from alias_opt.eval.metrics import DEFAULT_THRESHOLDS as THR  # noqa: E402
from alias_opt.eval.predict import predict  # noqa: E402
from alias_opt.search.alias_set import set_wins  # noqa: E402
from alias_opt.search.cover import ap_of, merged_metrics  # noqa: E402
from alias_opt.search.pipeline import search_seed  # noqa: E402
from bench.finished_run import built_sets, open_run, run_parser  # noqa: E402
from bench.member_single import first_single  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = run_parser(__doc__.splitlines()[0])
    ap.add_argument("--levels", default="0.95,0.8,0.5,0.0", help="comma-separated set_level values (0: margin alone)")
    args = ap.parse_args(argv)
    levels = [float(x) for x in args.levels.split(",")]
    cfg, backend, sets = open_run(args)
    tok = backend.tokenizer
    rows = []
    for ts, rec, built in built_sets(args.run, sets):
        search = rec["extra"]["alias_set_search"]
        single = tuple(tok.encode(search["first_single"], special=False)) if search.get("first_single") else None
        single = single or first_single(rec)
        seqs = list(dict.fromkeys([single, *built]))
        train = train_images(ts, cfg, cfg.seed)
        preds = dict(zip(seqs, predict(backend, encode(backend, train), train, [list(s) for s in seqs])))
        set_m = merged_metrics([preds[s] for s in built], train)
        single_m = merged_metrics([preds[single]], train)
        seed = search_seed(cfg.seed, ts.category_id)
        keeps = {
            level: set_wins(preds, single, built, set_m, single_m, train, replace(cfg, set_level=level), seed, THR)[0]
            for level in levels
        }
        test_preds = dict(zip(seqs, predict(backend, encode(backend, ts.test), ts.test, [list(s) for s in seqs])))
        held = {
            "set": ap_of(merged_metrics([test_preds[s] for s in built], ts.test)),
            "single": ap_of(merged_metrics([test_preds[single]], ts.test)),
        }
        row = {
            "category": ts.category_id,
            "name": ts.name,
            "single": tok.decode(list(single)),
            "built": " | ".join(tok.decode(list(s)) for s in built),
            "train_ap": {"set": round(set_m.ap, 3), "single": round(single_m.ap, 3)},
            "held_out_ap": {k: round(v, 3) for k, v in held.items()},
            "kept_at": {str(k): v for k, v in keeps.items()},
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {
        str(level): {
            "sets_kept": sum(r["kept_at"][str(level)] for r in rows),
            "held_out_ap_sum": round(
                sum(r["held_out_ap"]["set" if r["kept_at"][str(level)] else "single"] for r in rows), 3
            ),
        }
        for level in levels
    }
    print(json.dumps({"built_sets": len(rows), "by_level": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
