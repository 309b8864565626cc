"""What a comparison records: ``Cell`` (with its ``CurvePoint``s, ``LossPoint``s, ``Shown`` detections,
bootstrap interval and, for ``soft``, its ``SoftCell``), written as one JSON object per cell
(``cells/<strategy>/<category>-seed<s>.json``) and in ``results.json``; ``CategoryInfo`` (a category's
split and baselines) and ``Results`` (all of ``results.json``). ``from_dict`` reads each back (JSON null
-> NaN for numbers); the report renders from these classes."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from alias_opt.eval.bootstrap import BootstrapDiff

CELL_VERSION = 2  # 2: bootstrap verdicts, learning curve and figure detections


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
    "vs_name_interval": None,
    "losses": [],
    "shown": None,
}


@dataclass
class LossPoint:
    """The learning curve: the best train loss found within ``cost`` forward-equivalents."""

    cost: int  # forward-equivalents spent when the best improved (or at the end)
    loss: float  # the best full-train loss by then (length penalty included)


@dataclass
class Shown:
    """One prompt's held-out detections on one image, saved for the report's figure (never re-run)."""

    image_id: int
    height: int
    width: int
    scores: list[float]  # detections scoring above the score threshold, best first
    rles: list[dict]  # their COCO RLE masks (``counts`` as a string)
    ap: float  # COCO mask AP on this image over all detections (NaN without targets)

    @classmethod
    def of(cls, pred, image_id: int, score: float, ap: float) -> Shown:
        """From an ``ImagePredictions``: its detections above ``score``."""
        keep = pred.kept(score)
        rles = []
        for i in keep:
            counts = pred.rles[i]["counts"]
            rles.append(
                {"size": list(pred.rles[i]["size"]), "counts": counts.decode() if isinstance(counts, bytes) else counts}
            )
        return cls(image_id, pred.height, pred.width, [round(float(pred.scores[i]), 4) for i in keep], rles, ap)

    def prediction(self):
        """The saved detections as ``ImagePredictions`` (for ``alias_opt.eval.figures``)."""
        from alias_opt.eval.metrics import ImagePredictions

        rles = [{"size": r["size"], "counts": r["counts"].encode()} for r in self.rles]
        return ImagePredictions(rles=rles, scores=self.scores, height=self.height, width=self.width)

    @classmethod
    def from_dict(cls, data: dict | None) -> Shown | None:
        return None if data is None else cls(**{**data, "ap": _num(data["ap"])})


@dataclass
class CategoryInfo:
    """One category of a comparison: its split and its baselines on the held-out split."""

    category_id: int
    name: str | None
    name_ap: float  # held-out AP of the natural name (NaN: nameless, or no targets)
    name_test_metrics: dict | None  # PromptMetrics.to_dict()
    oracle_text: str | None  # the best oracle phrase (report only)
    oracle_ap: float
    n_train: int
    n_train_pos: int
    n_test: int
    n_test_pos: int
    shown_image_id: int | None = None  # the held-out image every strategy's alias is drawn on
    name_shown: Shown | None = None  # the name's detections on it

    @property
    def label(self) -> str:
        return f"{self.category_id} {self.name or '(nameless)'}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CategoryInfo:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in data.items() if k in known}
        for k in ("name_ap", "oracle_ap"):
            kw[k] = _num(kw.get(k))
        kw.setdefault("oracle_text", None)
        kw.setdefault("name_test_metrics", None)
        for k in ("n_train", "n_train_pos", "n_test", "n_test_pos"):
            kw.setdefault(k, 0)
        kw["name_shown"] = Shown.from_dict(kw.get("name_shown"))
        return cls(**kw)


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
    vs_name: str = "n/a"  # win / tie / loss / n/a against the name (by vs_name_interval)
    vs_name_interval: BootstrapDiff | None = None  # ap - name_ap with its paired bootstrap interval
    losses: list[LossPoint] = field(default_factory=list)  # the learning curve, the cell's cost last
    shown: Shown | None = None  # its held-out detections on the category's figure image

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
        iv = kw.get("vs_name_interval")
        kw["vs_name_interval"] = BootstrapDiff.from_dict(iv) if isinstance(iv, dict) else iv
        kw["losses"] = [p if isinstance(p, LossPoint) else LossPoint(p["cost"], _num(p["loss"])) for p in kw["losses"]]
        kw["shown"] = kw["shown"] if isinstance(kw["shown"], Shown | None) else Shown.from_dict(kw["shown"])
        return cls(**kw)


@dataclass
class Results:
    """All of ``results.json``: the setup, the categories, the cells and their summary."""

    setup: dict  # CompareSetup, the command, the tool version and the settings the cells depend on
    categories: dict[str, CategoryInfo]  # by str(category id), in run order
    cells: list[Cell]
    summary: dict  # alias_opt.compare.summary.summarize

    def to_dict(self) -> dict:
        return {
            "setup": self.setup,
            "categories": {k: v.to_dict() for k, v in self.categories.items()},
            "cells": [c.to_dict() for c in self.cells],
            "summary": self.summary,
        }

    @classmethod
    def of(cls, data: dict | Results, summarized: bool = True) -> Results:
        """``data`` as Results (a ``results.json`` dict, or Results already); with ``summarized`` the
        summary is made if missing."""
        if isinstance(data, Results):
            return data
        from alias_opt.compare.summary import summarize

        res = cls(
            data["setup"],
            {
                str(k): v if isinstance(v, CategoryInfo) else CategoryInfo.from_dict(v)
                for k, v in data["categories"].items()
            },
            [c if isinstance(c, Cell) else Cell.from_dict(c) for c in data["cells"]],
            data.get("summary") or {},
        )
        if summarized and not res.summary:
            res.summary = summarize(res)
        return res
