"""Oracle verdicts: how many categories of a finished world-v2 run can its held-out split call at all?

A *win* over the name is a paired bootstrap interval over the held-out images that excludes zero
(``alias_opt.eval.bootstrap``). Where even the oracle (the world's best training phrase, or a union's
phrases merged) cannot beat the name so, no alias can be called a win on those images. For each category
this predicts the name and the oracle on the run's held-out images and prints the oracle's verdict beside
the alias's (runs since the oracle verdict is recorded carry it as ``extra.oracle_vs_name``; this
re-scores older ones the same way).

    python bench/oracle_verdicts.py --run results/wv2d/policy_s6262_n240 --threads 2
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alias_opt.discover import encode  # noqa: E402
from alias_opt.eval.alias_sets import merge_split  # noqa: E402
from alias_opt.eval.bootstrap import verdict_vs  # noqa: E402
from alias_opt.eval.metrics import DEFAULT_THRESHOLDS, coco_matches  # noqa: E402
from alias_opt.eval.predict import predict  # noqa: E402
from alias_opt.record import oracle_phrases  # noqa: E402
from bench.finished_run import open_run, run_parser  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = run_parser(__doc__.splitlines()[0]).parse_args(argv)
    _, backend, sets = open_run(args)
    tok, th = backend.tokenizer, DEFAULT_THRESHOLDS
    rows = []
    for ts in sets:
        path = args.run / "run" / "categories" / f"{ts.category_id}.json"
        oracle = oracle_phrases(ts.oracle_name)
        if not path.exists() or not oracle or not ts.name or not ts.test:
            continue
        rec = json.loads(path.read_text())["aliases"][0]
        prompts = [tok.encode(ts.name, special=False)] + [tok.encode(o, special=False) for o in oracle]
        preds = predict(backend, encode(backend, ts.test), ts.test, prompts, th)
        oracle_preds = preds[1] if len(oracle) == 1 else merge_split(preds[1:], th.iou)
        a, b = coco_matches(oracle_preds, ts.test), coco_matches(preds[0], ts.test)
        verdict, d = verdict_vs(a, b, seed=ts.category_id)
        members = rec.get("alias_set") or [rec]
        row = {
            "category": ts.category_id,
            "name": ts.name,
            "oracle": " | ".join(oracle),
            "oracle_vs_name": verdict,
            "oracle_interval": d.short() if d is not None else None,
            "alias": " | ".join(m["text"] for m in members),
            "alias_vs_name": rec["extra"].get("vs_name"),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    wins = [r for r in rows if r["oracle_vs_name"] == "win"]
    print(
        json.dumps(
            {
                "categories": len(rows),
                "oracle_wins": len(wins),
                "alias_wins": sum(r["alias_vs_name"] == "win" for r in rows),
                "alias_wins_where_oracle_wins": sum(r["alias_vs_name"] == "win" for r in wins),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
