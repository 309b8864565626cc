"""Resolve a model source and load a frozen ``transformers.Sam3Model``.

Sources:
    ``toy``                  the project's trained tiny SAM 3 shipped in ``sam3/toy/sam3-toy``.
    ``random:NAME[@SEED]``   a named architecture (``sam3.configs.ARCHS``) with seeded random weights.
    a directory              a Hugging Face checkpoint (config.json + safetensors + tokenizer files),
                             e.g. a local copy of facebook/sam3.
    ``sam3.pt`` or its folder  Meta's original checkpoint (``sam3`` package / facebook/sam3's sam3.pt),
                             remapped into transformers' layout (``sam3.meta_checkpoint``); the
                             architecture is the folder's config.json, else facebook/sam3's.
    ``owner/name``           a hub id already in the local Hugging Face cache (never downloaded).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from sam3.configs import named_config
from sam3.tokenizer import ASSET_DIR

logger = logging.getLogger(__name__)

TOY_DIR = Path(__file__).parent / "toy" / "sam3-toy"
TOY_V2_DIR = Path(__file__).parent / "toy" / "sam3-toy-v2"
# the embedded models: source name -> (directory, how to train it)
EMBEDDED = {
    "toy": (TOY_DIR, "`python -m sam3.toy.train --out results/toy_train --export-to sam3/toy/sam3-toy`"),
    "toy-v2": (TOY_V2_DIR, "the world-v2 recipe in the README (section 'Shapes world v2')"),
}
SAM3_MODEL_TYPES = ("sam3", "sam3_video")


class ModelSourceError(ValueError):
    """A model source that cannot be loaded; the message says what to fix."""


@dataclass(frozen=True)
class ResolvedSource:
    """Where weights come from."""

    kind: str  # "dir", "meta" or "random"
    path: Path | None  # checkpoint directory for kind == "dir"; the .pt file for kind == "meta"
    arch: str = ""  # architecture name for kind == "random"
    seed: int = 0  # weight seed for kind == "random"
    label: str = ""  # what the user asked for


def resolve_source(source: str | Path) -> ResolvedSource:
    """Turn a user's model source into a checkpoint directory or a random-config recipe."""
    text = str(source)
    if text in EMBEDDED:
        folder, recipe = EMBEDDED[text]
        if not (folder / "config.json").is_file():
            raise ModelSourceError(
                f"the embedded model {text!r} is missing from {folder}; train it with {recipe} (or restore it "
                f"with `git checkout {folder.relative_to(Path(__file__).parents[1])}`), or pass --model random:toy"
            )
        return ResolvedSource("dir", folder, label=text)
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
            if path.suffix in META_SUFFIXES:
                return ResolvedSource("meta", path, label=text)
            raise ModelSourceError(
                f"model source {path} is a file; pass the checkpoint directory that holds it (or Meta's sam3.pt itself)"
            )
        meta = _meta_weights_in(path)
        if meta is not None:
            return ResolvedSource("meta", meta, label=text)
        return ResolvedSource("dir", path, label=text)
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        return ResolvedSource("dir", _from_hub_cache(text), label=text)
    raise ModelSourceError(
        f"model source {text!r} not found: pass a checkpoint directory, a hub id already in the local "
        "Hugging Face cache, 'toy', 'toy-v2', or 'random:tiny'"
    )


META_SUFFIXES = (".pt", ".pth")


