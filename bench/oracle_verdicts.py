"""Oracle verdicts: how many categories of a finished world-v2 run can its held-out split call at all, and
how many can its train split?

A *win* over the name is a paired bootstrap interval over the held-out images that excludes zero
(``alias_opt.eval.bootstrap``). Where even the oracle (the world's best training phrase, or a union's
phrases merged) cannot beat the name so, no alias can be called a win on those images. For each category
this predicts the name and the oracle on the run's held-out images and prints the oracle's verdict beside
the alias's (runs since the oracle verdict is recorded carry it as ``extra.oracle_vs_name``; this
re-scores older ones the same way).

The search sees only the train split, and for a name the model knows it keeps the name unless its answer
passes the name check there (``alias_opt.search.name_check``: a paired bootstrap win over the train
images and the extra negatives, at ``name_level``, or ``narrowing_level`` for an answer that only adds
words to the name). ``oracle_train`` is that check applied to the oracle itself (report only: the search
never reads the oracle): where the oracle does not pass it, the train split cannot tell the exact phrase
from the name and a search that keeps the name there is right to. The summary counts the alias's wins
among the categories the oracle wins on both splits.

    python bench/oracle_verdicts.py --run results/wv2d/policy_s6262_n240 --config configs/default.json --threads 2
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alias_opt.discover import check_negatives, encode, train_images  # noqa: E402
from alias_opt.eval.alias_sets import merge_split  # noqa: E402
from alias_opt.eval.bootstrap import verdict_vs  # noqa: E402
from alias_opt.eval.metrics import DEFAULT_THRESHOLDS, coco_matches  # noqa: E402
from alias_opt.eval.predict import predict  # noqa: E402
from alias_opt.record import oracle_phrases  # noqa: E402
from alias_opt.search.name_check import check_level, wide_name_check  # noqa: E402
from alias_opt.search.pipeline import search_seed  # noqa: E402
from bench.finished_run import open_run, run_parser  # noqa: E402


def train_check(backend, cfg, ts, name, members, th):
    """The name check (``wide_name_check``) of the oracle's ``members`` against ``name`` on the run's train
    images and extra negatives, at the level the search would use; None where not defined."""
    images = train_images(ts, cfg, cfg.seed)
    preds = predict(backend, encode(backend, images), images, [list(name)] + [list(m) for m in members], th)
    level = check_level(members, name, cfg.name_level or 0.95, cfg.narrowing_level)
    extra = check_negatives(ts, cfg)
    return wide_name_check(
        backend, preds[1:], preds[0], images, extra, members, name, level, search_seed(cfg.seed, ts.category_id), th
    )


def main(argv: list[str] | None = None) -> int:
    args = run_parser(__doc__.splitlines()[0]).parse_args(argv)
    cfg, backend, sets = open_run(args)
    tok, th = backend.tokenizer, DEFAULT_THRESHOLDS
    rows = []
    for ts in sets:
        path = args.run / "run" / "categories" / f"{ts.category_id}.json"
        oracle = oracle_phrases(ts.oracle_name)
        if not path.exists() or not oracle or not ts.name or not ts.test:
            continue
        rec = json.loads(path.read_text())["aliases"][0]
        name = tuple(tok.encode(ts.name, special=False))
        members = [tuple(tok.encode(o, special=False)) for o in oracle]
        prompts = [list(name)] + [list(m) for m in members]
        preds = predict(backend, encode(backend, ts.test), ts.test, prompts, th)
        oracle_preds = preds[1] if len(oracle) == 1 else merge_split(preds[1:], th.iou)
        a, b = coco_matches(oracle_preds, ts.test), coco_matches(preds[0], ts.test)
        verdict, d = verdict_vs(a, b, seed=ts.category_id)
        check = train_check(backend, cfg, ts, name, members, th)
        alias_members = rec.get("alias_set") or [rec]
        row = {
            "category": ts.category_id,
            "name": ts.name,
            "oracle": " | ".join(oracle),
            "oracle_vs_name": verdict,
            "oracle_interval": d.short() if d is not None else None,
            "oracle_train": None if check is None else check.diff.verdict(),
            "oracle_train_interval": None if check is None else check.diff.short(),
            "oracle_train_level": None if check is None else check.diff.level,
            "alias": " | ".join(m["text"] for m in alias_members),
            "alias_vs_name": rec["extra"].get("vs_name"),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    wins = [r for r in rows if r["oracle_vs_name"] == "win"]
    both = [r for r in wins if r["oracle_train"] == "win"]
    print(
        json.dumps(
            {
                "categories": len(rows),
                "oracle_wins": len(wins),
                "alias_wins": sum(r["alias_vs_name"] == "win" for r in rows),
                "alias_wins_where_oracle_wins": sum(r["alias_vs_name"] == "win" for r in wins),
                "oracle_passes_train_check": sum(r["oracle_train"] == "win" for r in rows),
                "oracle_wins_both_splits": len(both),
                "alias_wins_where_oracle_wins_both": sum(r["alias_vs_name"] == "win" for r in both),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
