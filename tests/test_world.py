"""The shapes world: determinism, exact masks, COCO validity, dataset variants."""

from __future__ import annotations

import contextlib
import io
import json
import warnings

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from sam3.toy import world

# pycocotools 2.0.11 decode() itself warns under numpy 2, whatever the data
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _coco(path) -> COCO:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(str(path))


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    return {v: world.write_dataset(root / v, v, images=12, seed=5) for v in world.VARIANTS}


def test_concepts_are_single_training_tokens(tiny_backend):
    tok = tiny_backend.tokenizer
    assert len(world.COLOURS) >= 5 and len(world.SHAPES) >= 4
    trained = {w: tok.encode(w, special=False) for w in (*world.COLOURS, *world.SHAPES)}
    assert all(len(ids) == 1 for ids in trained.values())
    renamed = {i for w in world.RENAMED_WORDS for i in tok.encode(w, special=False)}
    assert renamed.isdisjoint({i for ids in trained.values() for i in ids})


def test_render_is_deterministic_by_seed():
    a = world.render_image(world.image_rng(3, 7))
    b = world.render_image(world.image_rng(3, 7))
    c = world.render_image(world.image_rng(4, 7))
    assert np.array_equal(a.rgb, b.rgb)
    assert [(i.concept, i.mask.tobytes()) for i in a.instances] == [(i.concept, i.mask.tobytes()) for i in b.instances]
    assert not (a.rgb.shape == c.rgb.shape and np.array_equal(a.rgb, c.rgb))


def _shares(a: tuple[str, str], b: tuple[str, str]) -> bool:
    return bool(set(a) & set(b))


def test_related_concepts_are_in_image_distractors():
    rng = np.random.default_rng(0)
    always = [world._related_concepts(rng, 4, 1.0) for _ in range(200)]
    for picks in always:
        assert len(set(picks)) == 4
        concepts = [world.CONCEPTS[i] for i in picks]
        assert all(any(_shares(concepts[j], c) for c in concepts[:j]) for j in range(1, 4))
    rng = np.random.default_rng(0)
    never = [[world.CONCEPTS[i] for i in world._related_concepts(rng, 2, 0.0)] for _ in range(400)]
    share = np.mean([_shares(a, b) for a, b in never])
    assert 0.25 < share < 0.5  # chance: 7 of the 19 other concepts share a colour or shape


def test_training_world_options_keep_the_default_world():
    default = world.render_image(world.image_rng(3, 7))
    explicit = world.render_image(world.image_rng(3, 7), max_concepts=3, p_related=0.0)
    assert np.array_equal(default.rgb, explicit.rgb)
    images = [world.render_image(world.image_rng(9, k), max_concepts=5) for k in range(60)]
    counts = [len({i.concept for i in img.instances}) for img in images]
    assert max(counts) >= 4 and min(counts) >= 1


def test_write_dataset_is_deterministic(tmp_path):
    p1 = world.write_dataset(tmp_path / "a", "named", images=3, seed=11)
    p2 = world.write_dataset(tmp_path / "b", "named", images=3, seed=11)
    assert p1.read_bytes() == p2.read_bytes()
    for name in sorted((tmp_path / "a" / "images").iterdir()):
        assert name.read_bytes() == (tmp_path / "b" / "images" / name.name).read_bytes()


def test_masks_are_exactly_the_drawn_pixels():
    for i in range(20):
        img = world.render_image(world.image_rng(0, i))
        covered = np.zeros(img.rgb.shape[:2], dtype=bool)
        for inst in img.instances:
            assert inst.mask.any()
            assert not (covered & inst.mask).any(), "instance masks overlap"
            covered |= inst.mask
            px = img.rgb[inst.mask].astype(int)
            assert (px == px[0]).all(), "an instance is one flat colour"
            assert np.abs(px[0] - np.array(world.COLOURS[inst.colour])).max() <= world.COLOUR_JITTER
        # No background pixel has a concept colour: the masks are all the shape pixels there are.
        rest = img.rgb[~covered].astype(int)
        for rgb in world.COLOURS.values():
            assert (np.abs(rest - np.array(rgb)).max(1) > world.COLOUR_JITTER).all()


