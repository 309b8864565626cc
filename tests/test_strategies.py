"""The strategies of the one registry under a budget: every one runs on a tiny budget and never spends
more than it; the hard budget cap, the pair meter, configs, and what makes each strategy what it is."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

from alias_opt.config import load_config
from alias_opt.search.context import make_context
from alias_opt.search.embeddings import VocabularyIndex
from alias_opt.search.memo import Split
from alias_opt.search.meter import BACKWARD_COST, BudgetExhausted, count_pairs
from alias_opt.search.objective import Objective
from alias_opt.search.pipeline import run_pipeline
from alias_opt.search.soft_prompt import soft_metrics
from alias_opt.search.strategies import NAMES, get_strategy
from tests.discovery_helpers import synthetic_images

TINY = {
    "max_len": 2,
    "scan_size": 12,
    "rerank": 2,
    "synonym_rows": 2,  # an unknown name's re-ranking reads rerank rows too (the synonym test runs on them)
    # at most 8 neighbours join (no gate: the rest of the pool's would spend the budget in screening)
    "index": {"shortlist": 12, "probe_rounds": 1, "pool": 21, "neighbour_heads": 2, "neighbour_gate": 0},
    "soft": {"restarts": 2, "steps": 3, "batch_images": 4, "eval_every": 2},
    "gcg": {"steps": 2, "topk": 4, "candidates": 6},
    "evolution": {"population": 8, "generations": 2, "shortlist_pairs": 3},
    "options": {"optuna_batch": 4, "optuna_startup": 4, "scan_chunk": 32, "random_batch": 8},
}
BUDGET = 500


@pytest.fixture(scope="module")
def data(tiny_backend, tmp_path_factory):
    arrays, images = synthetic_images(5, 3)
    feats = tiny_backend.encode_images(arrays)
    cfg = load_config(overrides=TINY)
    cfg.index.cache_dir = str(tmp_path_factory.mktemp("index"))
    indexes = {cfg.index.space: VocabularyIndex.build(tiny_backend, cfg.index.space, cfg.index.cache_dir)}
    return images, feats, cfg, indexes


def _ctx(tiny_backend, data, seed=0, cfg=None):
    images, feats, base, indexes = data
    return make_context(tiny_backend, images, feats, "red square", cfg or base, seed, indexes)


def _raw(cfg):
    """The config without round-trip canonicalization (a candidate's tokens are the proposed ones)."""
    return replace(cfg, roundtrip=False)


def _searched(ctx) -> set:
    """The sequences a search scored, the name (scored first by every pipeline) aside."""
    return ctx.obj.scored() - {ctx.name_seq}


@pytest.mark.parametrize("name", NAMES)
def test_strategy_spends_the_budget_and_no_more(tiny_backend, data, name):
    ctx = _ctx(tiny_backend, data)
    with count_pairs(tiny_backend) as pairs:
        res = run_pipeline(ctx, name, BUDGET)
    c = ctx.obj.usage()
    assert c.cost == c.forward + BACKWARD_COST * c.backward
    assert c.cost <= BUDGET  # never more ...
    if name != "scan":  # (the shortlist scan ends when its scan_size tokens are scored)
        assert c.cost >= 0.9 * BUDGET  # ... and (nearly) all of it: every last phase restarts until spent
    assert pairs[0] == c.forward  # every pair grounded (vocabulary probes and re-ranking too) was charged
    assert res.usage == c
    assert res.token_ids is not None and (ctx.filt(res.token_ids) == res.token_ids or res.chose_name)
    assert res.loss == ctx.obj.loss_of(res.token_ids)
    # the best two and the name (if not among them) are re-ranked by train AP
    assert res.train_metrics is not None and len(res.reranked) in (2, 3)
    assert ctx.name_seq in [r.token_ids for r in res.reranked]
    trace = res.trace
    assert trace and [p.cost for p in trace] == sorted(p.cost for p in trace)
    assert [p.loss for p in trace] == sorted((p.loss for p in trace), reverse=True)
    if name in ("random", "random-evolution", "optuna", "scan", "vocab-scan"):
        assert c.backward == 0  # gradient-free strategies
    else:
        assert c.backward > 0


def test_budgeted_objective_cuts_batches_and_refuses_steps(tiny_backend, data):
    ctx = _ctx(tiny_backend, data)
    obj = ctx.obj
    n = obj.n_images
    obj.set_budget(3 * n + n // 2)
    seqs = [(1000 + i,) for i in range(10)]
    with pytest.raises(BudgetExhausted):
        obj.losses(seqs)
    assert obj.usage().forward == 3 * n  # the first three fit, and were scored
    assert [obj.loss_of(s) is not None for s in seqs] == [True] * 3 + [False] * 7
    assert obj.exhausted  # a refused request exhausts the budget, though n // 2 is left
    embeds = tiny_backend.token_embeddings[torch.tensor([[49406, 1000, 49407]])].detach().float()
    with pytest.raises(BudgetExhausted):
        obj.loss_grad(embeds, torch.ones(1, 3, dtype=torch.bool))
    assert obj.usage().backward == 0 and obj.usage().forward == 3 * n  # refused before any work
    obj.losses(seqs[:3])  # memo hits cost nothing, even with no budget left
    assert obj.usage().forward == 3 * n
    # improvements are known once their batch is scored: at the batch's cost
    assert {p.cost for p in obj.trace} == {3 * n} and obj.best_at(3 * n - 1) is None
    assert obj.best_at(3 * n).loss == min(obj.loss_of(s) for s in seqs[:3])


def test_capped_restores_and_count_pairs_nests(tiny_backend, data):
    ctx = _ctx(tiny_backend, data)
    obj = ctx.obj
    obj.set_budget(1000)
    with obj.capped(2 * obj.n_images):
        assert obj.budget == 2 * obj.n_images
        obj.losses([(2000 + i,) for i in range(5)])  # raises inside: swallowed by capped
    assert obj.budget == 1000 and obj.usage().forward == 2 * obj.n_images and not obj.exhausted
    with count_pairs(tiny_backend) as outer:
        obj.losses([(3000,)])
        with count_pairs(tiny_backend) as inner:
            obj.losses([(3001,), (3002,)])
    assert inner[0] == 2 * obj.n_images and outer[0] == 3 * obj.n_images
    assert "iter_ground_pairs" not in vars(tiny_backend)


def test_soft_keeps_embeddings_that_reproduce_its_scores(tiny_backend, data):
    images, feats, _, _ = data
    ctx = _ctx(tiny_backend, data)
    res = run_pipeline(ctx, "soft", BUDGET)
    embeds, mask = res.kept_soft.embeds, res.kept_soft.mask
    assert embeds.shape[0] == 1 and embeds.shape[1] == int(mask.sum()) and 3 <= embeds.shape[1] <= 4
    table = tiny_backend.token_embeddings.float()
    assert torch.equal(embeds[0, 0], table[49406]) and torch.equal(embeds[0, -1], table[49407])
    again = soft_metrics(tiny_backend, images, embeds, mask, feats)[0]
    assert again.to_dict() == res.kept_soft.train_metrics.to_dict()
    # the soft prompt is not a token sequence: its features differ from its projection's
    text = tiny_backend.encode_text(embeds=embeds, mask=mask).features
    proj = tiny_backend.encode_text(tiny_backend.prompt_ids([list(res.token_ids)])).features
    assert text.shape[1] != proj.shape[1] or not torch.allclose(text, proj)


def test_optuna_chooses_among_the_shortlist(tiny_backend, data):
    cfg = _raw(data[2])
    ctx = _ctx(tiny_backend, data, cfg=cfg)
    short = set(ctx.shortlist())  # built first: the pool it was screened from is not TPE's doing
    pooled = ctx.obj.scored()
    run_pipeline(ctx, "optuna", BUDGET)
    # what TPE scored: new sequences, and the pool's singles it proposed and scored on all images
    scored = (_searched(ctx) - pooled) | (ctx.obj.memo.sequences(Split.FULL) - {ctx.name_seq})
    assert len(scored) > 20
    assert all(set(s) <= short for s in scored), "TPE proposed a token outside the shortlist"
    assert {len(s) for s in scored} == {1, 2}  # the empty choice gives shorter aliases


def test_vocab_scan_follows_the_vocabulary_order(tiny_backend, data):
    cfg = _raw(data[2])
    ctx = _ctx(tiny_backend, data, cfg=cfg)
    run_pipeline(ctx, "vocab-scan", BUDGET)
    order = ctx.vocabulary_order()
    assert len(order) == len(ctx.filt.allowed_ids)
    touched = _searched(ctx)
    assert all(len(s) == 1 for s in touched) and len(touched) > 40
    m = len(touched)
    assert touched == {(t,) for t in order[:m]}  # a prefix of the order, nothing skipped


def test_random_evolution_uses_no_shortlist(tiny_backend, data):
    ctx = _ctx(tiny_backend, data)
    res = run_pipeline(ctx, "random-evolution", BUDGET)
    assert res.shortlist == [] and not get_strategy("random-evolution").needs_vocab  # no probe, no shortlist
    tokens = {t for s in _searched(ctx) for t in s}
    assert len(tokens) > 40 and max(tokens) - min(tokens) > 10_000  # drawn from the whole vocabulary


def test_seeds_change_the_search_not_the_budget(tiny_backend, data):
    runs = []
    for seed in (0, 0, 1):
        ctx = _ctx(tiny_backend, data, seed=seed)
        res = run_pipeline(ctx, "random", BUDGET)
        runs.append((res.token_ids, ctx.obj.usage().cost, ctx.obj.scored()))
    assert runs[0] == runs[1]  # deterministic per seed
    assert runs[0][2] != runs[2][2]


def test_config_and_names(tmp_path):
    with pytest.raises(ValueError, match="unknown strategy 'gcg'"):
        get_strategy("gcg")
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"max_len": 3, "options": {"soft_fraction": 0.25, "_comment": "x"}}))
    cfg = load_config(path, {"options": {"optuna_batch": 4}})
    assert cfg.max_len == 3 and cfg.options.soft_fraction == 0.25 and cfg.options.optuna_batch == 4
    assert cfg.options.scan_chunk == 256  # untouched default
    with pytest.raises(ValueError, match="unknown config key options.'soft_frac'"):
        load_config(overrides={"options": {"soft_frac": 0.2}})
    with pytest.raises(ValueError, match="soft_fraction must be in"):
        load_config(overrides={"options": {"soft_fraction": 1.5}})
    with pytest.raises(ValueError, match="optuna_batch must be an integer"):
        load_config(overrides={"options": {"optuna_batch": 2.5}})
    with pytest.raises(ValueError, match="unknown config key 'maxlen'"):
        load_config(overrides={"maxlen": 3})
    with pytest.raises(ValueError, match="unknown strategy 'nope'"):
        load_config(overrides={"strategy": "nope"})
    with pytest.raises(ValueError, match="index.neighbour_heads and index.neighbour_gate must be >= 0"):
        load_config(overrides={"index": {"neighbours": -1}})
    with pytest.raises(ValueError, match="got 4, 32 and -1"):
        load_config(overrides={"index": {"neighbour_gate": -1}})
    with pytest.raises(ValueError, match="deep_tokens must be 'base' or 'pool'"):
        load_config(overrides={"deep_tokens": "all"})
    with pytest.raises(ValueError, match="deep_keep >= 0"):
        load_config(overrides={"deep_keep": -1})
    with pytest.raises(ValueError, match="deep_grad must be >= 0"):
        load_config(overrides={"deep_grad": -1})
    with pytest.raises(ValueError, match="budget must be >= 0"):
        run_pipeline(None, "random", -1)  # type: ignore[arg-type]