def _meta_weights_in(path: Path) -> Path | None:
    """Meta's checkpoint file in a directory that has no Hugging Face weights (``sam3.pt`` first)."""
    if any(path.glob("*.safetensors")) or any(path.glob("*.bin")):
        return None
    found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in META_SUFFIXES)
    if not found:
        return None
    preferred = [p for p in found if p.name == "sam3.pt"]
    if len(found) > 1 and not preferred:
        raise ModelSourceError(
            f"{path} holds several PyTorch checkpoints ({', '.join(p.name for p in found)}); pass one"
        )
    return (preferred or found)[0]


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
    folder = source.path.parent if source.kind == "meta" and source.path is not None else source.path
    if folder is not None and ((folder / "vocab.json").is_file() or (folder / "tokenizer.json").is_file()):
        return folder
    if source.kind == "meta":
        logger.info("no tokenizer files beside %s; using the bundled CLIP BPE vocabulary", source.path)
    elif source.kind == "dir":
        logger.warning("%s has no tokenizer files; using the bundled CLIP BPE vocabulary", source.path)
    return ASSET_DIR


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
HASH_MEMO_NAME = "weight-hashes.json"
_memo_in_process: dict[str, dict] = {}


def weight_files(path: Path) -> list[Path]:
    """The weight files of a checkpoint directory (every one is hashed into the fingerprint)."""
    return sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))


