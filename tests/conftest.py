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
