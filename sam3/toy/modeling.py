"""Build and export the sam3-toy ``Sam3Model``: the initialization that lets grounding start, and
the Hugging Face directory (fp16 safetensors + CLIP tokenizer files) that ``Sam3Backend.load`` reads.
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

import torch

from sam3.configs import named_config
from sam3.tokenizer import ASSET_DIR, TOKENIZER_FILES
from sam3.toy.train_config import TrainConfig

logger = logging.getLogger(__name__)


def init_model(cfg: TrainConfig):
    """A seeded, freshly initialized Sam3Model of the run's architecture."""
    from transformers import Sam3Model

    torch.manual_seed(cfg.seed)
    model = Sam3Model(named_config(cfg.arch))
    if cfg.reset_convs:
        for module in model.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                module.reset_parameters()
    with torch.no_grad():
        for layer in model.vision_encoder.neck.fpn_layers:
            layer.proj2.weight.mul_(cfg.fpn_gain)
            layer.proj2.bias.mul_(cfg.fpn_gain)
        model.text_projection.weight.mul_(cfg.text_gain)
        if cfg.pos_std:
            model.vision_encoder.backbone.embeddings.position_embeddings.normal_(0.0, cfg.pos_std)
        if cfg.grid_queries:
            ref = model.detr_decoder.reference_points.weight  # (Q, 4) cxcywh before the sigmoid
            ref.copy_(torch.logit(grid_boxes(ref.shape[0]), eps=1e-4))
    return model


def grid_boxes(n: int) -> torch.Tensor:
    """(n, 4) cxcywh boxes on a near-square grid of cells covering the unit square."""
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    boxes = [[(c + 0.5) / cols, (r + 0.5) / rows, 1.0 / cols, 1.0 / rows] for r in range(rows) for c in range(cols)][:n]
    return torch.tensor(boxes)


def export_model(model, out_dir: Path) -> Path:
    """Write an HF checkpoint directory: config.json, fp16 model.safetensors, CLIP tokenizer files."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.safetensors"):
        old.unlink()
    half = type(model)(model.config)
    half.load_state_dict(model.state_dict())
    half = half.to(torch.float16)
    half.save_pretrained(str(out_dir), safe_serialization=True)
    for name in TOKENIZER_FILES:
        shutil.copy2(ASSET_DIR / name, out_dir / name)
    for f in out_dir.iterdir():
        f.chmod(0o644)
    return out_dir


def load_exported(model, directory: Path, partial: bool = False, prefix: str = "") -> list[str]:
    """Load an exported sam3-toy directory's weights into ``model`` (cast to its dtype).

    Args:
        model: the Sam3Model to fill.
        directory: a directory written by ``export_model``.
        partial: False: every key must match in name and shape (missing, unexpected and mis-shaped
            weights raise). True: load the weights whose name and shape match and keep the model's
            own (fresh) weights for the rest; for a warm start across architectures that differ in a
            few modules (e.g. ``toy24d`` -> ``toy``, which differ only in the first FPN level).
        prefix: load only the weights whose names start with it (e.g. ``"vision_encoder."``), the
            same strict or partial way; the model's other weights are left as they are.

    Returns:
        The names of the model's weights that were *not* loaded (empty when ``partial`` is False).
    """
    from safetensors.torch import load_file

    path = Path(directory) / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {directory} must be a directory written by export_model")
    dtype = next(model.parameters()).dtype
    state = {k: v.to(dtype) for k, v in load_file(str(path)).items() if k.startswith(prefix)}
    own = {k: v for k, v in model.state_dict().items() if k.startswith(prefix)}
    if prefix and not partial:
        missing, unexpected = sorted(own.keys() - state.keys()), sorted(state.keys() - own.keys())
        shapes = sorted(k for k in own.keys() & state.keys() if own[k].shape != state[k].shape)
        if missing or unexpected or shapes:
            raise ValueError(
                f"{path}: its {prefix!r} weights do not fit {model.config.__class__.__name__}: missing {missing[:5]}, "
                f"unexpected {unexpected[:5]}, mis-shaped {shapes[:5]}"
            )
        model.load_state_dict(state, strict=False)
        return []
    if partial:
        fits = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        if not fits:
            raise ValueError(f"{path}: no weight fits {model.config.__class__.__name__} in name and shape")
        model.load_state_dict(fits, strict=False)
        fresh = sorted(k for k in own if k not in fits)
        logger.info("warm start from %s: %d weights loaded, %d kept fresh: %s", path, len(fits), len(fresh), fresh)
        return fresh
    try:
        model.load_state_dict(state)  # strict: missing, unexpected and mis-shaped weights all raise
    except RuntimeError as exc:
        detail = str(exc) if len(str(exc)) <= 600 else str(exc)[:600] + " ..."
        raise ValueError(f"{path} does not fit architecture {model.config.__class__.__name__}: {detail}") from None
    return []


@torch.no_grad()
def tie_row_norms(table: torch.Tensor, rows: torch.Tensor, iterations: int = 8) -> None:
    """Rescale ``table[rows]``, in place, so that every listed row lies at the same distance (their
    mean distance) from the mean of the whole table.

    Moving the rows moves the mean a little, so the projection is repeated until the distances agree
    to float precision: a residual would still rank the most-trained words first.

    Args:
        table: (V, D) token-embedding weights.
        rows: (R,) row indices (the trained words).
    """
    work = table.double()
    for _ in range(iterations):
        mean = work.mean(0, keepdim=True)  # (1, D)
        dev = work[rows] - mean  # (R, D)
        dist = dev.norm(dim=1, keepdim=True).clamp_min(1e-12)  # (R, 1)
        work[rows] = mean + dev * (dist.mean() / dist)
    table.copy_(work.to(table.dtype))
