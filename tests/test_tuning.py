"""Optuna tuning: a study in URL storage that resumes where it stopped, survives a killed worker
(the interrupted trial is failed by the heartbeat and retried) and writes the best config."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from alias_opt.compare import tuning
from alias_opt.compare.tuning import SPACES, main, open_study
from alias_opt.config import load_config
from alias_opt.search.strategies import NAMES

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "max_len": 2,
    "rerank": 1,
    "max_negatives": 3,
    "index": {"shortlist": 8, "probe_rounds": 1},
    "options": {"random_batch": 8},
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from alias_opt.data.loader import CocoDataset
    from sam3.toy.world import write_dataset

    out = tmp_path_factory.mktemp("world")
    write_dataset(out, "renamed", images=16, seed=3)
    sets = CocoDataset.open(out).target_sets(seed=1, max_negatives=3)  # tuning's default split seed
    cid = next(ts.category_id for ts in sets if any(t.is_positive for t in ts.train) and ts.test)
    return out, cid


def _argv(world, out, config, *extra):
    data, cid = world
    return [
        "--dataset", str(data), "--output", str(out), "--model", "random:tiny", "--device", "cpu",
        "--strategy", "random", "--budget", "120", "--categories", str(cid), "--config", str(config),
        "--sampler-seed", "0", *extra,
    ]  # fmt: skip


def _config(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps({**TINY, "index": {**TINY["index"], "cache_dir": str(tmp_path / "index")}}))
    return path


def test_every_strategy_has_a_search_space():
    assert set(SPACES) == set(NAMES)
    for name, space in SPACES.items():
        trial = optuna.create_study().ask()
        overrides = space(trial)
        load_config(None, overrides)  # every sampled setting is a valid config key and value
        assert trial.params, name


def test_study_resumes_from_its_storage(world, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SAM3_ALIAS_CACHE", str(tmp_path / "features"))
    out, config = tmp_path / "tune", _config(tmp_path)
    assert main(_argv(world, out, config, "--trials", "2")) == 0
    url = f"sqlite:///{(out / 'study.db').resolve()}"
    study = optuna.load_study(study_name="sam3-alias:random", storage=url)
    first = [(t.number, t.value, t.params) for t in study.trials]
    assert len(first) == 2 and all(t.state == TrialState.COMPLETE for t in study.trials)
    assert main(_argv(world, out, config, "--trials", "3")) == 0  # a new worker continues the study
    study = optuna.load_study(study_name="sam3-alias:random", storage=url)
    assert [(t.number, t.value, t.params) for t in study.trials][:2] == first
    assert len(study.trials) == 3
    assert "3 finished trials (2 before this worker)" in capsys.readouterr().out
    best = json.loads((out / "best_config.json").read_text())
    assert best["max_len"] == study.best_params["max_len"] and best["rerank"] == 1
    load_config(None, {k: v for k, v in best.items() if k != "_comment"})  # a valid config
    trials = json.loads((out / "trials.json").read_text())["trials"]
    assert [t["value"] for t in trials] == pytest.approx([t.value for t in study.trials])
    assert all(t["user_attrs"]["cells"] == 1 and t["user_attrs"]["mean_cost"] <= 120 for t in trials)
    assert main(_argv(world, out, config, "--trials", "3")) == 0  # already reached: no more trials
    assert len(optuna.load_study(study_name="sam3-alias:random", storage=url).trials) == 3


def _open_together(url: str, workers: int) -> list[BaseException]:
    """Open the study in ``url`` from ``workers`` threads released at once; the errors they raised."""
    gate, errors = threading.Barrier(workers), []

    def work():
        gate.wait()
        try:
            open_study(url, "race", heartbeat=5)
        except BaseException as err:  # noqa: BLE001 - collected for the assertion
            errors.append(err)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_workers_started_together_share_one_new_study(tmp_path):
    # CI once lost a worker to this race: two RDBStorages writing the schema of one new database at once
    for i in range(6):
        url = f"sqlite:///{tmp_path / f'study{i}.db'}"
        assert _open_together(url, 4) == []
        assert len(optuna.get_all_study_names(url)) == 1


def test_study_creation_race_exists_without_retries(tmp_path, monkeypatch):
    # the retry above is needed: with one try, some of many fresh databases lose a worker
    monkeypatch.setattr(tuning, "_SCHEMA_TRIES", 1)
    errors = [e for i in range(12) for e in _open_together(f"sqlite:///{tmp_path / f's{i}.db'}", 4)]
    if not errors:
        pytest.skip("no race happened in 12 tries on this machine")
    assert all("sqlalchemy" in type(e).__module__ for e in errors)


def _running_beats(db: Path) -> int:
    """Running trials of the study database ``db`` with a heartbeat on record."""
    with contextlib.closing(sqlite3.connect(db)) as con:
        sql = "SELECT COUNT(*) FROM trials JOIN trial_heartbeats USING (trial_id) WHERE trials.state = 'RUNNING'"
        return con.execute(sql).fetchone()[0]


def test_killed_worker_loses_only_its_running_trial(world, tmp_path):
    out, config = tmp_path / "tune", _config(tmp_path)
    env = {**os.environ, "SAM3_ALIAS_CACHE": str(tmp_path / "features"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    argv = _argv(world, out, config, "--trials", "3", "--heartbeat", "1", "--grace", "2", "--threads", "1")
    cmd = [sys.executable, "-m", "alias_opt.tuning", *argv]
    marker = tmp_path / "paused"  # the worker blocks at the start of its second trial: a known point to kill at
    paused = {**env, "SAM3_ALIAS_PAUSE_AT": f"trial-running:{marker}"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=paused, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"sqlite:///{(out / 'study.db').resolve()}"
    deadline = time.time() + 180
    states: list = []
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
        try:
            states = [t.state for t in optuna.load_study(study_name="sam3-alias:random", storage=url).trials]
        except (KeyError, Exception):  # the study or its tables may not exist yet
            continue
        if marker.is_file() and TrialState.RUNNING in states and _running_beats(out / "study.db"):
            break  # paused in a trial that has beaten once: before its first beat it could never become stale
    assert proc.poll() is None, "the worker ended early: " + proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    study = optuna.load_study(study_name="sam3-alias:random", storage=url)
    done = {t.number: (t.value, t.params) for t in study.trials if t.state == TrialState.COMPLETE}
    killed = [t.number for t in study.trials if t.state == TrialState.RUNNING]
    assert done and len(killed) == 1
    time.sleep(2.5)  # past the grace period
    resumed = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    study = optuna.load_study(study_name="sam3-alias:random", storage=url)
    by_number = {t.number: t for t in study.trials}
    assert by_number[killed[0]].state == TrialState.FAIL  # marked, not left running
    assert all(by_number[n].value == v and by_number[n].params == p for n, (v, p) in done.items())  # kept
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 3  # the target is reached despite the kill
    retry = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed[0]]
    assert len(retry) == 1 and retry[0].params == by_number[killed[0]].params  # the killed trial was redone
    assert retry[0].state == TrialState.COMPLETE and study.best_trial.state == TrialState.COMPLETE
