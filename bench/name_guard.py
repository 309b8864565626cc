"""Name check probe: at which ``name_level`` would a finished run's answers have kept the name?

For each category of a finished world-v2 discovery run whose answer (one alias or a merged set) is not the
name, and whose name the model knows (train AP >= ``known_name_ap``), predict the answer's aliases and the
name on the run's train images (and each of ``--negatives`` further images without the category,
``TargetSet.extra_negatives``) and run the name check (``alias_opt.search.name_check``) at each of
``--levels``; print it beside the run's held-out verdict. A check that turns the answer down makes that
category a tie (held-out difference 0). Answers the run's own check turned down (its ``extra.name_check``,
with the held-out verdict recorded for them) are re-checked the same way (rows ``down (stage)``): one
that would pass is an answer the run would have kept. What the search would have done after a different
decision (the set builder's second look) is not re-searched: the probe re-decides these answers only.

    python bench/name_guard.py --run results/s29/wv2d_4848/policy_s4848_n240_p20 --config configs/default.json \
        --levels 0.9,0.95 --negatives 0,100 --threads 2
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alias_opt.discover import encode, search_seed, train_images  # noqa: E402
from alias_opt.eval.predict import predict  # noqa: E402
from alias_opt.search.name_check import wide_name_check  # noqa: E402
from bench.finished_run import open_run, run_parser  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = run_parser(__doc__.splitlines()[0])
    ap.add_argument("--levels", default="0.9,0.95", help="coverages of the train bootstrap interval, comma-separated")
    ap.add_argument(
        "--negatives", default="", help="extra negatives the check reads, comma-separated (default: the config's)"
    )
    args = ap.parse_args(argv)
    levels = [float(x) for x in args.levels.split(",")]
    cfg, backend, sets = open_run(args)
    counts = [int(x) for x in args.negatives.split(",")] if args.negatives else [cfg.name_negatives]
    if max(counts) > cfg.name_negatives:
        raise SystemExit(f"--negatives: at most the config's name_negatives ({cfg.name_negatives})")
    tok = backend.tokenizer
    rows = []
    for ts in sets:
        rec = json.loads((args.run / "run" / "categories" / f"{ts.category_id}.json").read_text())["aliases"][0]
        extra = rec["extra"]
        name = tok.encode(ts.name, special=False)
        members = [m["token_ids"] for m in rec.get("alias_set") or []] or [rec["token_ids"]]
        train_name = rec.get("baseline_train_metrics") or {}
        if train_name.get("ap", 0.0) < cfg.known_name_ap:
            continue
        answers = [("final", members, extra.get("vs_name"), (extra.get("vs_name_interval") or {}).get("diff"))]
        for c in extra.get("name_check") or []:  # answers the run turned down, with their held-out verdicts
            if c["name_kept"]:
                held = c.get("held_out") or {}
                answers.append(
                    (
                        f"down ({c['stage']})",
                        [tok.encode(a, special=False) for a in c["answer"]],
                        held.get("verdict"),
                        held.get("diff"),
                    )
                )
        images = train_images(ts, cfg, cfg.seed)
        feats = encode(backend, images)
        for which, seqs, verdict, diff in answers:
            if seqs == [name]:
                continue
            preds = predict(backend, feats, images, [*seqs, name])
            row = {
                "category": ts.category_id,
                "name": ts.name,
                "which": which,
                "answer": " | ".join(tok.decode(m) for m in seqs),
                "held_out": verdict,
                "held_out_diff": diff,
            }
            for n in counts:
                for level in levels:
                    c = wide_name_check(
                        backend,
                        preds[:-1],
                        preds[-1],
                        images,
                        ts.extra_negatives[:n],
                        [tuple(m) for m in seqs],
                        tuple(name),
                        level,
                        search_seed(cfg.seed, ts.category_id),
                    )
                    key = f"{level:g}/{n}"
                    row[f"train@{key}"] = None if c is None else c.diff.short()
                    row[f"kept_name@{key}"] = None if c is None else not c.departs
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary: dict = {}
    for which in ("final", "down"):
        part = [r for r in rows if r["which"].startswith(which)]
        summary[f"{which}: answers not the name"] = len(part)
        for n in counts:
            for level in levels:
                kept = [r for r in part if r[f"kept_name@{level:g}/{n}"]]
                summary[f"{which}: name_kept@{level:g}/{n}"] = {
                    "n": len(kept),
                    "held_out": {v: sum(r["held_out"] == v for r in kept) for v in ("win", "tie", "loss")},
                    "held_out_diffs": [round(r["held_out_diff"], 3) for r in kept if r["held_out_diff"] is not None],
                }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
