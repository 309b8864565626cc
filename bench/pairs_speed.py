"""The pairs' estimate batched vs one pair at a time: time ratio and agreement, measured in one run.

Where a known name's single alias is too broad, the set builder ranks every pair of the name's
insertions by an estimate of their merged AP50 (``alias_opt.search.pairs.best_pairs``): ~380 insertions,
~72,000 pairs a category at the defaults. ``pairs_ap50`` scores them one batch per first member; the
reference is ``pair_ap50`` called once per pair (how ``best_pairs`` worked before it was batched). Hits
are drawn at random with the shape of a paired category (insertions, train targets, hit rate, false
positives per insertion), since the estimate's cost depends on those sizes and not on the model:

    python bench/pairs_speed.py --insertions 380 --targets 30 --repeats 3

It prints one JSON line: both times (best of ``--repeats``), their ratio, the largest difference between
the two estimates (0.0: the same floats) and whether the best ``--top`` pairs agree.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alias_opt.search.pairs import Hits, pair_ap50, pairs_ap50  # noqa: E402


def random_hits(n: int, targets: int, hit_rate: float, max_fp: int, seed: int) -> list[Hits]:
    """``n`` prompts' hits on ``targets`` targets: each found with probability ``hit_rate`` at a float32
    score (as the model's), and 0 to ``max_fp`` false positives."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        tp = (rng.random(targets) * (rng.random(targets) < hit_rate)).astype(np.float32).astype(np.float64)
        fp = rng.random(int(rng.integers(0, max_fp + 1))).astype(np.float32).astype(np.float64)
        out.append(Hits(tp, fp))
    return out


def best_time(fn, repeats: int) -> tuple[float, object]:
    """The best wall time of ``repeats`` calls of ``fn`` and its last result."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--insertions", type=int, default=380, help="prompts whose pairs are scored")
    ap.add_argument("--targets", type=int, default=30, help="train targets each prompt is matched to")
    ap.add_argument("--hit-rate", type=float, default=0.3, help="chance that a prompt finds a given target")
    ap.add_argument("--max-fp", type=int, default=60, help="most false positives a prompt has")
    ap.add_argument("--top", type=int, default=4, help="best pairs compared between the two (the set builder's 4)")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls of each; the best is reported")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random hits")
    args = ap.parse_args(argv)
    hits = random_hits(args.insertions, args.targets, args.hit_rate, args.max_fp, args.seed)
    one_s, one = best_time(
        lambda: np.array([pair_ap50(a, b) for a, b in itertools.combinations(hits, 2)]), args.repeats
    )
    batch_s, batch = best_time(lambda: pairs_ap50(hits), args.repeats)
    top = np.argsort(-one, kind="stable")[: args.top].tolist() == np.argsort(-batch, kind="stable")[: args.top].tolist()
    row = {
        "insertions": args.insertions,
        "pairs": len(one),
        "one_at_a_time_s": round(one_s, 3),
        "batched_s": round(batch_s, 3),
        "ratio": round(one_s / batch_s, 1),
        "max_abs_diff": float(np.abs(one - batch).max()),
        "same_top": top,
    }
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
