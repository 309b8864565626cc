"""Shared fixtures. Every test runs offline on small configs."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures" / "coco"


@pytest.fixture(scope="session")
def tiny_backend(tmp_path_factory):
    """A random-weight tiny SAM 3 (seeded) with a private feature cache."""
    from sam3 import Sam3Backend

    torch.set_num_threads(min(2, torch.get_num_threads()))
    return Sam3Backend.load("random:tiny", device="cpu", cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def coco_fixtures() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"shared COCO fixtures not found at {FIXTURES}")
    return FIXTURES


def lively_weights(model, seed: int = 0) -> None:
    """Re-draw every weight at unit-variance scale so that outputs are O(1), not the ~1e-4 of
    transformers' init: equality tests then compare numbers that matter."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in**0.5)
            else:
                p.copy_(
                    1.0 + 0.1 * torch.randn(p.shape, generator=gen)
                    if p.abs().sum() > 0
                    else 0.1 * torch.randn(p.shape, generator=gen)
                )


@pytest.fixture(scope="session")
def lively_backend(tmp_path_factory):
    """The tiny architecture with O(1) random weights (a distinct fingerprint)."""
    from sam3 import Sam3Backend

    backend = Sam3Backend.load("random:tiny@7", device="cpu", cache_dir=tmp_path_factory.mktemp("cache_lively"))
    lively_weights(backend.model, seed=7)
    return backend
