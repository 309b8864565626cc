"""The held-out summary of a discovery run: win/tie/loss vs the name (a paired bootstrap interval of
the AP difference over the held-out images), oracle ratios, the tables and the figures.

``write_reports`` writes what ``main.py`` leaves in its output folder besides the alias files:
``figures/<category>.png`` (from the saved held-out predictions, never a second model pass),
``report.txt`` (the table, a legend line per column, the summary) and ``report.md`` (the same with
the figures embedded).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from alias_opt.eval.bootstrap import LEVEL, RESAMPLES, BootstrapDiff
from alias_opt.eval.metrics import PromptMetrics, compare
from alias_opt.eval.text import align, quote
from alias_opt.export import AliasFile

logger = logging.getLogger(__name__)


def _ap(m: PromptMetrics | dict | None) -> float:
    if m is None:
        return math.nan
    v = m.get("ap") if isinstance(m, dict) else m.ap
    return math.nan if v is None else float(v)


def _verdict(extra: dict, a: float, n: float, margin: float) -> tuple[str, dict | None]:
    """The record's bootstrap verdict and interval; a record written before the bootstrap keeps the
    old fixed-margin verdict (interval None)."""
    if math.isnan(a) or math.isnan(n):
        return "n/a", None
    if "vs_name_interval" in extra:
        return extra.get("vs_name", "n/a"), extra["vs_name_interval"]
    return compare(a, n, margin), None


def _wall_time(extra: dict) -> float | None:
    """The category's search seconds: the single-alias search and the alias-set searches after it."""
    t = extra.get("wall_time")
    sets = (extra.get("alias_set_search") or {}).get("set_wall_time")
    return t if sets is None or t is None else t + sets


def summarize(f: AliasFile, margin: float = 0.01, ratio: float = 0.9) -> dict:
    """Win/tie/loss vs the name, the oracle ratio and mean APs on the held-out split.

    A verdict is the paired bootstrap's (``extra["vs_name_interval"]``, written by discovery); only
    records from before it fall back to a fixed ``margin``."""
    rows = []
    for r in f.aliases:
        a, n, o = _ap(r.test_metrics), _ap(r.baseline_test_metrics), _ap(r.extra.get("oracle_test_metrics"))
        verdict, interval = _verdict(r.extra, a, n, margin)
        members = r.members()
        rows.append(
            {
                "category_id": r.category_id,
                "name": r.category_name,
                "alias": r.set_text,
                "token_ids": r.token_ids,
                "n_aliases": len(members),
                "single_ap": _ap(members[0].test_metrics),  # the set's first alias alone (= alias_ap for one)
                "alias_ap": a,
                "name_ap": n,
                "oracle_ap": o,
                "oracle_text": r.extra.get("oracle_text"),
                "vs_name": verdict,
                "vs_name_interval": interval,
                "oracle_vs_name": r.extra.get("oracle_vs_name"),  # the oracle's own verdict (None: not recorded)
                "oracle_ratio": a / o if o and not math.isnan(o) and o > 0 else math.nan,
                "n_test_images": None
                if r.test_metrics is None
                else [r.test_metrics.n_pos_images, r.test_metrics.n_neg_images],
                "forward_passes": r.extra.get("forward_passes"),
                "wall_time": _wall_time(r.extra),
            }
        )

    def mean(key: str) -> float:
        v = [x[key] for x in rows if not math.isnan(x[key])]
        return float(np.mean(v)) if v else math.nan

    n = len(rows)
    with_o = [x for x in rows if not math.isnan(x["oracle_ratio"])]
    sets = [x for x in rows if x["n_aliases"] > 1]
    levels = {x["vs_name_interval"]["level"] for x in rows if x["vs_name_interval"]}
    resamples = {x["vs_name_interval"]["resamples"] for x in rows if x["vs_name_interval"]}
    return {
        "categories": n,
        "win": sum(x["vs_name"] == "win" for x in rows),
        "tie": sum(x["vs_name"] == "tie" for x in rows),
        "loss": sum(x["vs_name"] == "loss" for x in rows),
        "no_baseline": sum(x["vs_name"] == "n/a" for x in rows),
        "verdict": {
            "rule": "paired bootstrap over held-out images: win / loss when the interval of AP(alias) - AP(name) "
            "lies above / below 0, else tie",
            "level": max(levels) if levels else LEVEL,
            "resamples": max(resamples) if resamples else RESAMPLES,
            "fixed_margin_fallback": sum(
                1 for x in rows if x["vs_name"] != "n/a" and x["vs_name_interval"] is None
            ),  # records from before the bootstrap
        },
        "alias_sets": len(sets),  # records answered by more than one alias
        "set_beats_single": sum(x["alias_ap"] > x["single_ap"] for x in sets),  # held out, vs its first alias
        "mean_alias_ap": mean("alias_ap"),
        "mean_name_ap": mean("name_ap"),
        "mean_oracle_ap": mean("oracle_ap"),
        f"oracle_ratio_ge_{ratio}": sum(x["oracle_ratio"] >= ratio for x in with_o),
        "with_oracle": len(with_o),
        "wall_time": float(np.nansum([x["wall_time"] or 0 for x in rows])),
        "rows": rows,
    }


