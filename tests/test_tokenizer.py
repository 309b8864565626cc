"""The bundled CLIP BPE tokenizer gives the ids OpenAI CLIP gives."""

from __future__ import annotations

import pytest

from sam3.tokenizer import Sam3Tokenizer

# Reference ids from an independent implementation: open_clip 3.3.0's SimpleTokenizer
# (OpenAI CLIP's tokenizer), run once on these phrases.
CLIP_REFERENCE = {
    "a red circle": [49406, 320, 736, 7117, 49407],
    "a photo of a cat": [49406, 320, 1125, 539, 320, 2368, 49407],
    "A Photo of a DOG!": [49406, 320, 1125, 539, 320, 1929, 256, 49407],
    "crimson disc": [49406, 19437, 10712, 49407],
    "don't stop-believing": [49406, 847, 713, 1691, 268, 19551, 49407],
    "naïve café 🙂": [49406, 1097, 35689, 563, 15304, 14860, 49407],
    "hello   world\n": [49406, 3306, 1002, 49407],
    "bluesquare": [49406, 17566, 42549, 49407],
    "&amp; 3.14": [49406, 261, 274, 269, 272, 275, 49407],
}


@pytest.fixture(scope="module")
def tok() -> Sam3Tokenizer:
    return Sam3Tokenizer()


def test_vocabulary_and_specials(tok):
    assert tok.vocab_size == 49408
    assert (tok.sot_id, tok.eot_id) == (49406, 49407)
    assert tok.special_ids == {49406, 49407}


@pytest.mark.parametrize("text", sorted(CLIP_REFERENCE))
def test_ids_match_clip(tok, text):
    assert tok.encode(text) == CLIP_REFERENCE[text]


def test_truncates_to_context(tok):
    ids = tok.encode(" ".join(["red"] * 50))
    assert len(ids) == 32 and ids[0] == 49406 and ids[-1] == 49407


def test_decode_and_roundtrip(tok):
    assert tok.decode([736, 7117]) == "red circle"
    assert tok.decode([49406, 736, 49407]) == "red"
    assert tok.roundtrips([736, 7117])
    # "bluesquare" is BPE pieces "blues" + "quare</w>"; together they round-trip
    assert tok.token_strings([17566, 42549]) == ["blues", "quare</w>"]
    assert tok.roundtrips([17566, 42549])
    # order matters to decoding but both orders of two whole words round-trip
    assert tok.roundtrips([7117, 736])
    # a word-internal piece ("!" without </w>) decodes to text that re-encodes differently
    assert tok.token_strings([0]) == ["!"]
    assert not tok.roundtrips([0])


def test_allowed_mask(tok):
    base = tok.allowed_mask()
    assert base.shape == (49408,)
    assert not base[49406] and not base[49407]
    assert int(base.sum()) == 49406
    asc = tok.allowed_mask(ascii_only=True)
    nonascii = tok.encode("naïve", special=False)
    assert any(not asc[i] for i in nonascii)
    assert asc[736] and asc[7117]
    assert 40000 < int(asc.sum()) < 49406
    blocked = tok.allowed_mask(blocklist=["red", 7117], block_words_of="crimson disc")
    assert not blocked[736] and not blocked[7117] and not blocked[19437] and not blocked[10712]
    assert int(blocked.sum()) == 49406 - 4
