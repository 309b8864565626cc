"""The comparison report: a Markdown summary and PNG plots, readable without opening any JSON.

    python -m alias_opt.report DIR [--no-figures]   # (re)make DIR/report.md and DIR/plots/ from results.json

Rendered from ``alias_opt.compare.records.Results`` (``results.json`` read back into its dataclasses);
every table has a legend line per column with its unit. The plots (``alias_opt.compare.plots``) are drawn
once from the saved numbers and detections, never by running the model; ``--no-figures`` leaves them out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from alias_opt.compare.plots import (
    ALIASES,
    LEARNING,
    PLOTS,
    draw_aliases,
    plot_alias_vs_name,
    plot_ap_vs_cost,
    plot_learning_curves,
    plot_per_category,
)
from alias_opt.compare.records import Cell, Results
from alias_opt.compare.summary import fmt, num, verdict
from alias_opt.eval.bootstrap import RESAMPLES
from alias_opt.eval.text import quote

__all__ = ["ALIASES", "LEARNING", "PLOTS", "interval_text", "main", "markdown", "write_report"]


def _table(head: list[str], rows: list[list[str]], legend: list[str]) -> list[str]:
    """A Markdown table and, under it, one legend line per column (``legend`` in column order)."""
    if len(legend) != len(head):
        raise ValueError(f"{len(head)} columns but {len(legend)} legend lines")
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out + [""] + [f"- **{h.strip('`')}**: {text}" for h, text in zip(head, legend)]


def _pm(mean, spread) -> str:
    return f"{fmt(mean)} ± {fmt(spread)}"


def interval_text(cell: Cell) -> str:
    """``+0.412 [+0.300, +0.520]``: the cell's held-out AP minus the name's and its bootstrap interval."""
    iv = cell.vs_name_interval
    if iv is not None and iv.short():
        return iv.short()
    diff = num(cell.ap) - num(cell.name_ap)
    return "-" if math.isnan(diff) else f"{diff:+.3f}"


def _image(figures: bool, alt: str, path: str) -> list[str]:
    return [f"![{alt}]({path})", ""] if figures else []


def markdown(results: Results | dict, figures: bool = True, aliases_figure: bool = True) -> str:
    """The report's Markdown; ``figures`` embeds the PNGs, ``aliases_figure`` the mask figure (drawn
    only when the dataset's images could be read)."""
    res = Results.of(results)
    setup, summ, cats = res.setup, res.summary, res.categories
    order = summ["order"]
    level = summ.get("level")
    lvl = f"{level:.0%}" if level else "95%"
    lines = [
        "# Strategy comparison",
        "",
        f"- dataset: `{setup['dataset_path']}` (split seed {setup['split_seed']}: one train/test split for all cells)",
        f"- model: `{setup['model']}` (fingerprint `{setup['model_fingerprint']}`)",
        f"- budget: {setup['budget']} forward-equivalents (pair forwards + 2 x pair backwards) per strategy, "
        f"category and seed; the final train-AP re-ranking and shortlist probes are paid from it",
        f"- seeds: {', '.join(map(str, setup['seeds']))}; categories: {len(cats)}; strategies: {', '.join(order)}",
    ]
    if setup.get("command"):
        lines.append(f"- command: `{setup['command']}`")
    lines += ["", "## Summary (held-out test split)", ""]
    head = ["strategy", "AP", "AP50", "ΔAP vs name", "win/tie/loss", "gap to soft", "train AP"]
    head += ["forwards", "backwards", "cost", "wall s", "ms/pair"]
    rows = []
    for s in order:
        r = summ["strategies"][s]
        rows.append(
            [f"`{s}`", _pm(r["ap_mean"], r["ap_sd"]), fmt(r["ap50_mean"]), _signed(r.get("diff_mean"))]
            + [f"{r['win']}/{r['tie']}/{r['loss']}", fmt(r["gap_to_soft"]), fmt(r["train_ap_mean"])]
            + [fmt(r[k], 0) for k in ("forward_passes", "backward_passes", "cost")]
            + [fmt(r["wall_time"], 1), fmt(r["ms_per_pair"], 2)]
        )
    lines += _table(
        head,
        rows,
        [
            "search strategy (alias_opt/search/strategies.py)",
            "held-out COCO mask AP@[.5:.95] (0-1; soft: the soft prompt), mean over categories, ± sd over seeds",
            "held-out COCO mask AP at IoU 0.5 (0-1), mean over cells",
            "held-out AP minus the natural name's on the same images (AP points, 0-1 scale), mean over cells "
            "with a name; per cell with its interval under Aliases",
            f"cells (category x seed) whose {lvl} paired bootstrap interval of ΔAP over the held-out images "
            f"(images resampled: {_resamples(res)}) lies above 0 / contains 0 / lies below 0",
            "soft-prompt AP minus the strategy's AP on the same category and seed (AP points; for `soft`: "
            "minus its own one-shot projection)",
            "train-split COCO mask AP of the alias (0-1), mean over cells",
            "prompt-image pair forwards per cell (count, mean)",
            "prompt-image pair backwards per cell (count, mean)",
            "forward-equivalents per cell: forwards + 2 x backwards (mean; the budget caps it)",
            "wall-clock seconds of the search per cell (mean)",
            "milliseconds of search wall time per forward-equivalent (mean)",
        ],
    )
    name_line = f"Natural name: mean held-out AP {fmt(summ['name_ap_mean'])}"
    if not math.isnan(num(summ["oracle_ap_mean"])):
        name_line += f"; oracle words (reports only): {fmt(summ['oracle_ap_mean'])}"
    lines += ["", name_line + ".", ""]
    lines += _image(figures, "held-out AP vs forward passes", f"plots/{PLOTS[0]}")
    lines += ["## Held-out AP by budget spent", ""]
    fractions = summ["strategies"][order[0]]["curve"] if order else []
    head = ["strategy"] + [f"{p['budget']} ({p['fraction']:g})" for p in fractions]
    rows = [[f"`{s}`"] + [_pm(p["ap_mean"], p["ap_sd"]) for p in summ["strategies"][s]["curve"]] for s in order]
    legend = ["search strategy"] + [
        f"held-out AP (0-1) of the best train-loss candidate found within {p['budget']} forward-equivalents "
        f"({p['fraction']:g} of the budget{'; the final, re-ranked alias' if p['fraction'] == 1 else ''}), "
        "mean over categories ± sd over seeds"
        for p in fractions
    ]
    lines += _table(head, rows, legend)
    lines += [""] + _image(figures, "learning curves", f"plots/{LEARNING}")
    lines += ["## Per category (mean ± sd over seeds)", ""]
    head = ["category", "name AP", "oracle AP"] + [f"`{s}`" for s in order]
    rows = []
    for c, info in cats.items():
        row = [info.label, fmt(info.name_ap), fmt(info.oracle_ap)]
        for s in order:
            pc = summ["strategies"][s]["categories"].get(c)
            row.append(_pm(pc["ap_mean"], pc["ap_sd"]) if pc else "-")
        rows.append(row)
    legend = [
        "category id and name (as in the dataset)",
        "held-out AP of the natural name (0-1; - for a nameless category)",
        "held-out AP of the dataset's oracle words (0-1; reports only, never seen by a search)",
    ] + [f"held-out AP of `{s}` (0-1), mean ± sd over seeds" for s in order]
    lines += _table(head, rows, legend)
    lines += [""] + _image(figures, "per-category AP", f"plots/{PLOTS[1]}")
    if figures and aliases_figure:
        lines += ["## Each strategy's alias on one held-out image", ""]
        lines += _image(True, "aliases on a held-out image", f"plots/{ALIASES}")
    lines += ["## Aliases", ""]
    head = ["strategy", "category", "seed", "alias", "tokens", "AP", "name AP", f"ΔAP [{lvl}]", "vs name", "cost"]
    rows = []
    for c in sorted(res.cells, key=lambda c: (order.index(c.strategy), str(c.category_id), c.seed)):
        text = "(soft prompt)" if c.strategy == "soft" else (quote(c.text, 48) if c.text is not None else "-")
        rows.append(
            [f"`{c.strategy}`", str(c.category_id), str(c.seed), text.replace("|", "\\|")]
            + [str(c.token_ids) if c.token_ids else "-", fmt(c.ap), fmt(c.name_ap), interval_text(c)]
            + [verdict(c, summ["margin"]), str(c.cost)]
        )
    lines += _table(
        head,
        rows,
        [
            "search strategy",
            "category id",
            "search seed (the split is the same for every seed)",
            "the alias's decoded text, quoted (soft: a soft prompt, no text)",
            "CLIP BPE token ids of the alias, without SOT/EOT",
            "held-out COCO mask AP@[.5:.95] (0-1; soft: the soft prompt's)",
            "held-out AP of the natural name on the same images (0-1)",
            f"AP minus name AP (AP points) and its {lvl} paired bootstrap interval over the held-out images",
            f"win / tie / loss: the interval lies above 0 / contains 0 / lies below 0 (n/a: no name or no "
            f"targets; cells without an interval: AP within {summ['margin']} of the name's is a tie)",
            "forward-equivalents the cell spent (forwards + 2 x backwards)",
        ],
    )
    lines += [""] + _image(figures, "alias vs name", f"plots/{PLOTS[2]}")
    return "\n".join(lines).rstrip("\n") + "\n"