def test_context_objective_starts_uncapped(tiny_backend, data):
    ctx = _ctx(tiny_backend, data)
    assert isinstance(ctx.obj, Objective) and ctx.obj.budget == 0 and not ctx.obj.exhausted
    assert ctx.name_seq == tuple(tiny_backend.tokenizer.encode("red square", special=False))


def test_extension_bases_put_the_name_first():
    from alias_opt.search.discrete import name_first_bases

    assert name_first_bases((5, 6), [(1,), (2,)], 3) == [(5, 6), (1,), (2,)]
    assert name_first_bases((5, 6), [(1,)], 2) == [(1,)]  # an extension of the name would be too long
    assert name_first_bases(None, [(1,), (1,)], 3) == [(1,)]
    assert name_first_bases((1,), [(1,), (2,)], 3) == [(1,), (2,)]  # a one-token name that is also a single


def test_extend_phase_scores_the_name_narrowed(tiny_backend, data):
    """pez+evolution's extension phase scores the name with one shortlist token prepended and appended."""
    from alias_opt.search.phases import extend_phase, scan_phase

    ctx = _ctx(tiny_backend, data, cfg=_raw(load_config(overrides={**TINY, "max_len": 3})))
    scan_phase(ctx)
    extend_phase(ctx)
    tokens = ctx.shortlist()[: ctx.cfg.scan_size]
    name = ctx.name_seq
    scored = ctx.obj.scored()
    assert name is not None and len(name) == 2
    assert {(*name, t) for t in tokens} | {(t, *name) for t in tokens} <= scored


