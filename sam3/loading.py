"""Resolve a model source and load a frozen ``transformers.Sam3Model``.

Sources:
    ``toy``                  the project's trained tiny SAM 3 shipped in ``sam3/toy/sam3-toy``.
    ``random:NAME[@SEED]``   a named architecture (``sam3.configs.ARCHS``) with seeded random weights.
    a directory              a Hugging Face checkpoint (config.json + safetensors + tokenizer files),
                             e.g. a local copy of facebook/sam3.
    ``owner/name``           a hub id already in the local Hugging Face cache (never downloaded).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from sam3.configs import named_config
from sam3.tokenizer import ASSET_DIR

logger = logging.getLogger(__name__)

TOY_DIR = Path(__file__).parent / "toy" / "sam3-toy"
SAM3_MODEL_TYPES = ("sam3", "sam3_video")


class ModelSourceError(ValueError):
    """A model source that cannot be loaded; the message says what to fix."""


@dataclass(frozen=True)
class ResolvedSource:
    """Where weights come from."""

    kind: str  # "dir" or "random"
    path: Path | None  # checkpoint directory for kind == "dir"
    arch: str = ""  # architecture name for kind == "random"
    seed: int = 0  # weight seed for kind == "random"
    label: str = ""  # what the user asked for


def resolve_source(source: str | Path) -> ResolvedSource:
    """Turn a user's model source into a checkpoint directory or a random-config recipe."""
    text = str(source)
    if text == "toy":
        if not (TOY_DIR / "config.json").is_file():
            raise ModelSourceError(
                f"the embedded toy model is missing from {TOY_DIR}; train it with "
                "`python -m sam3.toy.train --out results/toy_train --export-to sam3/toy/sam3-toy` (or restore it "
                "with `git checkout sam3/toy/sam3-toy`), or pass --model random:toy"
            )
        return ResolvedSource("dir", TOY_DIR, label="toy")
    if text.startswith("random:"):
        spec = text[len("random:") :]
        name, _, seed = spec.partition("@")
        named_config(name)  # validates the name
        try:
            seed_value = int(seed) if seed else 0
        except ValueError:
            raise ModelSourceError(f"bad seed in {text!r}; write random:NAME@INT") from None
        return ResolvedSource("random", None, arch=name, seed=seed_value, label=text)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelSourceError(f"model source {path} is a file; pass the checkpoint directory that holds it")
        return ResolvedSource("dir", path, label=text)
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        return ResolvedSource("dir", _from_hub_cache(text), label=text)
    raise ModelSourceError(
        f"model source {text!r} not found: pass a checkpoint directory, a hub id already in the local "
        "Hugging Face cache, 'toy', or 'random:tiny'"
    )


def _from_hub_cache(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        cache_dir = os.environ.get("HF_HUB_CACHE")  # read now, not at import, so tests and users can point it
        return Path(snapshot_download(repo_id, local_files_only=True, cache_dir=cache_dir))
    except Exception as exc:  # LocalEntryNotFoundError and friends
        raise ModelSourceError(
            f"{repo_id!r} is not in the local Hugging Face cache and this tool never downloads weights; "
            f"on a machine with internet run `hf download {repo_id}` and copy the folder here, "
            "then pass its path"
        ) from exc


def read_checkpoint_config(path: Path) -> dict:
    """Read and check ``config.json`` of a checkpoint directory."""
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise ModelSourceError(f"{path} has no config.json; is it a Hugging Face SAM 3 checkpoint directory?")
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelSourceError(f"{cfg_path} is not valid JSON: {exc}") from exc
    model_type = cfg.get("model_type")
    if model_type not in SAM3_MODEL_TYPES:
        raise ModelSourceError(
            f"{cfg_path} describes a {model_type!r} model, not SAM 3 (expected model_type in {SAM3_MODEL_TYPES})"
        )
    return cfg


def tokenizer_dir(source: ResolvedSource) -> Path:
    """Directory of the tokenizer files: the checkpoint's own, else the bundled CLIP files."""
    if source.path is not None and (
        (source.path / "vocab.json").is_file() or (source.path / "tokenizer.json").is_file()
    ):
        return source.path
    if source.kind == "dir":
        logger.warning("%s has no tokenizer files; using the bundled CLIP BPE vocabulary", source.path)
    return ASSET_DIR


def fingerprint(source: ResolvedSource, dtype: torch.dtype) -> str:
    """Identity of the weights (and compute dtype), for cache keys and provenance."""
    h = hashlib.sha256(str(dtype).encode())
    if source.kind == "random":
        h.update(f"random:{source.arch}@{source.seed}".encode())
        h.update(named_config(source.arch).to_json_string(use_diff=False).encode())
        return h.hexdigest()[:16]
    assert source.path is not None
    h.update((source.path / "config.json").read_bytes())
    for weights in sorted(source.path.glob("*.safetensors")) + sorted(source.path.glob("*.bin")):
        size = weights.stat().st_size
        h.update(f"{weights.name}:{size}".encode())
        with open(weights, "rb") as f:  # head (safetensors header) and tail: fast on 3 GB files
            h.update(f.read(1 << 20))
            if size > 2 << 20:
                f.seek(size - (1 << 20))
                h.update(f.read())
    return h.hexdigest()[:16]


def build_model(source: ResolvedSource, dtype: torch.dtype, device: torch.device):
    """Instantiate the frozen ``Sam3Model`` for a resolved source (eval mode, no grads)."""
    from transformers import Sam3Model

    if source.kind == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(source.seed)
            model = Sam3Model(named_config(source.arch))
    else:
        assert source.path is not None
        read_checkpoint_config(source.path)
        if not any(source.path.glob("*.safetensors")) and not any(source.path.glob("*.bin")):
            raise ModelSourceError(f"{source.path} has config.json but no weights (*.safetensors or *.bin)")
        try:
            model, info = Sam3Model.from_pretrained(
                str(source.path), local_files_only=True, output_loading_info=True, dtype=torch.float32
            )
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelSourceError(f"cannot load SAM 3 weights from {source.path}: {exc}") from exc
        missing = list(info.get("missing_keys", []))
        if missing:
            raise ModelSourceError(
                f"checkpoint {source.path} lacks {len(missing)} weights the model needs, e.g. "
                f"{', '.join(missing[:5])}; it is incomplete or for another architecture"
            )
        mismatched = list(info.get("mismatched_keys", []))
        if mismatched:
            raise ModelSourceError(f"checkpoint {source.path} has weights of the wrong shape: {mismatched[:5]}")
        unexpected = list(info.get("unexpected_keys", []))
        if unexpected:
            logger.warning(
                "ignoring %d unexpected weights in %s, e.g. %s", len(unexpected), source.path, unexpected[:3]
            )
    model.requires_grad_(False)
    model.eval()
    return model.to(device=device, dtype=dtype)


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` = cuda > mps > cpu."""
    if str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(device: torch.device, dtype: str | torch.dtype = "auto") -> torch.dtype:
    """``auto`` = bf16 on CUDA where supported, else fp32."""
    if isinstance(dtype, torch.dtype):
        return dtype
    table = {
        "fp32": torch.float32,
        "float32": torch.float32,
        "bf16": torch.bfloat16,
        "bfloat16": torch.bfloat16,
        "fp16": torch.float16,
        "float16": torch.float16,
    }
    if dtype != "auto":
        if dtype not in table:
            raise ValueError(f"unknown dtype {dtype!r}; use auto, fp32, bf16 or fp16")
        return table[dtype]
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32
