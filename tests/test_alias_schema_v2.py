"""aliases.json schema 2: a record carries its alias set; v1 files still load; evaluate.py merges a set."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from alias_opt.eval.metrics import PromptMetrics
from alias_opt.export import (
    SCHEMA_FILE,
    AliasFile,
    AliasFileError,
    AliasMember,
    AliasRecord,
    Provenance,
    read_aliases,
    to_dict,
    write_aliases,
)


def metrics(ap: float) -> PromptMetrics:
    return PromptMetrics(ap, ap, 1.0, ap, ap, 0.5, math.nan, 2, 3, 4, 2, 0, 2, 2)


def set_record() -> AliasRecord:
    members = [AliasMember([736, 7117], "red circle", True, metrics(0.4), metrics(0.35))]
    members.append(AliasMember([1746, 2232], "blue square", True, metrics(0.3), metrics(0.25)))
    return AliasRecord(
        7, "red circle or blue square", [736, 7117], "red circle", True, "pez+evolution",
        train_metrics=metrics(0.8), test_metrics=metrics(0.7), extra={"vs_name": "win"}, alias_set=members,
    )  # fmt: skip


def test_v2_round_trip_of_an_alias_set(tmp_path):
    f = AliasFile(provenance=Provenance(seed=3), aliases=[set_record(), AliasRecord(8, None, [320], "a", True, "s")])
    write_aliases(tmp_path / "a.json", f)
    data = json.loads((tmp_path / "a.json").read_text())
    schema = json.loads(SCHEMA_FILE.read_text())
    member = schema["$defs"]["member"]
    for row in data["aliases"]:  # every key written is documented, every required one written
        assert set(row) <= set(schema["$defs"]["record"]["properties"]) and "alias_set" in row
        assert all(set(member["required"]) <= set(m) <= set(member["properties"]) for m in row["alias_set"])
    assert data["schema_version"] == 2
    row, single = data["aliases"]
    assert [m["text"] for m in row["alias_set"]] == ["red circle", "blue square"]
    assert row["test_metrics"]["ap"] == 0.7 and row["alias_set"][1]["test_metrics"]["ap"] == 0.25
    assert single["alias_set"] == [
        {"token_ids": [320], "text": "a", "roundtrips": True, "train_metrics": None, "test_metrics": None}
    ]
    back = read_aliases(tmp_path / "a.json")
    assert to_dict(back) == to_dict(f)
    rec = back.by_category()[7]
    assert rec.is_set and rec.parts == [[736, 7117], [1746, 2232]] and rec.set_text == "red circle | blue square"
    assert rec.members()[1].train_metrics.ap == 0.3 and rec.test_metrics.ap == 0.7
    assert not back.by_category()[8].is_set and back.by_category()[8].set_text == "a"


def test_v1_file_reads_as_one_alias_sets(tmp_path):
    v1 = {
        "schema_version": 1,
        "provenance": {"split_seed": 2},
        "aliases": [
            {"category_id": 3, "token_ids": [736], "text": "red", "roundtrips": True, "strategy": "scan",
             "test_metrics": metrics(0.6).to_dict()}
        ],
    }  # fmt: skip
    (tmp_path / "v1.json").write_text(json.dumps(v1))
    f = read_aliases(tmp_path / "v1.json")
    rec = f.aliases[0]
    assert f.schema_version == 2 and f.provenance.split_seed == 2
    assert len(rec.members()) == 1 and rec.parts == [[736]] and rec.members()[0].test_metrics.ap == 0.6
    write_aliases(tmp_path / "v2.json", f)  # written back in the current version
    assert json.loads((tmp_path / "v2.json").read_text())["aliases"][0]["alias_set"][0]["token_ids"] == [736]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(schema_version=3), r"schema_version 3 was written by a newer sam3-alias; .* reads "
         r"schema versions 1, 2: upgrade"),
        (lambda d: d.update(schema_version=0), r"schema_version 0 is not a version this tool knows \(1, 2\)"),
        (lambda d: d.update(schema_version="2"), r"schema_version '2' is not a version this tool knows"),
        (lambda d: d["aliases"][0].pop("alias_set"), r"aliases\[0\] \(category 7\): alias_set must be a non-empty"),
        (lambda d: d["aliases"][0]["alias_set"].reverse(), r"alias_set\[0\] must be the record's own token_ids"),
        (lambda d: d["aliases"][0]["alias_set"][1].update(token_ids=[-1]), r"alias_set\[1\]: token id -1"),
        (lambda d: d["aliases"][0]["alias_set"][1].pop("text"), r"alias_set\[1\]: expected an object"),
    ],
)  # fmt: skip
def test_bad_v2_files_give_one_clear_line(tmp_path, mutate, message):
    data = to_dict(AliasFile(aliases=[set_record()]))
    mutate(data)
    (tmp_path / "a.json").write_text(json.dumps(data))
    with pytest.raises(AliasFileError, match=message) as err:
        read_aliases(tmp_path / "a.json")
    assert "\n" not in str(err.value)


def test_evaluate_scores_a_set_as_its_merged_detections(tiny_backend, tmp_path):
    from alias_opt.data.loader import CocoDataset
    from alias_opt.eval.alias_sets import merge_split
    from alias_opt.eval.evaluation import PromptSpec, evaluate_target_sets
    from alias_opt.eval.metrics import score_predictions
    from tests.coco_synth import write_shapes_dataset

    write_shapes_dataset(tmp_path, n_images=4, names=("red square", "blue circle"))
    ts = CocoDataset.open(tmp_path).target_sets(seed=0)[0]
    a, b = [320], [1746, 2232]
    specs = [PromptSpec("alias", "a | b", a, [a, b]), PromptSpec("prompt", "a", a), PromptSpec("prompt", "b", b)]
    kept: dict = {}
    (res,) = evaluate_target_sets(tiny_backend, [ts], {ts.category_id: specs}, "all", progress=False, predictions=kept)
    images, preds = kept[ts.category_id]
    merged = merge_split([preds[1], preds[2]])
    assert len(images) == len(ts.train + ts.test)
    assert all(np.array_equal(p.scores, m.scores) and p.rles == m.rles for p, m in zip(preds[0], merged, strict=True))
    assert [len(m) for m in merged] != [len(x) for x in preds[1]]  # not alias a's detections alone (NMS ran)
    want = score_predictions(merged, images)
    got = res.prompts[0].metrics
    assert (got.tp, got.fp, got.n_detections) == (want.tp, want.fp, want.n_detections)
    assert res.prompts[0].parts == [a, b] and res.prompts[1].parts is None


def test_written_file_validates_against_the_json_schema(tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    f = AliasFile(provenance=Provenance(seed=3), aliases=[set_record(), AliasRecord(8, None, [320], "a", True, "s")])
    write_aliases(tmp_path / "a.json", f)
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    validator.validate(json.loads((tmp_path / "a.json").read_text()))
    data = json.loads((tmp_path / "a.json").read_text())
    del data["aliases"][0]["alias_set"]
    assert not validator.is_valid(data)  # schema 2 requires the set
    data["schema_version"] = 1
    assert validator.is_valid(data)  # a v1 file has none


def test_summary_counts_sets_that_beat_their_first_alias():
    from alias_opt.eval.summary import format_summary, format_table, summarize

    worse = set_record()
    worse.category_id, worse.test_metrics = 9, metrics(0.3)  # a set below its first alias (0.35) held out
    worse.extra = {"wall_time": 2.0, "alias_set_search": {"set_wall_time": 3.5}}
    s = summarize(AliasFile(aliases=[set_record(), worse, AliasRecord(8, None, [320], "a", True, "s")]))
    assert (s["alias_sets"], s["set_beats_single"]) == (2, 1)
    assert [r["single_ap"] for r in s["rows"][:2]] == [0.35, 0.35] and s["rows"][1]["wall_time"] == 5.5
    assert "alias sets in 2/3, beating their first alias held out in 1" in format_summary(s)
    assert '"red circle | blue square"' in format_table(AliasFile(aliases=[set_record()]))
