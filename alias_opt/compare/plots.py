"""The comparison report's PNGs, drawn from ``Results`` (saved numbers and detections; never a model pass).

    plots/ap_vs_cost.png       held-out AP of each strategy's best candidate so far vs forward-equivalents
    plots/per_category.png     held-out AP per category and strategy (mean, error bar = sd over seeds)
    plots/alias_vs_name.png    every cell's held-out AP against the natural name's
    plots/learning_curve.png   best train loss vs forward-equivalents, per category, a line per cell
    plots/aliases.png          a row per category: one held-out image, the targets, the name's and each
                               strategy's best alias's detections (``alias_opt.eval.figures``)

Colours are Okabe and Ito's colour-blind-safe palette; strategies past its seven colours get dashed lines.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FormatStrFormatter  # noqa: E402

from alias_opt.compare.records import Cell, Results  # noqa: E402
from alias_opt.compare.summary import num  # noqa: E402
from alias_opt.eval.figures import FigureRow, Panel, draw_figure  # noqa: E402
from alias_opt.eval.text import quote  # noqa: E402

logger = logging.getLogger(__name__)

PLOTS = ("ap_vs_cost.png", "per_category.png", "alias_vs_name.png")
LEARNING = "learning_curve.png"
ALIASES = "aliases.png"
OKABE_ITO = ((0.90, 0.62, 0.0), (0.34, 0.71, 0.91), (0.0, 0.62, 0.45), (0.0, 0.45, 0.70), (0.84, 0.37, 0.0))
OKABE_ITO += ((0.80, 0.47, 0.65), (0.94, 0.89, 0.26))  # orange, sky blue, green, blue, vermillion, purple, yellow


def styles(order: list[str]) -> dict[str, dict]:
    """Colour and line style per strategy: Okabe-Ito colours, then the same colours dashed."""
    return {s: {"color": OKABE_ITO[i % 7], "ls": "-" if i < 7 else "--"} for i, s in enumerate(order)}


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)


def plot_ap_vs_cost(res: Results, path: Path) -> None:
    summ = res.summary
    st = styles(summ["order"])
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for s in summ["order"]:
        curve = [p for p in summ["strategies"][s]["curve"] if not math.isnan(num(p["ap_mean"]))]
        xs, ys = [p["budget"] for p in curve], [num(p["ap_mean"]) for p in curve]
        sds = [num(p["ap_sd"]) for p in curve]
        if s == "soft" and ys:  # the continuous upper bound: one point at the full budget
            ax.axhline(ys[-1], color=st[s]["color"], ls=":", lw=1.4, label="soft (continuous upper bound)")
            continue
        if not ys:
            continue
        ax.plot(xs, ys, marker="o", **st[s], label=s)
        lo, hi = [y - d for y, d in zip(ys, sds)], [y + d for y, d in zip(ys, sds)]
        ax.fill_between(xs, lo, hi, color=st[s]["color"], alpha=0.12)
    for value, style, label in (
        (num(summ["name_ap_mean"]), {"color": "black", "ls": ":", "lw": 1.2}, "natural name"),
        (num(summ["oracle_ap_mean"]), {"color": "grey", "ls": "-.", "lw": 1.0}, "oracle words"),
    ):
        if not math.isnan(value):
            ax.axhline(value, **style, label=label)
    ax.set_xscale("log", base=2)
    ticks = sorted({p["budget"] for s in summ["order"] for p in summ["strategies"][s]["curve"]})
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("forward-equivalents spent (pair forwards + 2 x backwards)")
    ax.set_ylabel("held-out mask AP (mean over categories)")
    ax.set_title("Best candidate found within the budget (last point: the re-ranked alias)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    _save(fig, path)


def plot_per_category(res: Results, path: Path) -> None:
    summ, cats = res.summary, res.categories
    order = summ["order"]
    st = styles(order)
    cids = list(cats)
    width = 0.8 / max(1, len(order))
    fig, ax = plt.subplots(figsize=(max(6.5, 1.3 * len(cids) * max(1, len(order)) * 0.35 + 3), 4.8))
    for j, s in enumerate(order):
        per = summ["strategies"][s]["categories"]
        xs = [i + (j - (len(order) - 1) / 2) * width for i in range(len(cids))]
        ys = [num(per.get(c, {}).get("ap_mean")) for c in cids]
        err = [num(per.get(c, {}).get("ap_sd")) for c in cids]
        ys, err = [0 if math.isnan(y) else y for y in ys], [0 if math.isnan(e) else e for e in err]
        hatch = "//" if st[s]["ls"] == "--" else None
        ax.bar(xs, ys, width, yerr=err, color=st[s]["color"], hatch=hatch, label=s, capsize=2)
    for i, c in enumerate(cids):
        name = cats[c].name_ap
        if not math.isnan(name):
            label = "natural name" if i == 0 else None
            ax.hlines(name, i - 0.45, i + 0.45, colors="black", linestyles=":", lw=1.5, label=label)
    ax.set_xticks(range(len(cids)))
    ax.set_xticklabels([cats[c].label for c in cids], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("held-out mask AP (mean over seeds, bar = sd)")
    ax.set_title("Per category", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    _save(fig, path)


def plot_alias_vs_name(res: Results, path: Path) -> None:
    summ = res.summary
    st = styles(summ["order"])
    fig, ax = plt.subplots(figsize=(5.5, 5.2))
    top = 0.05
    markers = "osD^v<>"
    for i, s in enumerate(summ["order"]):
        pts = [(num(c.name_ap), num(c.ap)) for c in res.cells if c.strategy == s]
        pts = [(x, y) for x, y in pts if not (math.isnan(x) or math.isnan(y))]
        if pts:
            top = max(top, *(max(p) for p in pts))
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            ax.scatter(xs, ys, s=24, color=st[s]["color"], marker=markers[i % 7], label=s, alpha=0.85)
    lim = min(1.0, top * 1.08 + 0.02)
    ax.plot([0, lim], [0, lim], color="black", lw=1, label="alias = name")
    ax.set_xlim(-0.02, lim)  # points at 0 stay visible
    ax.set_ylim(-0.02, lim)
    ax.set_xlabel("natural name: held-out AP")
    ax.set_ylabel("alias (soft: soft prompt): held-out AP")
    ax.set_title("Alias vs name, one point per category and seed (above the line: better)", fontsize=9)
    ax.legend(fontsize=7)
    _save(fig, path)


def plot_learning_curves(res: Results, path: Path) -> None:
    """Best train loss vs forward-equivalents: a panel per category, a step line per cell (seeds share
    their strategy's colour)."""
    order, cids = res.summary["order"], list(res.categories)
    st = styles(order)
    cols = min(3, len(cids))
    rows = math.ceil(len(cids) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.3 * rows + 0.6), squeeze=False)
    budget = res.setup.get("budget")
    for k, c in enumerate(cids):
        ax = axes[k // cols, k % cols]
        for s in order:
            for i, cell in enumerate(x for x in res.cells if x.strategy == s and str(x.category_id) == c):
                if cell.losses:
                    xs, ys = [p.cost for p in cell.losses], [p.loss for p in cell.losses]
                    ax.step(xs, ys, where="post", lw=1.5, alpha=0.85, **st[s], label=s if k == 0 and i == 0 else None)
                    ax.plot(xs[-1], ys[-1], marker="|", color=st[s]["color"], ms=8)
        if budget:
            ax.axvline(budget, color="grey", lw=0.8, ls=":")
        ax.set_title(res.categories[c].label, fontsize=9)
        ax.set_xlabel("forward-equivalents spent", fontsize=8)
        ax.set_ylabel("best train loss (log; lower: better)", fontsize=8)
        ax.set_yscale("log")
        for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
            axis(FormatStrFormatter("%g"))
        ax.tick_params(which="both", labelsize=7)
        ax.grid(alpha=0.3)
    for k in range(len(cids), rows * cols):
        axes[k // cols, k % cols].axis("off")
    if any(c.losses for c in res.cells):
        fig.legend(loc="lower center", ncol=min(6, len(order)), fontsize=8, frameon=False)
    else:  # results of a run before learning curves were recorded
        fig.text(0.5, 0.5, "no learning curve recorded in these cells", ha="center", fontsize=10)
    fig.suptitle(
        "Learning curve: the best train loss found so far, one line per seed (the first point: the name's loss, "
        "scored first; | marks the cell's end; dotted: the budget)",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    _save(fig, path)


def best_cell(cells: list[Cell]) -> Cell | None:
    """A strategy's best alias for one category: the seed with the highest train AP (then the lowest train
    loss, then the lowest seed): chosen on the train split, not on the image shown."""

    def key(c: Cell):
        ap = num(c.train_ap)
        return (-(ap if not math.isnan(ap) else -1.0), num(c.train_loss), c.seed)

    return min(cells, key=key) if cells else None


def _images(res: Results, sets: dict | None) -> dict[int, object]:
    """The figure image (a TargetImage) of each category, from ``sets`` or the dataset on disk."""
    want = {int(c): info.shown_image_id for c, info in res.categories.items() if info.shown_image_id is not None}
    if not want:
        return {}
    if sets is None:
        from alias_opt.data.loader import CocoDataset

        cfg = res.setup.get("config", {})
        ds = CocoDataset.open(res.setup["dataset_path"])
        sets = {
            ts.category_id: ts
            for ts in ds.target_sets(
                seed=res.setup["split_seed"],
                train_fraction=cfg.get("train_fraction", 0.5),
                max_negatives=cfg.get("max_negatives", 20),
                categories=sorted(want),
            )
        }
    out = {}
    for cid, image_id in want.items():
        ts = sets.get(cid)
        im = next((t for t in ts.test if t.image.image_id == image_id), None) if ts is not None else None
        if im is not None:
            out[cid] = im
    return out


def _panel(label: str, shown, detail: str) -> Panel:
    if shown is None:
        return Panel(label, np.zeros((0, 1, 1), bool), [], math.nan, detail)
    pred = shown.prediction()
    return Panel(label, pred.masks, list(pred.scores), shown.ap, detail)


def draw_aliases(res: Results, path: Path, sets: dict | None = None) -> Path | None:
    """A row per category: its figure image, the target masks, the name's and each strategy's best
    alias's saved detections (None when no image can be read)."""
    from alias_opt.data.loader import ImageReadError

    try:
        images = _images(res, sets)
    except (OSError, ValueError) as exc:
        logger.warning("no alias figure: the dataset cannot be read (%s)", exc)
        return None
    score = res.setup.get("thresholds", {}).get("score", 0.3)
    rows = []
    for c, info in res.categories.items():
        im = images.get(info.category_id)
        if im is None:
            continue
        try:
            rgb = im.image.load()
        except (ImageReadError, OSError):
            continue
        name = info.name_shown
        panels = [_panel("name", name, quote(info.name, 28) if info.name else "(nameless)")]
        for s in res.summary["order"]:
            cell = best_cell([x for x in res.cells if x.strategy == s and str(x.category_id) == c])
            text = "(soft prompt)" if s == "soft" else quote(cell.text, 28) if cell and cell.text else "(no alias)"
            panels.append(_panel(s, cell.shown if cell else None, f"{text} seed {cell.seed}" if cell else text))
        for p in panels:  # an empty panel gets the image's size
            if p.masks.shape[1:] != rgb.shape[:2] and len(p.masks) == 0:
                p.masks = np.zeros((0, *rgb.shape[:2]), bool)
        rows.append(FigureRow(f"{info.label}: {Path(str(im.image.path)).name}", rgb, im.masks, panels))
    if not rows:
        return None
    note = (
        f"shown: detections scoring > {score:g}, their score at each mask; image AP: COCO mask AP on that image "
        "over all detections; each strategy's seed with the best train AP"
    )
    return draw_figure(path, rows, "Each strategy's alias on the same held-out image", note)
