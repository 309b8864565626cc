"""One pipeline: ``main.py`` (``alias_opt.discover.run``) and the strategy comparison run the same
search, so the same seed and budget give the same aliases; every registry name is known to every
entry point."""

from __future__ import annotations

import pytest

from alias_opt.compare import CompareSetup, run_comparison
from alias_opt.compare.tuning import SPACES
from alias_opt.config import load_config
from alias_opt.discover import run
from alias_opt.search.phases import PHASES
from alias_opt.search.strategies import DEFAULT, NAMES, STRATEGIES

TINY = {
    "max_len": 2,
    "scan_size": 8,
    "rerank": 2,
    "max_negatives": 4,
    "index": {"shortlist": 10, "probe_rounds": 1, "pool": 20},
    "soft": {"restarts": 2, "steps": 3, "batch_images": 4, "eval_every": 2},
    "gcg": {"steps": 2, "topk": 4, "candidates": 6},
    "evolution": {"population": 8, "generations": 2, "shortlist_pairs": 3},
}
BUDGET = 700


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from tests.discovery_helpers import renamed_world

    return renamed_world(tmp_path_factory.mktemp("world"), 2)


@pytest.mark.parametrize("strategy", [DEFAULT, "pez+gcg"])
def test_main_and_the_comparison_find_the_same_aliases(world, tiny_backend, tmp_path, strategy):
    data, cats = world
    index = str(tmp_path / "index")
    seed = 1  # discovery's seed is its split seed too: the comparison gets both
    cfg = load_config(overrides={**TINY, "strategy": strategy, "seed": seed, "budget": BUDGET})
    cfg.index.cache_dir = index
    shipped = run(
        data, tmp_path / "main", cfg, model="random:tiny", categories=cats, backend=tiny_backend, progress=False
    )

    cmp_cfg = load_config(overrides=TINY)  # the budget and seed come from the comparison's setup
    cmp_cfg.index.cache_dir = index
    setup = CompareSetup(str(data), "random:tiny", [strategy], BUDGET, [seed], cats, split_seed=seed)
    results = run_comparison(setup, cmp_cfg, tmp_path / "cmp", backend=tiny_backend, progress=False, report=False)

    cells = {c["category_id"]: c for c in results["cells"]}
    assert sorted(cells) == sorted(r.category_id for r in shipped.aliases)
    for rec in shipped.aliases:
        cell = cells[rec.category_id]
        assert cell["token_ids"] == rec.token_ids
        assert cell["train_ap"] == pytest.approx(rec.train_metrics.ap, nan_ok=True)
        assert cell["cost"] == rec.extra["cost"] <= BUDGET
        assert cell["test_metrics"] == rec.test_metrics.to_dict()


def test_one_registry_everywhere():
    assert DEFAULT in NAMES and load_config().strategy == DEFAULT
    assert set(SPACES) == set(NAMES)  # tuning knows every strategy
    assert all(p in PHASES for s in STRATEGIES.values() for p in s.phases)
    for name in NAMES:
        assert load_config(overrides={"strategy": name}).strategy == name  # discovery accepts every name
    assert STRATEGIES["scan"].phases == ("scan",) and STRATEGIES["vocab-scan"].phases == ("vocab-scan",)