def test_deeper_plan_extends_each_bases_best_extension_by_its_tokens():
    from alias_opt.search.discrete import deeper_plan

    plan = [((5, 6), [1, 2]), ((7,), [8, 9, 3])]
    # "8" came from (7,)'s tokens: the rest of them follow, not the other base's
    assert deeper_plan([[], [(8, 7)]], plan, 3) == [((8, 7), [9, 3])]
    assert deeper_plan([[(5, 1, 6)], []], plan, 4) == [((5, 1, 6), [2])]  # an insertion into the name
    assert deeper_plan([[(5, 1, 6)], [(7, 9)]], plan, 4) == [((5, 1, 6), [2]), ((7, 9), [8, 3])]
    assert deeper_plan([[(5, 1, 6)], [(7, 9)]], plan, 3) == [((7, 9), [8, 3])]  # no room after the name's
    assert deeper_plan([[(4, 9)], [(4, 9)]], plan, 3) == [] and deeper_plan([[], []], plan, 3) == []  # no extension
    assert deeper_plan([[], [(7, 8)], [(7, 8)]], [*plan, ((8,), [7, 1])], 3) == [((7, 8), [9, 3])]  # once only
    # a beam: every base's best first, then every base's second; a second that is no extension of its base is skipped
    beam = [[(5, 1, 6), (5, 6, 2)], [(7, 9), (3, 7)], [(1, 8), (2, 5), (8, 4)]]
    assert deeper_plan(beam, [*plan, ((8,), [1, 4])], 4) == [
        ((5, 1, 6), [2]),
        ((7, 9), [8, 3]),
        ((1, 8), [4]),
        ((5, 6, 2), [1]),
        ((3, 7), [8, 9]),
        ((8, 4), [1]),
    ]


