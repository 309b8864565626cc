"""Inert-token pruning and readability, driven with tiny fake scores."""

from __future__ import annotations

import pytest

from alias_opt.search.prune import has_inert_token, is_word, prune_inert, readability, restore_words

RED, CIRCLE, HOST, FERT = 1, 2, 3, 4


def fake_score(seqs):
    """Train AP: 'red' and 'circle' each matter; 'host' and 'fert' are filler (fert costs 0.004)."""
    out = []
    for s in seqs:
        v = 0.1 + 0.4 * (RED in s) + 0.4 * (CIRCLE in s) - 0.004 * (FERT not in s and len(s) > 0)
        out.append(v)
    return out


def test_prune_drops_only_inert_tokens():
    r = prune_inert([RED, HOST, CIRCLE], fake_score)
    assert r.seq == (RED, CIRCLE) and r.dropped == (HOST,) and r.score == r.start_score
    r = prune_inert([RED, FERT, HOST, CIRCLE], fake_score, tolerance=0.0)
    assert r.seq == (RED, FERT, CIRCLE)  # removing fert costs 0.004 > 0
    r = prune_inert([RED, FERT, HOST, CIRCLE], fake_score, tolerance=0.01)
    assert r.seq == (RED, CIRCLE) and set(r.dropped) == {FERT, HOST}
    assert r.start_score - r.score <= 0.01
    assert prune_inert([HOST], fake_score).seq == (HOST,)  # never empty


def test_tolerance_is_against_the_start_not_cumulative():
    def score(seqs):  # every token removed costs 0.006
        return [1.0 - 0.006 * (5 - len(s)) for s in seqs]

    r = prune_inert([1, 2, 3, 4, 5], score, tolerance=0.01)
    assert len(r.seq) == 4 and r.start_score - r.score <= 0.01


def test_has_inert_token():
    assert has_inert_token([RED, HOST, CIRCLE], fake_score)
    assert not has_inert_token([RED, CIRCLE], fake_score)
    assert not has_inert_token([RED], fake_score)


def test_readability_prefers_words():
    assert is_word("red</w>") and not is_word("fer") and not is_word("【</w>") and not is_word("a1</w>")
    words = readability(["red</w>", "circle</w>"])
    fragment = readability(["red</w>", "cir", "cle</w>"])
    odd = readability(["red</w>", "【</w>"])
    assert words == (0, 0, 2) and fragment == (1, 0, 3) and odd == (1, 1, 2)
    assert sorted([odd, fragment, words]) == [words, fragment, odd]
    assert readability(["red</w>"]) < words  # shorter first among words


def test_prune_keeps_the_names_tokens():
    """A name token that adds no train AP ("circle" in "small purple circle" where the train split holds
    no small purple non-circle) is the annotator's word: kept; the filler beside it still goes."""
    small, purple = 5, 6

    def score(seqs):  # circle and host inert, small and purple matter
        return [0.1 + 0.3 * (small in s) + 0.3 * (purple in s) for s in seqs]

    r = prune_inert([small, purple, CIRCLE, HOST], score, tolerance=0.01)
    assert r.seq == (small, purple) and set(r.dropped) == {CIRCLE, HOST}
    r = prune_inert([small, purple, CIRCLE, HOST], score, tolerance=0.01, keep={purple, CIRCLE})
    assert r.seq == (small, purple, CIRCLE) and r.dropped == (HOST,)
    assert prune_inert([CIRCLE, HOST], score, keep={CIRCLE, HOST}).dropped == ()  # nothing left to drop


def test_prune_keeps_a_name_token_once_per_copy_in_the_name():
    """5454 "star solid star" for the name "star": the name holds "star" once, so its second copy is
    pruned like any filler (the first is the annotator's word and stays)."""
    solid = 7

    def score(seqs):  # solid matters; a second star costs a little (it adds outlined stars back)
        return [0.3 + 0.2 * (solid in s) - 0.02 * max(0, s.count(CIRCLE) - 1) for s in seqs]

    r = prune_inert([CIRCLE, solid, CIRCLE], score, tolerance=0.01, keep=(CIRCLE,))
    assert r.seq == (solid, CIRCLE) and r.dropped == (CIRCLE,) and r.score == pytest.approx(0.5)
    assert prune_inert([CIRCLE, solid, CIRCLE], score, keep={CIRCLE}).seq == (solid, CIRCLE)  # a set: once each
    assert prune_inert([CIRCLE, solid, CIRCLE], score, keep=(CIRCLE, CIRCLE)).dropped == ()  # the name has two


