"""Tune a strategy's hyperparameters with Optuna, in a study that many workers can share.

    python -m alias_opt.tuning --dataset DATA --output DIR --strategy pez+evolution --budget 3000 \\
        --trials 40 [--storage URL] [--study-name NAME] [--seeds 0] [--categories 1,2] [--model toy]

The study lives in ``--storage`` (an SQLAlchemy URL; default ``sqlite:///DIR/study.db``) under a fixed
name (default ``sam3-alias:<strategy>``) and is loaded if it exists, so the same command started on
several machines against one database (e.g. ``postgresql://...``; SQLite only for processes of one
machine) shares the trials, and a restarted worker continues the study. Every finished trial is
committed when it ends; a worker killed mid-trial loses only that trial: the heartbeat marks it FAIL
after ``--grace`` seconds without a beat and ``RetryHeartbeatStaleTrialCallback`` queues its
parameters again (a worker killed before its trial's first beat, a few milliseconds after the trial
starts, leaves that trial RUNNING: optuna cannot tell it from one just starting elsewhere). TPE ignores
failed trials, so they do not poison the study. ``--trials`` is the
number of finished (complete or pruned) trials the study should reach, counted over all workers.

A trial runs the strategy with the sampled settings (``SPACES``) on every category and seed with the
same budget and returns the mean held-out AP (maximized); the running mean after each category is
reported, so the median pruner can stop hopeless trials. Tune on other data (or another
``--split-seed``) than the comparison you will report. Outputs, written atomically:
``DIR/best_config.json`` (a config for ``--config``: SearchConfig keys, ``options`` included) and ``DIR/trials.json``.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import optuna
import sqlalchemy.exc
from optuna.trial import TrialState

from alias_opt.cli import add_runtime_flags, init_runtime, pause_point, user_error
from alias_opt.compare import DEFAULT_CONFIG, Bench, CompareSetup, open_bench, parse_list, run_cell
from alias_opt.config import deep_merge, load_config, read_config_json
from alias_opt.export import write_json_atomic
from alias_opt.search.strategies import NAMES

logger = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def _soft(t: optuna.Trial) -> dict:
    return {
        "soft": {
            "lr": t.suggest_float("soft.lr", 0.1, 10.0, log=True),
            "restarts": t.suggest_int("soft.restarts", 1, 6),
            "batch_images": t.suggest_int("soft.batch_images", 2, 12),
        }
    }


def _pez(t: optuna.Trial) -> dict:
    out = _soft(t)
    out["soft"].update(
        steps=t.suggest_int("soft.steps", 5, 60, log=True), eval_every=t.suggest_int("soft.eval_every", 1, 6)
    )
    return out


def _pez_gcg(t: optuna.Trial) -> dict:
    out = _pez(t)
    out["gcg"] = {
        "topk": t.suggest_int("gcg.topk", 4, 64, log=True),
        "candidates": t.suggest_int("gcg.candidates", 8, 96, log=True),
        "patience": t.suggest_int("gcg.patience", 1, 5),
    }
    out["options"] = {"soft_fraction": t.suggest_float("options.soft_fraction", 0.1, 0.7)}
    return out


def _evolution(t: optuna.Trial, gradients: bool = True) -> dict:
    evo = {
        "population": t.suggest_int("evolution.population", 8, 64, log=True),
        "crossover": t.suggest_float("evolution.crossover", 0.0, 0.8),
        "patience": t.suggest_int("evolution.patience", 1, 6),
    }
    if gradients:
        evo["grad_topk"] = t.suggest_int("evolution.grad_topk", 0, 32)
        evo["neighbours"] = t.suggest_int("evolution.neighbours", 0, 16)
    return {"evolution": evo}


def _pez_evolution(t: optuna.Trial) -> dict:
    return {
        **_pez(t),
        **_evolution(t),
        "options": {"soft_fraction": t.suggest_float("options.soft_fraction", 0.1, 0.7)},
    }


SPACES: dict[str, Callable[[optuna.Trial], dict]] = {
    "soft": _soft,
    "projection": _soft,
    "pez": _pez,
    "pez+gcg": _pez_gcg,
    "pez+evolution": _pez_evolution,
    "evolution": _evolution,
    "random-evolution": lambda t: _evolution(t, gradients=False),
    "random": lambda t: {"max_len": t.suggest_int("max_len", 1, 4)},
    "optuna": lambda t: {
        "index": {"shortlist": t.suggest_int("index.shortlist", 16, 128, log=True)},
        "options": {
            "optuna_batch": t.suggest_int("options.optuna_batch", 2, 32, log=True),
            "optuna_startup": t.suggest_int("options.optuna_startup", 4, 32, log=True),
        },
    },
    "scan": lambda t: {
        "scan_size": t.suggest_int("scan_size", 16, 256, log=True),
        "index": {"shortlist": t.suggest_int("index.shortlist", 16, 256, log=True)},
    },
    "vocab-scan": lambda t: {
        "screen_images": t.suggest_int("screen_images", 2, 10),
        "screen_keep": t.suggest_float("screen_keep", 0.05, 0.5, log=True),
    },
}


_SCHEMA_TRIES = 5  # RDBStorage writes its schema on first use; workers started together race for it


def open_study(
    storage: str,
    study_name: str,
    sampler_seed: int | None = None,
    heartbeat: int = 60,
    grace: int | None = None,
    max_retry: int = 2,
) -> optuna.Study:
    """Create or load the study ``study_name`` in ``storage`` (an SQLAlchemy URL) with heartbeats,
    retries of heartbeat-stale trials, a TPE sampler and a median pruner."""
    engine = {"connect_args": {"timeout": 60}} if storage.startswith("sqlite") else None
    for attempt in range(_SCHEMA_TRIES):
        try:
            with warnings.catch_warnings():  # the heartbeat API is marked experimental
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                rdb = optuna.storages.RDBStorage(
                    storage,
                    engine_kwargs=engine,
                    heartbeat_interval=heartbeat,
                    grace_period=grace,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                        max_retry=max_retry
                    ),
                )
            break
        except sqlalchemy.exc.SQLAlchemyError as err:  # another worker created the schema at the same moment
            if attempt == _SCHEMA_TRIES - 1:
                raise
            logger.info("study storage busy (%s); retrying", type(err).__name__)
            time.sleep(0.2 * (attempt + 1))
    sampler = optuna.samplers.TPESampler(seed=sampler_seed, constant_liar=True)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)
    return optuna.create_study(
        storage=rdb, study_name=study_name, direction="maximize", sampler=sampler, pruner=pruner, load_if_exists=True
    )


def make_objective(
    bench: Bench, base: dict, strategy: str, budget: int, seeds: Sequence[int]
) -> Callable[[optuna.Trial], float]:
    """The trial function: sampled settings over ``base`` (a config dict), every category x seed."""
    space = SPACES[strategy]
    cids = sorted(bench.sets)
    bench.resamples = 0  # trials read the held-out AP only: no bootstrap verdicts

    def objective(trial: optuna.Trial) -> float:
        overrides = space(trial)
        bench.cfg = load_config(None, deep_merge(base, overrides))
        trial.set_user_attr("overrides", overrides)
        if trial.number > 0:
            pause_point("trial-running")  # kill -9 tests stop a worker here, its settings sampled
        aps, costs = [], []
        for step, cid in enumerate(cids):
            for seed in seeds:
                cell = run_cell(bench, cid, strategy, seed, budget)
                aps.append(cell.ap)
                costs.append(cell.cost)
            vals = [a for a in aps if not math.isnan(a)]
            running = float(np.mean(vals)) if vals else 0.0
            trial.report(running, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        trial.set_user_attr("cells", len(aps))
        trial.set_user_attr("mean_cost", float(np.mean(costs)))
        vals = [a for a in aps if not math.isnan(a)]
        return float(np.mean(vals)) if vals else 0.0

    return objective


def finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def tune(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    n_trials: int,
    timeout: float | None = None,
) -> optuna.Study:
    """Run trials until the study holds ``n_trials`` finished ones (over all workers) or ``timeout``."""
    if finished(study) < n_trials:
        study.optimize(
            objective,
            n_trials=n_trials,
            timeout=timeout,
            callbacks=[optuna.study.MaxTrialsCallback(n_trials, states=FINISHED)],
            catch=(ValueError, RuntimeError),
        )
    return study


def write_outputs(study: optuna.Study, base: dict, out: Path) -> dict | None:
    """``trials.json`` (every trial) and ``best_config.json`` (base + the best trial's settings)."""
    trials = [
        {
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "params": t.params,
            "user_attrs": t.user_attrs,
            "retried_from": t.system_attrs.get("failed_trial"),  # set by RetryHeartbeatStaleTrialCallback
        }
        for t in study.get_trials(deepcopy=False)
    ]
    write_json_atomic(out / "trials.json", {"study": study.study_name, "trials": trials})
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    best = study.best_trial
    config = deep_merge(base, best.user_attrs.get("overrides", {}))
    config["_comment"] = (
        f"tuned by alias_opt.tuning: study {study.study_name}, trial {best.number}, AP {best.value:.4f}"
    )
    write_json_atomic(out / "best_config.json", config)
    return config


# ---------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m alias_opt.tuning", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True, metavar="PATH", help="COCO annotation JSON or its folder")
    p.add_argument("--output", required=True, metavar="DIR", help="folder for study.db, best_config.json, trials.json")
    p.add_argument("--strategy", default="pez+evolution", choices=NAMES, help="the strategy to tune")
    p.add_argument("--budget", type=int, default=2000, help="forward-equivalents per category and seed in a trial")
    p.add_argument("--trials", type=int, default=30, help="finished trials the study should reach (all workers)")
    p.add_argument("--storage", metavar="URL", help="study storage URL (default sqlite:///DIR/study.db)")
    p.add_argument("--study-name", metavar="NAME", help="study name (default sam3-alias:<strategy>)")
    p.add_argument("--seeds", nargs="+", default=["0"], metavar="LIST", help="search seeds per trial (default 0)")
    p.add_argument("--categories", nargs="+", metavar="IDS", help="category ids, comma-separated (default all)")
    p.add_argument("--model", default="toy", metavar="SRC", help="toy (default), random:NAME[@SEED], a checkpoint dir")
    p.add_argument("--config", metavar="FILE", help="base config JSON (default configs/compare.json)")
    p.add_argument(
        "--split-seed", type=int, default=1, help="train/test split seed (default 1: not the comparison's 0)"
    )
    p.add_argument("--sampler-seed", type=int, help="TPE seed (default random: workers must differ)")
    p.add_argument("--heartbeat", type=int, default=30, help="seconds between a running trial's heartbeats")
    p.add_argument(
        "--grace", type=int, help="seconds without heartbeat before a trial is failed (default 2 x heartbeat)"
    )
    p.add_argument("--timeout", type=float, help="stop this worker after this many seconds")
    add_runtime_flags(p, progress=False)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    init_runtime(args)
    optuna.logging.set_verbosity(optuna.logging.INFO if args.verbose else optuna.logging.WARNING)
    from alias_opt.data.loader import DatasetError
    from sam3 import ModelSourceError

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    storage = args.storage or f"sqlite:///{(out / 'study.db').resolve()}"
    try:
        path = Path(args.config) if args.config else DEFAULT_CONFIG
        base = read_config_json(path)
        base.pop("_comment", None)
        cfg = load_config(None, base)
        setup = CompareSetup(
            dataset=args.dataset,
            model=args.model,
            strategies=[args.strategy],
            budget=args.budget,
            seeds=parse_list(args.seeds, int),
            categories=parse_list(args.categories, int),
            split_seed=args.split_seed,
        ).validate()
        if args.trials < 1:
            raise ValueError("--trials must be at least 1")
        bench = open_bench(setup, cfg, device=args.device, dtype=args.dtype)
        study = open_study(
            storage, args.study_name or f"sam3-alias:{args.strategy}", args.sampler_seed, args.heartbeat, args.grace
        )
    except (DatasetError, FileNotFoundError, ModelSourceError, ValueError) as exc:  # JSONDecodeError is a ValueError
        return user_error(exc, args.model)
    before = finished(study)
    tune(study, make_objective(bench, base, args.strategy, args.budget, setup.seeds), args.trials, args.timeout)
    best = write_outputs(study, base, out)
    print(f"study {study.study_name} in {storage}: {finished(study)} finished trials ({before} before this worker)")
    if best is not None:
        print(f"best AP {study.best_value:.4f} with {study.best_params}; wrote {out / 'best_config.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
