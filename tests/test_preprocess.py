"""Image loading and preprocessing: real photos and awkward modes, against independent references."""

from __future__ import annotations

import importlib.util
import io

import numpy as np
import pytest
import torch
from PIL import Image

from sam3.preprocess import ImageReadError, content_hash, load_image, preprocess


def _pil_reference(rgb: np.ndarray, size: int) -> torch.Tensor:
    """PIL's antialiased bilinear resize (the kernel torch's antialias path reproduces)."""
    im = Image.fromarray(rgb).resize((size, size), Image.BILINEAR)
    x = torch.from_numpy(np.array(im)).permute(2, 0, 1).float()
    return (x / 255.0 - 0.5) / 0.5


def test_real_photos_match_pil_resize(coco_fixtures):
    photos = sorted((coco_fixtures / "icevision-coco6" / "images").glob("*.jpg"))
    assert len(photos) >= 3
    for path in photos[:3]:
        rgb = load_image(path)
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
        with Image.open(path) as im:
            assert rgb.shape[:2] == (im.height, im.width)
        ours = preprocess(rgb, 112)[0]
        ref = _pil_reference(rgb, 112)
        assert ours.shape == (3, 112, 112)
        # at most one uint8 level apart (2/255 after normalization), and rarely so
        diff = (ours - ref).abs()
        assert float(diff.max()) <= 2.0 / 255 + 1e-6
        assert float((diff > 1e-6).float().mean()) < 0.05
        assert float(ours.min()) >= -1.0 and float(ours.max()) <= 1.0


def test_same_size_is_not_resized():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    out = preprocess(rgb, 32)[0]
    expected = (torch.from_numpy(rgb).permute(2, 0, 1).float() / 255 - 0.5) / 0.5
    assert torch.equal(out, expected)


def test_modes_convert_to_rgb(tmp_path):
    gray = Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16))
    out = load_image(gray)
    assert out.shape == (16, 16, 3) and (out[..., 0] == out[..., 2]).all() and out[15, 15, 1] == 255

    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[:2, :, 3] = 255  # top half opaque red, bottom half fully transparent
    out = load_image(Image.fromarray(rgba, "RGBA"))
    assert tuple(out[0, 0]) == (200, 0, 0) and tuple(out[3, 3]) == (255, 255, 255)

    pal = Image.fromarray(np.array([[0, 1], [1, 0]], dtype=np.uint8), "P")
    pal.putpalette([10, 20, 30, 40, 50, 60] + [0] * 762)
    out = load_image(pal)
    assert tuple(out[0, 0]) == (10, 20, 30) and tuple(out[0, 1]) == (40, 50, 60)

    cmyk = Image.new("CMYK", (3, 3), (0, 255, 255, 0))  # pure red in CMYK
    out = load_image(cmyk)
    assert tuple(out[1, 1]) == (255, 0, 0)

    sixteen = np.array([[0, 32768], [65535, 257]], dtype=np.uint16)
    path = tmp_path / "depth16.png"
    Image.fromarray(sixteen).save(path)
    out = load_image(path)
    assert out[0, 0, 0] == 0 and out[0, 1, 0] == 128 and out[1, 0, 0] == 255 and out[1, 1, 0] == 1

    arr16 = load_image(sixteen)
    assert arr16[0, 1, 2] == 128
    assert load_image(np.full((2, 2), 0.5)).tolist()[0][0] == [128, 128, 128]


def test_exif_orientation_is_applied(tmp_path):
    rgb = np.zeros((20, 40, 3), dtype=np.uint8)
    rgb[:, :20] = 255  # left half white
    im = Image.fromarray(rgb)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 CW when displayed
    path = tmp_path / "rot.jpg"
    im.save(path, exif=exif.tobytes())
    assert load_image(path).shape == (40, 20, 3)
    assert load_image(path, exif_transpose=False).shape == (20, 40, 3)


def test_unreadable_inputs_raise_clear_errors(tmp_path):
    bad = tmp_path / "not_an_image.jpg"
    bad.write_text("hello")
    with pytest.raises(ImageReadError, match="not_an_image.jpg"):
        load_image(bad)
    with pytest.raises(ImageReadError, match="not found"):
        load_image(tmp_path / "missing.png")
    truncated = tmp_path / "trunc.png"
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buf, format="PNG")
    truncated.write_bytes(buf.getvalue()[:40])
    with pytest.raises(ImageReadError, match="trunc.png"):
        load_image(truncated)
    with pytest.raises(ImageReadError, match="shape"):
        load_image(np.zeros((4, 4, 5), dtype=np.uint8))


def test_content_hash_depends_on_pixels_and_shape():
    a = np.zeros((4, 6, 3), dtype=np.uint8)
    b = a.copy()
    b[0, 0, 0] = 1
    assert content_hash(a) == content_hash(a.copy())
    assert content_hash(a) != content_hash(b)
    assert content_hash(a) != content_hash(np.zeros((6, 4, 3), dtype=np.uint8))


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is None, reason="torchvision not importable here")
def test_matches_transformers_image_processor(coco_fixtures):
    from transformers import Sam3ImageProcessor

    path = sorted((coco_fixtures / "icevision-coco6" / "images").glob("*.jpg"))[0]
    rgb = load_image(path)
    proc = Sam3ImageProcessor(size={"height": 112, "width": 112})
    ref = proc(images=Image.fromarray(rgb), return_tensors="pt").pixel_values[0]
    assert float((preprocess(rgb, 112)[0] - ref).abs().max()) <= 2.0 / 255 + 1e-6
