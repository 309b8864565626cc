"""One finished category's export record: its alias set, the name and the oracle scored on the held-out split.

    rec = category_record(backend, ts, outcome, thresholds, alias_set=built)

The record's alias set is ``alias_set.members`` (``alias_opt.search.alias_set``) or, without one, the
search's winner alone; the set's detections are merged (``alias_opt.eval.alias_sets``) and scored as one
prompt, and each member is also scored alone (``AliasMember.test_metrics``).
"""

from __future__ import annotations

from pathlib import Path

from alias_opt.data.loader import TargetSet
from alias_opt.eval.alias_sets import merge_split
from alias_opt.eval.bootstrap import verdict_vs
from alias_opt.eval.metrics import Thresholds, score_with_matches
from alias_opt.eval.predict import predict
from alias_opt.export import AliasMember, AliasRecord
from alias_opt.search.name_check import NameCheck
from alias_opt.search.pipeline import SearchOutcome
from alias_opt.search.set_result import AliasSetResult
from sam3 import ImageFeatures, Sam3Backend


def oracle_phrases(oracle) -> list[str]:
    """A dataset's ``oracle_name`` as a list of phrases (none, one, or a union's)."""
    if oracle is None:
        return []
    return [oracle] if isinstance(oracle, str) else [str(o) for o in oracle]


def name_check_record(backend, stage, check: NameCheck, test, feats, name_matches, thresholds, seed) -> dict:
    """A name check (``alias_opt.search.name_check``) for ``extra["name_check"]``: the stage that made it
    (``single``: the search's re-ranking; ``set``: the set builder), the answer, its train interval against
    the name, and, where the name was kept, the turned-down answer's held-out verdict against the name
    (report only: what the check cost or saved; None without held-out targets)."""
    out = {"stage": stage, **check.to_dict(lambda s: backend.tokenizer.decode(list(s)))}
    if check.departs or not test or name_matches is None:
        return out
    parts = predict(backend, feats, test, [list(s) for s in check.answer], thresholds)
    joined = parts[0] if len(parts) == 1 else merge_split(parts, thresholds.iou)
    _, matches = score_with_matches(joined, test, thresholds)
    verdict, diff = verdict_vs(matches, name_matches, seed=seed)
    out["held_out"] = {"verdict": verdict, **(diff.to_dict() if diff is not None else {})}
    return out


