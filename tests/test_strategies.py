"""Comparison strategies: every one runs on a tiny budget and never spends more than it; the hard
budget cap, the pair meter, configs, and what makes each strategy what it is."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from alias_opt.budget import BudgetedObjective, BudgetExhausted, capped, count_pairs
from alias_opt.embeddings import VocabularyIndex
from alias_opt.objective import BACKWARD_COST
from alias_opt.strategies import (
    NAMES,
    get_strategy,
    load_strategy_config,
    make_context,
    run_strategy,
    shortlist,
    soft_metrics,
)
from tests.discovery_helpers import synthetic_images

TINY = {
    "max_len": 2,
    "scan_size": 12,
    "rerank": 2,
    "index": {"shortlist": 12, "probe_rounds": 1},
    "soft": {"restarts": 2, "steps": 3, "batch_images": 4, "eval_every": 2},
    "gcg": {"steps": 2, "topk": 4, "candidates": 6},
    "evolution": {"population": 8, "generations": 2, "shortlist_pairs": 3},
    "compare": {"optuna_batch": 4, "optuna_startup": 4, "scan_chunk": 32, "random_batch": 8},
}
BUDGET = 500


@pytest.fixture(scope="module")
def data(tiny_backend, tmp_path_factory):
    arrays, images = synthetic_images(5, 3)
    feats = tiny_backend.encode_images(arrays)
    cfg = load_strategy_config(overrides=TINY)
    cfg.search.index.cache_dir = str(tmp_path_factory.mktemp("index"))
    vocab = VocabularyIndex.build(tiny_backend, cfg.search.index.space, cfg.search.index.cache_dir)
    return images, feats, cfg, vocab


def _ctx(tiny_backend, data, seed=0, cfg=None):
    images, feats, base, vocab = data
    return make_context(tiny_backend, images, feats, "red square", cfg or base, vocab, seed)


def _raw(cfg):
    """The config without round-trip canonicalization (a candidate's tokens are the proposed ones)."""
    return replace(cfg, search=replace(cfg.search, roundtrip=False))


@pytest.mark.parametrize("name", NAMES)
def test_strategy_spends_the_budget_and_no_more(tiny_backend, data, name):
    cfg = data[2]
    ctx = _ctx(tiny_backend, data)
    with count_pairs(tiny_backend) as pairs:
        res = run_strategy(name, ctx, BUDGET, np.random.default_rng(0), cfg)
    c = ctx.obj.counter
    assert c.cost == c.forward + BACKWARD_COST * c.backward
    assert c.cost <= BUDGET  # never more ...
    assert c.cost >= 0.9 * BUDGET  # ... and (nearly) all of it: every strategy restarts until spent
    assert pairs[0] == c.forward  # every pair grounded (vocabulary probes and re-ranking too) was charged
    assert res.forward_passes == c.forward and res.backward_passes == c.backward
    assert res.token_ids is not None and ctx.filt(res.token_ids) == res.token_ids
    assert res.loss == ctx.obj.memo[(res.token_ids, "full")]
    assert res.extra["train_metrics"] is not None and len(res.extra["reranked"]) == 2
    trace = res.extra["trace"]
    assert trace and [p.cost for p in trace] == sorted(p.cost for p in trace)
    assert [p.loss for p in trace] == sorted((p.loss for p in trace), reverse=True)
    if name in ("random", "random-evolution", "optuna", "scan"):
        assert c.backward == 0  # gradient-free strategies
    else:
        assert c.backward > 0


def test_budgeted_objective_cuts_batches_and_refuses_steps(tiny_backend, data):
    ctx = _ctx(tiny_backend, data)
    obj = ctx.obj
    n = obj.n_images
    obj.budget = 3 * n + n // 2
    seqs = [(1000 + i,) for i in range(10)]
    with pytest.raises(BudgetExhausted):
        obj.losses(seqs)
    assert obj.counter.forward == 3 * n  # the first three fit, and were scored
    assert [(s, "full") in obj.memo for s in seqs] == [True] * 3 + [False] * 7
    embeds = tiny_backend.token_embeddings[torch.tensor([[49406, 1000, 49407]])].detach().float()
    with pytest.raises(BudgetExhausted):
        obj.loss_grad(embeds, torch.ones(1, 3, dtype=torch.bool))
    assert obj.counter.backward == 0 and obj.counter.forward == 3 * n  # refused before any work
    obj.losses(seqs[:3])  # memo hits cost nothing, even with no budget left
    assert obj.counter.forward == 3 * n
    # improvements are known once their batch is scored: at the batch's cost
    assert {p.cost for p in obj.trace} == {3 * n} and obj.best_at(3 * n - 1) is None
    assert obj.best_at(3 * n).loss == min(obj.memo[(s, "full")] for s in seqs[:3])


def test_capped_restores_and_count_pairs_nests(tiny_backend, data):
    ctx = _ctx(tiny_backend, data)
    obj = ctx.obj
    obj.budget = 1000
    with capped(obj, 2 * obj.n_images):
        assert obj.budget == 2 * obj.n_images
        obj.losses([(2000 + i,) for i in range(5)])  # raises inside: swallowed by capped
    assert obj.budget == 1000 and obj.counter.forward == 2 * obj.n_images
    with count_pairs(tiny_backend) as outer:
        obj.losses([(3000,)])
        with count_pairs(tiny_backend) as inner:
            obj.losses([(3001,), (3002,)])
    assert inner[0] == 2 * obj.n_images and outer[0] == 3 * obj.n_images
    assert "iter_ground_pairs" not in vars(tiny_backend)


def test_soft_keeps_embeddings_that_reproduce_its_scores(tiny_backend, data):
    images, feats, cfg, _ = data
    ctx = _ctx(tiny_backend, data)
    res = run_strategy("soft", ctx, BUDGET, np.random.default_rng(1), cfg)
    embeds, mask = res.extra["soft_embeds"], res.extra["soft_mask"]
    assert embeds.shape[0] == 1 and embeds.shape[1] == int(mask.sum()) and 3 <= embeds.shape[1] <= 4
    table = tiny_backend.token_embeddings.float()
    assert torch.equal(embeds[0, 0], table[49406]) and torch.equal(embeds[0, -1], table[49407])
    again = soft_metrics(tiny_backend, images, embeds, mask, feats)[0]
    assert again.to_dict() == res.extra["soft_train_metrics"].to_dict()
    # the soft prompt is not a token sequence: its features differ from its projection's
    text = tiny_backend.encode_text(embeds=embeds, mask=mask).features
    proj = tiny_backend.encode_text(tiny_backend.prompt_ids([list(res.token_ids)])).features
    assert text.shape[1] != proj.shape[1] or not torch.allclose(text, proj)


def test_optuna_chooses_among_the_shortlist(tiny_backend, data):
    cfg = _raw(data[2])
    ctx = _ctx(tiny_backend, data, cfg=cfg)
    run_strategy("optuna", ctx, BUDGET, np.random.default_rng(0), cfg)
    short = set(shortlist(ctx, cfg))
    scored = {s for (s, _) in ctx.obj.memo}
    assert len(scored) > 20
    assert all(set(s) <= short for s in scored), "TPE proposed a token outside the shortlist"
    assert {len(s) for s in scored} == {1, 2}  # the empty choice gives shorter aliases


def test_scan_follows_the_vocabulary_order(tiny_backend, data):
    cfg = _raw(data[2])
    ctx = _ctx(tiny_backend, data, cfg=cfg)
    run_strategy("scan", ctx, BUDGET, np.random.default_rng(0), cfg)
    order = shortlist(ctx, cfg, k=len(ctx.filt.allowed_ids), rounds=1)
    assert len(order) == len(ctx.filt.allowed_ids)
    touched = {s for (s, _) in ctx.obj.memo}
    assert all(len(s) == 1 for s in touched) and len(touched) > 40
    m = len(touched)
    assert touched == {(t,) for t in order[:m]}  # a prefix of the order, nothing skipped


def test_random_evolution_uses_no_shortlist(tiny_backend, data):
    cfg = data[2]
    ctx = _ctx(tiny_backend, data)
    run_strategy("random-evolution", ctx, BUDGET, np.random.default_rng(0), cfg)
    assert not ctx._shortlists  # no vocabulary probe, no shortlist
    tokens = {t for (s, _) in ctx.obj.memo for t in s}
    assert len(tokens) > 40 and max(tokens) - min(tokens) > 10_000  # drawn from the whole vocabulary


def test_seeds_change_the_search_not_the_budget(tiny_backend, data):
    cfg = data[2]
    runs = []
    for seed in (0, 0, 1):
        ctx = _ctx(tiny_backend, data, seed=seed)
        res = run_strategy("random", ctx, BUDGET, np.random.default_rng(seed), cfg)
        runs.append((res.token_ids, ctx.obj.counter.cost, {s for (s, k) in ctx.obj.memo}))
    assert runs[0] == runs[1]  # deterministic per seed
    assert runs[0][2] != runs[2][2]


def test_config_and_names(tmp_path):
    with pytest.raises(ValueError, match="unknown strategy 'gcg'"):
        get_strategy("gcg")
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"max_len": 3, "compare": {"soft_fraction": 0.25, "_comment": "x"}}))
    cfg = load_strategy_config(path, {"compare": {"optuna_batch": 4}})
    assert cfg.search.max_len == 3 and cfg.soft_fraction == 0.25 and cfg.optuna_batch == 4
    assert cfg.scan_chunk == 256  # untouched default
    with pytest.raises(ValueError, match="unknown config key compare.'soft_frac'"):
        load_strategy_config(overrides={"compare": {"soft_frac": 0.2}})
    with pytest.raises(ValueError, match="soft_fraction must be in"):
        load_strategy_config(overrides={"compare": {"soft_fraction": 1.5}})
    with pytest.raises(ValueError, match="optuna_batch must be int"):
        load_strategy_config(overrides={"compare": {"optuna_batch": 2.5}})
    with pytest.raises(ValueError, match="unknown config key 'maxlen'"):
        load_strategy_config(overrides={"maxlen": 3})
    ctx_budget_error = pytest.raises(ValueError, match="positive number")
    with ctx_budget_error:
        run_strategy("random", None, 0, np.random.default_rng(0), load_strategy_config())  # type: ignore[arg-type]


def test_budgeted_objective_is_an_objective(tiny_backend, data):
    ctx = _ctx(tiny_backend, data)
    assert isinstance(ctx.obj, BudgetedObjective) and ctx.obj.budget == 0
    assert ctx.name_seq == tuple(tiny_backend.tokenizer.encode("red square", special=False))