def _stat_key(path: Path) -> tuple[str, dict]:
    st = path.stat()
    return str(path.resolve()), {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _read_memo(memo: Path | None) -> dict[str, dict]:
    if memo is None or not memo.is_file():
        return {}
    try:
        data = json.loads(memo.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_memo(memo: Path, entries: dict[str, dict]) -> None:
    """Merge ``entries`` into the memo file, atomically (a concurrent writer may win; then a later
    run hashes the file once more, nothing worse)."""
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        data = {**_read_memo(memo), **entries}
        fd, tmp = tempfile.mkstemp(dir=memo.parent, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=0, sort_keys=True)
        os.replace(tmp, memo)
    except OSError as exc:  # a read-only cache is not an error: the next run hashes again
        logger.debug("cannot write the weight-hash memo %s: %s", memo, exc)


def file_digest(path: Path, memo: Path | None = None) -> str:
    """SHA-256 of all bytes of ``path``, remembered by (resolved path, size, mtime).

    The digest is computed once per file version; later calls whose path, size and mtime are
    unchanged reuse it, from this process or from the ``memo`` JSON file (written atomically).
    A file rewritten with the same size and a restored mtime is not noticed (as in make/rsync).
    """
    key, stat = _stat_key(path)
    for entries in (_memo_in_process, _read_memo(memo)):
        hit = entries.get(key)
        if isinstance(hit, dict) and all(hit.get(k) == v for k, v in stat.items()) and "sha256" in hit:
            _memo_in_process[key] = hit
            return str(hit["sha256"])
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    _, after = _stat_key(path)
    entry = {**stat, "sha256": h.hexdigest()}
    if after == stat:  # not modified while it was read
        _memo_in_process[key] = entry
        if memo is not None:
            _write_memo(memo, {key: entry})
    return entry["sha256"]


def fingerprint(source: ResolvedSource, dtype: torch.dtype, memo: Path | None = None) -> str:
    """Identity of the weights (and compute dtype), for cache keys and provenance.

    For a checkpoint directory: config.json and every byte of every weight file (by name and
    SHA-256; see ``file_digest`` for how a digest is remembered, in ``memo`` if given). The
    directory's own path does not count, so a copy of a checkpoint has the same fingerprint.
    """
    h = hashlib.sha256(str(dtype).encode())
    if source.kind == "random":
        h.update(f"random:{source.arch}@{source.seed}".encode())
        h.update(named_config(source.arch).to_json_string(use_diff=False).encode())
        return h.hexdigest()[:16]
    assert source.path is not None
    if source.kind == "meta":
        h.update(b"meta-checkpoint")
        cfg = source.path.parent / "config.json"
        files = [source.path]
    else:
        cfg = source.path / "config.json"
        files = weight_files(source.path)
    if cfg.is_file():
        h.update(cfg.read_bytes())
    for weights in files:
        h.update(f"{weights.name}:{file_digest(weights, memo)}".encode())
    return h.hexdigest()[:16]


def build_model(source: ResolvedSource, dtype: torch.dtype, device: torch.device):
    """Instantiate the frozen ``Sam3Model`` for a resolved source (eval mode, no grads)."""
    from transformers import Sam3Model

    if source.kind == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(source.seed)
            model = Sam3Model(named_config(source.arch))
    elif source.kind == "meta":
        assert source.path is not None
        model = build_from_meta_checkpoint(source.path)
    else:
        assert source.path is not None
        read_checkpoint_config(source.path)
        if not any(source.path.glob("*.safetensors")) and not any(source.path.glob("*.bin")):
            raise ModelSourceError(f"{source.path} has config.json but no weights (*.safetensors or *.bin)")
        try:
            model, info = Sam3Model.from_pretrained(
                str(source.path),
                local_files_only=True,
                output_loading_info=True,
                dtype=torch.float32,
                use_kernels=False,  # transformers >= 5.25 would fetch hub kernels by default
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


def meta_checkpoint_config(folder: Path):
    """The ``Sam3Config`` for a Meta checkpoint: the folder's config.json (``sam3`` or ``sam3_video``),
    else transformers' default, which is facebook/sam3's architecture."""
    from transformers import Sam3Config

    if (folder / "config.json").is_file():
        read_checkpoint_config(folder)  # checks that it is a SAM 3 config
        return Sam3Config.from_pretrained(str(folder), local_files_only=True)
    logger.info("no config.json beside the checkpoint in %s; assuming facebook/sam3's architecture", folder)
    return Sam3Config()


def build_from_meta_checkpoint(path: Path):
    """A float32 ``Sam3Model`` holding the weights of Meta's ``sam3.pt`` (see ``sam3.meta_checkpoint``).

    Raises:
        ModelSourceError: unreadable file, or weights that do not fit the architecture (the message
            names the missing, unexpected and wrongly shaped keys).
    """
    from transformers import Sam3Model

    from sam3.meta_checkpoint import POSITION_KEY, detector_state_dict, fit_position_embeddings, remap

    config = meta_checkpoint_config(path.parent)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError (not plain tensors), EOFError (truncated), RuntimeError, ...
        raise ModelSourceError(f"cannot read {path} as a PyTorch checkpoint of tensors: {exc}") from exc
    if not isinstance(checkpoint, dict):
        raise ModelSourceError(f"{path} holds a {type(checkpoint).__name__}, not a state dict")
    remapped = remap(detector_state_dict(checkpoint))
    state = remapped.state_dict
    with torch.device("meta"):  # shapes only, no memory
        expected = {k: v.shape for k, v in Sam3Model(config).state_dict().items()}
    if POSITION_KEY in expected:
        fit_position_embeddings(state, expected[POSITION_KEY])
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(remapped.unknown) + sorted(k for k in state if k not in expected)
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k])}"
        for k in sorted(state)
        if k in expected and state[k].shape != expected[k]
    ]
    if missing or unexpected or mismatched:
        arch = (
            "the config.json beside it" if (path.parent / "config.json").is_file() else "facebook/sam3's architecture"
        )
        parts = [f"{path} does not fit SAM 3 ({arch}):"]
        if missing:
            parts.append(f"{len(missing)} missing weights, e.g. {', '.join(missing[:6])}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected weights, e.g. {', '.join(unexpected[:6])}")
        if mismatched:
            parts.append(f"{len(mismatched)} of the wrong shape, e.g. {'; '.join(mismatched[:4])}")
        raise ModelSourceError(" ".join(parts))
    if remapped.ignored:
        logger.info(
            "ignored %d tensors of %s the image model does not use (tracker, rotary tables, point prompts)",
            len(remapped.ignored),
            path.name,
        )
    model, info = Sam3Model.from_pretrained(
        None, config=config, state_dict=state, dtype=torch.float32, output_loading_info=True, use_kernels=False
    )
    left = [k for k in ("missing_keys", "unexpected_keys", "mismatched_keys") if info.get(k)]
    if left:  # checked above; this is transformers' own view, for safety
        raise ModelSourceError(
            f"transformers reports {', '.join(f'{k}: {list(info[k])[:4]}' for k in left)} for {path}"
        )
    return model


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
