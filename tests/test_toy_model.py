"""The shipped sam3-toy model: loads like facebook/sam3 and segments fresh world images."""

from __future__ import annotations

import pytest
import torch

from sam3.loading import TOY_DIR
from sam3.toy import world
from tests.model_helpers import check_loads_like_any_checkpoint, check_ships_small, iou, load_shipped, scores_and_masks

pytestmark = pytest.mark.skipif(not (TOY_DIR / "config.json").is_file(), reason="sam3-toy is not trained yet")

FRESH_SEED = 90_210  # a world seed no training or benchmark run uses
THRESHOLD = 0.3


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return load_shipped("toy", tmp_path_factory)


def test_ships_as_a_small_hf_directory():
    check_ships_small(TOY_DIR)


def test_loads_from_its_directory_like_any_checkpoint(toy, tmp_path):
    check_loads_like_any_checkpoint(toy, TOY_DIR, tmp_path)


@pytest.mark.parametrize("index", [0, 1, 2])
def test_training_words_segment_and_absent_concepts_stay_silent(toy, index):
    img = world.render_image(world.image_rng(FRESH_SEED, index))
    present = {inst.concept for inst in img.instances}
    inst = max(img.instances, key=lambda i: i.mask.sum())  # the largest instance
    absent = next(c for c in world.CONCEPTS if c not in present)
    prompts = [world.concept_name(*inst.concept), world.concept_name(*absent)]
    scores, masks = scores_and_masks(toy, img.rgb, prompts)
    hits = torch.nonzero(scores[0] > THRESHOLD).flatten().tolist()
    assert hits, f"{prompts[0]!r} found nothing"
    best = max(iou(masks[0, q].numpy(), inst.mask) for q in hits)
    assert best >= 0.7, f"{prompts[0]!r}: best IoU {best:.2f}"
    assert float(scores[1].max()) <= THRESHOLD, f"absent {prompts[1]!r} scored {float(scores[1].max()):.2f}"


def test_its_most_distinct_token_embeddings_are_the_training_words(toy):
    """Training moved the training words far from the rarely seen rest of the vocabulary: the
    ``distinct:embed`` shortlist view relies on it."""
    from alias_opt.search.embeddings import VocabularyIndex

    tok = toy.tokenizer
    top = set(VocabularyIndex.build(toy, "embed").distinct(16, tok.allowed_mask()).tolist())
    words = {tok.encode(w, special=False)[0] for w in (*world.COLOURS, *world.SHAPES)}
    assert words <= top, sorted(tok.decode([t]) for t in words - top)
