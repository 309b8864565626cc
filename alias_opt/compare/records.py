"""What one comparison cell records: ``Cell`` (with its ``CurvePoint``s and, for ``soft``, its
``SoftCell``), written as one JSON object per cell (``cells/<strategy>/<category>-seed<s>.json``) and
in ``results.json``; ``Cell.from_dict`` reads it back (JSON null -> NaN for numbers)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

CELL_VERSION = 1


def _num(v) -> float:
    return math.nan if v is None else float(v)


# keys a cell's JSON may omit (hand-made cells in tests, reports of older runs)
_OPTIONAL = {
    "version": CELL_VERSION,
    "settings": "",
    "category_name": None,
    "roundtrips": None,
    "test_metrics": None,
    "soft": None,
    "note": "",
    "candidates": 0,
    "memo_hits": 0,
    "reranked": [],
}


@dataclass
class CurvePoint:
    """The anytime curve at one budget fraction: the best sequence found by then and its held-out AP."""

    fraction: float  # of the cell's budget
    budget: int  # forward-equivalents
    token_ids: list[int] | None  # the best fully scored sequence by then (None if none yet)
    ap: float  # its held-out AP (0 if none yet and the split has targets)


@dataclass
class SoftCell:
    """The ``soft`` strategy's kept soft prompt, scored as such on the held-out split."""

    ap: float  # held-out AP of the soft prompt
    ap50: float
    test_metrics: dict | None  # PromptMetrics.to_dict()
    train_ap: float  # its train AP (what picked the restart)
    restart: int | None  # the restart kept
    test_score_sum: float  # sum of its detection scores on the test images (a reload fingerprint)
    file: str | None  # its safetensors file under the output folder (None without one)


@dataclass
class Cell:
    """One (strategy, category, seed) of a comparison: the search's alias, cost and held-out scores."""

    version: int  # CELL_VERSION
    settings: str  # the comparison's settings key (a resumed cell must match it)
    strategy: str  # registry name
    category_id: int
    category_name: str | None
    seed: int  # search seed
    budget: int  # forward-equivalents
    token_ids: list[int] | None  # the alias (None if the budget bought no candidate)
    text: str | None  # its decoded text
    roundtrips: bool | None  # whether the text encodes back to token_ids
    train_loss: float
    train_ap: float
    alias_ap: float  # held-out AP of the alias
    test_metrics: dict | None  # the alias's held-out PromptMetrics.to_dict()
    soft: SoftCell | None  # the soft prompt (strategy soft)
    note: str  # "" or why there is no alias
    forward_passes: int
    backward_passes: int
    cost: int  # forward_passes + 2 x backward_passes
    candidates: int  # distinct sequences scored on all train images
    memo_hits: int
    wall_time: float  # seconds of the search
    ms_per_pair: float  # wall_time per forward-equivalent
    reranked: list[dict]  # RerankRow.to_dict() of the re-ranked candidates
    ap: float  # the cell's held-out AP: the soft prompt's for soft, else the alias's
    ap50: float
    curve: list[CurvePoint] = field(default_factory=list)  # the anytime curve, the full budget last
    name_ap: float = math.nan  # the category's name on the same split
    vs_name: str = "n/a"  # win / tie / loss / n/a against the name

    def to_dict(self) -> dict:
        """The JSON object of the cell (keys in field order)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Cell:
        """A Cell from its JSON object (null numbers -> NaN; bookkeeping keys a hand-made cell may leave
        out get their defaults; unknown keys are errors)."""
        floats = {f.name for f in fields(cls) if f.type in ("float", float)}
        kw = {**_OPTIONAL, **{k: (_num(v) if k in floats else v) for k, v in data.items()}}
        if kw.get("soft") is not None:
            soft = dict(kw["soft"])
            for k in ("ap", "ap50", "train_ap", "test_score_sum"):
                soft[k] = _num(soft.get(k))
            kw["soft"] = SoftCell(**soft)
        kw["curve"] = [
            CurvePoint(p["fraction"], p["budget"], p["token_ids"], _num(p["ap"])) for p in kw.get("curve", [])
        ]
        return cls(**kw)
