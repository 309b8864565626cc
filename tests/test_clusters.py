"""Target clusters for union categories: two_means, cluster_images and TargetImage.only on hand-made
data, the cluster searches and their place in the alias-set builder on a fake world, descriptors on
the tiny backend."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from alias_opt.config import load_config
from alias_opt.search import alias_set as aset
from alias_opt.search import clusters, cover, set_steps
from alias_opt.search.meter import Usage
from alias_opt.search.objective import Step
from tests.test_alias_sets import A2, B2, BROAD, IMAGES, PREDS, _fake_world, _Feats, _first


def _blobs(n0: int, n1: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n0 + n1, 8) points around two directions (plus a shared offset and scale noise), shuffled; their truth."""
    rng = np.random.default_rng(seed)
    a, b = np.eye(8)[0], np.eye(8)[1]
    truth = rng.permutation(np.r_[np.zeros(n0, int), np.ones(n1, int)])
    centres = np.where(truth[:, None] == 0, a, b)
    x = 5.0 + centres * rng.uniform(1, 4, (len(truth), 1)) + 0.15 * rng.normal(size=(len(truth), 8))
    return x, truth


def test_two_means_finds_two_directions_larger_first():
    x, truth = _blobs(9, 5)
    labels = clusters.two_means(x, seed=3)
    assert (labels == truth).all()  # the larger group (9) is cluster 0
    assert (clusters.two_means(x, seed=4) == labels).all()  # restarts: the same split from another seed
    assert clusters.two_means(np.ones((4, 3))).tolist() == [0, 0, 0, 0]  # nothing to split
    assert clusters.two_means(np.ones((1, 3))).tolist() == [0]


def test_target_only_moves_the_others_to_ignore():
    im = IMAGES[1]  # targets A2, B2
    b = im.only([False, True])
    assert b.n_targets == 1 and (b.masks[0] == B2).all() and b.ann_ids == [1] and (b.ignore == A2).all()
    assert im.only([True, True]) is im
    assert IMAGES[3].only(np.zeros(0, bool)) is IMAGES[3]  # a negative stays as it is
    with pytest.raises(ValueError, match="1 flags for 2 targets"):
        im.only([True])


def test_cluster_images_ignores_the_other_clusters_targets():
    labels = np.array([0, 0, 1, 1])  # A1 | A2, B2 | B3 | (negative)
    (a_imgs, a_idx), (b_imgs, b_idx) = clusters.cluster_images(IMAGES, labels)
    assert a_idx == [0, 1, 3] and b_idx == [1, 2, 3]  # image 3 holds only B3: not in cluster 0; the negative in both
    assert [im.n_targets for im in a_imgs] == [1, 1, 0] and (a_imgs[1].ignore == B2).all()
    assert [im.n_targets for im in b_imgs] == [1, 1, 0] and (b_imgs[0].ignore == A2).all()
    with pytest.raises(ValueError, match="3 labels for 4 targets"):
        clusters.cluster_images(IMAGES, labels[:3])


def _fake_clusters(monkeypatch, labels_of_targets, calls):
    """search_clusters on IMAGES with descriptors that split as ``labels_of_targets``; each cluster's
    search returns the alias of its concept ((1,) for A, (2,) for B)."""
    x = np.where(np.asarray(labels_of_targets)[:, None] == 0, np.eye(4)[0], np.eye(4)[1]) + 1.0
    monkeypatch.setattr(clusters, "instance_descriptors", lambda *a, **k: x)

    def search(backend, images, feats, name, cfg, seed, indexes=None, on_step=None):
        calls.append((feats, seed, [im.n_targets for im in images]))
        if on_step is not None:
            on_step(Step("scan", 0, 1.0, 1.0, [1], 4, 0, 0.1))
        alias = (1,) if len(calls) == 1 else (2,)
        return SimpleNamespace(
            token_ids=alias,
            reranked=[SimpleNamespace(token_ids=alias)],
            candidates=[alias, (3,)],
            usage=Usage(forward=7),
        )

    monkeypatch.setattr(clusters, "search", search)


