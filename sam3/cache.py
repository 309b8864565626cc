"""On-disk cache of image features: one safetensors file per (model fingerprint, image hash).

Entries are written to a temporary file and renamed into place, so a crash never leaves a
half-written entry under the final name. Every entry carries a CRC of its bytes and its own key;
a truncated, corrupt or foreign file is detected on read, deleted and reported as a miss.
Tensors are stored as given: the backend stores features in the dtype it computed them in, so a
warm run reads back bitwise what a cold run computed (version 1 stored fp16 copies of fp32
features, so warm and cold runs differed; its entries are dropped and recomputed).
"""

from __future__ import annotations

import logging
import os
import tempfile
import zlib
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

logger = logging.getLogger(__name__)

CACHE_VERSION = "2"


def default_cache_dir() -> Path:
    """``$SAM3_ALIAS_CACHE`` or ``~/.cache/sam3-alias/features``."""
    env = os.environ.get("SAM3_ALIAS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "sam3-alias" / "features"


def _crc(tensors: dict[str, torch.Tensor]) -> str:
    crc = 0
    for name in sorted(tensors):
        crc = zlib.crc32(name.encode(), crc)
        crc = zlib.crc32(tensors[name].contiguous().view(torch.uint8).numpy().tobytes(), crc)
    return f"{crc:08x}"


class FeatureCache:
    """Disk cache of per-image tensors, namespaced by model fingerprint."""

    def __init__(self, root: str | Path, fingerprint: str):
        self.root = Path(root) / fingerprint
        self.fingerprint = fingerprint
        self.hits = 0
        self.misses = 0

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.safetensors"

    def get(self, key: str, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor] | None:
        """The stored tensors for ``key``, or None (missing or invalid; invalid files are removed).

        With ``dtype``, an entry holding tensors of another dtype is invalid too.
        """
        path = self.path(key)
        if not path.is_file():
            self.misses += 1
            return None
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            if meta.get("version") != CACHE_VERSION:  # an older layout: quietly recompute
                logger.debug("feature cache entry %s has version %s; recomputing", path, meta.get("version"))
                path.unlink(missing_ok=True)
                self.misses += 1
                return None
            tensors = load_file(str(path))
            ok = (
                meta.get("key") == key
                and (dtype is None or all(t.dtype == dtype for t in tensors.values()))
                and meta.get("fingerprint") == self.fingerprint
                and meta.get("crc") == _crc(tensors)
            )
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            logger.warning("feature cache entry %s is unreadable (%s); recomputing", path, exc)
            ok, tensors = None, {}
        if not ok:
            if ok is False:
                logger.warning("feature cache entry %s failed validation; recomputing", path)
            path.unlink(missing_ok=True)
            self.misses += 1
            return None
        self.hits += 1
        return tensors

    def put(self, key: str, tensors: dict[str, torch.Tensor]) -> None:
        """Store tensors (moved to CPU, stored as given) atomically."""
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"version": CACHE_VERSION, "key": key, "fingerprint": self.fingerprint, "crc": _crc(tensors)}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".safetensors")
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata=meta)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
