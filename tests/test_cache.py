"""The on-disk image-feature cache: hits, misses, corruption, and model separation."""

from __future__ import annotations

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from sam3 import Sam3Backend
from sam3.cache import FeatureCache


def _img(seed):
    return np.random.default_rng(seed).integers(0, 256, (40, 40, 3), dtype=np.uint8)


def test_put_get_roundtrip_and_miss(tmp_path):
    cache = FeatureCache(tmp_path, "fp")
    assert cache.get("abcd") is None and cache.misses == 1
    t = {"fpn0": torch.randn(2, 3).half()}
    cache.put("abcd", t)
    got = cache.get("abcd")
    assert got is not None and torch.equal(got["fpn0"], t["fpn0"]) and cache.hits == 1
    assert not list(cache.path("abcd").parent.glob(".tmp-*"))  # no temp files left behind


def test_corrupt_entries_are_detected_and_recomputed(tmp_path):
    backend = Sam3Backend.load("random:tiny", cache_dir=tmp_path)
    first = backend.encode_images([_img(0)])
    path = backend.cache.path(first.keys[0])
    data = bytearray(path.read_bytes())

    path.write_bytes(bytes(data[: len(data) // 2]))  # half-written file
    again = backend.encode_images([_img(0)])
    assert backend.cache.misses == 2 and backend.cache.hits == 0
    assert torch.allclose(again.fpn[0], first.fpn[0], atol=1e-2)
    fresh = FeatureCache(tmp_path, backend.fingerprint).get(first.keys[0])  # rewritten whole and valid
    assert fresh is not None and torch.equal(fresh["fpn0"], first.fpn[0][0])
    data = bytearray(path.read_bytes())

    data[-5] ^= 0xFF  # a flipped byte inside the tensor data
    path.write_bytes(bytes(data))
    backend.encode_images([_img(0)])
    assert backend.cache.misses == 3

    backend.encode_images([_img(0)])
    assert backend.cache.hits == 1


def test_models_never_share_entries(tmp_path):
    a = Sam3Backend.load("random:tiny@1", cache_dir=tmp_path)
    b = Sam3Backend.load("random:tiny@2", cache_dir=tmp_path)
    fa = a.encode_images([_img(5)])
    fb = b.encode_images([_img(5)])
    assert a.cache.misses == 1 and b.cache.misses == 1 and b.cache.hits == 0
    assert a.cache.path(fa.keys[0]) != b.cache.path(fb.keys[0])
    assert not torch.allclose(fa.fpn[0], fb.fpn[0])
    # an entry copied under another model's namespace is refused (its recorded fingerprint differs)
    foreign = b.cache.path(fa.keys[0])
    foreign.write_bytes(a.cache.path(fa.keys[0]).read_bytes())
    assert b.cache.get(fa.keys[0]) is None


def test_cache_can_be_disabled(tmp_path):
    backend = Sam3Backend.load("random:tiny", cache_dir=tmp_path, use_cache=False)
    backend.encode_images([_img(1)])
    assert backend.cache is None and not any(tmp_path.rglob("*.safetensors"))


def test_entries_of_another_dtype_or_version_are_misses(tmp_path):
    cache = FeatureCache(tmp_path, "fp")
    cache.put("abcd", {"fpn0": torch.randn(2, 3)})
    assert cache.get("abcd", torch.float32) is not None
    assert cache.get("abcd", torch.float16) is None and cache.misses == 1  # removed as invalid
    cache.put("abcd", {"fpn0": torch.randn(2, 3)})
    path = cache.path("abcd")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    save_file(load_file(str(path)), str(path), metadata={**meta, "version": "1"})  # the fp16-era layout
    assert cache.get("abcd") is None and not path.exists()
