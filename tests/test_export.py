"""alias_opt.export: aliases.json schema v2, atomic writes, validated reads."""

from __future__ import annotations

import json
import math

import pytest

from alias_opt.eval.metrics import PromptMetrics
from alias_opt.export import (
    AliasFile,
    AliasFileError,
    AliasRecord,
    Provenance,
    dataset_hash,
    read_aliases,
    to_dict,
    write_aliases,
)


def metrics(ap: float = 0.5) -> PromptMetrics:
    return PromptMetrics(
        ap=ap,
        ap50=0.7,
        precision=0.8,
        recall=0.6,
        f1=0.69,
        miou=0.55,
        fp_rate=math.nan,
        n_pos_images=3,
        n_neg_images=0,
        n_targets=5,
        tp=3,
        fp=1,
        fn=2,
        n_detections=4,
    )


def sample() -> AliasFile:
    prov = Provenance(
        model_fingerprint="abc123",
        model_source="toy",
        dataset_path="/d/annotations.json",
        dataset_hash="sha256:00",
        split_seed=3,
        config={"steps": 10, "lr": 0.1},
        seed=7,
    )
    recs = [
        AliasRecord(
            1,
            "red circle",
            [736, 7117],
            "red circle",
            True,
            "soft+gcg",
            metrics(0.6),
            metrics(0.55),
            "red circle",
            metrics(0.4),
            metrics(0.41),
            extra={"soft_prompt": "soft/1.safetensors"},
        ),
        AliasRecord(2, None, [49000], "x", False, "evolution"),
    ]
    return AliasFile(provenance=prov, aliases=recs)


def test_round_trip(tmp_path):
    path = tmp_path / "out" / "aliases.json"
    original = sample()
    write_aliases(path, original)
    data = json.loads(path.read_text())  # plain JSON: NaN written as null
    assert data["schema_version"] == 2 and data["aliases"][0]["test_metrics"]["fp_rate"] is None
    back = read_aliases(path)
    assert to_dict(back) == to_dict(original)
    assert math.isnan(back.aliases[0].test_metrics.fp_rate)
    assert back.aliases[1].category_name is None and back.aliases[1].test_metrics is None
    assert back.by_category()[1].extra == {"soft_prompt": "soft/1.safetensors"}
    assert [p.name for p in path.parent.iterdir()] == ["aliases.json"]  # no temporary files left


def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "aliases.json"
    write_aliases(path, sample())
    before = path.read_text()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("alias_opt.export.os.replace", broken)
    with pytest.raises(OSError, match="disk full"):
        write_aliases(path, AliasFile(provenance=Provenance(), aliases=[]))
    assert path.read_text() == before and len(list(tmp_path.iterdir())) == 1


def _written(tmp_path, mutate) -> str:
    data = to_dict(sample())
    mutate(data)
    path = tmp_path / "a.json"
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(schema_version=3), "schema_version 3 was written by a newer sam3-alias"),
        (lambda d: d.update(schema_version="1"), "schema_version '1' is not a version"),
        (lambda d: d.pop("schema_version"), "no 'schema_version'"),
        (lambda d: d.pop("aliases"), "missing key 'aliases'"),
        (lambda d: d["aliases"][0].pop("token_ids"), r"aliases\[0\]: missing key 'token_ids'"),
        (lambda d: d["aliases"][1].update(token_ids=[49408]), r"aliases\[1\] \(category 2\): token id 49408"),
        (lambda d: d["aliases"][1].update(token_ids=[]), "1..30 ids"),
        (lambda d: d["aliases"][1].update(token_ids=[1.5]), "token id 1.5"),
        (lambda d: d["aliases"][1].update(category_id=1), "a second alias for category 1"),
        (lambda d: d["aliases"][0]["test_metrics"].pop("ap"), "test_metrics lacks 'ap'"),
        (lambda d: d["aliases"][0].update(roundtrips="yes"), "roundtrips must be true or false"),
        (lambda d: d["provenance"].update(split_seed="3"), "provenance.split_seed must be an integer"),
    ],
)
def test_bad_files_give_clear_errors(tmp_path, mutate, message):
    with pytest.raises(AliasFileError, match=message):
        read_aliases(_written(tmp_path, mutate))


def test_unreadable_files(tmp_path):
    with pytest.raises(AliasFileError, match="not found"):
        read_aliases(tmp_path / "none.json")
    (tmp_path / "x.json").write_text("[1, 2")
    with pytest.raises(AliasFileError, match="not valid JSON"):
        read_aliases(tmp_path / "x.json")
    (tmp_path / "y.json").write_text("[]")
    with pytest.raises(AliasFileError, match="expected a JSON object"):
        read_aliases(tmp_path / "y.json")


def test_write_refuses_invalid(tmp_path):
    bad = sample()
    bad.aliases[0].token_ids = list(range(31))
    with pytest.raises(AliasFileError, match="1..30"):
        write_aliases(tmp_path / "a.json", bad)
    assert not (tmp_path / "a.json").exists()


def test_dataset_hash(tmp_path):
    (tmp_path / "annotations.json").write_text('{"images": []}')
    h = dataset_hash(tmp_path)
    assert h.startswith("sha256:") and h == dataset_hash(tmp_path / "annotations.json")
    (tmp_path / "annotations.json").write_text('{"images": [] }')
    assert dataset_hash(tmp_path) != h