def category_record(
    backend: Sam3Backend,
    ts: TargetSet,
    d: SearchOutcome,
    thresholds: Thresholds,
    feats: ImageFeatures | None = None,
    predictions_path: Path | None = None,
    alias_set: AliasSetResult | None = None,
) -> AliasRecord:
    """Score the alias set, the name and the oracle phrases on the held-out split; the export record.

    The verdict against the name (``extra["vs_name"]``) is the paired bootstrap's over the held-out
    images (``extra["vs_name_interval"]``: the AP difference and its interval), for the set's merged
    detections. The oracle (report only) is the dataset's ``oracle_name``; a list of phrases (a union)
    is scored as one merged set, as ``evaluate.py --oracle`` does. With ``predictions_path`` the held-out
    detections of the name, the alias set and the oracle are saved there for the figures
    (``alias_opt.eval.figures.save_predictions``)."""
    tok = backend.tokenizer
    if d.token_ids is None:
        raise ValueError(f"category {ts.category_id}: the search found no candidate")
    members = [list(s) for s in alias_set.members] if alias_set is not None else [list(d.token_ids)]
    name_ids = tok.encode(ts.name, special=False) if ts.name else None
    oracle = oracle_phrases(ts.oracle_name)
    # prompt order: the first alias, the name, the oracle phrases, the other aliases of the set
    prompts: list[list[int]] = [members[0]] + ([name_ids] if name_ids else [])
    prompts += [tok.encode(o, special=False) for o in oracle] + members[1:]
    first_oracle = 2 if name_ids else 1
    rest = first_oracle + len(oracle)
    test = ts.test
    if test and feats is None:
        feats = _encode(backend, test)
    preds = predict(backend, feats, test, prompts, thresholds) if test else [None] * len(prompts)
    member_preds = [preds[0]] + preds[rest:]
    set_preds = member_preds[0] if len(members) == 1 or not test else merge_split(member_preds, thresholds.iou)
    scored = [score_with_matches(p, test, thresholds) if test else (None, None) for p in preds]
    alias_m, alias_matches = score_with_matches(set_preds, test, thresholds) if test else (None, None)
    member_test = [scored[0][0]] + [m for m, _ in scored[rest:]]
    name_m = scored[1][0] if name_ids else None
    oracle_m = [m for m, _ in scored[first_oracle:rest]]
    counter = d.usage.as_dict()  # the single-alias search's work (the set's: extra["alias_set_search"])
    extra = {
        "train_loss": d.loss,
        "shortlist": d.shortlist[:32],
        "phases": [r.to_dict() for r in d.phases],
        "reranked": [r.to_dict(tok.decode(r.token_ids)) for r in d.reranked],
        "synonym_tests": [t.to_dict(tok.decode(list(t.token_ids))) for t in d.synonym_tests],
        **({"sharpen": d.sharpening.to_dict(lambda s: tok.decode(list(s)))} if d.sharpening else {}),
        **counter,
        "wall_time": round(d.wall_time, 3),
        "ms_per_pair": round(1000 * d.wall_time / max(1, counter["cost"]), 3),
        "history": f"history/{ts.category_id}.jsonl",
    }
    if alias_set is not None:
        extra["alias_set_search"] = alias_set.to_dict(lambda s: tok.decode(list(s)))
    checks = [(stage, c) for stage, c in (("single", d.name_check), ("set", alias_set and alias_set.name_check)) if c]
    if checks:
        name_matches = scored[1][1] if name_ids and test else None
        extra["name_check"] = [
            name_check_record(backend, stage, c, test, feats, name_matches, thresholds, ts.category_id)
            for stage, c in checks
        ]
    oracle_preds = oracle_matches = None
    if len(oracle) > 1 and test:  # a union's phrases are one oracle: their detections merged, like an alias set
        oracle_preds = merge_split(preds[first_oracle:rest], thresholds.iou)
        merged_m, oracle_matches = score_with_matches(oracle_preds, test, thresholds)
        extra["oracle_text"] = " | ".join(oracle)
        extra["oracle_test_metrics"] = merged_m.to_dict() if merged_m is not None else None
    elif oracle:
        oracle_preds = preds[first_oracle]
        oracle_matches = scored[first_oracle][1]
        extra["oracle_text"] = oracle[0]
        extra["oracle_test_metrics"] = oracle_m[0].to_dict() if oracle_m[0] is not None else None
    if oracle_preds is not None and name_m is not None and oracle_matches is not None:
        # the same verdict for the oracle (report only): how many categories this held-out split can call at all
        verdict, diff = verdict_vs(oracle_matches, scored[1][1], seed=ts.category_id)
        extra["oracle_vs_name"] = verdict
        extra["oracle_vs_name_interval"] = diff.to_dict() if diff is not None else None
    if alias_m is not None and name_m is not None:
        verdict, diff = verdict_vs(alias_matches, scored[1][1], seed=ts.category_id)
        extra["vs_name"] = verdict
        extra["vs_name_interval"] = diff.to_dict() if diff is not None else None
    texts = [tok.decode(m) for m in members]
    if predictions_path is not None and test:
        from alias_opt.eval.figures import image_aps, save_predictions
        from alias_opt.eval.text import quote

        panels = []
        if name_ids:
            panels.append((f"name {quote(ts.name, 40)}", preds[1]))
        label = "alias" if len(members) == 1 else f"alias set of {len(members)}"
        panels.append((f"{label} {quote(' | '.join(texts), 40)}", set_preds))
        if oracle_preds is not None:
            panels.append((f"oracle {quote(extra['oracle_text'], 40)} (report only)", oracle_preds))
        save_predictions(
            predictions_path,
            ts.category_id,
            [im.image.image_id for im in test],
            [(label, p, image_aps(p, test)) for label, p in panels],
            thresholds.score,
        )
    train_members = alias_set.member_metrics if alias_set is not None else [d.train_metrics]
    return AliasRecord(
        category_id=ts.category_id,
        category_name=ts.name,
        token_ids=members[0],
        text=texts[0],
        roundtrips=tok.roundtrips(members[0]),
        strategy="name" if d.chose_name and members[0] == list(d.token_ids) else d.strategy,
        train_metrics=alias_set.metrics if alias_set is not None else d.train_metrics,
        test_metrics=alias_m,
        baseline_text=ts.name,
        baseline_train_metrics=d.name_train_metrics,
        baseline_test_metrics=name_m,
        extra=extra,
        alias_set=[
            AliasMember(m, t, tok.roundtrips(m), tr, te)
            for m, t, tr, te in zip(members, texts, train_members, member_test, strict=True)
        ],
    )


def _encode(backend: Sam3Backend, images) -> ImageFeatures:
    """Image features of TargetImages, read in their JSON orientation."""
    return backend.encode_images([im.image.load() for im in images])