def test_deeper_plan_with_a_pool_extends_every_pair_by_all_of_it():
    from alias_opt.search.discrete import deeper_plan

    plan = [((5, 6), [1, 2]), ((7,), [8, 9, 3])]
    pool = [9, 1, 4, 7, 8]
    # every pair by the whole pool (its own tokens left out), in the pool's order; the skips as without it
    assert deeper_plan([[(5, 1, 6)], [(7, 9)]], plan, 4, pool) == [((5, 1, 6), [9, 4, 7, 8]), ((7, 9), [1, 4, 8])]
    assert deeper_plan([[(5, 1, 6)], [(7, 9)]], plan, 3, pool) == [((7, 9), [1, 4, 8])]


def test_best_extensions_are_each_bases_lowest_loss_scored_extensions():
    from alias_opt.search.discrete import best_extensions

    losses = {(1, 2): 0.9, (2, 1): 0.5, (3, 2): 0.2, (1, 3): 0.1, (4, 1): 0.3}
    plan = [((1,), [2, 3]), ((2,), [3]), ((4,), [2])]
    # (1, 3) is 1's best; (3, 2) is 2's (the only one scored); none of 4's extensions was scored
    assert best_extensions(losses.get, plan) == [[(1, 3)], [(3, 2)], []]
    assert best_extensions(losses.get, [((1,), [2])]) == [[(2, 1)]]  # prepended beats appended
    assert best_extensions(losses.get, plan, k=2) == [[(1, 3), (2, 1)], [(3, 2)], []]  # lowest loss first
    assert best_extensions(losses.get, plan, k=9)[0] == [(1, 3), (2, 1), (1, 2)]


