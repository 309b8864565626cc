"""Discrete search: filters, projection, candidate sampling, crossover, memo/screening, GCG, evolution."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alias_opt.config import EvolutionConfig, GcgConfig
from alias_opt.search.discrete import (
    CandidateFilter,
    Mutator,
    crossover,
    evolve,
    extend,
    extend_each,
    extensions,
    gcg,
    hard_images,
    random_search,
    sample_swaps,
    scan,
    seed_population,
    token_gradients,
    top_tokens,
)
from alias_opt.search.embeddings import ProjectionIndex
from alias_opt.search.gcg import insertion_gradients, slot_insertions
from alias_opt.search.projection import embed_prompts, project_sequences
from tests.discovery_helpers import objective


@pytest.fixture()
def obj(lively_backend):
    return objective(lively_backend, screen_images=4, screen_keep=0.25)


@pytest.fixture(scope="module")
def filt(lively_backend):
    return CandidateFilter(lively_backend.tokenizer, lively_backend.tokenizer.allowed_mask(), max_len=3)


def test_filter_rules(lively_backend, filt):
    tok = lively_backend.tokenizer
    red, circle = tok.encode("red circle", special=False)
    assert filt((red, circle)) == (red, circle)
    assert filt(()) is None
    assert filt((red, circle, red, circle)) is None  # longer than max_len
    assert filt((tok.sot_id, red)) is None and filt((red, tok.eot_id)) is None  # never special tokens
    blocked = CandidateFilter(tok, tok.allowed_mask(block_words_of="red"), max_len=3)
    assert blocked((red, circle)) is None and blocked((circle,)) == (circle,)
    # "re" + "d</w>" decodes to "red", which re-encodes to the single token "red</w>": canonicalized
    re_, d_ = tok._tok.convert_tokens_to_ids(["re", "d</w>"])
    assert not tok.roundtrips((re_, d_))
    assert filt((re_, d_)) == (red,)
    raw = CandidateFilter(tok, tok.allowed_mask(), max_len=3, roundtrip=False)
    assert raw((re_, d_)) == (re_, d_)
    assert filt.accept([(red,), (red,), (), (re_, d_)]) == [(red,)]


def test_ascii_only_filter(lively_backend):
    tok = lively_backend.tokenizer
    f = CandidateFilter(tok, tok.allowed_mask(ascii_only=True), max_len=2)
    non_ascii = next(i for i in range(256, 2000) if not tok.decode([i]).isascii())
    assert f((non_ascii,)) is None and f(tok.encode("cat", special=False)) is not None


def test_project_and_embed(lively_backend, filt):
    b = lively_backend
    E = b.token_embeddings
    pi = ProjectionIndex(E, filt.allowed)
    soft = E[torch.tensor([[320, 736, 5], [7117, 1, 1]])] + 1e-4
    assert project_sequences(pi, soft, [3, 1]) == [(320, 736, 5), (7117,)]
    embeds, mask = embed_prompts(E, b.tokenizer.sot_id, b.tokenizer.eot_id, [E[[320, 736]], E[[7117]]])
    ref = b.encode_text(ids=b.prompt_ids([[320, 736], [7117]]))
    got = b.encode_text(embeds=embeds, mask=mask)
    assert torch.equal(mask, ref.mask) and torch.allclose(
        got.features * mask[..., None], ref.features * mask[..., None]
    )


def test_top_tokens_and_swaps():
    grad = torch.zeros(2, 10)
    grad[0, 3], grad[0, 7], grad[1, 2], grad[1, 9] = -5, -4, -6, -3
    allowed = torch.ones(10, dtype=torch.bool)
    allowed[7] = False
    top = top_tokens(grad, allowed, 2)
    assert top[0].tolist() == [3, 0] or top[0, 0] == 3
    assert 7 not in top[0] and top[1, 0] == 2
    rng = np.random.default_rng(0)
    seq = (5, 6)
    cands = sample_swaps(seq, top, 10, rng)
    assert (5,) in cands and (6,) in cands  # deletions
    for c in cands:
        if len(c) == 2:
            diff = [i for i in range(2) if c[i] != seq[i]]
            assert len(diff) == 1 and c[diff[0]] in top[diff[0]].tolist()


def test_crossover_and_mutations():
    rng = np.random.default_rng(0)
    a, b = (1, 2, 3), (7, 8)
    for _ in range(100):
        c = crossover(a, b, rng, max_len=3)
        assert 1 <= len(c) <= 3 and set(c) <= {1, 2, 3, 7, 8}
    m = Mutator([11, 12, 13], None, 0, max_len=3, rng=rng)
    m.grad_pool = np.array([21, 22])
    lengths = set()
    for _ in range(200):
        c = m((1, 2))
        assert 1 <= len(c) <= 3 and set(c) <= {1, 2, 11, 12, 13, 21, 22}
        lengths.add(len(c))
    assert lengths == {1, 2, 3}
    assert max(len(m((1, 2, 3))) for _ in range(50)) == 3


def test_seed_population_pairs(filt):
    singles = [(320,), (736,), (7117,)]
    pop = seed_population([(1125, 539)], singles, n_pairs=2, filt=filt)
    assert pop[0] == (1125, 539) and (320, 736) in pop and (736, 320) in pop and (320, 7117) not in pop


def test_extensions_append_prepend_then_insert():
    assert extensions([(5,), (6, 7)], [9, 5]) == [
        (5, 9), (9, 5), (5, 5),
        (6, 7, 9), (9, 6, 7), (6, 9, 7), (6, 7, 5), (5, 6, 7), (6, 5, 7),
    ]  # fmt: skip
    assert extensions([(1, 2, 3)], [9]) == [(1, 2, 3, 9), (9, 1, 2, 3), (1, 9, 2, 3), (1, 2, 9, 3)]
    assert extensions([], [1, 2]) == [] and extensions([(1,)], []) == []


def test_extend_scores_the_extensions_and_returns_the_best(obj, filt):
    res = extend(obj, [(320,), (736,)], [7117, 1125, 539], filt, n=3)
    cands = filt.accept(extensions([(320,), (736,)], [7117, 1125, 539]))
    assert len(cands) >= 8 and all(obj.screen_loss_of(c) is not None for c in cands)
    full = {c: obj.loss_of(c) for c in cands if obj.loss_of(c) is not None}
    assert res.candidates == sorted(full, key=full.get)[:3] and res.loss == pytest.approx(min(full.values()))
    assert res.phase == "extend" and res.forward_passes == obj.usage().forward


def test_memo_and_screening(obj):
    n = obj.n_images
    seqs = [(320 + i,) for i in range(8)]
    obj.score(seqs)
    screen = len(obj.screen_idx)
    assert obj.usage().forward == 8 * screen + 2 * n  # 25% of 8 survive the screen
    before = obj.usage().forward
    losses = obj.score(seqs)
    assert obj.usage().forward == before and obj.usage().memo_hits >= 8
    assert np.isfinite(losses).sum() == 2
    full = obj.losses(seqs)  # unscreened: the 6 dropped ones now get full scores
    assert np.allclose(full[np.isfinite(losses)], losses[np.isfinite(losses)])
    assert obj.best_loss == pytest.approx(float(np.min(losses)))


def test_hard_images_are_a_sequences_worst_positives_and_negatives():
    losses = np.array([0.1, 0.9, 0.5, 0.7, 0.2, 0.8])
    positive = np.array([True, True, True, False, False, False])
    assert hard_images(losses, positive, 4).tolist() == [1, 2, 3, 5]  # two worst of each kind
    assert hard_images(losses, positive, 3).tolist() == [1, 2, 5]  # the odd one a positive
    one_pos = np.array([True, False, False, False, False, False])
    assert hard_images(losses, one_pos, 4).tolist() == [0, 1, 3, 5]  # negatives top up a short kind
    assert hard_images(losses, positive, 9).tolist() == list(range(6))
    assert hard_images(losses, ~one_pos, 2).tolist() == [0, 1]  # the one negative, the worst positive


def test_screening_on_given_images_keeps_the_best_on_them(obj):
    n = obj.n_images
    seqs = [(340 + i,) for i in range(8)]
    idx = np.array([n - 1, 0, 1])  # any order: screened sorted
    per = obj.image_losses(seqs[0])
    assert per.shape == (n,) and obj.usage().forward == n and obj.loss_of(seqs[0]) is None  # not memoized
    on_idx = obj.losses(seqs, np.sort(idx))  # the same losses the screen reads (memoized under those images)
    before = obj.usage().forward
    losses = obj.score(seqs, screen_idx=idx)
    assert obj.usage().forward - before == 2 * n  # screening was memoized: only the 2 survivors scored fully
    kept = {seqs[i] for i in np.flatnonzero(np.isfinite(losses))}
    assert kept == {seqs[i] for i in np.argsort(on_idx, kind="stable")[:2]}
    assert all(obj.screen_loss_of(s) is None for s in seqs)  # the objective's own screening images untouched


def test_screening_on_given_images_adds_no_sequence_past_the_best_so_fars_bar(obj):
    n = obj.n_images
    seqs = [(360 + i,) for i in range(8)]
    # the best so far, and the images where it fails most: it screens badly there
    best = (359,)
    obj.score([best], screen=False)
    idx = hard_images(obj.image_losses(best), obj.positive, 3)
    on_idx = obj.losses([*seqs, best], idx)
    bar = on_idx[-1]
    assert np.sort(on_idx[:-1])[2] <= bar  # on the own screen the third best would pass the bar too
    before = obj.usage().forward
    losses = obj.score(seqs, screen_idx=idx)
    assert obj.usage().forward - before == 2 * n and np.isfinite(losses).sum() == 2  # the kept 25% only
    assert {seqs[i] for i in np.flatnonzero(np.isfinite(losses))} == {seqs[i] for i in np.argsort(on_idx[:-1])[:2]}


def test_extend_each_keeps_a_given_count_after_screening(obj, filt):
    n, screen = obj.n_images, len(obj.screen_idx)
    plan = [((320,), [7117, 1125, 539, 736])]
    cands = filt.accept(extensions([(320,)], [7117, 1125, 539, 736]))
    assert len(cands) == 8
    extend_each(obj, plan, filt, keep_n=3)
    assert obj.usage().forward == 8 * screen + 3 * n  # 3 of 8 in full, not the 25% share (2)
    assert sum(obj.loss_of(c) is not None for c in cands) == 3


def test_scan_keep_scores_a_larger_share_on_all_images(obj, filt):
    n, screen = obj.n_images, len(obj.screen_idx)
    tokens = list(range(320, 328))
    half = scan(obj, tokens, filt, keep=0.5)  # 4 of 8 screened singles scored on all images
    assert obj.usage().forward == 8 * screen + 4 * n
    scored = [c for c in half.candidates if obj.loss_of(c) is not None]
    assert len(scored) == 4 and half.candidates[:4] == scored  # fully scored first, by loss
    assert [obj.loss_of(c) for c in scored] == sorted(obj.loss_of(c) for c in scored)
    # the survivors are the best half by screening loss
    by_screen = sorted(half.candidates, key=lambda c: obj.screen_loss_of(c))
    assert set(scored) == set(by_screen[:4])
    before = obj.usage().forward
    scan(obj, list(range(330, 334)), filt, keep=1.0)  # keep everything: no screening pass at all
    assert obj.usage().forward - before == 4 * n
    assert obj.screen_cost(1.0) == screen + n and obj.screen_cost() == screen + 0.25 * n


def test_budget_stops_phases(obj, filt, lively_backend):
    obj.set_budget(150)
    res = random_search(obj, filt, np.random.default_rng(0), batch=8, max_candidates=10_000)
    assert obj.exhausted and obj.usage().cost < 150 + 8 * obj.n_images + 1
    assert res.forward_passes == obj.usage().forward and res.token_ids is not None


def test_token_gradients_match_embedding_gradient(obj, lively_backend):
    b = lively_backend
    seq = (320, 736)
    g = token_gradients(obj, [seq])[0]
    assert g.shape == (2, b.vocab_size)
    E = b.token_embeddings.detach().float()
    rows = E[list(seq)].clone().requires_grad_(True)
    embeds, mask = embed_prompts(E, b.tokenizer.sot_id, b.tokenizer.eot_id, [rows])
    obj.loss_grad(embeds, mask)
    ref = rows.grad @ E.T
    assert torch.allclose(g, ref, rtol=1e-3, atol=1e-6 + 1e-3 * float(ref.abs().max()))


def test_slot_insertions_put_each_gaps_tokens_in_that_gap():
    top = torch.tensor([[1, 2], [3, 6], [4, 4]])  # (L + 1, k) for seq (5, 6): before 5, between, after 6
    assert slot_insertions((5, 6), top) == [(1, 5, 6), (2, 5, 6), (5, 3, 6), (5, 6, 6), (5, 6, 4)]
    assert slot_insertions((5,), torch.tensor([[7], [8], [9]])) == [(7, 5), (5, 8)]  # rows past the gaps ignored


def test_insertion_gradients_are_each_slots_gradient_against_the_table(obj, lively_backend):
    """Gap i's row is the loss gradient at a slot (the allowed rows' mean) inserted there, dotted with every row."""
    b = lively_backend
    seq = (320, 736)
    allowed = b.tokenizer.allowed_mask()
    g = insertion_gradients(obj, seq, allowed)
    assert g.shape == (3, b.vocab_size)
    E = b.token_embeddings.detach().float()
    for gap in (0, 1, 2):
        slot = E[allowed].mean(0).clone().requires_grad_(True)
        rows = [*E[list(seq[:gap])], slot, *E[list(seq[gap:])]]
        embeds, mask = embed_prompts(E, b.tokenizer.sot_id, b.tokenizer.eot_id, [torch.stack(rows)])
        obj.loss_grad(embeds, mask)
        ref = slot.grad @ E.T
        assert float(ref.abs().max()) > 0
        assert torch.allclose(g[gap], ref, rtol=1e-3, atol=1e-6 + 1e-3 * float(ref.abs().max()))
    assert not torch.allclose(g[0], g[2])  # the gaps differ


def test_scan_gcg_evolution_improve(obj, filt, lively_backend):
    rng = np.random.default_rng(0)
    res = scan(obj, list(range(300, 340)), filt)
    assert len(res.candidates) == len(filt.accept([(t,) for t in range(300, 340)])) > 20
    assert res.token_ids == obj.best
    start = res.candidates[-1]
    g = gcg(obj, start, GcgConfig(steps=2, topk=8, candidates=8), filt, rng)
    assert g.loss <= obj.loss_of(start) + 1e-9
    pop = seed_population([], res.candidates, 3, filt)
    before = min(obj.loss_of(s) if obj.loss_of(s) is not None else np.inf for s in pop)
    mut = Mutator(
        [t[0] for t in res.candidates], ProjectionIndex(lively_backend.token_embeddings, filt.allowed), 4, 3, rng
    )
    ev = evolve(obj, pop, EvolutionConfig(population=8, generations=2, elite=2, grad_topk=4), filt, mut, rng)
    assert ev.loss <= before + 1e-9 and ev.forward_passes > 0
    assert all(filt(c) == c for c in ev.candidates)
    steps = [s.phase for s in obj.history]
    assert {"scan", "gcg", "evolution"} <= set(steps)


def test_extend_each_extends_each_base_by_its_own_tokens(obj, filt):
    res = extend_each(obj, [((320,), [7117]), ((736,), [1125, 539])], filt, n=50)
    want = filt.accept(extensions([(320,)], [7117]) + extensions([(736,)], [1125, 539]))
    assert all(obj.screen_loss_of(c) is not None for c in want)
    assert obj.screen_loss_of((320, 1125)) is None  # not 320's token
    assert set(res.candidates) <= set(want) and len(res.candidates) >= 1
