"""Concept embeddings, the vocabulary index (cached per model) and the projection index."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alias_opt.search.embeddings import (
    SPACES,
    ProjectionIndex,
    VocabularyIndex,
    concept_vector,
    pooled_mask_features,
    prompt_vectors,
    token_table,
)
from sam3 import ImageFeatures
from tests.discovery_helpers import objective


@pytest.fixture(scope="module")
def obj(lively_backend):
    return objective(lively_backend)


@pytest.mark.parametrize("space", SPACES)
def test_token_table_is_cached_and_matches_prompt_vectors(lively_backend, tmp_path, space):
    b = lively_backend
    table = token_table(b, space, tmp_path)
    assert table.shape == (b.vocab_size, b.hidden_size) and table.dtype == np.float32
    files = list((tmp_path / b.fingerprint).glob(f"{space}-*.npy"))
    assert len(files) == 1
    np.testing.assert_allclose(
        table[[5, 777, 49000]], prompt_vectors(b, [[5], [777], [49000]], space).numpy(), rtol=1e-4, atol=1e-5
    )
    # a second build reads the file (a sentinel value proves it)
    saved = np.load(files[0])
    saved[0, 0] = 123.0
    np.save(files[0], saved)
    assert token_table(b, space, tmp_path)[0, 0] == 123.0


def test_scoring_space_is_the_models_own_score(lively_backend, obj):
    """table[t] . query_proj(q) / sqrt(d) is the score logit SAM 3 gives query q for prompt t (unclamped)."""
    b = lively_backend
    head = b.model.dot_product_scoring
    vec = prompt_vectors(b, [[320]], "scoring")[0]
    store = {}

    def hook(mod, args, kwargs):
        store["h"] = kwargs["decoder_hidden_states"]

    handle = head.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        out = b.ground(b.encode_text(b.prompt_ids([[320]])), obj.feats.select([0]))
    finally:
        handle.remove()
    logits = head.query_proj(store["h"][-1]) @ vec * head.scale
    assert torch.allclose(logits.clamp(-12, 12)[0], out.query_logits[0, 0], atol=1e-4)


@pytest.mark.parametrize("space", SPACES)
def test_concept_vector_shapes(lively_backend, obj, space):
    sc = obj.scorer
    c = concept_vector(lively_backend, sc.feats, sc.targets, sc.grid, space, probes=[(), (320,)])
    assert c.shape == (lively_backend.hidden_size,) and torch.isfinite(c).all() and c.abs().sum() > 0


def test_pooled_mask_features_average_instances():
    fpn = torch.zeros(2, 3, 4, 4)
    fpn[0, :, :2, :2] = torch.tensor([1.0, 2.0, 3.0])[:, None, None]
    fpn[1, :, 2:, 2:] = torch.tensor([3.0, 2.0, 1.0])[:, None, None]
    feats = ImageFeatures([fpn], ["a", "b"], [(4, 4), (4, 4)])
    t0 = torch.zeros(1, 4, 4)
    t0[0, :2, :2] = 1
    t1 = torch.zeros(1, 4, 4)
    t1[0, 2:, 2:] = 1
    concept, background = pooled_mask_features(feats, [t0.flatten(1), t1.flatten(1)], (4, 4), level=0)
    assert torch.allclose(concept, torch.tensor([2.0, 2.0, 2.0]))
    assert torch.allclose(background, torch.zeros(3))


def test_vocabulary_index_search_respects_allowed():
    rng = np.random.default_rng(0)
    table = rng.normal(size=(500, 8)).astype(np.float32)
    table /= np.linalg.norm(table, axis=1, keepdims=True)
    vi = VocabularyIndex(table, "text")
    ids, scores = vi.search(table[42], 5)
    assert ids[0] == 42 and np.all(np.diff(scores) <= 1e-6)
    allowed = np.ones(500, dtype=bool)
    allowed[42] = False
    allowed[:10] = False
    ids, _ = vi.search(torch.from_numpy(table[42]), 50, allowed=allowed)
    assert 42 not in ids and not set(ids) & set(range(10)) and len(ids) == 50


def test_distinct_tokens_are_the_outliers():
    rng = np.random.default_rng(1)
    table = rng.normal(scale=0.01, size=(300, 8)).astype(np.float32)
    table[[7, 100, 250]] += np.array([3.0, -2.0, 1.0], dtype=np.float32)[:, None]
    vi = VocabularyIndex(table, "scoring")
    assert vi.distinct(3).tolist() == [7, 100, 250]
    allowed = np.ones(300, dtype=bool)
    allowed[100] = False
    assert vi.distinct(2, allowed).tolist() == [7, 250]


def test_embed_space_is_the_token_embedding_table(lively_backend, tmp_path):
    b = lively_backend
    table = token_table(b, "embed", tmp_path)
    np.testing.assert_array_equal(table, b.token_embeddings.detach().float().numpy())
    assert not list(tmp_path.rglob("*.npy"))  # the model holds it: nothing cached
    with pytest.raises(ValueError, match="unknown space 'nope'"):
        token_table(b, "nope", tmp_path)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_projection_index(lively_backend, metric):
    E = lively_backend.token_embeddings
    allowed = lively_backend.tokenizer.allowed_mask()
    allowed[1000] = False
    pi = ProjectionIndex(E, allowed, metric)
    ids = np.array([[5, 320, 4000], [7117, 736, 12]])
    assert np.array_equal(pi.project(E[torch.as_tensor(ids)]), ids)
    assert pi.project(E[1000][None])[0] != 1000  # a disallowed token projects elsewhere
    special = lively_backend.tokenizer.sot_id
    assert pi.project(E[special][None])[0] != special
    nb = pi.neighbours([5, 320], 4)
    assert nb.shape == (2, 4) and 5 not in nb[0] and 320 not in nb[1] and 1000 not in nb