def test_extend_phase_at_depth_two_scores_the_best_pair_extended_again(tiny_backend, data):
    from alias_opt.search.phases import extend_phase, scan_phase

    over = {**TINY, "max_len": 3, "extend_bases": 1, "deep_bases": 1, "deep_beam": 1, "scan_size": 4}
    one = _ctx(tiny_backend, data, cfg=_raw(load_config(overrides={**over, "extend_depth": 1})))
    scan_phase(one)
    first = extend_phase(one)
    two = _ctx(tiny_backend, data, cfg=_raw(load_config(overrides={**over, "extend_depth": 2})))
    scan_phase(two)
    res = extend_phase(two)
    extra = two.obj.scored() - one.obj.scored()
    best = first.token_ids
    assert extra and all(len(s) == len(best) + 1 for s in extra)  # only the best extension, extended again
    assert all(sum(t in s for t in best) == len(best) for s in extra)
    assert res.loss <= first.loss
    assert not two.knows_name()  # random weights: the name finds nothing on train
    # a name the model knows is narrowed one word at a time: depth 2 adds nothing for it
    known = _ctx(tiny_backend, data, cfg=_raw(load_config(overrides={**over, "extend_depth": 2, "known_name_ap": -1})))
    scan_phase(known)
    assert known.knows_name() and extend_phase(known).token_ids == first.token_ids
    assert known.obj.scored() - one.obj.scored() <= {known.name_seq}


def _extended(tiny_backend, data, overrides: dict):
    """A context after the scan and the extension phase under ``overrides``."""
    from alias_opt.search.phases import extend_phase, scan_phase

    ctx = _ctx(tiny_backend, data, cfg=_raw(load_config(overrides=overrides)))
    scan_phase(ctx)
    extend_phase(ctx)
    return ctx


def test_extend_phase_at_depth_two_extends_every_bases_best_pair(tiny_backend, data):
    """With ``deep_bases`` 2 the second best single is a base too and its own best pair is extended again,
    even where the first base's pairs have lower losses."""

    over = {**TINY, "max_len": 3, "extend_bases": 1, "scan_size": 4, "extend_depth": 2, "deep_beam": 1}
    one = _extended(tiny_backend, data, {**over, "deep_bases": 1})
    two = _extended(tiny_backend, data, {**over, "deep_bases": 2})
    second = two.ranked_singles()[1]
    extra = two.obj.scored() - one.obj.scored()
    pairs = [q for q in extra if len(q) == 2]
    triples = [q for q in extra if len(q) == 3]
    assert pairs and all(second in q for q in pairs)  # the second base's extensions
    assert triples and all(second in q for q in triples)  # ... and its best pair's, extended again
    shared = set.intersection(*(set(q) for q in triples))
    assert len(shared) == 2  # one pair, extended by its base's tokens
    best = min((q for q in two.obj.scored() if len(q) == 2 and set(q) == shared), key=two.obj.loss_of)
    assert two.obj.loss_of(best) is not None


