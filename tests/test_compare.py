"""The comparison runner: equal budgets and splits, per-cell checkpoints and resume, the summary's
numbers, soft prompts reproducible through the backend, and the CLI's errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from alias_opt.compare import CompareSetup, ResumeMismatch, load_soft_prompt, main, parse_list, run_comparison
from alias_opt.compare.cells import soft_score_sum
from alias_opt.compare.records import Cell, Shown
from alias_opt.compare.summary import nanmean, sd
from alias_opt.config import load_config
from alias_opt.data.loader import CocoDataset
from alias_opt.eval.predict import predict
from alias_opt.search.soft_prompt import soft_metrics

BUDGET = 400
STRATEGIES = ["soft", "random", "pez+evolution"]
TINY = {
    "max_len": 2,
    "scan_size": 8,
    "rerank": 2,
    "max_negatives": 4,
    "index": {"shortlist": 10, "probe_rounds": 1, "pool": 20, "neighbours": 0},  # as configs/compare.json
    "soft": {"restarts": 2, "steps": 3, "batch_images": 4, "eval_every": 2},
    "evolution": {"population": 8, "generations": 2, "shortlist_pairs": 3},
    "options": {"random_batch": 8},
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from tests.discovery_helpers import renamed_world

    return renamed_world(tmp_path_factory.mktemp("world"), 2)


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    c = load_config(overrides=TINY)
    c.index.cache_dir = str(tmp_path_factory.mktemp("index"))
    return c


@pytest.fixture(scope="module")
def first_run(world, cfg, tiny_backend, tmp_path_factory):
    data, cats = world
    out = tmp_path_factory.mktemp("cmp")
    setup = CompareSetup(str(data), "random:tiny", STRATEGIES, BUDGET, [0, 1], cats)
    results = run_comparison(setup, cfg, out, backend=tiny_backend, progress=False, report=False)
    return out, setup, results


def test_every_cell_gets_the_same_budget_and_split(first_run, world):
    out, setup, results = first_run
    data, cats = world
    cells = results["cells"]
    assert len(cells) == len(STRATEGIES) * len(cats) * 2
    assert {(c["strategy"], c["category_id"], c["seed"]) for c in cells} == {
        (s, c, k) for s in STRATEGIES for c in cats for k in (0, 1)
    }
    for c in cells:
        assert 0.9 * BUDGET <= c["cost"] <= BUDGET and c["budget"] == BUDGET
        assert c["cost"] == c["forward_passes"] + 2 * c["backward_passes"]
        assert c["wall_time"] > 0 and c["token_ids"] and 1 <= len(c["token_ids"]) <= 2
        assert [p["budget"] for p in c["curve"]] == [50, 100, 200, 400]
        assert c["curve"][-1]["ap"] == c["ap"]
        assert (out / "cells" / c["strategy"].replace("+", "_") / f"{c['category_id']}-seed{c['seed']}.json").is_file()
    # one split for all cells: the categories' images are the dataset's split for --split-seed
    ds = CocoDataset.open(data)
    for ts in ds.target_sets(seed=0, max_negatives=4, categories=cats):
        info = results["categories"][str(ts.category_id)]
        assert info["n_train"] == len(ts.train) and info["n_test"] == len(ts.test)
    assert not list(out.rglob("*.tmp"))


def test_summary_numbers_follow_from_the_cells(first_run):
    _, _, results = first_run
    summ, cells = results["summary"], results["cells"]
    assert summ["order"] == STRATEGIES
    for s in STRATEGIES:
        mine = [c for c in cells if c["strategy"] == s]
        per_seed = [np.mean([c["ap"] for c in mine if c["seed"] == k]) for k in (0, 1)]
        r = summ["strategies"][s]
        assert r["ap_mean"] == pytest.approx(np.mean(per_seed))
        assert r["ap_sd"] == pytest.approx(np.std(per_seed, ddof=1))
        verdicts = [c["vs_name"] for c in mine]  # each cell's paired bootstrap verdict
        assert (r["win"], r["tie"], r["loss"]) == tuple(verdicts.count(v) for v in ("win", "tie", "loss"))
        for c in mine:
            iv = c["vs_name_interval"]
            assert iv["level"] == 0.95 and iv["diff"] == pytest.approx(c["ap"] - c["name_ap"])
            assert iv["low"] <= iv["diff"] <= iv["high"]
            assert c["vs_name"] == ("win" if iv["low"] > 0 else "loss" if iv["high"] < 0 else "tie")
        assert r["diff_mean"] == pytest.approx(np.mean([c["ap"] - c["name_ap"] for c in mine]))
        assert r["cost"] == pytest.approx(np.mean([c["cost"] for c in mine]))
        cat = str(mine[0]["category_id"])
        assert r["categories"][cat]["ap_mean"] == pytest.approx(
            np.mean([c["ap"] for c in mine if str(c["category_id"]) == cat])
        )
    soft = {(c["category_id"], c["seed"]): c["ap"] for c in cells if c["strategy"] == "soft"}
    rnd = [c for c in cells if c["strategy"] == "random"]
    gaps = [soft[(c["category_id"], c["seed"])] - c["ap"] for c in rnd]
    assert summ["strategies"]["random"]["gap_to_soft"] == pytest.approx(np.mean(gaps))
    own = [c["ap"] - c["alias_ap"] for c in cells if c["strategy"] == "soft"]
    assert summ["strategies"]["soft"]["gap_to_soft"] == pytest.approx(np.mean(own))
    on_disk = json.loads((first_run[0] / "results.json").read_text())
    assert on_disk["summary"]["strategies"]["random"]["ap_mean"] == pytest.approx(
        summ["strategies"]["random"]["ap_mean"]
    )


def test_soft_prompt_file_reproduces_the_scores(first_run, tiny_backend, world, cfg):
    out, _, results = first_run
    data, _ = world
    for cell in [c for c in results["cells"] if c["strategy"] == "soft"]:
        embeds, mask = load_soft_prompt(out / cell["soft"]["file"])
        assert embeds.dim() == 3 and embeds.shape[0] == 1 and mask.dtype == torch.bool
        assert embeds.shape[1] == int(mask.sum()) and 3 <= embeds.shape[1] <= 4  # SOT + 1..2 soft tokens + EOT
        ts = CocoDataset.open(data).target_sets(seed=0, max_negatives=4, categories=[cell["category_id"]])[0]
        feats = tiny_backend.encode_images([im.image.load() for im in ts.test])
        # the file, fed through the backend, gives the scores the run measured (and its metrics)
        again = soft_score_sum(tiny_backend, embeds, mask, feats)
        assert again > 0 and again == pytest.approx(cell["soft"]["test_score_sum"], rel=1e-6)
        assert soft_metrics(tiny_backend, ts.test, embeds, mask, feats)[0].to_dict() == cell["soft"]["test_metrics"]
        # ... which are not the scores of its projection: the soft prompt is not a token sequence
        ids = torch.tensor([[49406, *cell["token_ids"], 49407]])
        proj = tiny_backend.token_embeddings[ids].float()
        assert soft_score_sum(tiny_backend, proj, torch.ones_like(ids, dtype=torch.bool), feats) != pytest.approx(
            again, rel=1e-6
        )


def test_resume_reuses_cells_and_redoes_changed_ones(first_run, cfg, tiny_backend):
    out, setup, results = first_run
    paths = sorted((out / "cells").rglob("*.json"))
    before = {p: p.read_bytes() for p in paths}
    victim = paths[0]
    victim.unlink()
    again = run_comparison(setup, cfg, out, resume=True, backend=tiny_backend, progress=False, report=False)
    assert all(p.read_bytes() == before[p] for p in paths[1:])  # finished cells were not redone
    assert victim.is_file()
    redone = json.loads(victim.read_text())
    old = json.loads(before[victim])
    assert redone["token_ids"] == old["token_ids"] and redone["cost"] == old["cost"]  # deterministic per seed
    assert [c["ap"] for c in again["cells"]] == pytest.approx([c["ap"] for c in results["cells"]], nan_ok=True)
    # other settings (here the budget): refused before anything is written, the difference listed ...
    small = CompareSetup(setup.dataset, setup.model, ["random"], 300, [0], setup.categories[:1])
    files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(ResumeMismatch, match="budget: 400 there, 300 now") as err:
        run_comparison(small, cfg, out, resume=True, backend=tiny_backend, progress=False, report=False)
    assert "--overwrite" in str(err.value) and f"{len(paths)} finished cells" in str(err.value)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == files
    # ... and redone with --overwrite
    third = run_comparison(
        small, cfg, out, resume=True, overwrite=True, backend=tiny_backend, progress=False, report=False
    )
    assert third["cells"][0]["budget"] == 300 and third["cells"][0]["cost"] <= 300


def test_stats_helpers():
    assert math.isnan(nanmean([None, math.nan])) and nanmean([1, None, 3]) == 2
    assert sd([1.0]) == 0.0 and sd([1.0, 3.0]) == pytest.approx(math.sqrt(2))
    assert parse_list(["1,2", "3"], int) == [1, 2, 3] and parse_list(None) is None


def test_cli_errors(tmp_path, world, capsys):
    data, _ = world
    assert main(["--dataset", str(data), "--output", str(tmp_path), "--strategies", "bogus"]) == 2
    assert "unknown strategy 'bogus'" in capsys.readouterr().err
    assert main(["--dataset", str(data), "--output", str(tmp_path), "--seeds", "a,b"]) == 2
    assert main(["--dataset", str(tmp_path / "none"), "--output", str(tmp_path), "--model", "random:tiny"]) == 2
    assert main(["--dataset", str(data), "--output", str(tmp_path), "--budget", "0"]) == 2
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps({"options": {"nope": 1}}))
    assert main(["--dataset", str(data), "--output", str(tmp_path), "--config", str(cfg)]) == 2
    assert "unknown config key options.'nope'" in capsys.readouterr().err


def test_cli_run_writes_report(tmp_path, world, cfg, monkeypatch):
    data, cats = world
    monkeypatch.setenv("SAM3_ALIAS_CACHE", str(tmp_path / "features"))
    conf = tmp_path / "c.json"
    conf.write_text(json.dumps({**TINY, "index": {**TINY["index"], "cache_dir": cfg.index.cache_dir}}))
    out = tmp_path / "out"
    argv = ["--dataset", str(data), "--output", str(out), "--model", "random:tiny", "--device", "cpu"]
    argv += ["--strategies", "random,scan", "--budget", "300", "--seeds", "3", "--categories", str(cats[0])]
    assert main([*argv, "--config", str(conf), "--no-progress"]) == 0
    names = {p.name for p in (out / "plots").glob("*.png")}
    assert names == {"ap_vs_cost.png", "per_category.png", "alias_vs_name.png", "learning_curve.png", "aliases.png"}
    md = (out / "report.md").read_text()
    assert all(f"(plots/{n})" in md for n in names)
    results = json.loads((out / "results.json").read_text())
    assert results["setup"]["command"].startswith("python -m alias_opt.compare --dataset")
    assert [c["strategy"] for c in results["cells"]] == ["random", "scan"]
    assert Path(results["setup"]["dataset_path"]).name == "annotations.json"


def test_cells_save_what_the_figures_need(first_run, tiny_backend, world):
    """Each cell keeps its learning curve and its detections on the category's figure image (the same image
    for every strategy and seed), equal to what the model predicts there: drawing needs no model pass."""
    out, _, results = first_run
    data, _ = world
    ds = CocoDataset.open(data)
    for c in results["cells"]:
        cell = Cell.from_dict(c)
        info = results["categories"][str(cell.category_id)]
        losses = [p.loss for p in cell.losses]
        assert losses == sorted(losses, reverse=True) and cell.losses[-1].cost == cell.cost
        assert cell.losses[-1].loss == pytest.approx(min(losses)) and min(losses) <= cell.train_loss + 1e-9
        assert cell.shown is not None and cell.shown.image_id == info["shown_image_id"]
        if cell.strategy == "soft":
            continue
        ts = ds.target_sets(seed=0, max_negatives=4, categories=[cell.category_id])[0]
        im = next(t for t in ts.test if t.image.image_id == cell.shown.image_id)
        assert im.is_positive
        pred = predict(tiny_backend, tiny_backend.encode_images([im.image.load()]), [im], [cell.token_ids])[0][0]
        again = Shown.of(pred, im.image.image_id, 0.3, cell.shown.ap)
        assert again.scores == pytest.approx(cell.shown.scores, abs=1e-4)
        assert np.array_equal(again.prediction().masks, cell.shown.prediction().masks)
    for info in results["categories"].values():
        assert info["name_shown"]["image_id"] == info["shown_image_id"]


def test_no_figures_writes_the_report_without_pngs(first_run, tmp_path):
    from alias_opt.compare.report import write_report

    _, _, results = first_run
    md = write_report(tmp_path, results, figures=False).read_text()
    assert not (tmp_path / "plots").exists() and "![" not in md and "## Aliases" in md
    md = write_report(tmp_path, results).read_text()
    assert md.count("![") == 5 and (tmp_path / "plots" / "aliases.png").is_file()


def test_cli_resume_with_other_settings_refuses_unless_overwrite(first_run, world, cfg, tmp_path, capsys):
    out, setup, _ = first_run
    data, cats = world
    conf = tmp_path / "c.json"
    conf.write_text(json.dumps({**TINY, "rerank": 3, "index": {**TINY["index"], "cache_dir": cfg.index.cache_dir}}))
    argv = ["--dataset", str(data), "--output", str(out), "--model", "random:tiny", "--device", "cpu", "--resume"]
    argv += ["--strategies", "random", "--budget", "300", "--seeds", "0", "--categories", str(cats[0])]
    argv += ["--config", str(conf), "--no-progress"]
    files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "config.rerank: 2 there, 3 now" in err and "pass --overwrite" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == files  # nothing written
