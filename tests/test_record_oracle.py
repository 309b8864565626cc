"""The report-only oracle of a union category (a list of oracle phrases) is scored as one merged set."""

from __future__ import annotations

from pathlib import Path

import pytest

from alias_opt.config import load_config
from alias_opt.data.loader import CocoDataset
from alias_opt.discover import run
from alias_opt.eval.metrics import score_with_matches
from alias_opt.eval.predict import predict
from sam3.loading import TOY_DIR

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not (TOY_DIR / "config.json").is_file(), reason="the toy model is not shipped")
def test_union_oracle_is_merged(tmp_path):
    from sam3 import Sam3Backend
    from sam3.toy.world import write_dataset

    write_dataset(tmp_path / "world", "composite", images=40, seed=3)
    cfg = load_config(overrides={"strategy": "scan", "scan_size": 4, "rerank": 1, "max_aliases": 1, "max_negatives": 4})
    cfg.index.cache_dir = str(tmp_path / "index")
    cfg.index.views = ["distinct:embed"]
    cfg.index.pool = 8
    cfg.index.shortlist = 4
    backend = Sam3Backend.load("toy", device="cpu", cache_dir=tmp_path / "features")
    ts = CocoDataset.open(tmp_path / "world").target_sets(seed=cfg.seed, max_negatives=cfg.max_negatives)[0]
    assert isinstance(ts.oracle_name, list) and len(ts.oracle_name) == 2
    (rec,) = run(
        tmp_path / "world", tmp_path / "out", cfg, categories=[ts.category_id], backend=backend, progress=False
    ).aliases
    assert rec.extra["oracle_text"] == " | ".join(ts.oracle_name)
    merged = rec.extra["oracle_test_metrics"]["ap"]
    tok = backend.tokenizer
    feats = backend.encode_images([im.image.load() for im in ts.test])
    singles = [
        score_with_matches(p, ts.test)[0].ap
        for p in predict(backend, feats, ts.test, [tok.encode(o, special=False) for o in ts.oracle_name])
    ]
    # each phrase finds one of the two concepts, the merged oracle both (measured: 0.649 vs 0.063 and 0.583)
    assert merged > max(singles) + 0.03, (merged, singles)
    # the oracle's own held-out verdict against the name is the merged oracle's (its AP difference)
    iv = rec.extra["oracle_vs_name_interval"]
    assert iv is not None and abs(iv["diff"] - (merged - rec.baseline_test_metrics.ap)) < 1e-9, iv
    assert iv["low"] <= iv["diff"] <= iv["high"]
    expect = "win" if iv["low"] > 0 else "loss" if iv["high"] < 0 else "tie"
    assert rec.extra["oracle_vs_name"] == expect, (rec.extra["oracle_vs_name"], iv)
