"""Clear refusals: an absent or misspelt device, a --resume whose settings differ, warnings about
what was not asked for, and output files with ordinary permissions."""

from __future__ import annotations

import json
import logging
import os

import pytest
import torch

import evaluate
import main as main_mod
from alias_opt.export import AliasFile, AliasRecord, Provenance, write_aliases, write_json_atomic
from tests.coco_synth import write_shapes_dataset
from tests.test_optimizer import TINY

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools.*")


def _entry_points():
    from alias_opt.compare import main as compare_main
    from alias_opt.compare.report import main as report_main  # noqa: F401 (loads no model: no --device)
    from alias_opt.compare.tuning import main as tune_main

    return {
        "main.py": lambda dev: main_mod.main(["--device", dev]),
        "evaluate.py": lambda dev: evaluate.main(["--dataset", "nowhere", "--device", dev]),
        "compare": lambda dev: compare_main(
            ["--dataset", "d", "--output", "o", "--strategies", "scan", "--device", dev]
        ),
        "tune": lambda dev: tune_main(["--dataset", "d", "--output", "o", "--device", dev]),
    }


BAD_DEVICES = ["gpu", "cuda:x", "tpu"]
if not torch.cuda.is_available():
    BAD_DEVICES.append("cuda")  # a CPU-only install


@pytest.mark.parametrize("device", BAD_DEVICES)
@pytest.mark.parametrize("entry", ["main.py", "evaluate.py", "compare", "tune"])
def test_bad_device_is_one_line_and_exit_2(entry, device, capsys):
    with pytest.raises(SystemExit) as exc:
        _entry_points()[entry](device)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and device in err, err
    assert "Traceback" not in err


def test_output_files_get_ordinary_permissions(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    write_json_atomic(tmp_path / "a.json", {"a": 1})
    write_aliases(tmp_path / "aliases.json", AliasFile())
    mode = plain.stat().st_mode & 0o777
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == mode
    assert (tmp_path / "aliases.json").stat().st_mode & 0o777 == mode
    old = os.umask(0o077)
    try:
        write_json_atomic(tmp_path / "b.json", {})
    finally:
        os.umask(old)
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o600  # the umask is respected


def test_aliases_with_categories_warns_only_about_what_was_asked(tmp_path, caplog):
    root = tmp_path / "shapes"
    write_shapes_dataset(root, n_images=6, names=("red square", "blue circle", None))
    aliases = tmp_path / "aliases.json"
    recs = [AliasRecord(cid, None, [320], "a", True, "test") for cid in (1, 2, 3, 42)]
    write_aliases(aliases, AliasFile(provenance=Provenance(max_negatives=3), aliases=recs))
    args = ["--dataset", str(root), "--aliases", str(aliases), "--model", "random:tiny", "--device", "cpu"]
    args += ["--no-progress", "--cache-dir", str(tmp_path / "cache")]
    with caplog.at_level(logging.WARNING):
        assert evaluate.main([*args, "--categories", "1"]) == 0
    assert not [r for r in caplog.records if "category" in r.getMessage()], caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert evaluate.main(args) == 0  # all categories: the alias of 42 has no target set
    assert "category 42" in caplog.text and "category 1 " not in caplog.text


def test_resume_with_other_settings_refuses_and_keeps_files(tmp_path, capsys):
    from tests.discovery_helpers import renamed_world

    data, cats = renamed_world(tmp_path / "world", 1)
    index = tmp_path / "index"
    first, second = tmp_path / "tiny.json", tmp_path / "tiny2.json"
    first.write_text(json.dumps({**TINY, "index": {**TINY["index"], "cache_dir": str(index)}}))
    second.write_text(json.dumps({**TINY, "max_len": 1, "index": {**TINY["index"], "cache_dir": str(index)}}))
    out = tmp_path / "out"
    base = ["--dataset", str(data), "--output", str(out), "--model", "random:tiny", "--device", "cpu"]
    base += ["--no-progress", "--threads", "1", "--categories", str(cats[0]), "--no-figures"]
    os.environ["SAM3_ALIAS_CACHE"] = str(tmp_path / "features")
    try:
        assert main_mod.main([*base, "--config", str(first)]) == 0
        files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
        capsys.readouterr()
        assert main_mod.main([*base, "--config", str(second), "--resume"]) == 2
        err = capsys.readouterr().err
        assert "config.max_len: 2 there, 1 now" in err and "--overwrite" in err, err
        assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == files  # byte for byte
        assert main_mod.main([*base, "--config", str(first), "--resume"]) == 0  # same settings: resumes
        assert main_mod.main([*base, "--config", str(second), "--resume", "--overwrite"]) == 0
        rec = json.loads((out / "categories" / f"{cats[0]}.json").read_text())
        assert rec["provenance"]["config"]["max_len"] == 1
    finally:
        del os.environ["SAM3_ALIAS_CACHE"]


@pytest.mark.parametrize("entry", ["main.py", "evaluate.py"])
def test_bad_thread_count_is_one_line_and_exit_2(entry, capsys):
    run = {"main.py": main_mod.main, "evaluate.py": lambda a: evaluate.main(["--dataset", "nowhere", *a])}[entry]
    with pytest.raises(SystemExit) as exc:
        run(["--threads", "0"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: --threads must be >= 1, got 0"
