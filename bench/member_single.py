"""Member-single probe: would a set member that alone beats the single alias have made a better answer?

A residual search runs on the train targets the single alias misses, and may find there an alias better
than the first search's ("orange" for large solid orange shapes where the first search settled on
"circles"); today the built set is weighed against the first search's alias only. For each category of a
finished world-v2 discovery run whose set search built two or more members, this scores each member alone
on the run's train images and applies ``alias_opt.search.set_steps.best_member`` (``set_member_single``):
a member replaces a single answer where it beats that alias's train AP by more than ``set_margin``, and a
kept set where it alone comes within ``set_margin`` of the set's; the new answer is scored held out beside
the run's.

    python bench/member_single.py --run results/wv2d/renamed_s9494_n240_p20 --config configs/default.json --threads 2
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alias_opt.discover import encode, train_images  # noqa: E402
from alias_opt.eval.predict import predict  # noqa: E402
from alias_opt.search.cover import ap_of, merged_metrics  # noqa: E402
from alias_opt.search.set_steps import best_member  # noqa: E402
from bench.finished_run import built_sets, open_run, run_parser  # noqa: E402


def first_single(rec: dict) -> tuple[int, ...]:
    """The first search's alias of a category record: its answer where no set was kept, else the
    re-ranking's best row without the tokens pruning dropped."""
    search = rec["extra"].get("alias_set_search") or {}
    if not search.get("kept"):
        return tuple(rec["token_ids"])
    dropped = set(rec["extra"].get("pruned") or [])
    return tuple(t for t in rec["extra"]["reranked"][0]["token_ids"] if t not in dropped)


def main(argv: list[str] | None = None) -> int:
    ap = run_parser(__doc__.splitlines()[0])
    args = ap.parse_args(argv)
    cfg, backend, sets = open_run(args)
    tok = backend.tokenizer
    rows = []
    for ts, rec, built in built_sets(args.run, sets):
        single = first_single(rec)
        seqs = list(dict.fromkeys([single, *built]))
        images = train_images(ts, cfg, cfg.seed)
        preds = dict(zip(seqs, predict(backend, encode(backend, images), images, [list(s) for s in seqs])))
        alone = {s: merged_metrics([preds[s]], images) for s in seqs}
        kept = bool(rec["extra"]["alias_set_search"].get("kept"))
        set_m = merged_metrics([preds[s] for s in built], images)
        answer_ap = set_m.ap if kept else alone[single].ap
        new = best_member(built if kept else [single], built, alone, answer_ap, cfg.set_margin)
        row = {
            "category": ts.category_id,
            "name": ts.name,
            "answer": " | ".join(m["text"] for m in rec.get("alias_set") or [rec]),
            "first_single": tok.decode(list(single)),
            "answer_train_ap": round(answer_ap, 3),
            "members_alone_train_ap": {tok.decode(list(s)): round(ap_of(alone[s]), 3) for s in built},
            "replaced": new is not None,
            "held_out": {"answer": round(rec["test_metrics"]["ap"], 3)},
        }
        if new is not None:
            test_preds = predict(backend, encode(backend, ts.test), ts.test, [list(new)])
            row["new_answer"] = tok.decode(list(new))
            row["held_out"]["new"] = round(ap_of(merged_metrics(test_preds, ts.test)), 3)
        oracle = rec["extra"].get("oracle_test_metrics")
        row["held_out"]["name"] = round(rec["baseline_test_metrics"]["ap"], 3)
        row["held_out"]["oracle"] = round(oracle["ap"], 3) if oracle else None
        rows.append(row)
        print(json.dumps(row), flush=True)
    changed = [r for r in rows if r["replaced"]]
    print(
        json.dumps(
            {
                "built_sets": len(rows),
                "replaced": len(changed),
                "held_out_change": [round(r["held_out"]["new"] - r["held_out"]["answer"], 3) for r in changed],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
