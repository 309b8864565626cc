"""Name guard probe: would a paired bootstrap on the train images (alias vs name) have kept the name?

For each category of a finished world-v2 discovery run whose answer is one alias (no set kept), predict
the alias and the name on the run's train images, bootstrap AP(alias) - AP(name) over those images at
``--level``, and print it beside the run's held-out verdict: a guard that keeps the name unless the train
interval lies above 0 would turn the rows marked ``reverted`` into ties (held-out difference 0).

    python bench/name_guard.py --run results/wv2d/policy_s5353_n240 --config configs/fast.json --threads 2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alias_opt.config import load_config  # noqa: E402
from alias_opt.data.loader import CocoDataset  # noqa: E402
from alias_opt.discover import encode, train_images  # noqa: E402
from alias_opt.eval.bootstrap import paired_bootstrap  # noqa: E402
from alias_opt.eval.metrics import coco_matches  # noqa: E402
from alias_opt.eval.predict import predict  # noqa: E402
from sam3 import Sam3Backend  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="a world_v2_discovery dataset folder holding run/")
    ap.add_argument("--config", default=str(REPO / "configs" / "fast.json"), help="the run's config JSON")
    ap.add_argument("--model", default="toy-v2", help="the run's model source")
    ap.add_argument("--level", type=float, default=0.95, help="coverage of the train bootstrap interval")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    backend = Sam3Backend.load(args.model)
    sets = CocoDataset.open(args.run).target_sets(
        seed=cfg.seed, train_fraction=cfg.train_fraction, max_negatives=cfg.max_negatives
    )
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
