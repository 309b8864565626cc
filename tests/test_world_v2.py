"""Shapes world v2: vocabulary, drawing, variants and the training prompts."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

from sam3.tokenizer import Sam3Tokenizer
from sam3.toy import render, vocab, world, world2
from sam3.toy.prompts_v2 import PromptSamplerV2, training_image
from sam3.toy.train import TrainConfig


@pytest.fixture(scope="module")
def tokenizer():
    return Sam3Tokenizer()


def _coco(path) -> COCO:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # opens without warnings
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(str(path))


def test_vocabulary_is_real_sized_and_single_tokens(tokenizer):
    trained = vocab.TRAINED_WORDS
    assert len(set(trained)) == len(trained) >= 300
    assert len(set(vocab.DISTRACTORS)) >= 200
    assert len(vocab.VALUES["colour"]) >= 8 and len(vocab.VALUES["shape"]) >= 6
    assert not set(trained) & set(vocab.RESERVED_WORDS)
    for key in ((a, v) for a in vocab.ATTRIBUTES for v in vocab.VALUES[a]):
        assert len(vocab.WORDS[key]) >= 2, key
        assert len(vocab.RESERVED[key]) >= 1, key
    for w in (*trained, *vocab.RESERVED_WORDS, *vocab.PLURALS.values()):
        assert len(tokenizer.encode(w, special=False)) == 1, w


def test_phrase_natural_order_and_synonyms():
    clause = {"shape": "circle", "colour": "red", "fill": "hollow", "size": "small"}
    assert vocab.phrase(clause) == "small hollow red circle"
    assert vocab.phrase(clause, words="reserved") == "mini framed crimson disc"
    rng = np.random.default_rng(0)
    seen = {vocab.phrase({"colour": "red"}, rng=rng) for _ in range(200)}
    assert {"red", "scarlet"} <= seen and any(p.split()[-1] in vocab.GENERIC for p in seen)
    with pytest.raises(ValueError):
        vocab.phrase({})


def test_render_masks_are_drawn_pixels_and_sizes_fill_as_specified():
    rng = np.random.default_rng(3)
    plan = [
        {"size": s, "fill": f, "colour": "red", "shape": "square"}
        for s in ("small", "large")
        for f in ("solid", "hollow")
    ] * 2
    for c in ("blue", "green", "yellow", "pink"):
        plan.append({"size": "large", "fill": "solid", "colour": c, "shape": "circle"})
    radius = {"small": [], "large": []}
    for seed in range(8):
        img = render.render_image(np.random.default_rng(seed), plan, render.Style(noise=(0, 0), blur=(0, 0)), 224, 224)
        masks = [i.mask for i in img.instances]
        for a, b in ((a, b) for ia, a in enumerate(masks) for b in masks[ia + 1 :]):
            assert not (a & b).any()  # visible masks are disjoint
        for inst in img.instances:
            base = np.array(render.COLOURS[inst.attrs["colour"]])
            px = img.rgb[inst.mask].astype(int)
            assert np.abs(px - base).max() <= render.COLOUR_JITTER  # exact pixels, no noise or blur here
            assert np.ptp(px, axis=0).max() == 0  # one flat colour per instance
            radius[inst.attrs["size"]].append(np.sqrt(inst.drawn_area))
    assert max(radius["small"]) < 0.8 * min(radius["large"])  # a clear gap between the two sizes
    del rng
    solid = render.draw_shape_mask("circle", "solid", 200, 200, 100, 100, 60, 0.0)
    hollow = render.draw_shape_mask("circle", "hollow", 200, 200, 100, 100, 60, 0.0)
    assert (hollow & ~solid).sum() == 0 and not hollow[100, 100] and solid[100, 100]
    assert 0.4 < hollow.sum() / solid.sum() < 0.75  # a band of about 0.35 r


def test_dataset_deterministic_and_coco(tmp_path):
    a = world2.write_dataset(tmp_path / "a", "named", 6, seed=11)
    b = world2.write_dataset(tmp_path / "b", "named", 6, seed=11)
    assert json.loads(a.read_text()) == json.loads(b.read_text())
    for i in range(6):
        assert (tmp_path / "a" / "images" / f"{i:06d}.png").read_bytes() == (
            tmp_path / "b" / "images" / f"{i:06d}.png"
        ).read_bytes()
    coco = _coco(a)
    assert len(coco.imgs) == 6 and coco.anns
    ann = next(iter(coco.anns.values()))
    assert coco.annToMask(ann).sum() == ann["area"]
    other = world2.write_dataset(tmp_path / "c", "named", 6, seed=12)
    assert json.loads(other.read_text())["annotations"] != json.loads(a.read_text())["annotations"]


def test_min_positives_tops_up_short_categories_after_the_plain_world(tmp_path):
    plain = json.loads(world2.write_dataset(tmp_path / "a", "named", 8, seed=5).read_text())
    path = world2.write_dataset(tmp_path / "b", "named", 8, seed=5, min_positives=3)
    topped = json.loads(path.read_text())
    per_cat: dict[int, set] = {}
    for a in topped["annotations"]:
        per_cat.setdefault(a["category_id"], set()).add(a["image_id"])
    plain_pos = {
        c["id"]: len({a["image_id"] for a in plain["annotations"] if a["category_id"] == c["id"]})
        for c in plain["categories"]
    }
    assert min(plain_pos.values()) < 3  # the plain 8-image world is short somewhere
    assert len(per_cat) == 20 and min(len(v) for v in per_cat.values()) >= 3
    # the first 8 images are the plain world's, with the same annotations
    assert topped["images"][:8] == plain["images"]
    assert [a for a in topped["annotations"] if a["image_id"] <= 8] == plain["annotations"]
    # every top-up image holds a positive; more images were drawn than kept
    extra = topped["images"][8:]
    assert extra and all(any(i["id"] in v for v in per_cat.values()) for i in extra)
    assert topped["info"]["images_drawn"] > len(topped["images"]) and topped["info"]["min_positives"] == 3
    assert "min_positives" not in plain["info"]
    again = json.loads(world2.write_dataset(tmp_path / "c", "named", 8, seed=5, min_positives=3).read_text())
    assert again == topped  # deterministic
    _coco(path)
    with pytest.raises(ValueError, match="min_positives"):
        world2.write_dataset(tmp_path / "d", "named", 8, seed=5, min_positives=-1)


def test_variants_names_and_oracles(tmp_path):
    named, renamed, nameless = (world2.categories(v, 5) for v in ("named", "renamed", "nameless"))
    assert len(named) == 20 and sorted(len(c.clauses[0]) for c in named).count(4) == 3
    for n, r, x in zip(named, renamed, nameless):
        assert n.clauses == r.clauses == x.clauses and n.name == n.oracle() and x.name == ""
        assert all(w in vocab.RESERVED_WORDS for w in r.name.split())
        assert all(w in vocab.ATTRIBUTE_WORDS for w in n.name.split())
    comp = world2.categories("composite", 5)
    assert all(len(c.oracle()) == 2 and " or " in c.name for c in comp)
    with pytest.raises(ValueError):
        world2.categories("bogus")
    # renamed shares named's images and annotations
    pn = world2.write_dataset(tmp_path / "n", "named", 4, seed=5)
    pr = world2.write_dataset(tmp_path / "r", "renamed", 4, seed=5)
    dn, dr = json.loads(pn.read_text()), json.loads(pr.read_text())
    assert dn["annotations"] == dr["annotations"] and dn["categories"] != dr["categories"]


def test_policy_annotation_is_narrower_than_its_name(tmp_path):
    cats = world2.categories("policy", 9)
    assert len(cats) >= 12
    for c in cats:
        assert c.name == vocab.phrase(c.broad)
        assert all(vocab.matches(c.broad, {**vocab.completion(cl, np.random.default_rng(0))}) for cl in c.clauses)
        assert all(len(cl) > len(c.broad) for cl in c.clauses)
    assert any(isinstance(c.oracle(), list) for c in cats) and any(isinstance(c.oracle(), str) for c in cats)
    path = world2.write_dataset(tmp_path / "p", "policy", 30, seed=9)
    data = json.loads(path.read_text())
    by_id = {c.id: c for c in cats}
    near_misses = 0
    annotated = {(a["image_id"], a["category_id"], a["segmentation"]["counts"]) for a in data["annotations"]}
    for a in data["annotations"]:
        assert by_id[a["category_id"]].matches(a["attributes"])
    # instances that match a policy name but are not annotated under it exist (the name fires on them)
    for a in data["annotations"]:
        for c in cats:
            key = (a["image_id"], c.id, a["segmentation"]["counts"])
            if vocab.matches(c.broad, a["attributes"]) and key not in annotated:
                near_misses += 1
    assert near_misses >= 10


def test_style_shift_and_cli(tmp_path, capsys):
    assert render.SHIFTED_STYLE.noise[0] > render.TRAIN_STYLE.noise[1]
    assert render.SHIFTED_STYLE.blur[0] > render.TRAIN_STYLE.blur[1]
    assert render.SHIFTED_STYLE.min_visible[1] < render.TRAIN_STYLE.min_visible[0]
    world.main(["--out", str(tmp_path / "d"), "--variant", "policy", "--images", "2", "--style", "shifted"])
    assert "wrote 2 images" in capsys.readouterr().out
    info = json.loads((tmp_path / "d" / "annotations.json").read_text())["info"]
    assert info["version"] == "2" and info["style"] == "shifted"
    with pytest.raises(SystemExit):
        world.main(["--out", str(tmp_path / "e"), "--world", "v1", "--variant", "policy"])


def test_training_prompts_targets_match_their_words(tokenizer):
    cfg = TrainConfig(world="v2")
    sampler = PromptSamplerV2(tokenizer, cfg)
    word_of = {tokenizer.encode(w, special=False)[0]: w for w in (*vocab.TRAINED_WORDS,)}
    reserved = {tokenizer.encode(w, special=False)[0] for w in vocab.RESERVED_WORDS}
    value_of = {w: key for key, ws in vocab.WORDS.items() for w in ws}
    value_of.update({p: ("shape", s) for s, p in vocab.PLURALS.items()})
    rng = np.random.default_rng(1)
    kinds = {"positive": 0, "negative": 0, "distractor": 0}
    for _ in range(30):
        img = training_image(rng, cfg)
        for ids, targets in sampler.sample(rng, img, 8):
            assert not set(ids) & reserved
            words = [word_of.get(i) for i in ids]
            if None in words or any(w in vocab.DISTRACTORS for w in words):
                assert targets == []
                kinds["distractor"] += 1
                continue
            clause = dict(value_of[w] for w in words if w in value_of)
            expect = [i for i, inst in enumerate(img.instances) if inst.matches(clause)]
            assert targets == expect, (words, targets, expect)
            kinds["positive" if targets else "negative"] += 1
    assert min(kinds.values()) >= 10, kinds


def test_tie_row_norms_hides_the_most_trained_rows():
    from sam3.toy.modeling import tie_row_norms

    g = torch.Generator().manual_seed(0)
    table = torch.randn(500, 8, generator=g) * 0.1
    rows = torch.arange(10, 40)
    table[10:15] *= 8  # five "heavily trained" rows far from the rest
    before = table.clone()
    tie_row_norms(table, rows)
    dist = (table[rows].double() - table.double().mean(0)).norm(dim=1)
    assert float(dist.max() - dist.min()) < 1e-6
    keep = torch.ones(500, dtype=torch.bool)
    keep[rows] = False
    assert torch.equal(table[keep], before[keep])


def test_training_with_tied_word_norms(tmp_path):
    from sam3.toy import train

    cfg = TrainConfig(
        arch="tiny", world="v2", steps=2, images_per_step=1, prompts_per_image=2, warmup=1, tie_word_norms=True
    )
    model = train.train(tmp_path, cfg, progress=False, threads=1)
    table = model.text_encoder.text_model.embeddings.token_embedding.weight.detach().double()
    tok = Sam3Tokenizer()
    ids = [tok.encode(w, special=False)[0] for w in vocab.TRAINED_WORDS]
    dist = (table[ids] - table.mean(0)).norm(dim=1)
    assert float(dist.max() - dist.min()) < 1e-5 * float(dist.mean())
