"""Model sources: local Hugging Face directories, random configs, and clear errors for mistakes."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from sam3 import ModelSourceError, Sam3Backend
from sam3.loading import pick_device, pick_dtype, resolve_source
from sam3.tokenizer import ASSET_DIR


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory):
    """random:tiny saved as facebook/sam3 ships it: config.json + model.safetensors + tokenizer files."""
    out = tmp_path_factory.mktemp("ckpt")
    b = Sam3Backend.load("random:tiny@3", use_cache=False)
    b.model.save_pretrained(out, safe_serialization=True)
    for f in ASSET_DIR.iterdir():
        shutil.copy(f, out / f.name)
    return out


def test_directory_loads_same_weights(checkpoint_dir):
    ref = Sam3Backend.load("random:tiny@3", use_cache=False)
    b = Sam3Backend.load(checkpoint_dir, use_cache=False)
    assert b.source.kind == "dir" and b.source.path == checkpoint_dir
    for (n1, p1), (n2, p2) in zip(ref.model.named_parameters(), b.model.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2)
    assert not b.model.training and not any(p.requires_grad for p in b.model.parameters())
    assert b.tokenizer.encode("red") == [49406, 736, 49407]
    assert b.fingerprint != ref.fingerprint  # directories are fingerprinted by their files


def test_random_sources_are_seeded():
    a = Sam3Backend.load("random:tiny@1", use_cache=False)
    a2 = Sam3Backend.load("random:tiny@1", use_cache=False)
    c = Sam3Backend.load("random:tiny@2", use_cache=False)
    wa, wa2, wc = (x.model.detr_decoder.query_embed.weight for x in (a, a2, c))
    assert torch.equal(wa, wa2) and not torch.equal(wa, wc)
    assert a.fingerprint == a2.fingerprint != c.fingerprint


def test_missing_weights_are_reported(checkpoint_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(checkpoint_dir, broken)
    weights = load_file(str(broken / "model.safetensors"))
    dropped = sorted(k for k in weights if "detr_decoder" in k)[:2]
    for k in dropped:
        weights.pop(k)
    save_file(weights, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ModelSourceError, match="lacks 2 weights"):
        Sam3Backend.load(broken, use_cache=False)


def test_user_mistakes_give_clear_errors(tmp_path):
    with pytest.raises(ModelSourceError, match="not found"):
        resolve_source(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelSourceError, match="no config.json"):
        Sam3Backend.load(empty, use_cache=False)
    clip = tmp_path / "clip"
    clip.mkdir()
    (clip / "config.json").write_text(json.dumps({"model_type": "clip_text_model"}))
    with pytest.raises(ModelSourceError, match="not SAM 3"):
        Sam3Backend.load(clip, use_cache=False)
    bad_json = tmp_path / "badjson"
    bad_json.mkdir()
    (bad_json / "config.json").write_text("{not json")
    with pytest.raises(ModelSourceError, match="not valid JSON"):
        Sam3Backend.load(bad_json, use_cache=False)
    no_weights = tmp_path / "noweights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text(json.dumps({"model_type": "sam3"}))
    with pytest.raises(ModelSourceError, match="no weights"):
        Sam3Backend.load(no_weights, use_cache=False)
    a_file = tmp_path / "model.safetensors"
    a_file.write_bytes(b"x")
    with pytest.raises(ModelSourceError, match="is a file"):
        resolve_source(a_file)
    with pytest.raises(ValueError, match="unknown SAM 3 architecture"):
        resolve_source("random:huge")


def test_hub_id_outside_cache_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelSourceError, match="not in the local Hugging Face cache"):
        resolve_source("facebook/sam3")


def test_device_and_dtype_choice():
    assert pick_device("cpu").type == "cpu"
    assert pick_dtype(torch.device("cpu")) == torch.float32
    assert pick_dtype(torch.device("cpu"), "bf16") == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype"):
        pick_dtype(torch.device("cpu"), "fp8")
    if not torch.cuda.is_available():
        assert pick_device("auto").type in ("cpu", "mps")


def test_facebook_sam3_layout_loads(tmp_path):
    """facebook/sam3 ships a sam3_video config with detector_config and detector_model.* weights
    (plus tracker weights the image model ignores)."""
    from transformers import Sam3VideoConfig

    from sam3.configs import named_config

    ref = Sam3Backend.load("random:tiny@3", use_cache=False)
    Sam3VideoConfig(detector_config=named_config("tiny").to_dict()).save_pretrained(tmp_path)
    weights = {"detector_model." + k: v.contiguous() for k, v in ref.model.state_dict().items()}
    weights["tracker_model.memory_encoder.weight"] = torch.zeros(2)
    save_file(weights, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    b = Sam3Backend.load(tmp_path, use_cache=False)
    assert all(torch.equal(p1, p2) for p1, p2 in zip(ref.model.parameters(), b.model.parameters()))


def test_hub_id_from_local_cache(monkeypatch, tmp_path, checkpoint_dir):
    """A hub id resolves to its snapshot in the local cache, offline."""
    repo = tmp_path / "models--acme--sam3-mini"
    snap = repo / "snapshots" / ("a" * 40)
    shutil.copytree(checkpoint_dir, snap)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    assert resolve_source("acme/sam3-mini").path == snap
    b = Sam3Backend.load("acme/sam3-mini", use_cache=False)
    assert b.tokenizer.encode("circle", special=False) == [7117]


def test_fingerprint_covers_every_weight_byte_and_remembers_the_hash(checkpoint_dir, tmp_path, monkeypatch):
    """One byte changed anywhere in the weights changes the fingerprint (the whole file is hashed);
    the digest is remembered by path, size and mtime, and reused while those are unchanged."""
    import hashlib
    import os

    from sam3 import loading

    monkeypatch.setattr(loading, "_memo_in_process", {})
    ckpt = tmp_path / "ckpt"
    shutil.copytree(checkpoint_dir, ckpt)
    weights = ckpt / "model.safetensors"
    memo = tmp_path / "memo" / loading.HASH_MEMO_NAME
    source = resolve_source(ckpt)
    base = loading.fingerprint(source, torch.float32, memo=memo)
    entry = json.loads(memo.read_text())[str(weights.resolve())]
    assert entry["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert entry["size"] == weights.stat().st_size
    assert loading.fingerprint(resolve_source(checkpoint_dir), torch.float32) == base  # the path does not count
    assert loading.fingerprint(source, torch.bfloat16, memo=memo) != base

    calls = []
    real_sha = hashlib.sha256
    monkeypatch.setattr(loading.hashlib, "sha256", lambda *a: calls.append(a) or real_sha(*a))
    data = bytearray(weights.read_bytes())
    middle = len(data) // 2  # far from the header and the tail (the file is several MB)
    assert len(data) > 4 << 20
    data[middle] ^= 0x01
    st = weights.stat()
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))  # same path, size and mtime: the memo is trusted
    monkeypatch.setattr(loading, "_memo_in_process", {})  # a new process, reading the memo file
    calls.clear()
    assert loading.fingerprint(source, torch.float32, memo=memo) == base
    assert len(calls) == 1  # the fingerprint's own hash only: no weight file was re-hashed

    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a newer mtime: hashed again
    changed = loading.fingerprint(source, torch.float32, memo=memo)
    assert changed != base and len(calls) == 3
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    monkeypatch.setattr(loading, "_memo_in_process", {})
    assert loading.fingerprint(source, torch.float32) == changed  # without a memo: the full hash sees the byte