def _f(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


HEAD = (
    "id",
    "name",
    "alias",
    "AP single",
    "images",
    "AP alias",
    "AP name",
    "AP oracle",
    "alias/oracle",
    "vs name",
    "AP diff [interval]",
    "search s",
)


def _rows(s: dict) -> list[tuple[str, ...]]:
    out = []
    for x in s["rows"]:
        ci = BootstrapDiff.from_dict(x["vs_name_interval"]).short() if x["vs_name_interval"] else ""
        imgs = "-" if not x["n_test_images"] else f"{x['n_test_images'][0]}+{x['n_test_images'][1]}"
        out.append(
            (
                str(x["category_id"]),
                quote(x["name"], 26) if x["name"] is not None else "(none)",
                quote(x["alias"], 32),
                _f(x["single_ap"]) if x.get("n_aliases", 1) > 1 else "",
                imgs,
                _f(x["alias_ap"]),
                _f(x["name_ap"]),
                _f(x["oracle_ap"]),
                _f(x["oracle_ratio"]),
                x["vs_name"] + ("*" if x["vs_name"] != "n/a" and not x["vs_name_interval"] else ""),
                ci,
                f"{x['wall_time'] or 0:.0f}",
            )
        )
    return out


def legend(s: dict) -> list[str]:
    """One line per column of ``format_table``."""
    v = s["verdict"]
    lines = [
        "columns:",
        "  id, name      the category id and its dataset name (quoted; non-printable and wide characters escaped)",
        "  alias         the discovered alias, decoded from its token ids (aliases.json holds the ids), quoted;",
        "                a | b: an alias set, detections merged (kept only where it beat its first alias on train)",
        "  AP single     for an alias set: the held-out AP of its first alias alone (the best single alias on train)",
        "  images        held-out (test split) images scored: with targets + without (negatives)",
        "  AP alias      COCO mask AP@[.5:.95] (pycocotools COCOeval, segm), 0..1, of the alias on the held-out images",
        "  AP name       the same for the category name as the prompt (the baseline)",
        "  AP oracle     the same for the dataset's oracle_name (best phrase; report only, never used by the search)",
        "  alias/oracle  AP alias / AP oracle",
        f"  vs name       win / loss when the {v['level']:.0%} paired bootstrap interval of AP alias - AP name "
        f"({v['resamples']} resamples of the held-out images) lies above / below 0, else tie; n/a without a name",
        "  AP diff       AP alias - AP name on the held-out images, then that interval [low, high]",
        "  search s      wall seconds of the category's search, alias-set searches included (train split; encoding "
        "and held-out scoring apart)",
    ]
    if v["fixed_margin_fallback"]:
        lines.append("  *             record written before the bootstrap: verdict by a fixed AP margin of 0.01")
    return lines


def format_table(f: AliasFile, s: dict | None = None) -> str:
    """The held-out table: one row per category, then a legend line per column."""
    s = s or summarize(f)
    return "\n".join([*align(HEAD, _rows(s), left=3), "", *legend(s)])


def format_summary(s: dict) -> str:
    n = s["categories"]
    level = s.get("verdict", {}).get("level", LEVEL)
    parts = [
        f"held-out: alias beats name in {s['win']}/{n} (tie {s['tie']}, loss {s['loss']}"
        + (f", no name {s['no_baseline']}" if s["no_baseline"] else "")
        + f"; {level:.0%} paired bootstrap)",
        f"mean AP alias {_f(s['mean_alias_ap'])}, name {_f(s['mean_name_ap'])}, oracle {_f(s['mean_oracle_ap'])}",
    ]
    if s["with_oracle"]:
        key = next(k for k in s if k.startswith("oracle_ratio_ge_"))
        parts.append(f"alias >= {key.rsplit('_', 1)[1]} x oracle AP in {s[key]}/{s['with_oracle']}")
    if s.get("alias_sets"):
        parts.append(
            f"alias sets in {s['alias_sets']}/{n}, beating their first alias held out in {s['set_beats_single']}"
        )
    parts.append(f"search time {s['wall_time']:.0f} s")
    return " | ".join(parts)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def format_markdown(f: AliasFile, s: dict, figures: Mapping[int, str]) -> str:
    """report.md: the summary, the table and its legend, and each category's figure."""
    lines = ["# Alias discovery report", "", format_summary(s), ""]
    lines += ["| " + " | ".join(HEAD) + " |", "|" + "|".join("---" for _ in HEAD) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in _rows(s)]
    lines += ["", *[f"{x}  " for x in legend(s)], ""]
    if figures:
        lines += ["## Held-out masks", ""]
        lines.append(
            "Per category: a few held-out images (with and without targets); the target masks, then the "
            "detections of the name, the alias (and the oracle phrase, report only) above the score threshold, "
            "each with its score; the panel titles give the image's AP."
        )
        lines.append("")
        for x in s["rows"]:
            rel = figures.get(x["category_id"])
            if rel:
                name = quote(x["name"]) if x["name"] is not None else "(nameless)"
                lines += [f"### {x['category_id']} {_md_cell(name)}", "", f"![category {x['category_id']}]({rel})", ""]
    return "\n".join(lines) + "\n"


def draw_run_figures(out: Path, sets: Mapping, score: float, n: int = 6) -> dict[int, str]:
    """``figures/<id>.png`` for every category with saved held-out predictions (``predictions/<id>.json``);
    category id -> the PNG's path relative to ``out``."""
    from alias_opt.eval.figures import draw_category, load_predictions

    drawn: dict[int, str] = {}
    for cid, ts in sets.items():
        src = out / "predictions" / f"{cid}.json"
        if not src.is_file():
            continue
        try:
            data = load_predictions(src)
            by_id = {im.image.image_id: im for im in ts.test}
            images = [by_id[i] for i in data["image_ids"]]
        except (OSError, ValueError, KeyError) as exc:
            logger.warning("no figure for category %s: %s (%s)", cid, src, exc)
            continue
        prompts = [
            (p["label"], [row["pred"] for row in p["images"]], [row["ap"] for row in p["images"]])
            for p in data["prompts"]
        ]
        name = quote(ts.name) if ts.name is not None else "(nameless)"
        title = f"category {cid} {name}: held-out images (score > {data.get('score_threshold', score):g})"
        path = draw_category(out / "figures" / f"{cid}.png", title, images, prompts, score, n)
        if path is not None:
            drawn[cid] = f"figures/{cid}.png"
    return drawn


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_reports(out: Path, f: AliasFile, s: dict, sets: Mapping, score: float, figures: bool = True) -> None:
    """figures/ (unless ``figures`` is False), report.txt and report.md in ``out``."""
    drawn = draw_run_figures(out, sets, score) if figures else {}
    _write_text(out / "report.txt", format_table(f, s) + "\n\n" + format_summary(s) + "\n")
    _write_text(out / "report.md", format_markdown(f, s, drawn))
