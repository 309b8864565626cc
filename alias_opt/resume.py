"""Resuming a discovery run: the provenance a finished category records, and the refusal to resume into an
output folder whose finished categories were made with other settings (``ResumeMismatch``)."""

from __future__ import annotations

from pathlib import Path

from alias_opt.config import SearchConfig, setting_differences
from alias_opt.data.loader import CocoDataset
from alias_opt.export import AliasFileError, Provenance, dataset_hash, read_aliases
from sam3 import Sam3Backend


def provenance(backend: Sam3Backend, model: str, ds: CocoDataset, cfg: SearchConfig, split_seed: int) -> Provenance:
    """The provenance of a run: the model, the dataset, its split and the whole config."""
    return Provenance(
        model_fingerprint=backend.fingerprint,
        model_source=str(model),
        dataset_path=str(ds.annotation_file),
        dataset_hash=dataset_hash(ds.annotation_file),
        split_seed=split_seed,
        train_fraction=cfg.train_fraction,
        max_negatives=cfg.max_negatives,
        config=cfg.to_dict(),
        seed=cfg.seed,
    )


_RESUME_KEYS = ("model_fingerprint", "dataset_hash", "split_seed", "train_fraction", "max_negatives", "seed")


def compatible(a: Provenance, b: Provenance) -> bool:
    """Whether a checkpoint made under ``a`` can stand for a run under ``b`` (same model, data, split, config)."""
    return all(getattr(a, k) == getattr(b, k) for k in _RESUME_KEYS) and a.config == b.config


def provenance_differences(done: Provenance, now: Provenance) -> list[str]:
    """What differs between a finished run's provenance and this run's, one ``key: X there, Y now`` each."""
    diffs = [
        f"{k}: {getattr(done, k)!r} there, {getattr(now, k)!r} now"
        for k in _RESUME_KEYS
        if getattr(done, k) != getattr(now, k)
    ]
    diffs += setting_differences(done.config, now.config, "config.")
    return diffs


class ResumeMismatch(ValueError):
    """``--resume`` on an output folder whose finished categories were made with other settings."""


def check_resume(out: Path, prov: Provenance) -> None:
    """Refuse to resume into ``out`` when a finished category there (any category, not only the ones
    asked for now) was made with other settings.

    Raises:
        ResumeMismatch: naming the folder, the checkpoints and each difference.
    """
    mismatched: list[tuple[Path, list[str]]] = []
    for ckpt in sorted((out / "categories").glob("*.json")):
        try:
            done = read_aliases(ckpt)
        except AliasFileError:
            continue  # unreadable: redone with a warning in the loop
        if not compatible(done.provenance, prov):
            mismatched.append((ckpt, provenance_differences(done.provenance, prov)))
    if not mismatched:
        return
    diffs = mismatched[0][1]
    names = ", ".join(p.stem for p, _ in mismatched[:8]) + (", ..." if len(mismatched) > 8 else "")
    raise ResumeMismatch(
        f"--resume: {len(mismatched)} finished categor{'y' if len(mismatched) == 1 else 'ies'} in {out} "
        f"({names}) made with other settings:\n  "
        + "\n  ".join(diffs[:20])
        + (f"\n  ... and {len(diffs) - 20} more" if len(diffs) > 20 else "")
        + "\nrun with the same settings (e.g. the same --config), pass --overwrite to redo them with these, "
        "or choose a new --output"
    )
