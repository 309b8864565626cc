"""The comparison report: hand-made cells with known numbers -> summary -> Markdown tables and PNGs
whose numbers are the JSON's."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from PIL import Image

from alias_opt.compare.records import Cell
from alias_opt.compare.report import LEARNING, PLOTS, interval_text, main, markdown, write_report
from alias_opt.compare.summary import fmt, summarize


def _cell(strategy, cid, seed, ap, name_ap, cost, alias_ap=None, text="blue tile"):
    curve = [
        {"fraction": f, "budget": int(f * 800), "token_ids": [5], "ap": None if f < 0.2 else ap * f}
        for f in (0.125, 0.25, 0.5)
    ]
    curve.append({"fraction": 1.0, "budget": 800, "token_ids": [5, 6], "ap": ap})
    return {
        "strategy": strategy,
        "category_id": cid,
        "category_name": f"cat{cid}",
        "seed": seed,
        "budget": 800,
        "token_ids": [5, 6],
        "text": text,
        "train_loss": 1.0 - ap,
        "train_ap": ap + 0.1,
        "alias_ap": ap if alias_ap is None else alias_ap,
        "ap": ap,
        "ap50": min(1.0, ap + 0.2),
        "test_metrics": None,
        "name_ap": name_ap,
        "forward_passes": cost,
        "backward_passes": 0,
        "cost": cost,
        "wall_time": cost / 100,
        "ms_per_pair": 10.0,
        "curve": curve,
    }


@pytest.fixture()
def results():
    names = {1: 0.30, 2: 0.10, 3: None}  # category 3 is nameless: no baseline
    aps = {  # strategy -> category -> per-seed APs
        "soft": {1: [0.60, 0.62], 2: [0.50, 0.40], 3: [0.20, 0.30]},
        "pez+evolution": {1: [0.45, 0.305], 2: [0.30, 0.10], 3: [0.20, 0.25]},
        "random": {1: [0.10, 0.20], 2: [0.105, 0.095], 3: [0.0, 0.05]},
    }
    cells = []
    for s, per in aps.items():
        for cid, vals in per.items():
            for seed, ap in enumerate(vals):
                alias = ap - 0.1 if s == "soft" else None
                cells.append(_cell(s, cid, seed, ap, names[cid], 790 + seed, alias, text=f"{s}-{cid}"))
    cats = {
        str(c): {
            "category_id": c,
            "name": f"cat{c}" if names[c] is not None else None,
            "name_ap": names[c],
            "oracle_ap": 0.7,
        }
        for c in names
    }
    setup = {
        "strategies": list(aps),
        "seeds": [0, 1],
        "budget": 800,
        "dataset_path": "/d/annotations.json",
        "split_seed": 0,
        "model": "toy",
        "model_fingerprint": "abc",
        "command": "python -m alias_opt.compare x",
    }
    res = {"setup": setup, "categories": cats, "cells": cells}
    res["summary"] = summarize(res)
    return res


def test_summary_numbers(results):
    s = results["summary"]["strategies"]
    # pez+evolution: seed 0 mean (0.45+0.30+0.20)/3, seed 1 mean (0.305+0.10+0.25)/3
    m0, m1 = (0.45 + 0.30 + 0.20) / 3, (0.305 + 0.10 + 0.25) / 3
    assert s["pez+evolution"]["ap_mean"] == pytest.approx((m0 + m1) / 2)
    assert s["pez+evolution"]["ap_sd"] == pytest.approx(np.std([m0, m1], ddof=1))
    # vs name: cat1 0.45 win, 0.305 tie (within 0.01); cat2 0.30 win, 0.10 tie; cat3 no name
    assert (s["pez+evolution"]["win"], s["pez+evolution"]["tie"], s["pez+evolution"]["loss"]) == (2, 2, 0)
    assert s["pez+evolution"]["no_baseline"] == 2
    assert (s["random"]["win"], s["random"]["tie"], s["random"]["loss"]) == (0, 2, 2)
    gaps = [0.60 - 0.45, 0.62 - 0.305, 0.50 - 0.30, 0.40 - 0.10, 0.20 - 0.20, 0.30 - 0.25]
    assert s["pez+evolution"]["gap_to_soft"] == pytest.approx(np.mean(gaps))
    assert s["soft"]["gap_to_soft"] == pytest.approx(0.1)  # its own projection: 0.1 lower everywhere
    assert s["random"]["categories"]["1"]["ap_sd"] == pytest.approx(np.std([0.1, 0.2], ddof=1))
    assert s["random"]["cost"] == pytest.approx(790.5)
    curve = s["soft"]["curve"]
    assert math.isnan(curve[0]["ap_mean"]) and curve[-1]["ap_mean"] == pytest.approx(s["soft"]["ap_mean"])
    assert results["summary"]["name_ap_mean"] == pytest.approx(0.2)


def _row(md: str, first_cell: str, after: str) -> list[str]:
    """Cells of the first table row starting with ``first_cell`` below the line ``after``."""
    tail = md[md.index(after) :]
    line = next(x for x in tail.splitlines() if x.startswith(f"| {first_cell} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_markdown_numbers_match_the_json(results, tmp_path):
    path = write_report(tmp_path, results)  # the dataset /d is not there: no mask figure, the rest drawn
    md = path.read_text()
    assert md == markdown(results, aliases_figure=False) and "plots/aliases.png" not in md
    summ = results["summary"]
    for s in summ["order"]:
        r = summ["strategies"][s]
        row = _row(md, f"`{s}`", "## Summary")
        assert row[1] == f"{fmt(r['ap_mean'])} ± {fmt(r['ap_sd'])}"
        assert row[3] == f"{r['diff_mean']:+.3f}" and row[4] == f"{r['win']}/{r['tie']}/{r['loss']}"
        assert row[5] == fmt(r["gap_to_soft"]) and row[9] == fmt(r["cost"], 0)
        curve = _row(md, f"`{s}`", "## Held-out AP by budget spent")
        assert curve[1:] == [f"{fmt(p['ap_mean'])} ± {fmt(p['ap_sd'])}" for p in r["curve"]]
    cat = _row(md, "3 (nameless)", "## Per category")
    assert cat[1] == "-"  # no name, no baseline
    pe = summ["strategies"]["pez+evolution"]["categories"]["3"]
    assert cat[3 + summ["order"].index("pez+evolution")] == f"{fmt(pe['ap_mean'])} ± {fmt(pe['ap_sd'])}"
    assert '"random-2"' in md and "(soft prompt)" in md and "`python -m alias_opt.compare x`" in md
    aliases = md[md.index("## Aliases") :]
    assert len(re.findall(r"^\| `", aliases, flags=re.M)) == len(results["cells"])
    # a legend line per column under every table
    for section, n_cols in (("## Summary", 12), ("## Per category", 3 + 3), ("## Aliases", 10)):
        tail = md[md.index(section) :].split("\n\n")
        table = next(t for t in tail if t.startswith("|"))
        legend = tail[tail.index(table) + 1].splitlines()
        assert len(table.splitlines()[0].split(" | ")) == n_cols == len(legend)
        assert all(x.startswith("- **") for x in legend)
    for name in (*PLOTS, LEARNING):
        assert f"plots/{name}" in md
        with Image.open(tmp_path / "plots" / name) as im:
            assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 300
            assert len(im.convert("L").getcolors(1 << 20)) > 20  # not blank
    assert not list(tmp_path.rglob("*.tmp*"))


def test_report_from_json_on_disk(results, tmp_path, capsys):
    from alias_opt.export import write_json_atomic

    write_json_atomic(tmp_path / "results.json", results)  # NaN -> null on disk
    assert main([str(tmp_path)]) == 0
    md = (tmp_path / "report.md").read_text()
    assert md == markdown(json.loads((tmp_path / "results.json").read_text()), aliases_figure=False)
    assert "| `soft` |" in md
    assert main([str(tmp_path / "missing")]) == 2
    assert "run python -m alias_opt.compare first" in capsys.readouterr().err


def test_bootstrap_interval_is_the_verdict(results):
    """A cell with a bootstrap interval is judged by it, not by the AP margin, and the tables show it."""
    cells = [dict(c) for c in results["cells"]]
    assert (cells[2]["strategy"], cells[2]["category_id"], cells[2]["seed"]) == ("soft", 2, 0)  # AP 0.50 vs 0.10
    iv = {"level": 0.9, "resamples": 990}
    cells[2].update(vs_name="tie", vs_name_interval={**iv, "diff": 0.4, "low": -0.1, "high": 0.9})  # margin: win
    cells[3].update(vs_name="win", vs_name_interval={**iv, "diff": 0.3, "low": 0.05, "high": 0.6})
    assert interval_text(Cell.from_dict(cells[2])) == "+0.400 [-0.100, +0.900]"
    assert interval_text(Cell.from_dict(cells[0])) == "+0.300"  # no interval: the difference only
    res = {**results, "cells": cells}
    res["summary"] = summarize(res)
    soft = res["summary"]["strategies"]["soft"]
    assert res["summary"]["level"] == 0.9
    # cat 1: two margin wins (no interval); cat 2: tie and win by their intervals; cat 3: nameless
    assert (soft["win"], soft["tie"], soft["loss"], soft["no_baseline"]) == (3, 1, 0, 2)
    assert soft["categories"]["2"]["win"] == 1 and soft["categories"]["2"]["tie"] == 1
    md = markdown(res, figures=False)
    line = next(x for x in md.splitlines() if x.startswith("| `soft` | 2 | 0 |"))
    assert [c.strip() for c in line.strip("|").split("|")][7:9] == ["+0.400 [-0.100, +0.900]", "tie"]
    assert "90% paired bootstrap interval" in md and "ΔAP [90%]" in md and "![" not in md
    assert "1000 resamples drawn; 990-990 of them held a target" in md
