"""Training checkpoints of sam3-toy: written atomically, read with ``weights_only=True``.

A checkpoint holds the step, the run's config, model and optimizer state, the torch / NumPy /
Python RNG states and the elapsed time, so that ``--resume`` continues a run exactly.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import torch


def save_checkpoint(path: Path, model, optimizer, step: int, cfg, elapsed: float, extra: dict | None = None) -> None:
    """Write ``path`` atomically (a temporary file, then a rename): a kill never leaves half a checkpoint.

    ``extra`` adds entries (tensors and plain values), e.g. a training-only head's state.
    """
    state = {
        "step": step,
        "config": cfg.__dict__,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": _numpy_rng_state(),
        "python_rng": random.getstate(),
        "elapsed_s": elapsed,
        **(extra or {}),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _numpy_rng_state() -> dict:
    """NumPy's global RNG state in types ``torch.load(weights_only=True)`` accepts."""
    _, key, pos, has_gauss, gauss = np.random.get_state()
    return {"key": torch.from_numpy(key.astype(np.int64)), "pos": pos, "has_gauss": has_gauss, "gauss": gauss}


def restore_rng(state: dict) -> None:
    """Put back the torch, NumPy and Python RNG states saved by ``save_checkpoint``."""
    torch.set_rng_state(state["torch_rng"])
    ns = state["numpy_rng"]
    np.random.set_state(("MT19937", ns["key"].numpy().astype(np.uint32), ns["pos"], ns["has_gauss"], ns["gauss"]))
    random.setstate(state["python_rng"])


def load_checkpoint(path: Path) -> dict:
    """A training checkpoint, loaded with ``weights_only=True`` (tensors and plain Python values only)."""
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # pickle errors of old or foreign files
        raise ValueError(f"cannot read the training checkpoint {path}: {exc}") from exc


def truncate_log(path: Path, step: int) -> None:
    """Drop the loss-log lines at or after ``step`` (they are rewritten by the resumed run)."""
    if not path.is_file():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] < step]
    path.write_text("".join(ln + "\n" for ln in keep))


def restore_run(state: dict | None, module, optimizer, log_path: Path) -> tuple[int, float]:
    """Start a run where ``state`` (a ``load_checkpoint`` result, or None for a fresh run) left off.

    Loads the module and optimizer states and the RNGs, and drops the log lines from the resumed step
    on; a fresh run deletes an old log instead.

    Returns:
        (the step to start at, the seconds already spent)
    """
    if state is None:
        if log_path.exists():
            log_path.unlink()
        return 0, 0.0
    module.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    restore_rng(state)
    start = int(state["step"])
    truncate_log(log_path, start)
    return start, float(state["elapsed_s"])
