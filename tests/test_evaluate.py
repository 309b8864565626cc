"""evaluate.py end to end on tiny synthetic datasets (random-weight tiny SAM 3, or the toy model)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import evaluate
from alias_opt.eval.evaluation import EvaluationReport
from alias_opt.export import AliasFile, AliasRecord, Provenance, write_aliases
from tests.coco_synth import write_shapes_dataset

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools.*")

REPO = Path(__file__).resolve().parents[1]
TOY_CONFIG = REPO / "sam3" / "toy" / "sam3-toy" / "config.json"


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    write_shapes_dataset(root, n_images=6, names=("red square", "blue circle", None))
    return root


def run(args: list[str], tmp_path: Path) -> int:
    return evaluate.main(
        [*args, "--model", "random:tiny", "--device", "cpu", "--no-progress", "--cache-dir", str(tmp_path / "cache")]
    )


def test_baseline_table_and_json_round_trip(shapes, tmp_path, capsys):
    out = tmp_path / "report.json"
    rc = run(["--dataset", str(shapes), "--split", "all", "--prompt", "a photo", "--json", str(out)], tmp_path)
    assert rc == 0
    printed = capsys.readouterr().out
    assert "AP50" in printed and "FP rate" in printed and "vs name" in printed
    assert "(nameless)" in printed and "nameless: no baseline" in printed
    data = json.loads(out.read_text())
    cats = {c["category_id"]: c for c in data["categories"]}
    assert [p["kind"] for p in cats[1]["prompts"]] == ["name", "prompt"]
    assert cats[1]["prompts"][0]["text"] == "red square" and cats[1]["prompts"][1]["vs_name"] in (
        "win",
        "tie",
        "loss",
        "n/a",
    )
    assert [p["kind"] for p in cats[3]["prompts"]] == ["prompt"] and cats[3]["name"] is None
    assert cats[3]["prompts"][0]["vs_name"] is None  # nameless: no baseline, not a failure
    assert data["summary"]["nameless"] == 1 and data["summary"]["prompt"]["n"] == 3
    # The JSON report round-trips through the dataclasses.
    report = EvaluationReport.from_dict(data)
    again = tmp_path / "again.json"
    report.write_json(again)
    assert json.loads(again.read_text()) == data


def test_aliases_against_names(shapes, tmp_path):
    aliases = tmp_path / "aliases.json"
    recs = [
        AliasRecord(1, "red square", [736, 7117], "red circle", True, "test"),
        AliasRecord(3, None, [1746], "blue", True, "test"),
        AliasRecord(42, "ghost", [320], "a", True, "test"),
    ]  # not in the dataset: skipped with a warning
    write_aliases(
        aliases, AliasFile(provenance=Provenance(split_seed=5, train_fraction=0.5, max_negatives=3), aliases=recs)
    )
    out = tmp_path / "r.json"
    assert (
        run(["--dataset", str(shapes / "annotations.json"), "--aliases", str(aliases), "--json", str(out)], tmp_path)
        == 0
    )
    data = json.loads(out.read_text())
    assert data["split"] == "test" and data["split_seed"] == 5 and data["max_negatives"] == 3
    cats = {c["category_id"]: c for c in data["categories"]}
    kinds = {cid: [(p["kind"], p["vs_name"]) for p in c["prompts"]] for cid, c in cats.items()}
    assert kinds[1][0] == ("name", None) and kinds[1][1][0] == "alias"
    assert kinds[1][1][1] in ("win", "tie", "loss", "n/a")
    assert kinds[2] == [("name", None)]  # no alias for it in the file: the baseline alone
    assert kinds[3] == [("alias", None)]  # nameless: alias without a baseline
    assert cats[3]["prompts"][0]["token_ids"] == [1746]


def test_check_mode_and_exit_codes(shapes, tmp_path, capsys):
    assert evaluate.main(["--dataset", str(shapes), "--check"]) == 0
    printed = capsys.readouterr().out
    assert "usable target sets: 3 of 3" in printed and "image root" in printed
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "annotations.json").write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "gone.png", "height": 4, "width": 4}],
                "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 3, 0, 3, 3]]}],
                "categories": [{"id": 1, "name": "x"}],
            }
        )
    )
    assert evaluate.main(["--dataset", str(empty), "--check"]) == 1
    assert "gone.png" in capsys.readouterr().out
    assert evaluate.main(["--dataset", str(empty)]) == 1
    assert evaluate.main(["--dataset", str(tmp_path / "nowhere")]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text('{"schema_version": 9, "provenance": {}, "aliases": []}')
    assert evaluate.main(["--dataset", str(shapes), "--aliases", str(tmp_path / "bad.json")]) == 2
    assert "newer sam3-alias" in capsys.readouterr().err
    assert evaluate.main(["--dataset", str(shapes), "--model", str(tmp_path / "no-model")]) == 2
    assert "cannot load the model" in capsys.readouterr().err


def test_every_flag_has_help():
    parser = evaluate.build_parser()
    for action in parser._actions:
        assert action.help, action.dest


@pytest.mark.skipif(not TOY_CONFIG.is_file(), reason="the toy model has not landed (sam3/toy/sam3-toy)")
def test_toy_named_world_scores_high(tmp_path):
    data = tmp_path / "named"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "sam3.toy.world",
            "--world",
            "v1",
            "--out",
            str(data),
            "--variant",
            "named",
            "--images",
            "6",
            "--seed",
            "123",
        ],
        check=True,
        cwd=REPO,
    )
    out = tmp_path / "toy.json"
    assert (
        evaluate.main(
            [
                "--dataset",
                str(data),
                "--model",
                "toy",
                "--device",
                "cpu",
                "--split",
                "all",
                "--no-progress",
                "--cache-dir",
                str(tmp_path / "cache"),
                "--json",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    aps = [
        p["metrics"]["ap"]
        for c in report["categories"]
        for p in c["prompts"]
        if p["kind"] == "name" and p["metrics"]["ap"] is not None
    ]
    assert aps and sum(aps) / len(aps) > 0.5, aps


class _Out:
    def __init__(self, logits, scores):
        self.mask_logits, self._scores = logits, scores

    def scores(self):
        return self._scores


class ColourOracle:
    """A stand-in backend: prompt [1] finds red blobs, [2] blue blobs (one query per blob)."""

    queries = 4

    def prompt_ids(self, seqs):
        return [list(s) for s in seqs]

    def encode_text(self, ids):
        return ids

    def encode_images(self, arrays):
        return arrays

    def iter_ground_pairs(self, text, feats, prompt_idx, image_idx, batch_size=None, masks=None):
        import numpy as np
        import torch
        from scipy import ndimage

        for k in range(len(prompt_idx)):
            rgb = feats[int(image_idx[k])].astype(int)
            colour = text[int(prompt_idx[k])][0]
            blobs = (rgb[..., 0] > 200) & (rgb[..., 2] < 100) if colour == 1 else (rgb[..., 2] > 200)
            labels, n = ndimage.label(blobs)
            logits = np.full((1, self.queries, *rgb.shape[:2]), -10.0, dtype=np.float32)
            scores = np.full((1, self.queries), 0.01, dtype=np.float32)
            for q in range(min(n, self.queries)):
                logits[0, q][labels == q + 1] = 10.0
                scores[0, q] = 0.9 - 0.1 * q
            out = _Out(torch.from_numpy(logits), torch.from_numpy(scores))
            if masks is not None:  # as Sam3Backend does: only the selected queries' masks, and whose they are
                want = masks(out, slice(k, k + 1))
                out.mask_index = torch.nonzero(want)
                out.mask_logits = out.mask_logits[want]
            yield slice(k, k + 1), out


def test_engine_routes_prompts_to_their_images(shapes):
    from alias_opt.data.loader import CocoDataset
    from alias_opt.eval.evaluation import PromptSpec, evaluate_target_sets

    sets = CocoDataset.open(shapes).target_sets(max_negatives=5)
    prompts = {
        1: [PromptSpec("name", "red square", [1]), PromptSpec("alias", "blue", [2])],
        2: [
            PromptSpec("name", "blue circle", [2]),
            PromptSpec("alias", "red", [1]),
            PromptSpec("prompt", "blue again", [2]),
        ],
    }
    results = {
        r.category_id: r
        for r in evaluate_target_sets(ColourOracle(), sets, prompts, split="all", chunk=2, progress=False)
    }
    red, blue = results[1].prompts, results[2].prompts
    assert red[0].metrics.ap > 0.7 and red[1].metrics.ap < 0.05 and red[1].vs_name == "loss"
    assert blue[0].metrics.ap > 0.7 and blue[1].vs_name == "loss"
    assert blue[2].metrics.to_dict() == blue[0].metrics.to_dict() and blue[2].vs_name == "tie"
    assert red[0].metrics.ap == 1.0 and red[0].metrics.f1 == 1.0 and red[0].metrics.fp_rate == 0.0
    assert red[1].metrics.fp > 0 and red[1].metrics.tp == 0  # blue blobs are wrong for red
    assert results[3].prompts == [] and results[3].nameless
