"""alias_opt.data.loader: real fixture files and every loader quirk of the issue."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from alias_opt.data.loader import CocoDataset, DatasetError, ImageReadError, TargetImage, find_annotation_file
from tests.coco_synth import rect_mask, rle_of, write_coco

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools.*")

H, W = 12, 16


def img(i: int, name: str | None = None, **kw) -> dict:
    return {"id": i, "file_name": name or f"im{i}.png", "height": H, "width": W, **kw}


def poly_ann(aid, image_id, cat, x0=2, y0=2, x1=8, y1=6, **kw) -> dict:
    return {
        "id": aid,
        "image_id": image_id,
        "category_id": cat,
        "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]],
        "iscrowd": 0,
        "area": 1.0,
        "bbox": [x0, y0, x1 - x0, y1 - y0],
        **kw,
    }


CATS = [{"id": 1, "name": "thing"}, {"id": 2, "name": "other"}]


def codes(ds: CocoDataset) -> set[str]:
    return {i.code for i in ds.report.issues}


def sets_by_id(ds: CocoDataset, **kw) -> dict:
    return {ts.category_id: ts for ts in ds.target_sets(**kw)}


def all_ids(ts) -> set[int]:
    return {t.image.image_id for t in ts.split("all")}


# ---------------------------------------------------------------------- real files
def test_icevision_fixture(coco_fixtures):
    ds = CocoDataset.open(coco_fixtures / "icevision-coco6")
    assert ds.image_root.name == "images" and len(ds.images) == 6
    assert ds.report.n_errors == 0
    sets = sets_by_id(ds, max_negatives=10)
    assert set(sets) == {1, 3, 4, 6, 23, 31, 41, 44}  # 72 categories have no annotations
    person = sets[1]
    pos = [t for t in person.split("all") if t.is_positive]
    assert sorted(t.image.image_id for t in pos) == [128372, 404249]
    big = next(t for t in pos if t.image.image_id == 128372)
    assert big.masks.shape == (9, 427, 640)  # incl. the two-part polygon 257712
    assert 257712 in big.ann_ids
    # Image 89 has no annotations: a negative for every category.
    assert 89 in {t.image.image_id for t in person.split("all") if not t.is_positive}
    # The crowd RLE with a 64-bit id is an ignore region of 'bottle', not a target.
    bottle = next(t for t in sets[44].split("all") if t.is_positive)
    assert 904400464689 not in bottle.ann_ids and bottle.n_targets == 13
    assert bottle.ignore is not None and bottle.ignore.shape == (640, 586) and bottle.ignore.any()
    arr = ds.image_array(bottle.image)
    assert arr.shape == (640, 586, 3) and arr.dtype == np.uint8


def test_datumaro_instances_layout(coco_fixtures):
    val = CocoDataset.open(coco_fixtures / "datumaro-instances" / "annotations" / "instances_val.json")
    assert val.image_root == (coco_fixtures / "datumaro-instances" / "images" / "val").resolve()
    sets = sets_by_id(val)
    assert list(sets) == [1]  # category 2 is only a crowd region, 4 is unused
    (t,) = sets[1].split("all")
    assert t.masks.shape == (1, 10, 5) and t.masks.sum() > 0
    train = CocoDataset.open(coco_fixtures / "datumaro-instances" / "annotations" / "instances_train.json")
    assert "box-only" in codes(train) and train.target_sets() == []
    (ts,) = CocoDataset.open(train.annotation_file, boxes_as_masks=True).target_sets()
    assert ts.split("all")[0].masks.sum() == 3  # bbox [2, 2, 3, 1]


def test_roboflow_layout_and_id_zero(coco_fixtures):
    root = coco_fixtures / "datumaro-roboflow"
    with pytest.raises(DatasetError, match="several annotation files"):
        CocoDataset.open(root)
    ds = CocoDataset.open(root / "train", boxes_as_masks=True)
    assert ds.annotation_file.name == "_annotations.coco.json" and ds.image_root == (root / "train").resolve()
    sets = sets_by_id(ds)
    pos = [t for t in sets[1].split("all") if t.is_positive]
    assert pos[0].ann_ids == [0]  # annotation id 0 is kept as a target
    val = CocoDataset.open(root / "val" / "_annotations.coco.json", boxes_as_masks=True)
    (t,) = sets_by_id(val)[1].split("all")  # category 2 is a crowd with an empty segmentation
    assert t.is_positive and 2 not in sets_by_id(val)


# ---------------------------------------------------------------------- layouts
def test_coco_layout(tmp_path):
    write_coco(
        tmp_path / "annotations",
        [img(1, "a.png")],
        [poly_ann(1, 1, 1)],
        CATS,
        json_name="instances_val2017.json",
        make_files=False,
    )
    write_coco(tmp_path / "val2017", [img(1, "a.png")], [], json_name="unused.json")
    (tmp_path / "val2017" / "unused.json").unlink()
    ds = CocoDataset.open(tmp_path)
    assert ds.annotation_file.name == "instances_val2017.json"
    assert ds.image_root == (tmp_path / "val2017").resolve() and ds.report.n_errors == 0


def test_subfolder_file_name_and_image_root(tmp_path):
    path = write_coco(tmp_path / "data", [img(1, "sub/dir/a.png")], [poly_ann(1, 1, 1)], CATS, image_dir="pics")
    ds = CocoDataset.open(path, image_root=tmp_path / "data" / "pics")
    assert ds.images[1].path == (tmp_path / "data" / "pics" / "sub" / "dir" / "a.png").resolve()
    assert sets_by_id(ds)[1].split("all")[0].is_positive
    found = CocoDataset.open(path)  # found by looking: data/pics is not a usual place, so data/ is kept
    assert "missing-image" in codes(found)


def test_file_name_outside_root_is_refused(tmp_path):
    (tmp_path / "secret.png").write_bytes(b"x")
    images = [img(1), img(2, "../secret.png"), img(3, str(tmp_path / "secret.png"))]
    path = write_coco(tmp_path / "d", images, [], CATS, make_files=False)
    Image.new("RGB", (W, H)).save(tmp_path / "d" / "im1.png")
    ds = CocoDataset.open(path)
    assert set(ds.images) == {1}
    outside = [i for i in ds.report.issues if i.code == "outside-root"]
    assert {i.where for i in outside} == {"image id 2", "image id 3"}


def test_fatal_errors_are_clear(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        CocoDataset.open(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DatasetError, match="bad.json is not valid JSON"):
        CocoDataset.open(tmp_path / "bad.json")
    (tmp_path / "x.json").write_text(json.dumps({"annotations": []}))
    with pytest.raises(DatasetError, match="no 'images' list"):
        CocoDataset.open(tmp_path / "x.json")
    with pytest.raises(DatasetError, match="several"):
        find_annotation_file(tmp_path)


# ---------------------------------------------------------------------- segmentations
def test_polygon_quirks(tmp_path):
    anns = [
        poly_ann(1, 1, 1),
        {**poly_ann(2, 2, 1), "segmentation": [[1, 1, 5, 1]]},  # 2 points: the only part is dropped
        {**poly_ann(3, 3, 1), "segmentation": [[1, 1, 5, 1, 5, 5, 1], [2, 2, 9, 2, 9, 9]]},  # odd part + a good one
        {**poly_ann(4, 4, 1), "segmentation": [1, 1, 6, 1, 6, 6]},  # flat list
    ]
    ds = CocoDataset.open(write_coco(tmp_path, [img(i) for i in range(1, 6)], anns, CATS))
    assert {"short-polygon", "odd-polygon", "no-polygon", "flat-polygon"} <= codes(ds)
    ts = sets_by_id(ds)[1]
    by = {t.image.image_id: t for t in ts.split("all")}
    assert by[1].masks.sum() == 24  # 6 x 4 rectangle
    assert 2 not in by  # unusable annotation: neither positive nor negative
    assert by[3].n_targets == 1 and by[4].n_targets == 1
    assert not by[5].is_positive


def test_rle_forms_and_size_mismatch(tmp_path):
    m = rect_mask(H, W, 3, 2, 9, 7)
    bad = rect_mask(H + 1, W, 3, 2, 9, 7)
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "segmentation": rle_of(m, compressed=False)},
        {"id": 2, "image_id": 2, "category_id": 1, "segmentation": rle_of(m)},
        {"id": 3, "image_id": 3, "category_id": 1, "segmentation": rle_of(bad)},
        {"id": 4, "image_id": 4, "category_id": 1, "segmentation": {"size": [H, W], "counts": "garbage~~"}},
        {"id": 5, "image_id": 5, "category_id": 1, "segmentation": {"size": [H, W], "counts": [5, 7]}},
    ]  # no iscrowd, area, bbox or info anywhere
    ds = CocoDataset.open(write_coco(tmp_path, [img(i) for i in range(1, 7)], anns, CATS))
    by = {t.image.image_id: t for t in sets_by_id(ds)[1].split("all")}
    np.testing.assert_array_equal(by[1].masks[0], m)
    np.testing.assert_array_equal(by[2].masks[0], m)
    assert not ({3, 4, 5} & set(by))  # unusable masks: the images are left out for this category
    assert not by[6].is_positive
    msgs = " ".join(i.message for i in ds.report.issues if i.code in ("rle-size", "bad-rle"))
    assert "13x16" in msgs and "12x16" in msgs
    where = {i.where for i in ds.report.issues if i.code in ("rle-size", "bad-rle")}
    assert where == {"annotation id 3", "annotation id 4", "annotation id 5"}


def test_crowd_is_ignore_region(tmp_path):
    anns = [poly_ann(1, 1, 1), {**poly_ann(2, 1, 1, x0=9, x1=14), "iscrowd": 1}, {**poly_ann(3, 2, 1), "iscrowd": 1}]
    ds = CocoDataset.open(write_coco(tmp_path, [img(1), img(2), img(3)], anns, CATS))
    by = {t.image.image_id: t for t in sets_by_id(ds)[1].split("all")}
    assert by[1].ann_ids == [1] and by[1].ignore is not None and by[1].ignore[3, 10]
    assert 2 not in by  # a crowd-only image is neither positive nor negative
    assert not by[3].is_positive


def test_ids_and_references(tmp_path):
    big_img, big_ann, big_cat = 2**40 + 1, 2**62 + 5, 2**33
    cats = [{"id": big_cat, "name": "big"}, {"id": 7, "name": ""}, {"id": 8}]
    anns = [
        poly_ann(0, big_img, big_cat),
        poly_ann(big_ann, big_img, big_cat, x0=9, x1=14),
        poly_ann(big_ann, 2, big_cat),  # duplicate id
        poly_ann(9, 999, big_cat),  # unknown image
        poly_ann(10, 2, 12345),  # unknown category
        poly_ann(11, 2, 7),
    ]
    ds = CocoDataset.open(write_coco(tmp_path, [img(big_img), img(2), img(3)], anns, cats, extra={"licenses": []}))
    assert {"duplicate-annotation-id", "unknown-image", "unknown-category", "nameless-category"} <= codes(ds)
    sets = sets_by_id(ds)
    assert set(sets) == {big_cat, 7}  # category 8 has no annotations
    assert sets[7].name is None and ds.categories[8].name is None
    by = {t.image.image_id: t for t in sets[big_cat].split("all")}
    assert by[big_img].ann_ids == [0, big_ann] and by[2].ann_ids == [big_ann]
    assert not by[3].is_positive  # image without annotations: a negative


def test_missing_size_taken_from_file(tmp_path):
    path = write_coco(tmp_path, [img(1)], [poly_ann(1, 1, 1)], CATS)
    data = json.loads(path.read_text())
    del data["images"][0]["height"]
    path.write_text(json.dumps(data))
    ds = CocoDataset.open(path)
    assert (ds.images[1].height, ds.images[1].width) == (H, W) and "no-image-size" in codes(ds)
    assert sets_by_id(ds)[1].split("all")[0].masks.shape == (1, H, W)


# ---------------------------------------------------------------------- image files
def test_missing_and_unreadable_images(tmp_path):
    path = write_coco(tmp_path, [img(1), img(2), img(3)], [poly_ann(k, k, 1) for k in (1, 2, 3)], CATS)
    (tmp_path / "im2.png").unlink()
    (tmp_path / "im3.png").write_bytes(b"not an image")
    ds = CocoDataset.open(path)
    assert "missing-image" in codes(ds)
    assert all_ids(sets_by_id(ds)[1]) == {1}
    bad = [i for i in ds.report.issues if i.code == "bad-image-file"]
    assert len(bad) == 1 and "image id 3" in bad[0].where and "im3.png" in bad[0].file


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16", "LA", "1"])
def test_image_modes(tmp_path, mode):
    path = write_coco(
        tmp_path,
        [img(1, "a.tif" if mode in ("CMYK", "I;16") else "a.png")],
        [poly_ann(1, 1, 1)],
        CATS,
        make_files=False,
    )
    Image.new(mode, (W, H)).save(tmp_path / ("a.tif" if mode in ("CMYK", "I;16") else "a.png"))
    ds = CocoDataset.open(path)
    arr = ds.image_array(ds.images[1])
    assert arr.shape == (H, W, 3) and arr.dtype == np.uint8


def _exif_jpeg(path, size, orientation):
    im = Image.new("RGB", size, (10, 20, 30))
    im.putpixel((0, 0), (255, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.save(path, exif=exif, quality=100)


def test_exif_orientation_matches_json(tmp_path):
    # Stored 16 wide x 12 high, EXIF says rotate 90 degrees (orientation 6): a viewer shows 12 x 16.
    images = [img(1, "turned.jpg", height=W, width=H), img(2, "raw.jpg"), img(3, "wrong.jpg", height=5, width=5)]
    path = write_coco(tmp_path, images, [], CATS, make_files=False)
    for name in ("turned.jpg", "raw.jpg", "wrong.jpg"):
        _exif_jpeg(tmp_path / name, (W, H), 6)
    ds = CocoDataset.open(path)
    assert ds.image_array(ds.images[1]).shape == (W, H, 3)  # rotated to match the JSON
    assert ds.image_array(ds.images[2]).shape == (H, W, 3)  # JSON has the stored size: not rotated
    with pytest.raises(ImageReadError, match=r"image id 3: .*wrong.jpg is 16x12 \(12x16 after EXIF rotation\)"):
        ds.image_array(ds.images[3])


# ---------------------------------------------------------------------- splits
def test_split_is_deterministic_and_half(tmp_path):
    images = [img(i) for i in range(1, 41)]
    anns = [poly_ann(i, i, 1) for i in range(1, 21)]  # images 1..20 positive, 21..40 negative
    ds = CocoDataset.open(write_coco(tmp_path, images, anns, CATS))
    a = sets_by_id(ds, seed=3, max_negatives=10)[1]
    b = sets_by_id(ds, seed=3, max_negatives=10)[1]
    c = sets_by_id(ds, seed=4, max_negatives=10)[1]
    ids = lambda ims: [t.image.image_id for t in ims]  # noqa: E731
    assert ids(a.train) == ids(b.train) and ids(a.test) == ids(b.test)
    assert ids(a.train) != ids(c.train)
    assert sum(t.is_positive for t in a.train) == 10 and sum(t.is_positive for t in a.test) == 10
    assert sum(not t.is_positive for t in a.split("all")) == 10
    assert not set(ids(a.train)) & set(ids(a.test))
    assert ids(a.split("all")) == ids(a.train) + ids(a.test)
    # The positive split does not depend on how many negatives are drawn.
    d = sets_by_id(ds, seed=3, max_negatives=3)[1]
    assert [i for i in ids(d.train) if i <= 20] == [i for i in ids(a.train) if i <= 20]
    with pytest.raises(ValueError, match="unknown split"):
        a.split("val")
    assert a.extra_negatives == []  # none unless asked for
    # extra negatives (the name check's): drawn after the sampled ones, which keep their split; never in
    # either split, never an image of the category
    e = sets_by_id(ds, seed=3, max_negatives=10, extra_negatives=6)[1]
    assert ids(e.train) == ids(a.train) and ids(e.test) == ids(a.test)
    assert len(e.extra_negatives) == 6 and ids(e.extra_negatives) == sorted(ids(e.extra_negatives))
    assert not set(ids(e.extra_negatives)) & set(ids(e.split("all"))) and min(ids(e.extra_negatives)) > 20
    assert not any(t.is_positive for t in e.extra_negatives)
    assert len(sets_by_id(ds, seed=3, max_negatives=10, extra_negatives=50)[1].extra_negatives) == 10  # all left
    with pytest.raises(DatasetError, match="no category with id 99"):
        ds.target_sets(categories=[99])


def test_target_image_from_dense_masks():
    from alias_opt.data.loader import ImageEntry

    entry = ImageEntry(5, tmp := __import__("pathlib").Path("x.png"), H, W)
    m = np.stack([rect_mask(H, W, 0, 0, 4, 4), rect_mask(H, W, 5, 5, 9, 9)])
    t = TargetImage(entry, m, None, [10, 11])
    assert t.is_positive and t.n_targets == 2 and len(t.rles) == 2 and t.ignore_rle is None
    again = TargetImage(entry, rles=t.rles, ann_ids=t.ann_ids)
    np.testing.assert_array_equal(again.masks, m)
    neg = TargetImage(entry, np.zeros((0, H, W), bool), None, [])
    assert not neg.is_positive and neg.rles == [] and tmp.name == "x.png"