def test_extend_phase_deep_beam_extends_each_bases_second_best_pair_too(tiny_backend, data):
    """With ``deep_beam`` 2 a base's second best pair (by train loss) is extended again as well: the triples
    beyond those of ``deep_beam`` 1 all hold it."""

    over = {**TINY, "max_len": 3, "extend_bases": 1, "deep_bases": 1, "scan_size": 4, "extend_depth": 2}
    one = _extended(tiny_backend, data, {**over, "deep_beam": 1})
    two = _extended(tiny_backend, data, {**over, "deep_beam": 2})
    base = two.ranked_singles()[0]
    pairs = [q for q in two.obj.scored() if len(q) == 2 and base in q and two.obj.loss_of(q) is not None]
    pairs.sort(key=two.obj.loss_of)
    assert len(pairs) >= 2
    extra = two.obj.scored() - one.obj.scored()
    assert extra and all(len(q) == 3 for q in extra)  # no new singles or pairs: the same first level
    assert all(any(q[:i] + q[i + 1 :] == pairs[1] for i in range(3)) for q in extra)  # the second pair, extended


def test_extend_phase_deep_tokens_pool_extends_the_pair_by_the_whole_pool(tiny_backend, data):
    """With ``deep_tokens`` "pool" a pair's third word is drawn from the whole screened pool, not only its base's
    narrowing tokens, and ``deep_keep`` of its extensions are scored in full."""
    over = {**TINY, "max_len": 3, "extend_bases": 1, "deep_bases": 1, "deep_beam": 1, "scan_size": 4, "extend_depth": 2}
    over["deep_grad"] = 0  # no gradient-proposed third words

    def thirds(ctx):
        base = ctx.ranked_singles()[0]
        own = set(ctx.narrowing((base,), 4))
        name = ctx.name_seq  # the name's own one-token extensions are depth 1's
        triples = [q for q in ctx.obj.scored() if len(q) == 3 and all(q[:i] + q[i + 1 :] != name for i in range(3))]
        return triples, {t for q in triples for t in q} - own - {base}

    base_ctx = _extended(tiny_backend, data, {**over, "deep_tokens": "base"})
    pool_ctx = _extended(tiny_backend, data, {**over, "deep_tokens": "pool", "deep_keep": 3})
    triples, outside = thirds(base_ctx)
    assert triples and len(outside) <= 1  # the pair's own second word at most
    triples, outside = thirds(pool_ctx)
    assert len(outside) >= 3 and outside <= set(pool_ctx.pool())
    assert sum(pool_ctx.obj.loss_of(q) is not None for q in triples) == 3  # deep_keep of them in full


def test_extend_phase_deep_grad_adds_the_gradients_insertions_to_each_pairs_screen(tiny_backend, data):
    """With ``deep_grad`` k a pair's screened extensions also hold, per gap, the k tokens whose insertion the loss
    gradient on the pair's hard images ranks best; without it none of those outside its base's tokens."""
    from alias_opt.search.discrete import best_extensions, hard_images
    from alias_opt.search.phases import gradient_insertions

    over = {**TINY, "max_len": 3, "extend_bases": 1, "deep_bases": 1, "deep_beam": 1, "scan_size": 4, "extend_depth": 2}
    off = _extended(tiny_backend, data, {**over, "deep_grad": 0})
    on = _extended(tiny_backend, data, {**over, "deep_grad": 3})
    base = on.ranked_singles()[0]
    plan = [((base,), on.narrowing((base,), 4))]
    pair = best_extensions(on.obj.loss_of, plan, 1)[0][0]
    hard = hard_images(on.obj.image_losses(pair), on.obj.positive, len(on.obj.screen_idx))
    proposed = set(on.filt.accept(gradient_insertions(on, pair, hard)))
    assert 3 <= len(proposed) <= 9 and all(len(q) == 3 for q in proposed)
    own = set(on.narrowing((base,), 4)) | set(pair)
    new = {q for q in proposed if not set(q) <= own}  # beyond what the base's tokens make
    assert new and new <= on.obj.scored()  # screened (at least) with the pair's own extensions
    assert not new & off.obj.scored()


