"""Meta's sam3.pt: every key of Meta's real image model maps onto transformers' Sam3Model, and a
small model written in Meta's layout loads back through ``--model`` to the same numbers."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from sam3 import ModelSourceError, Sam3Backend
from sam3.loading import resolve_source
from sam3.meta_checkpoint import IGNORED, remap, rename
from tests.conftest import lively_weights

# key and shape of every tensor in the state dict of Meta's image model as
# sam3.model_builder.build_sam3_image_model (PyPI sam3 0.1.4) builds it (facebook/sam3's architecture)
META_KEYS = Path(__file__).parent / "data" / "meta_sam3_image_keys.tsv.gz"


def _meta_keys() -> dict[str, tuple[int, ...]]:
    rows = gzip.decompress(META_KEYS.read_bytes()).decode().splitlines()
    return {
        k: tuple(json.loads(s.replace("(", "[").replace(")", "]").replace(",]", "]")))
        for k, s in (r.split("\t") for r in rows)
    }


def test_every_meta_key_lands_on_a_transformers_weight_of_its_shape():
    from transformers import Sam3Config, Sam3Model

    meta = {k: torch.empty(s, device="meta") for k, s in _meta_keys().items()}
    assert len(meta) == 1134
    out = remap(meta)
    assert out.unknown == []
    assert len(out.ignored) == 38  # 32 ViT rotary tables, 6 point-prompt weights
    with torch.device("meta"):
        expected = {k: v.shape for k, v in Sam3Model(Sam3Config()).state_dict().items()}
    got = {k: v.shape for k, v in out.state_dict.items()}
    pos = "vision_encoder.backbone.embeddings.position_embeddings"
    assert got[pos][1] == expected[pos][1] + 1  # Meta's class-token row, dropped on load
    got[pos] = expected[pos]
    assert got == expected


def meta_layout(hf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers state dict written as Meta's sam3.pt stores it: Meta's names (taken from the
    real key list, layer indices re-numbered), fused q/k/v, a class-token row in front of the ViT
    position table, the CLIP text projection transposed, the rotary tables, and tracker weights."""
    templates = {re.sub(r"\.\d+\.", ".{i}.", k) for k in _meta_keys()}
    out: dict[str, torch.Tensor] = {}
    covered: set[str] = set()
    for template in sorted(templates):
        for i in range(64) if "{i}" in template else [None]:
            key = template.format(i=i) if i is not None else template
            if any(p.search(key) for p in IGNORED):
                if key.endswith("freqs_cis") and f"vision_encoder.backbone.layers.{i}.layer_norm1.weight" in hf_state:
                    out["detector." + key] = torch.zeros(4, 2, dtype=torch.complex64)
                continue
            new = rename(key)
            if new is None:
                continue
            parts = [new.replace("<qkv>", p) for p in ("q_proj", "k_proj", "v_proj")] if "<qkv>" in new else [new]
            if not all(p in hf_state for p in parts):
                continue
            value = torch.cat([hf_state[p] for p in parts]) if len(parts) == 3 else hf_state[parts[0]]
            if key.endswith("encoder.text_projection"):
                value = value.t()
            if key.endswith("trunk.pos_embed"):
                value = torch.cat([torch.randn_like(value[:, :1]), value], 1)
            out["detector." + key] = value.clone().contiguous()
            covered.update(parts)
    assert covered == set(hf_state), sorted(set(hf_state) - covered)[:5]
    out["tracker.maskmem_backbone.mask_downsampler.encoder.0.weight"] = torch.zeros(4, 1, 3, 3)
    return out


@pytest.fixture(scope="module")
def tiny_meta(tmp_path_factory):
    """random:tiny with O(1) weights, saved as Meta's sam3.pt with the model's config.json beside it."""
    ref = Sam3Backend.load("random:tiny@5", device="cpu", use_cache=False)
    lively_weights(ref.model, seed=5)
    folder = tmp_path_factory.mktemp("meta")
    ref.model.config.save_pretrained(folder)
    torch.save(meta_layout(ref.model.state_dict()), folder / "sam3.pt")
    return ref, folder


def _forward(backend: Sam3Backend):
    rgb = np.random.default_rng(3).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    feats = backend.encode_images([rgb])
    return backend.ground(backend.encode_text(ids=backend.text_ids(["red circle", "a small blue square"])), feats)


@pytest.mark.parametrize("as_file", [True, False])
def test_small_model_round_trips_through_meta_layout(tiny_meta, as_file):
    ref, folder = tiny_meta
    source = folder / "sam3.pt" if as_file else folder
    resolved = resolve_source(source)
    assert resolved.kind == "meta" and resolved.path == folder / "sam3.pt"
    b = Sam3Backend.load(source, device="cpu", use_cache=False)
    ref_state = ref.model.state_dict()
    for k, v in b.model.state_dict().items():
        assert torch.equal(v, ref_state[k]), k
    assert not b.model.training and not any(p.requires_grad for p in b.model.parameters())
    o_ref, o_meta = _forward(ref), _forward(b)
    for name in ("mask_logits", "query_logits", "presence_logits", "semantic_logits", "boxes"):
        r, m = getattr(o_ref, name), getattr(o_meta, name)
        assert float(r.abs().mean()) > 1e-3 and torch.equal(r, m), name
    assert b.fingerprint != ref.fingerprint


class NotTensors:
    """A pickled object that ``torch.load(weights_only=True)`` must refuse."""


def test_meta_checkpoint_problems_are_named(tiny_meta, tmp_path):
    _, folder = tiny_meta
    state = torch.load(folder / "sam3.pt", weights_only=True)
    (tmp_path / "config.json").write_bytes((folder / "config.json").read_bytes())

    def attempt(sd):
        torch.save(sd, tmp_path / "sam3.pt")
        with pytest.raises(ModelSourceError) as err:
            Sam3Backend.load(tmp_path, device="cpu", use_cache=False)
        return str(err.value)

    gone = "detector.transformer.decoder.query_embed.weight"
    msg = attempt({k: v for k, v in state.items() if k != gone})
    assert "1 missing weights" in msg and "detr_decoder.query_embed.weight" in msg
    msg = attempt({**state, "detector.transformer.decoder.mystery.weight": torch.zeros(2)})
    assert "1 unexpected weights" in msg and "transformer.decoder.mystery.weight" in msg
    bad = dict(state)
    bad["detector.dot_prod_scoring.hs_proj.weight"] = torch.zeros(3, 3)
    msg = attempt(bad)
    assert "wrong shape" in msg and "dot_product_scoring.query_proj.weight (3, 3)" in msg
    torch.save({"model": state}, tmp_path / "sam3.pt")  # wrapped as training checkpoints are: fine
    Sam3Backend.load(tmp_path, device="cpu", use_cache=False)

    torch.save({"obj": NotTensors()}, tmp_path / "sam3.pt")
    with pytest.raises(ModelSourceError, match="cannot read"):  # weights_only refuses pickled objects
        Sam3Backend.load(tmp_path, device="cpu", use_cache=False)


def test_huggingface_weights_win_over_sam3_pt(tmp_path):
    """facebook/sam3 ships both; the transformers weights are used as they are."""
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "sam3"}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    (tmp_path / "sam3.pt").write_bytes(b"")
    assert resolve_source(tmp_path).kind == "dir"
    (tmp_path / "model.safetensors").unlink()
    assert resolve_source(tmp_path).kind == "meta"
    (tmp_path / "other.pt").write_bytes(b"")
    assert resolve_source(tmp_path).path == tmp_path / "sam3.pt"