def test_restore_puts_back_name_words_that_cost_nothing():
    """ "huge teal" for "large cross": "cross" is inert on train (no teal non-crosses there), so it goes
    back; "large" would cost 0.05 (say), so it does not."""
    huge, teal, large, cross = 7, 8, 9, 10

    def score(seqs):
        last = [s[-1] == cross for s in seqs]  # "cross" scores 0.001 better at the end
        return [0.6 + 0.1 * (teal in s) - 0.05 * (large in s) + 0.001 * e for s, e in zip(seqs, last)]

    r = restore_words([huge, teal], [large, cross], score, tolerance=0.01)
    assert r.added == (cross,) and sorted(r.seq) == sorted((huge, teal, cross))
    assert r.seq == (huge, teal, cross)  # the best-scoring position
    assert r.start_score - r.score <= 0.01
    assert restore_words([huge, teal], [large, cross], score, tolerance=0.1).added == (cross, large)


def test_restore_respects_tolerance_max_len_and_multisets():
    def score(seqs):  # every inserted token costs 0.006
        return [1.0 - 0.006 * (len(s) - 1) for s in seqs]

    assert restore_words([1], [2, 3, 4], score, tolerance=0.01).added == (2,)  # a second would cost 0.012
    assert len(restore_words([1], [2, 3, 4], score, tolerance=0.1, max_len=3).seq) == 3
    assert restore_words([1, 2], [2, 3], score, tolerance=0.1).added == (3,)  # 2 is there already
    assert restore_words([2], [2, 2], score, tolerance=0.1).seq == (2, 2)  # as multisets
    assert restore_words([1], [2], score, tolerance=0.0).added == ()  # any cost is too much at 0
    assert restore_words([1, 2], [], score).seq == (1, 2)


def test_restore_replaces_a_non_name_token_at_max_len():
    """ "empty red circle" for "hollow circle" at max_len 3: "hollow" takes the place of "empty" (its
    synonym), not of "red" (which the targets need) or "circle" (the name's own word)."""
    empty, red, circle, hollow = 11, 12, 13, 14

    def score(seqs):
        return [0.2 + 0.3 * (red in s) + 0.2 * (circle in s) + 0.1 * (empty in s or hollow in s) for s in seqs]

    r = restore_words([empty, red, circle], [hollow, circle], score, tolerance=0.01, max_len=3)
    assert r.seq == (hollow, red, circle) and r.added == (hollow,) and r.replaced == (empty,)
    assert restore_words([red, circle, empty], [red, circle], score, max_len=3).added == ()  # nothing missing
    assert restore_words([empty, red], [hollow], score, max_len=3).seq == (hollow, empty, red)  # room: insert


def test_restore_replaces_a_surplus_copy_of_a_name_token():
    """ "small small purple" for "small star" at max_len 3 (fresh seed 4141): the second "small" is not
    the name's, so "star" may take its place; the name's one "small" and "purple" stay."""
    small, purple, star = 21, 22, 23

    def score(seqs):
        return [0.3 + 0.2 * (purple in s) + 0.1 * (small in s) + 0.05 * (star in s) for s in seqs]

    r = restore_words([small, small, purple], [small, star], score, tolerance=0.01, max_len=3)
    assert sorted(r.seq) == sorted((small, star, purple)) and r.added == (star,) and r.replaced == (small,)
    assert r.seq.count(small) == 1
    # one copy only is the name's: with "small" asked twice, neither copy is surplus and nothing gives way
    assert restore_words([small, small, purple], [small, small, star], score, 0.5, max_len=3).replaced == (purple,)