def test_by_ap_reorders_each_bases_heads_by_train_ap_and_cuts_them():
    from alias_opt.search.discrete import by_ap, extends_once

    aps = {(1, 2): 0.30, (2, 1): 0.50, (1, 3): 0.45, (4, 2): float("nan"), (4, 5): 0.1}
    heads = [[(1, 2), (2, 1), (1, 3)], [(4, 2), (4, 5)], []]  # each base's best by loss first
    calls = []

    def ap_of(seqs):
        calls.append(list(seqs))
        return [aps.get(s, float("-inf")) for s in seqs]

    assert by_ap(heads, ap_of, 2) == [[(2, 1), (1, 3)], [(4, 5), (4, 2)], []]  # NaN last
    assert len(calls) == 1 and calls[0] == [c for h in heads for c in h]  # one batched call
    assert by_ap([[(7, 8), (8, 7)]], lambda s: [0.2, 0.2], 1) == [[(7, 8)]]  # ties keep the loss order
    assert by_ap([[], []], ap_of, 1) == [[], []]
    assert extends_once((5, 1, 6), (5, 6)) and extends_once((1, 5, 6), (5, 6)) and extends_once((5, 6, 1), (5, 6))
    assert extends_once((1,), ()) and not extends_once((6, 5, 1), (5, 6)) and not extends_once((5, 6), (5, 6))


def test_extend_ranked_extends_the_pair_with_the_best_train_ap_among_the_bases_best_by_loss(
    tiny_backend, data, monkeypatch
):
    """With ``extend_ranked`` the depth-2 beam is the base's best pair by train AP among its K best by loss,
    and each extended pair's K best triples by loss get a train AP (the re-ranking reads the best by AP). The
    tiny model's APs are all 0, so a stand-in AP that disagrees with the loss drives the choice."""
    from alias_opt.search.context import SearchContext
    from alias_opt.search.discrete import extends_once

    asked: list = []

    def train_aps(self, seqs):  # the higher the loss, the better the AP
        asked.extend(seqs)
        return [-math.inf if self.obj.loss_of(q) is None else self.obj.loss_of(q) for q in seqs]

    monkeypatch.setattr(SearchContext, "train_aps", train_aps)
    over = {**TINY, "max_len": 3, "extend_bases": 1, "deep_bases": 1, "deep_beam": 1, "scan_size": 4}
    ctx = _extended(tiny_backend, data, {**over, "extend_depth": 2, "extend_ranked": 4})
    assert not ctx.knows_name()
    base = (ctx.ranked_singles()[0],)
    pairs = [q for q in ctx.obj.scored() if extends_once(q, base) and ctx.obj.loss_of(q) is not None]
    head = sorted(pairs, key=lambda q: (ctx.obj.loss_of(q), pairs.index(q)))[:4]
    assert set(head) <= set(asked)  # the K best pairs by loss were ranked by train AP
    want = head[-1]  # the worst of the K by loss is the best by the stand-in AP
    assert len(head) == 4 and ctx.obj.loss_of(head[-1]) > ctx.obj.loss_of(head[-2])
    triples = [q for q in ctx.obj.scored() if len(q) == 3 and not extends_once(q, ctx.name_seq)]  # the name's aside
    assert triples and all(extends_once(q, want) for q in triples)  # only the chosen pair was extended again
    full = [q for q, _ in ctx.obj.ranked() if extends_once(q, want)][:4]
    assert full and set(full) <= set(asked)  # its best triples by loss got a train AP
    asked.clear()
    plain = _extended(tiny_backend, data, {**over, "extend_depth": 2, "extend_ranked": 0})  # by loss alone
    triples = [q for q in plain.obj.scored() if len(q) == 3 and not extends_once(q, plain.name_seq)]
    assert triples and all(extends_once(q, head[0]) for q in triples) and not asked