def _signed(v) -> str:
    v = num(v)
    return "-" if math.isnan(v) else f"{v:+.3f}"


def _resamples(res: Results) -> str:
    n = [c.vs_name_interval.resamples for c in res.cells if c.vs_name_interval is not None]
    kept = f"; {min(n)}-{max(n)} of them held a target and count" if n else ""
    return f"{RESAMPLES} resamples drawn{kept}"


def write_report(out: str | Path, results: Results | dict, figures: bool = True, sets: dict | None = None) -> Path:
    """Write ``out/report.md`` and (``figures``) ``out/plots/*.png``, atomically; returns the Markdown path.

    Args:
        sets: the comparison's target sets by category id (the figure's images); default: read the dataset.
    """
    out = Path(out)
    res = Results.of(results)
    drawn = False
    if figures:
        plot_ap_vs_cost(res, out / "plots" / PLOTS[0])
        plot_per_category(res, out / "plots" / PLOTS[1])
        plot_alias_vs_name(res, out / "plots" / PLOTS[2])
        plot_learning_curves(res, out / "plots" / LEARNING)
        drawn = draw_aliases(res, out / "plots" / ALIASES, sets) is not None
    path = out / "report.md"
    tmp = path.with_name(".report.md.tmp")
    tmp.write_text(markdown(res, figures, drawn), encoding="utf-8")
    os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m alias_opt.report", description=__doc__.split("\n\n")[0])
    p.add_argument("folder", metavar="DIR", help="a comparison's output folder (holding results.json)")
    p.add_argument("--no-figures", action="store_true", help="write report.md without its PNGs")
    args = p.parse_args(argv)
    src = Path(args.folder) / "results.json"
    try:
        results = json.loads(src.read_text())
    except FileNotFoundError:
        print(f"error: {src} not found; run python -m alias_opt.compare first", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {src} is not valid JSON: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {write_report(args.folder, results, figures=not args.no_figures)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
