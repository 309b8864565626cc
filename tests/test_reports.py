"""Reports that explain themselves: quoted aliases that line up, legends, bootstrap verdicts with
their intervals, evaluate.py --oracle and --figures, and the run's progress line."""

from __future__ import annotations

import json

import pytest
from PIL import Image

import evaluate
from alias_opt.eval.metrics import PromptMetrics
from alias_opt.eval.summary import format_table, summarize
from alias_opt.eval.text import align, quote
from alias_opt.export import AliasFile, AliasRecord
from alias_opt.progress import RunProgress, time_report
from alias_opt.search.objective import Step
from tests.coco_synth import write_shapes_dataset

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools.*")


def test_quote_escapes_what_would_shift_a_column():
    assert quote("red circle") == '"red circle"'
    assert quote("a\tb") == '"a\\x09b"' and quote('say "x"\\') == '"say \\"x\\"\\\\"'
    assert quote("\U0001f600 ok") == '"\\U0001f600 ok"'  # wide emoji
    assert quote("e\u0301") == '"e\\u0301"'  # combining accent (zero width)
    assert quote("caf\u00e9") == '"caf\u00e9"'  # a one-column accented letter stays
    assert quote("x" * 50, 12) == '"xxxxxxx..."' and len(quote("x" * 50, 12)) == 12
    lines = align(("a", "b"), [(quote("\U0001f600\U0001f600"), "1"), (quote("plain"), "22")])
    assert len({len(x) for x in lines}) == 1  # every row as wide as the header


def _metrics(ap: float) -> PromptMetrics:
    return PromptMetrics(ap, ap, 0.5, 0.5, 0.5, 0.5, 0.0, 3, 2, 4)


def test_summary_uses_the_bootstrap_verdict_and_shows_its_interval():
    interval = {"diff": 0.3, "low": -0.05, "high": 0.6, "level": 0.95, "resamples": 1000}
    recs = [
        AliasRecord(1, "crimson disc", [1], "red \U0001f600", True, "s", test_metrics=_metrics(0.5),
                    baseline_test_metrics=_metrics(0.2), extra={"vs_name": "tie", "vs_name_interval": interval}),
        AliasRecord(2, "old", [2], "blue", True, "s", test_metrics=_metrics(0.5),
                    baseline_test_metrics=_metrics(0.2)),  # written before the bootstrap
    ]  # fmt: skip
    s = summarize(AliasFile(aliases=recs))
    assert s["win"] == 1 and s["tie"] == 1  # a +0.3 whose interval holds 0 is a tie, not a win
    assert s["rows"][0]["vs_name_interval"] == interval and s["verdict"]["fixed_margin_fallback"] == 1
    table = format_table(AliasFile(aliases=recs))
    assert "+0.300 [-0.050, +0.600]" in table and "95% paired bootstrap" in table
    assert '"red \\U0001f600"' in table and "win*" in table and "fixed AP margin" in table
    rows = table.splitlines()[:4]
    assert len({len(r.rstrip()) for r in rows[:2]}) == 1  # header and rule line up
    for col in ("AP oracle", "search s", "images", "AP diff"):
        assert any(line.strip().startswith(col) for line in table.splitlines()), col  # a legend line each


def test_evaluate_oracle_alias_set_and_figures(tmp_path, capsys):
    root = tmp_path / "shapes"
    write_shapes_dataset(root, n_images=6, names=("red square", "blue circle", None))
    data = json.loads((root / "annotations.json").read_text())
    data["categories"][0]["oracle_name"] = ["red", "square"]  # an alias set
    data["categories"][1]["oracle_name"] = "blue circle"
    (root / "annotations.json").write_text(json.dumps(data))
    out, figs = tmp_path / "r.json", tmp_path / "figs"
    args = ["--dataset", str(root), "--split", "all", "--oracle", "--figures", str(figs), "--json", str(out)]
    args += ["--model", "random:tiny", "--device", "cpu", "--no-progress", "--cache-dir", str(tmp_path / "c")]
    assert evaluate.main([*args, "--resamples", "50"]) == 0
    printed = capsys.readouterr().out
    assert "oracle (report only)" in printed and "columns:" in printed and "AP diff" in printed
    report = json.loads(out.read_text())
    cats = {c["category_id"]: c for c in report["categories"]}
    oracle = [p for p in cats[1]["prompts"] if p["kind"] == "oracle"][0]
    assert oracle["text"] == "red | square" and len(oracle["parts"]) == 2
    assert oracle["vs_name"] in ("win", "tie", "loss", "n/a")
    if oracle["vs_name"] != "n/a":
        assert oracle["interval"]["level"] == 0.95 and oracle["interval"]["resamples"] <= 50
    assert report["level"] == 0.95 and report["resamples"] == 50
    assert report["summary"]["oracle"]["n"] == 2
    for cid in (1, 2):  # categories with prompts; 3 is nameless without --prompt: nothing to draw
        png = figs / f"{cid}.png"
        assert png.is_file() and Image.open(png).size[0] > 400
    assert f"wrote 2 figure(s) to {figs}" in printed


class _Bar:
    total = 3

    def __init__(self):
        self.shown: list[str] = []

    def set_postfix_str(self, s, refresh=True):
        self.shown.append(s)


def test_progress_line_shows_phase_passes_best_and_an_eta_in_passes():
    bar = _Bar()
    prog = RunProgress(bar, 3, budget=1000, every=0.0)
    prog.start(7, "crimson disc")
    writer_rows = []
    on_step = prog.tee(writer_rows.append)
    on_step(Step("pez", 3, 0.9, 0.42, [1], 200, 50, 1.0))
    assert len(writer_rows) == 1
    line = bar.shown[-1]
    assert "7 crimson disc" in line and "pez" in line and "300/1,000 passes" in line and "0.4200" in line
    assert "ETA" in line and "first category" not in line  # with a budget the cost to come is known
    prog.finish("7: done")
    assert prog.left == 2 and prog.costs == [300]
    prog.timings["search"] = 10.0
    text = time_report(prog.timings, 12.0)
    assert text.startswith("wall time 12s") and "search 10s" in text and "other" in text
    no_budget = RunProgress(_Bar(), 2)
    no_budget.start(1, None)
    assert "ETA after the first category" in no_budget.bar.shown[-1]


def test_alias_schema_documents_every_key_written(tmp_path):
    from alias_opt.export import SCHEMA_FILE, SCHEMA_ID, Provenance, read_aliases, to_dict, write_aliases

    schema = json.loads(SCHEMA_FILE.read_text())
    rec = AliasRecord(1, "x", [320], "a", True, "s", test_metrics=_metrics(0.5), extra={"vs_name": "tie"})
    f = AliasFile(provenance=Provenance(), aliases=[rec])
    data = to_dict(f)
    assert data["$schema"] == SCHEMA_ID and SCHEMA_FILE.as_posix().endswith(SCHEMA_ID)
    assert set(data) <= set(schema["properties"]) and set(schema["required"]) <= set(data)
    assert set(data["provenance"]) <= set(schema["properties"]["provenance"]["properties"])
    record = schema["$defs"]["record"]
    assert set(data["aliases"][0]) <= set(record["properties"]) and set(record["required"]) <= set(data["aliases"][0])
    assert set(data["aliases"][0]["test_metrics"]) <= set(schema["$defs"]["metrics"]["properties"])
    write_aliases(tmp_path / "a.json", f)
    assert json.loads((tmp_path / "a.json").read_text())["$schema"] == SCHEMA_ID
    assert read_aliases(tmp_path / "a.json").aliases[0].text == "a"  # "$schema" is read back fine
