"""The comparison report: a Markdown summary and PNG plots, readable without opening any JSON.

    python -m alias_opt.report DIR          # (re)make DIR/report.md and DIR/plots/ from DIR/results.json

Plots (matplotlib, Agg backend):
    plots/ap_vs_cost.png      held-out AP of each strategy's best candidate so far vs forward-equivalents
    plots/per_category.png    held-out AP per category and strategy (mean, error bar = sd over seeds)
    plots/alias_vs_name.png   every cell's held-out AP against the natural name's
Every number in report.md comes from ``results.json``'s ``summary``, ``categories`` and ``cells``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from alias_opt.compare.summary import fmt, num  # noqa: E402
from alias_opt.eval.metrics import compare  # noqa: E402

PLOTS = ("ap_vs_cost.png", "per_category.png", "alias_vs_name.png")


def _colours(order: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10")
    return {s: cmap(i % 10) for i, s in enumerate(order)}


def _cat_label(info: dict) -> str:
    name = info.get("name") or "(nameless)"
    return f"{info['category_id']} {name}"


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)


def plot_ap_vs_cost(results: dict, path: Path) -> None:
    summ = results["summary"]
    colours = _colours(summ["order"])
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for s in summ["order"]:
        curve = summ["strategies"][s]["curve"]
        xs = [p["budget"] for p in curve if not math.isnan(num(p["ap_mean"]))]
        ys = [num(p["ap_mean"]) for p in curve if not math.isnan(num(p["ap_mean"]))]
        sds = [num(p["ap_sd"]) for p in curve if not math.isnan(num(p["ap_mean"]))]
        if s == "soft" and ys:  # the continuous upper bound: one point at the full budget
            ax.axhline(ys[-1], color=colours[s], ls="--", lw=1.2, label="soft (continuous upper bound)")
            continue
        if not ys:
            continue
        ax.plot(xs, ys, marker="o", color=colours[s], label=s)
        ax.fill_between(
            xs, [y - d for y, d in zip(ys, sds)], [y + d for y, d in zip(ys, sds)], color=colours[s], alpha=0.12
        )
    name = num(summ["name_ap_mean"])
    if not math.isnan(name):
        ax.axhline(name, color="black", ls=":", lw=1.2, label="natural name")
    oracle = num(summ["oracle_ap_mean"])
    if not math.isnan(oracle):
        ax.axhline(oracle, color="grey", ls="-.", lw=1.0, label="oracle words")
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


def plot_per_category(results: dict, path: Path) -> None:
    summ, cats = results["summary"], results["categories"]
    order = summ["order"]
    colours = _colours(order)
    cids = list(cats)
    width = 0.8 / max(1, len(order))
    fig, ax = plt.subplots(figsize=(max(6.5, 1.3 * len(cids) * max(1, len(order)) * 0.35 + 3), 4.8))
    for j, s in enumerate(order):
        per = summ["strategies"][s]["categories"]
        xs = [i + (j - (len(order) - 1) / 2) * width for i in range(len(cids))]
        ys = [num(per.get(c, {}).get("ap_mean")) for c in cids]
        err = [num(per.get(c, {}).get("ap_sd")) for c in cids]
        ax.bar(
            xs,
            [0 if math.isnan(y) else y for y in ys],
            width,
            yerr=[0 if math.isnan(e) else e for e in err],
            color=colours[s],
            label=s,
            capsize=2,
        )
    for i, c in enumerate(cids):
        name = num(cats[c]["name_ap"])
        if not math.isnan(name):
            ax.hlines(
                name,
                i - 0.45,
                i + 0.45,
                colors="black",
                linestyles=":",
                lw=1.5,
                label="natural name" if i == 0 else None,
            )
    ax.set_xticks(range(len(cids)))
    ax.set_xticklabels([_cat_label(cats[c]) for c in cids], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("held-out mask AP (mean over seeds, bar = sd)")
    ax.set_title("Per category", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    _save(fig, path)


def plot_alias_vs_name(results: dict, path: Path) -> None:
    summ = results["summary"]
    colours = _colours(summ["order"])
    fig, ax = plt.subplots(figsize=(5.5, 5.2))
    top = 0.05
    for s in summ["order"]:
        pts = [(num(c["name_ap"]), num(c["ap"])) for c in results["cells"] if c["strategy"] == s]
        pts = [(x, y) for x, y in pts if not (math.isnan(x) or math.isnan(y))]
        if pts:
            top = max(top, *(max(p) for p in pts))
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=22, color=colours[s], label=s, alpha=0.8)
    m = summ["margin"]
    lim = min(1.0, top * 1.08 + 0.02)
    ax.plot([0, lim], [0, lim], color="black", lw=1)
    ax.fill_between([0, lim], [-m, lim - m], [m, lim + m], color="grey", alpha=0.2, label=f"tie (within {m})")
    ax.set_xlim(0, lim)
    ax.set_ylim(0, lim)
    ax.set_xlabel("natural name: held-out AP")
    ax.set_ylabel("alias (soft: soft prompt): held-out AP")
    ax.set_title("Alias vs name, one point per category and seed (above the band: a win)", fontsize=9)
    ax.legend(fontsize=7)
    _save(fig, path)


# ---------------------------------------------------------------------------------------- markdown
def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _pm(mean, spread) -> str:
    return f"{fmt(mean)} ± {fmt(spread)}"


def markdown(results: dict) -> str:
    setup, summ, cats = results["setup"], results["summary"], results["categories"]
    order = summ["order"]
    seeds = ", ".join(map(str, setup["seeds"]))
    lines = [
        "# Strategy comparison",
        "",
        f"- dataset: `{setup['dataset_path']}` (split seed {setup['split_seed']}: one train/test split for all cells)",
        f"- model: `{setup['model']}` (fingerprint `{setup['model_fingerprint']}`)",
        f"- budget: {setup['budget']} forward-equivalents (pair forwards + 2 x pair backwards) per strategy, "
        f"category and seed; the final train-AP re-ranking and shortlist probes are paid from it",
        f"- seeds: {seeds}; categories: {len(cats)}; strategies: {', '.join(order)}",
    ]
    if setup.get("command"):
        lines.append(f"- command: `{setup['command']}`")
    lines += [
        "",
        "## Summary (held-out test split)",
        "",
        "AP = COCO mask AP; ± is the sd over seeds of the mean over categories. win/tie/loss counts cells "
        f"(category x seed) against the natural name (win: AP above the name's by more than {summ['margin']}). "
        "Gap to soft = soft-prompt AP minus the strategy's AP on the same category and seed (for `soft`: "
        "minus its own one-shot projection). Cost columns are means per cell.",
        "",
    ]
    head = [
        "strategy",
        "AP",
        "AP50",
        "win/tie/loss",
        "gap to soft",
        "train AP",
        "forwards",
        "backwards",
        "cost",
        "wall s",
        "ms/pair",
    ]
    rows = []
    for s in order:
        r = summ["strategies"][s]
        rows.append(
            [
                f"`{s}`",
                _pm(r["ap_mean"], r["ap_sd"]),
                fmt(r["ap50_mean"]),
                f"{r['win']}/{r['tie']}/{r['loss']}",
                fmt(r["gap_to_soft"]),
                fmt(r["train_ap_mean"]),
                fmt(r["forward_passes"], 0),
                fmt(r["backward_passes"], 0),
                fmt(r["cost"], 0),
                fmt(r["wall_time"], 1),
                fmt(r["ms_per_pair"], 2),
            ]
        )
    lines += _table(head, rows)
    lines += [
        "",
        f"Natural name: mean held-out AP {fmt(summ['name_ap_mean'])}"
        + (
            f"; oracle words (reports only): {fmt(summ['oracle_ap_mean'])}"
            if not math.isnan(num(summ["oracle_ap_mean"]))
            else ""
        )
        + ".",
        "",
        "![held-out AP vs forward passes](plots/ap_vs_cost.png)",
        "",
        "## Held-out AP by budget spent",
        "",
        "The best train-loss candidate found within each fraction of the budget, scored on the test split "
        "(the last column: the final, re-ranked alias).",
        "",
    ]
    fractions = [p for p in summ["strategies"][order[0]]["curve"]] if order else []
    head = ["strategy"] + [f"{p['budget']} ({p['fraction']:g})" for p in fractions]
    rows = [[f"`{s}`"] + [_pm(p["ap_mean"], p["ap_sd"]) for p in summ["strategies"][s]["curve"]] for s in order]
    lines += _table(head, rows)
    lines += ["", "## Per category (mean ± sd over seeds)", ""]
    head = ["category", "name AP", "oracle AP"] + [f"`{s}`" for s in order]
    rows = []
    for c, info in cats.items():
        row = [_cat_label(info), fmt(info["name_ap"]), fmt(info.get("oracle_ap"))]
        for s in order:
            pc = summ["strategies"][s]["categories"].get(c)
            row.append(_pm(pc["ap_mean"], pc["ap_sd"]) if pc else "-")
        rows.append(row)
    lines += _table(head, rows)
    lines += ["", "![per-category AP](plots/per_category.png)", "", "## Aliases", ""]
    head = ["strategy", "category", "seed", "alias", "tokens", "AP", "name AP", "vs name", "cost"]
    rows = []
    for c in sorted(results["cells"], key=lambda c: (order.index(c["strategy"]), str(c["category_id"]), c["seed"])):
        text = "(soft prompt)" if c["strategy"] == "soft" else (repr(c["text"]) if c["text"] is not None else "-")
        rows.append(
            [
                f"`{c['strategy']}`",
                str(c["category_id"]),
                str(c["seed"]),
                text.replace("|", "\\|"),
                str(c["token_ids"]) if c["token_ids"] else "-",
                fmt(c["ap"]),
                fmt(c["name_ap"]),
                compare(num(c["ap"]), num(c["name_ap"]), summ["margin"]),
                str(c["cost"]),
            ]
        )
    lines += _table(head, rows)
    lines += ["", "![alias vs name](plots/alias_vs_name.png)", ""]
    return "\n".join(lines)


def write_report(out: str | Path, results: dict) -> Path:
    """Write ``out/report.md`` and ``out/plots/*.png`` (atomically); returns the Markdown path."""
    out = Path(out)
    plot_ap_vs_cost(results, out / "plots" / PLOTS[0])
    plot_per_category(results, out / "plots" / PLOTS[1])
    plot_alias_vs_name(results, out / "plots" / PLOTS[2])
    path = out / "report.md"
    tmp = path.with_name(".report.md.tmp")
    tmp.write_text(markdown(results), encoding="utf-8")
    os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m alias_opt.report", description=__doc__.split("\n\n")[0])
    p.add_argument("folder", metavar="DIR", help="a comparison's output folder (holding results.json)")
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
    print(f"wrote {write_report(args.folder, results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