def test_world_statistics():
    counts, sizes, multi = [], set(), 0
    seen = set()
    for i in range(60):
        img = world.render_image(world.image_rng(1, i))
        counts.append(len(img.instances))
        sizes.add(img.rgb.shape[:2])
        concepts = [inst.concept for inst in img.instances]
        seen.update(concepts)
        multi += len(set(concepts)) < len(concepts)
        assert len(set(concepts)) < len(world.CONCEPTS)  # every image lacks some concept
    assert seen == set(world.CONCEPTS)
    assert max(counts) >= 6 and np.mean(counts) >= 3
    assert multi >= 10, "several instances of one concept in an image"
    assert len(sizes) > 10, "image sizes vary"


def test_shapes_overlap_but_stay_visible():
    fractions = [
        inst.mask.sum() / inst.drawn_area
        for i in range(30)
        for inst in world.render_image(world.image_rng(2, i)).instances
    ]
    assert min(fractions) >= world.MIN_VISIBLE
    assert sum(f < 1 for f in fractions) >= 5, "some shapes are partly covered by later ones"


def test_coco_validity_and_perfect_ap(datasets):
    path = datasets["named"]
    data = json.loads(path.read_text())
    coco = _coco(path)
    assert len(coco.imgs) == 12 and len(coco.anns) > 12
    for info in coco.imgs.values():
        im = Image.open(path.parent / info["file_name"])
        assert im.size == (info["width"], info["height"])
    for ann in coco.anns.values():
        m = coco.annToMask(ann)
        assert m.sum() == ann["area"] > 0
        ys, xs = np.nonzero(m)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    assert {"info", "licenses", "images", "annotations", "categories"} <= set(data)
    # The ground truth as detections scores AP 1 in pycocotools' own evaluation.
    res = [dict(a, score=1.0) for a in data["annotations"]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with contextlib.redirect_stdout(io.StringIO()):
            ev = COCOeval(coco, coco.loadRes(res), iouType="segm")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)


def test_variants(datasets):
    cocos = {v: json.loads(p.read_text()) for v, p in datasets.items()}
    named, renamed, nameless, comp = (cocos[v] for v in ("named", "renamed", "nameless", "composite"))
    for d in cocos.values():
        assert d["images"] == named["images"]
        assert len(d["annotations"]) == len(named["annotations"])
        assert all("name" in c and "oracle_name" in c for c in d["categories"])
    assert [c["name"] for c in named["categories"]] == [f"{c} {s}" for c, s in world.CONCEPTS]
    assert [c["oracle_name"] for c in renamed["categories"]] == [c["name"] for c in named["categories"]]
    training_words = set(world.COLOURS) | set(world.SHAPES)
    for c in renamed["categories"]:
        words = c["name"].split()
        assert len(words) == 2 and set(words) <= set(world.RENAMED_WORDS) and not set(words) & training_words
    assert all(c["name"] == "" for c in nameless["categories"])
    # composite: unions of two concepts, every concept in exactly one category
    assert len(comp["categories"]) == len(world.CONCEPTS) // 2
    parts = [p for c in comp["categories"] for p in c["oracle_name"]]
    assert sorted(parts) == sorted(c["name"] for c in named["categories"])
    for c in comp["categories"]:
        assert c["name"] == " or ".join(c["oracle_name"])
    named_cat = {c["id"]: c["name"] for c in named["categories"]}
    comp_cat = {c["id"]: c["oracle_name"] for c in comp["categories"]}
    for a, b in zip(named["annotations"], comp["annotations"]):
        assert a["segmentation"] == b["segmentation"]
        assert named_cat[a["category_id"]] in comp_cat[b["category_id"]]
    with pytest.raises(ValueError):
        world.variant_categories("bogus")


def test_cli(tmp_path, capsys):
    world.main(["--out", str(tmp_path / "d"), "--variant", "composite", "--images", "2", "--seed", "1"])
    assert "wrote 2 images" in capsys.readouterr().out
    assert len(_coco(tmp_path / "d" / "annotations.json").imgs) == 2
