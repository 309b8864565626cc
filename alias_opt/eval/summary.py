"""The held-out summary of a discovery run: win/tie/loss vs the name, oracle ratios, the table."""

from __future__ import annotations

import math

import numpy as np

from alias_opt.eval.metrics import PromptMetrics, compare
from alias_opt.export import AliasFile


def _ap(m: PromptMetrics | dict | None) -> float:
    if m is None:
        return math.nan
    v = m.get("ap") if isinstance(m, dict) else m.ap
    return math.nan if v is None else float(v)


def summarize(f: AliasFile, margin: float = 0.01, ratio: float = 0.9) -> dict:
    """Win/tie/loss vs the name, the oracle ratio and mean APs on the held-out split."""
    rows = []
    for r in f.aliases:
        a, n, o = _ap(r.test_metrics), _ap(r.baseline_test_metrics), _ap(r.extra.get("oracle_test_metrics"))
        rows.append(
            {
                "category_id": r.category_id,
                "name": r.category_name,
                "alias": r.text,
                "token_ids": r.token_ids,
                "alias_ap": a,
                "name_ap": n,
                "oracle_ap": o,
                "vs_name": compare(a, n, margin) if not (math.isnan(a) or math.isnan(n)) else "n/a",
                "oracle_ratio": a / o if o and not math.isnan(o) and o > 0 else math.nan,
                "forward_passes": r.extra.get("forward_passes"),
                "wall_time": r.extra.get("wall_time"),
            }
        )

    def mean(key: str) -> float:
        v = [x[key] for x in rows if not math.isnan(x[key])]
        return float(np.mean(v)) if v else math.nan

    n = len(rows)
    with_o = [x for x in rows if not math.isnan(x["oracle_ratio"])]
    return {
        "categories": n,
        "win": sum(x["vs_name"] == "win" for x in rows),
        "tie": sum(x["vs_name"] == "tie" for x in rows),
        "loss": sum(x["vs_name"] == "loss" for x in rows),
        "no_baseline": sum(x["vs_name"] == "n/a" for x in rows),
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


def format_table(f: AliasFile) -> str:
    """The held-out table: one row per category."""
    head = ("id", "name", "alias", "AP alias", "AP name", "AP oracle", "alias/oracle", "vs name", "s")
    rows = []
    for x in summarize(f)["rows"]:
        rows.append(
            (
                str(x["category_id"]),
                (x["name"] or "(none)")[:24],
                repr(x["alias"])[:28],
                _f(x["alias_ap"]),
                _f(x["name_ap"]),
                _f(x["oracle_ap"]),
                _f(x["oracle_ratio"]),
                x["vs_name"],
                f"{x['wall_time'] or 0:.0f}",
            )
        )
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    line = lambda r: "  ".join(v.ljust(w) if i < 3 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([line(head), "  ".join("-" * w for w in widths), *map(line, rows)])


def format_summary(s: dict) -> str:
    n = s["categories"]
    parts = [
        f"held-out: alias beats name in {s['win']}/{n} (tie {s['tie']}, loss {s['loss']}"
        + (f", no name {s['no_baseline']}" if s["no_baseline"] else "")
        + ")",
        f"mean AP alias {_f(s['mean_alias_ap'])}, name {_f(s['mean_name_ap'])}, oracle {_f(s['mean_oracle_ap'])}",
    ]
    if s["with_oracle"]:
        key = next(k for k in s if k.startswith("oracle_ratio_ge_"))
        parts.append(f"alias >= {key.rsplit('_', 1)[1]} x oracle AP in {s[key]}/{s['with_oracle']}")
    parts.append(f"search time {s['wall_time']:.0f} s")
    return " | ".join(parts)
