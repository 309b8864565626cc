"""Token worth probe: does each token of a finished run's alias earn its place, before and after pruning?

Pruning (``prune_tolerance``) drops a token of the search's winner when dropping it costs at most the
tolerance in *train* AP. For each category of a finished world-v2 discovery run whose answer is one alias,
this reports (issue 20, item 5: readable aliases):

- *before*: whether the search's winner held an inert token (pruning dropped one: the run's history
  records each drop);
- *after, train* and *after, held out*: each token of the answer (two or more tokens) is dropped in turn
  and the shorter alias scored on the run's train and held-out images; a token is inert where dropping it
  costs at most ``--tolerance`` AP; *beyond the name* counts only tokens that are not the name's own words
  (``name_words``), which pruning keeps by design (``prune_keep_name``);
- *untrained*: answers holding a token that is none of sam3-toy v2's trained words (``sam3.toy.vocab``:
  a token whose embedding row the toy never trained, "thursdaymotivation"; a real SAM 3 has none).

    python bench/token_worth.py --run results/wv2d/renamed_s4646_n240 --config configs/default.json --threads 2
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alias_opt.discover import encode, train_images  # noqa: E402
from alias_opt.eval.bootstrap import ap_from_matches  # noqa: E402
from alias_opt.eval.metrics import coco_matches  # noqa: E402
from alias_opt.eval.predict import predict  # noqa: E402
from bench.finished_run import open_run, run_parser, run_records  # noqa: E402
from sam3.toy.vocab import PLURALS, TRAINED_WORDS  # noqa: E402

TOY_WORDS = frozenset(TRAINED_WORDS) | frozenset(PLURALS.values())  # every word sam3-toy v2 was trained on


def drop_each(seq: list[int]) -> list[list[int]]:
    """``seq`` without its i-th token, for each i (in order)."""
    return [seq[:i] + seq[i + 1 :] for i in range(len(seq))]


def pruned_in_search(history: Iterable[str]) -> tuple[int, ...]:
    """The token ids pruning dropped from the search's winner, read from a run's ``history/<id>.jsonl``
    lines (empty where nothing was dropped or pruning did not run)."""
    for line in history:
        line = line.strip()
        if line:
            step = json.loads(line)
            if step.get("phase") == "prune":
                return tuple(step.get("extra", {}).get("dropped", ()))
    return ()


def name_words(seq: Sequence[int], name_ids: Sequence[int]) -> list[bool]:
    """Which of ``seq``'s tokens are the name's words, as pruning keeps them (``prune_keep_name``): each name
    token as many times as the name holds it, first copies first."""
    left = Counter(name_ids)
    out = []
    for t in seq:
        out.append(left[t] > 0)
        left[t] -= 1
    return out


def untrained(token_strings: Sequence[str], words: frozenset[str] = TOY_WORDS) -> list[str]:
    """The BPE strings of ``token_strings`` that are not a whole trained word (``</w>`` stripped)."""
    return [t for t in token_strings if not (t.endswith("</w>") and t[: -len("</w>")] in words)]


def summarize(rows: list[dict], tolerance: float) -> dict:
    """Shares over the single-alias answers: an inert token before pruning, inert after (train, held out),
    an untrained token. ``rows``: one per single-alias answer, with ``pruned`` (tokens dropped by the
    search), ``untrained`` and, for answers of two or more tokens, ``tokens`` (each with ``train_cost``
    and ``held_out_cost``)."""

    def share(k: int) -> float | None:
        return round(k / len(rows), 3) if rows else None

    def inert(r: dict, key: str, names: bool = True) -> bool:
        return any(t[key] <= tolerance and (names or not t.get("name_word")) for t in r.get("tokens", ()))

    before = sum(bool(r["pruned"]) for r in rows)
    after_train = sum(inert(r, "train_cost") for r in rows)
    after_held = sum(inert(r, "held_out_cost") for r in rows)
    unt = sum(bool(r["untrained"]) for r in rows)
    return {
        "single_alias_answers": len(rows),
        "multi_token": sum("tokens" in r for r in rows),
        "inert_before_pruning": before,
        "inert_after_train": after_train,
        "inert_after_held_out": after_held,
        "inert_after_train_beyond_name": sum(inert(r, "train_cost", names=False) for r in rows),  # pruning's domain
        "inert_after_held_out_beyond_name": sum(inert(r, "held_out_cost", names=False) for r in rows),
        "with_untrained_token": unt,
        "share_inert_before": share(before),
        "share_inert_after_train": share(after_train),
        "share_inert_after_held_out": share(after_held),
        "share_untrained": share(unt),
        "tolerance": tolerance,
    }


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
    ap.add_argument("--tolerance", type=float, default=0.01, help="AP a token must be worth (train and held out)")
    args = ap.parse_args(argv)
    cfg, backend, sets = open_run(args)
    tok = backend.tokenizer
    rows = []
    for ts, rec in run_records(args.run, sets):
        if len(rec.get("alias_set") or [1]) > 1:
            continue
        seq = list(rec["token_ids"])
        hist = args.run / "run" / "history" / f"{ts.category_id}.jsonl"
        row = {
            "category": ts.category_id,
            "alias": rec["text"],
            "pruned": [
                tok.decode([t]) for t in pruned_in_search(hist.read_text().splitlines() if hist.exists() else [])
            ],
            "untrained": [s.removesuffix("</w>") for s in untrained(tok.token_strings(seq))],
        }
        if len(seq) >= 2:
            prompts = [seq, *drop_each(seq)]
            tr = aps(backend, train_images(ts, cfg, cfg.seed), prompts)
            te = aps(backend, ts.test, prompts)
            row["train_ap"], row["held_out_ap"] = round(tr[0], 4), round(te[0], 4)
            names = name_words(seq, tok.encode(rec["baseline_text"], special=False) if rec.get("baseline_text") else [])
            row["tokens"] = [
                {
                    "token": tok.decode([t]),
                    "name_word": names[i],  # the annotator's word: pruning keeps it (prune_keep_name)
                    "train_cost": round(tr[0] - tr[i + 1], 4),  # AP lost by dropping it
                    "held_out_cost": round(te[0] - te[i + 1], 4),
                }
                for i, t in enumerate(seq)
            ]
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps(summarize(rows, args.tolerance)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