def test_search_clusters_searches_each_cluster_alone(monkeypatch):
    calls, steps = [], []
    _fake_clusters(monkeypatch, [0, 0, 1, 1], calls)
    cfg = load_config()
    res = clusters.search_clusters(None, IMAGES, _Feats(), "a or b", cfg, seed=11, on_step=steps.append)
    assert res.sizes == [2, 2] and res.skipped == "" and len(res.outcomes) == 2
    assert calls[0] == (("selected", (0, 1, 3)), clusters.cluster_seed(11, 0), [1, 1, 0])
    assert calls[1] == (("selected", (1, 2, 3)), clusters.cluster_seed(11, 1), [1, 1, 0])
    assert [st.phase for st in steps] == ["cluster0:scan", "cluster1:scan"]
    assert res.candidates(rerank=2) == [(1,), (3,), (2,)]
    assert res.usage().forward == 14
    assert res.to_dict(str) == {"sizes": [2, 2], "skipped": "", "aliases": ["(1,)", "(2,)"]}
    calls.clear()
    _fake_clusters(monkeypatch, [0, 0, 0, 1], calls)  # a cluster of one target: not searched
    small = clusters.search_clusters(None, IMAGES, _Feats(), "a or b", cfg, seed=11)
    assert calls == [] and small.outcomes == [] and "holds 1 of 4" in small.skipped


def test_build_alias_set_finds_the_union_through_the_clusters(monkeypatch):
    """The first search's candidates are the broad alias and junk; the union's members come only from
    the cluster searches, and their cover set is the answer."""
    _fake_world(monkeypatch, [])
    monkeypatch.setitem(PREDS, (4,), BROAD)
    cluster_calls = []
    _fake_clusters(monkeypatch, [0, 0, 1, 1], cluster_calls)
    first = _first(token_ids=(4,), candidates=[(4,), (3,)], splits=[], insertions=[])
    assert load_config().set_clusters is False
    on = load_config(overrides={"set_level": 0, "set_clusters": True})
    res = aset.build_alias_set(None, IMAGES, _Feats(), "a or b", on, seed=0, first=first)
    assert len(cluster_calls) == 2 and res.clusters.sizes == [2, 2]
    assert sorted(res.cover) == [(1,), (2,)] and res.kept and res.metrics.ap == pytest.approx(1.0)
    assert res.to_dict(str)["clusters"]["aliases"] == ["(1,)", "(2,)"]
    assert res.usage.forward == 4 + 14 + 3 * 4  # the broad alias, two cluster searches, (3,), (1,), (2,)
    off = aset.build_alias_set(None, IMAGES, _Feats(), "a or b", load_config(overrides={"set_level": 0}), 0, first)
    assert off.clusters is None and not off.kept and off.to_dict(str)["clusters"] is None


def test_instance_descriptors_one_row_per_target(tiny_backend):
    from tests.discovery_helpers import synthetic_images

    arrays, images = synthetic_images(4, 3)
    feats = tiny_backend.encode_images(arrays)
    n = sum(im.n_targets for im in images)
    ids = tiny_backend.tokenizer.encode("square", special=False)
    for kind in clusters.KINDS:
        d = clusters.instance_descriptors(tiny_backend, images, feats, kind, ids)
        assert d.shape[0] == n and d.ndim == 2 and np.isfinite(d).all() and np.abs(d).sum() > 0
    with pytest.raises(ValueError, match="unknown descriptor"):
        clusters.instance_descriptors(tiny_backend, images, feats, "colour")


def test_wants_split_only_where_the_single_alias_fires_on_much_else():
    assert set_steps.wants_split(SimpleNamespace(precision=0.41), 0.6)  # "purple" at its broadest
    assert not set_steps.wants_split(SimpleNamespace(precision=0.88), 0.6)  # a narrowed alias
    assert set_steps.wants_split(SimpleNamespace(precision=float("nan")), 0.6)  # it kept nothing above threshold
    assert not set_steps.wants_split(SimpleNamespace(precision=0.6), 0.6)


