"""Aggregate a strategy comparison's cells: mean and spread per strategy and category, win / tie /
loss against the natural name (each cell's paired bootstrap verdict; cells of older runs without an
interval: the AP margin), the mean AP difference to the name, the soft-to-discrete gap, the anytime curve
and the cost.

Spread: a strategy's ``ap_sd`` is the standard deviation over seeds of its mean over categories;
a (strategy, category)'s is the standard deviation over seeds. Both use ddof = 1 (0 with one seed).
NaN (JSON null) APs (a split without targets) are left out of means.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

import numpy as np

from alias_opt.compare.records import Cell, Results
from alias_opt.eval.metrics import compare

MARGIN = 0.01  # cells without a bootstrap interval (older runs): a win is AP above the name's by more than this


def num(v) -> float:
    """A JSON number or null as float (null -> NaN)."""
    return math.nan if v is None else float(v)


def nanmean(values: Iterable) -> float:
    v = [num(x) for x in values]
    v = [x for x in v if not math.isnan(x)]
    return float(np.mean(v)) if v else math.nan


def sd(values: Iterable) -> float:
    v = [num(x) for x in values]
    v = [x for x in v if not math.isnan(x)]
    if not v:
        return math.nan
    return float(np.std(v, ddof=1)) if len(v) > 1 else 0.0


def _spread(per_seed: list[float]) -> dict:
    vals = [x for x in per_seed if not math.isnan(x)]
    return {
        "ap_mean": nanmean(per_seed),
        "ap_sd": sd(per_seed),
        "ap_min": min(vals) if vals else math.nan,
        "ap_max": max(vals) if vals else math.nan,
    }


def verdict(cell: Cell, margin: float = MARGIN) -> str:
    """The cell's verdict against the name: its paired bootstrap verdict, or (a cell without an
    interval) the AP margin's."""
    if cell.vs_name_interval is not None:
        return cell.vs_name
    return compare(num(cell.ap), num(cell.name_ap), margin)


def summarize(results: dict | Results, margin: float = MARGIN) -> dict:
    """The summary of ``results`` (``setup``, ``categories``, ``cells``; see alias_opt.compare)."""
    if isinstance(results, dict):
        results = Results.of(results, summarized=False)
    cells, cats = results.cells, results.categories
    order = [s for s in results.setup["strategies"] if any(c.strategy == s for c in cells)]
    soft = {(c.category_id, c.seed): num(c.ap) for c in cells if c.strategy == "soft"}
    levels = sorted({c.vs_name_interval.level for c in cells if c.vs_name_interval is not None})
    out = {
        "margin": margin,
        "level": levels[0] if len(levels) == 1 else None,  # of every cell's interval
        "order": order,
        "name_ap_mean": nanmean(c.name_ap for c in cats.values()),
        "oracle_ap_mean": nanmean(c.oracle_ap for c in cats.values()),
        "strategies": {},
    }
    for s in order:
        mine = [c for c in cells if c.strategy == s]
        seeds = sorted({c.seed for c in mine})
        per_seed = [nanmean(c.ap for c in mine if c.seed == k) for k in seeds]
        verdicts = Counter(verdict(c, margin) for c in mine)
        if s == "soft":  # the soft prompt against its own one-shot projection
            gaps = [num(c.ap) - num(c.alias_ap) for c in mine]
        else:
            gaps = [soft[k] - num(c.ap) for c in mine if (k := (c.category_id, c.seed)) in soft]
        fractions = [p.fraction for p in mine[0].curve] if mine else []
        curve = []
        for i, f in enumerate(fractions):
            seed_means = [nanmean(c.curve[i].ap for c in mine if c.seed == k) for k in seeds]
            curve.append(
                {
                    "fraction": f,
                    "budget": mine[0].curve[i].budget,
                    "ap_mean": nanmean(seed_means),
                    "ap_sd": sd(seed_means),
                }
            )
        per_cat = {}
        for cid in sorted({c.category_id for c in mine}):
            cc = [c for c in mine if c.category_id == cid]
            v = Counter(verdict(c, margin) for c in cc)
            texts = Counter(c.text for c in cc if c.text is not None)
            per_cat[str(cid)] = {
                **_spread([num(c.ap) for c in cc]),
                "seeds": len(cc),
                "win": v["win"],
                "tie": v["tie"],
                "loss": v["loss"],
                "alias": texts.most_common(1)[0][0] if texts else None,
            }
        out["strategies"][s] = {
            "cells": len(mine),
            **_spread(per_seed),
            "ap50_mean": nanmean(c.ap50 for c in mine),
            "win": verdicts["win"],
            "tie": verdicts["tie"],
            "loss": verdicts["loss"],
            "no_baseline": verdicts["n/a"],
            "diff_mean": nanmean(num(c.ap) - num(c.name_ap) for c in mine),  # held-out AP minus the name's
            "gap_to_soft": nanmean(gaps) if gaps else math.nan,
            "train_loss_mean": nanmean(c.train_loss for c in mine),
            "train_ap_mean": nanmean(c.train_ap for c in mine),
            "forward_passes": nanmean(c.forward_passes for c in mine),
            "backward_passes": nanmean(c.backward_passes for c in mine),
            "cost": nanmean(c.cost for c in mine),
            "budget": mine[0].budget if mine else None,
            "wall_time": nanmean(c.wall_time for c in mine),
            "ms_per_pair": nanmean(c.ms_per_pair for c in mine),
            "curve": curve,
            "categories": per_cat,
        }
    return out


def fmt(v, digits: int = 3) -> str:
    """A number as the report prints it ("-" for NaN / null)."""
    v = num(v)
    return "-" if math.isnan(v) else f"{v:.{digits}f}"


def format_overview(summary: dict) -> str:
    """A plain-text table of the per-strategy summary (for the console)."""
    head = ("strategy", "AP mean", "sd", "win/tie/loss", "gap to soft", "cost", "wall s")
    rows = [
        (
            s,
            fmt(r["ap_mean"]),
            fmt(r["ap_sd"]),
            f"{r['win']}/{r['tie']}/{r['loss']}",
            fmt(r["gap_to_soft"]),
            fmt(r["cost"], 0),
            fmt(r["wall_time"], 1),
        )
        for s, r in summary["strategies"].items()
    ]
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]
    lines = [
        "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))
        for r in [head, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(
        f"name baseline: mean AP {fmt(summary['name_ap_mean'])}; oracle words: {fmt(summary['oracle_ap_mean'])}"
    )
    return "\n".join(lines)
