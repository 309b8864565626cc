"""Checks shared by the shipped models' tests (tests/test_toy_model.py, tests/test_toy_v2_model.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sam3 import Sam3Backend


def check_ships_small(folder: Path) -> None:
    """An HF checkpoint folder (config, safetensors, tokenizer files) under 25 MB."""
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "vocab.json", "merges.txt"} <= names
    assert sum(p.stat().st_size for p in folder.iterdir()) < 25 * 2**20


def check_loads_like_any_checkpoint(backend: Sam3Backend, folder: Path, cache: Path) -> None:
    """Loading ``folder`` by path gives the same weights as the registered name; frozen, float32, 49,408 tokens."""
    same = Sam3Backend.load(str(folder), device="cpu", cache_dir=cache)
    assert same.fingerprint == backend.fingerprint
    assert backend.dtype == torch.float32 and backend.vocab_size == 49408
    assert all(not p.requires_grad for p in backend.model.parameters())


def scores_and_masks(backend: Sam3Backend, rgb: np.ndarray, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Detection scores (P, Q) and binary masks (P, Q, H, W) at image size of each prompt on one image."""
    feats = backend.encode_images([rgb])
    with torch.no_grad():
        out = backend.ground(backend.encode_text(backend.text_ids(prompts)), feats)
    scores = out.query_logits.sigmoid() * out.presence_logits.sigmoid()[..., None]  # (P, 1, Q)
    masks = F.interpolate(out.mask_logits[:, 0].float(), size=rgb.shape[:2], mode="bilinear") > 0
    return scores[:, 0], masks


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def load_shipped(name: str, tmp_path_factory) -> Sam3Backend:
    """A shipped model by its registered name, on CPU with at most 2 threads and a fresh feature cache."""
    torch.set_num_threads(min(2, torch.get_num_threads()))
    return Sam3Backend.load(name, device="cpu", cache_dir=tmp_path_factory.mktemp(f"{name}_cache"))