def test_build_alias_set_takes_the_cluster_insertions_where_precision_is_low(monkeypatch):
    """The first search's candidates are the broad alias and junk; the members come only from the
    clusters' insertions, sought only while the single alias's train precision is below the gate."""
    _fake_world(monkeypatch, [])
    monkeypatch.setitem(PREDS, (4,), BROAD)  # precision 4/5 (the junk detection) at full recall
    calls = []

    def fake(backend, images, feats, name, cfg, seed, n, indexes=None):
        calls.append((name, seed, n))
        return clusters.ClusterSplit([2, 2], [[(1,), (3,)], [(2,)]], forwards=9)

    monkeypatch.setattr(cover, "cluster_insertions", fake)
    first = _first(token_ids=(4,), candidates=[(4,), (3,)], splits=[], insertions=[])
    on = load_config(overrides={"set_level": 0, "set_cluster_split": 2, "set_cluster_precision": 0.9})
    res = aset.build_alias_set(None, IMAGES, _Feats(), "a or b", on, seed=7, first=first)
    assert calls == [("a or b", 7, 2)]
    assert sorted(res.cover) == [(1,), (2,)] and res.kept and res.metrics.ap == pytest.approx(1.0)
    assert res.to_dict(str)["cluster_split"]["insertions"] == [["(1,)", "(3,)"], ["(2,)"]]
    assert res.usage.forward == 4 + 9 + 3 * 4  # the broad alias, the clusters' screening, (3,), (1,), (2,)
    calls.clear()
    gate = load_config(overrides={"set_level": 0, "set_cluster_split": 2})  # 0.8 is above the default 0.6
    assert aset.build_alias_set(None, IMAGES, _Feats(), "a or b", gate, 7, first).cluster_split is None
    assert calls == [] and load_config().set_cluster_split == 0
    with pytest.raises(ValueError, match="set_cluster_precision"):
        load_config(overrides={"set_cluster_precision": 1.5})


def test_cluster_split_interleaves_the_clusters_best_first():
    split = clusters.ClusterSplit([3, 2], [[(1,), (2,), (3,)], [(4,), (1,)]])
    assert split.candidates() == [(1,), (4,), (2,), (3,)]
    assert clusters.ClusterSplit([3, 1], skipped="small").candidates() == []


def test_cluster_insertions_screen_the_name_against_each_cluster_alone(tiny_backend, tmp_path, monkeypatch):
    """Each cluster's insertions are the name's insertions of the tokens that best narrow it there,
    ranked by that cluster's screening loss (the other cluster's targets ignored)."""
    from alias_opt.search import context
    from tests.discovery_helpers import synthetic_images
    from tests.test_optimizer import TINY

    arrays, images = synthetic_images(6, 3)
    feats = tiny_backend.encode_images(arrays)
    n = sum(im.n_targets for im in images)
    labels = np.arange(n) % 2  # alternate targets between the clusters
    monkeypatch.setattr(clusters, "two_means", lambda desc, seed=0: labels)
    made = []

    def spy(*a, **k):
        made.append(context.make_context(*a, **k))
        return made[-1]

    monkeypatch.setattr(clusters, "make_context", spy)
    monkeypatch.setattr(clusters, "CLUSTER_POOL", 10)  # below the config's pool (21): the cap must bite
    tiny_index = {**TINY["index"], "views": ["distinct:embed"]}
    cfg = load_config(overrides={**TINY, "max_len": 3, "screen_images": 3, "index": tiny_index})
    cfg.index.cache_dir = str(tmp_path)
    name = "square"
    res = clusters.cluster_insertions(tiny_backend, images, feats, name, cfg, seed=3, n=4)
    assert res.skipped == "" and len(res.insertions) == 2 and len(made) == 2
    name_seq = tuple(tiny_backend.tokenizer.encode(name, special=False))
    for c, (ctx, ins) in enumerate(zip(made, res.insertions)):
        assert sum(im.n_targets for im in ctx.obj.images) == int((labels == c).sum())
        assert ctx.cfg.index.pool == 10 and cfg.index.pool == 21  # the caller's config is left as it was
        assert 1 <= len(ins) <= 4
        for s in ins:  # the name with one token inserted, its order kept
            assert len(s) == len(name_seq) + 1 and any(s[:i] + s[i + 1 :] == name_seq for i in range(len(s)))
        losses = [ctx.obj.screen_loss_of(s) for s in ins]
        assert losses == sorted(losses)
    assert res.forwards == sum(ctx.obj.usage().forward for ctx in made) > 0
    monkeypatch.setattr(clusters, "two_means", lambda desc, seed=0: (np.arange(n) == 0).astype(int))
    small = clusters.cluster_insertions(tiny_backend, images, feats, name, cfg, seed=3, n=4)
    assert small.insertions == [] and "holds 1 of" in small.skipped
