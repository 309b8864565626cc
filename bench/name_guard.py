"""Name guard probe: would a paired bootstrap on the train images (alias vs name) have kept the name?

For each category of a finished world-v2 discovery run whose answer is one alias (no set kept), predict
the alias and the name on the run's train images, bootstrap AP(alias) - AP(name) over those images at
``--level``, and print it beside the run's held-out verdict: a guard that keeps the name unless the train
interval lies above 0 would turn the rows marked ``reverted`` into ties (held-out difference 0).

    python bench/name_guard.py --run results/wv2d/policy_s5353_n240 --config configs/fast.json --threads 2
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alias_opt.discover import encode, train_images  # noqa: E402
from alias_opt.eval.bootstrap import paired_bootstrap  # noqa: E402
from alias_opt.eval.metrics import coco_matches  # noqa: E402
from alias_opt.eval.predict import predict  # noqa: E402
from bench.finished_run import open_run, run_parser  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = run_parser(__doc__.splitlines()[0])
    ap.add_argument("--level", type=float, default=0.95, help="coverage of the train bootstrap interval")
    args = ap.parse_args(argv)
    cfg, backend, sets = open_run(args)
    rows = []
    for ts in sets:
        rec = json.loads((args.run / "run" / "categories" / f"{ts.category_id}.json").read_text())["aliases"][0]
        extra = rec["extra"]
        if len(rec.get("alias_set") or [1]) > 1 or rec["token_ids"] == backend.tokenizer.encode(ts.name, special=False):
            continue
        images = train_images(ts, cfg, cfg.seed)
        feats = encode(backend, images)
        name = backend.tokenizer.encode(ts.name, special=False)
        a, b = (coco_matches(p, images) for p in predict(backend, feats, images, [rec["token_ids"], name]))
        d = paired_bootstrap(a, b, level=args.level, seed=ts.category_id)
        row = {
            "category": ts.category_id,
            "name": ts.name,
            "alias": rec["text"],
            "train": d.short(),
            "reverted": d.verdict() != "win",
            "held_out": extra.get("vs_name"),
            "held_out_interval": extra.get("vs_name_interval"),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    rev = [r for r in rows if r["reverted"]]
    print(
        json.dumps(
            {
                "single_alias_answers": len(rows),
                "reverted": len(rev),
                "reverted_held_out": {v: sum(r["held_out"] == v for r in rev) for v in ("win", "tie", "loss")},
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
