"""The per-category optimizer: outputs, provenance, history, strategies, budgets, and resume after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from alias_opt.config import load_config
from alias_opt.data.loader import CocoDataset
from alias_opt.discover import discover, run
from alias_opt.export import read_aliases
from alias_opt.search.embeddings import VocabularyIndex

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "max_len": 2,
    "scan_size": 12,
    "rerank": 2,
    "max_negatives": 4,
    "index": {"shortlist": 12, "probe_rounds": 1, "pool": 21},
    "soft": {"restarts": 2, "steps": 3, "batch_images": 4, "eval_every": 2},
    "gcg": {"steps": 2, "topk": 4, "candidates": 6},
    "evolution": {"population": 8, "generations": 2, "shortlist_pairs": 3},
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from tests.discovery_helpers import renamed_world

    return renamed_world(tmp_path_factory.mktemp("world"), 3)


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("index")


def _cfg(index_dir, **over):
    cfg = load_config(overrides={**TINY, **over})
    cfg.index.cache_dir = str(index_dir)
    return cfg


def test_run_writes_outputs(world, tiny_backend, index_dir, tmp_path):
    data, cats = world
    out = tmp_path / "out"
    result = run(
        data, out, _cfg(index_dir), model="random:tiny", categories=cats[:2], backend=tiny_backend, progress=False
    )
    assert [r.category_id for r in result.aliases] == cats[:2]
    f = read_aliases(out / "aliases.json")
    assert f.provenance.model_fingerprint == tiny_backend.fingerprint
    assert f.provenance.dataset_hash.startswith("sha256:") and f.provenance.config["max_len"] == 2
    for rec in f.aliases:
        assert 1 <= len(rec.token_ids) <= 2 or rec.strategy == "name"
        assert rec.text == tiny_backend.tokenizer.decode(rec.token_ids)
        assert rec.roundtrips  # the default filter only accepts round-tripping sequences
        assert rec.test_metrics is not None and rec.baseline_test_metrics is not None
        assert rec.baseline_text == rec.category_name
        assert rec.extra["oracle_text"] and rec.extra["forward_passes"] > 0
        assert (out / "categories" / f"{rec.category_id}.json").is_file()
        lines = (out / rec.extra["history"]).read_text().splitlines()
        rows = [json.loads(x) for x in lines]
        assert {"scan", "extend", "pez", "evolution", "rerank"} <= {r["phase"] for r in rows}
        assert all({"step", "loss", "best", "forward_passes", "wall_time"} <= set(r) for r in rows)
        assert [r["forward_passes"] for r in rows] == sorted(r["forward_passes"] for r in rows)
        assert (out / rec.extra["soft_prompt"]).is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["categories"] == 2 and (out / "report.txt").read_text().startswith("id")
    assert not list(out.rglob("*.tmp"))


@pytest.mark.parametrize("strategy", ["pez+gcg", "scan", "random", "projection", "evolution"])
def test_strategies_and_budget(world, tiny_backend, index_dir, strategy):
    data, cats = world
    cfg = _cfg(index_dir, strategy=strategy, budget=600)
    ts = CocoDataset.open(data).target_sets(max_negatives=4, categories=cats[:1])[0]
    vocab = VocabularyIndex.build(tiny_backend, cfg.index.space, cfg.index.cache_dir)
    d = discover(tiny_backend, ts, cfg, vocab)
    assert d.token_ids and d.strategy in (strategy, "name")
    n_train = len(ts.train)
    # the budget is a hard cap now (re-ranking included); the looser bound of the soft-budget days still holds
    assert d.usage.cost <= 600 + 3 * 64 + (cfg.rerank + 1) * n_train + 200
    assert [p.phase for p in d.phases][-1] in {"pez+gcg": "gcg", "projection": "soft"}.get(strategy, strategy)


def test_pooled_shortlist_is_screened_by_the_model(tiny_backend, index_dir):
    from alias_opt.search.memo import Split
    from alias_opt.search.projection import CandidateFilter
    from alias_opt.search.shortlist import allowed_tokens, build_indexes, pooled_shortlist
    from tests.discovery_helpers import objective

    cfg = _cfg(index_dir)
    obj = objective(tiny_backend, screen_images=4)
    filt = CandidateFilter(tiny_backend.tokenizer, allowed_tokens(tiny_backend, cfg, None), 2)
    indexes = build_indexes(tiny_backend, cfg)
    assert set(indexes) == {"scoring", "key", "text", "embed"}
    short = pooled_shortlist(obj, indexes, filt, 8, [()], cfg.index.views, pool=21)
    assert len(short) == 8 and all(filt((t,)) == (t,) for t in short)
    losses = [obj.screen_loss_of((t,)) for t in short]
    assert losses == sorted(losses)
    screened = obj.memo.sequences(Split.SCREEN)
    assert obj.usage().forward == len(screened) * 4 + 2 * obj.n_images
    assert len(screened) <= 21


def test_pooled_shortlist_screens_tokens_as_qualifiers_of_the_name(tiny_backend, index_dir):
    """With ``qualify`` every pooled token is also screened before the name; it ranks by the better loss."""
    from alias_opt.search.projection import CandidateFilter
    from alias_opt.search.shortlist import allowed_tokens, build_indexes, pooled_shortlist
    from tests.discovery_helpers import objective

    cfg = _cfg(index_dir)
    obj = objective(tiny_backend, screen_images=4)
    filt = CandidateFilter(tiny_backend.tokenizer, allowed_tokens(tiny_backend, cfg, None), 3)
    name = tuple(tiny_backend.tokenizer.encode("square", special=False))
    short = pooled_shortlist(obj, build_indexes(tiny_backend, cfg), filt, 8, [(), name], cfg.index.views, 21, name)
    assert len(short) == 8
    best = [min(obj.screen_loss_of((t,)), obj.screen_loss_of((t, *name))) for t in short]
    assert best == sorted(best) and all(v is not None for v in best)


def test_head_neighbours_are_the_new_tokens_once_best_head_first():
    from alias_opt.search.shortlist import head_neighbours

    near = np.array([[3, 7, 8], [7, 2, 5]])  # (H=2, n=3) the nearest tokens of heads 5 and 3
    assert head_neighbours([5, 3, 9], near) == [7, 8, 2]
    assert head_neighbours([5, 3, 7, 8, 2], near) == []


def test_pooled_shortlist_takes_in_the_neighbours_of_its_best_tokens(tiny_backend, index_dir):
    """With ``neighbours`` the nearest tokens of the screened pool's best ``heads`` (in their accepted, canonical
    form) are screened too, alone and before the name, and rank with the pool; without, the pool is the views'."""
    from alias_opt.search.embeddings import ProjectionIndex
    from alias_opt.search.memo import Split
    from alias_opt.search.projection import CandidateFilter
    from alias_opt.search.shortlist import allowed_tokens, build_indexes, head_neighbours, pooled_shortlist
    from tests.discovery_helpers import objective

    cfg = _cfg(index_dir)
    filt = CandidateFilter(tiny_backend.tokenizer, allowed_tokens(tiny_backend, cfg, None), 3)
    name = tuple(tiny_backend.tokenizer.encode("square", special=False))
    indexes, views = build_indexes(tiny_backend, cfg), cfg.index.views
    proj = ProjectionIndex(tiny_backend.token_embeddings, filt.allowed)
    plain = pooled_shortlist(objective(tiny_backend, screen_images=4), indexes, filt, 500, [(), name], views, 21, name)
    obj = objective(tiny_backend, screen_images=4)
    grown = pooled_shortlist(
        obj, indexes, filt, 500, [(), name], views, 21, name, lambda ids: proj.neighbours(ids, 3), heads=4
    )
    near = {filt((t,)) for t in head_neighbours(plain, proj.neighbours(plain[:4], 3))}  # canonical forms
    extra = [t for t in grown if t not in plain]
    assert set(plain) < set(grown) and len(extra) >= 4 and all((t,) in near for t in extra)
    assert len(grown) == len(set(grown))
    screened = set(obj.memo.sequences(Split.SCREEN))
    assert all((t,) in screened and (t, *name) in screened for t in extra)
    best = [min(obj.screen_loss_of((t,)), obj.screen_loss_of((t, *name))) for t in grown]
    assert best == sorted(best)  # one ranking of the views' tokens and the neighbours


def test_pooled_shortlist_gate_admits_the_rest_of_the_pools_neighbours_that_screen_well(tiny_backend, index_dir):
    """With ``gate`` the nearest tokens of the pool past its ``heads`` best are screened too, and exactly those
    screening at least as well as the views' pool's ``gate``-th token join (beside the heads' neighbours)."""
    from alias_opt.search.embeddings import ProjectionIndex
    from alias_opt.search.memo import Split
    from alias_opt.search.projection import CandidateFilter
    from alias_opt.search.shortlist import allowed_tokens, build_indexes, head_neighbours, pooled_shortlist
    from tests.discovery_helpers import objective

    cfg = _cfg(index_dir)
    filt = CandidateFilter(tiny_backend.tokenizer, allowed_tokens(tiny_backend, cfg, None), 3)
    name = tuple(tiny_backend.tokenizer.encode("square", special=False))
    indexes, views = build_indexes(tiny_backend, cfg), cfg.index.views
    proj = ProjectionIndex(tiny_backend.token_embeddings, filt.allowed)
    near = lambda ids: proj.neighbours(ids, 3)  # noqa: E731

    def best(obj, t):
        return min(obj.screen_loss_of((t,)), obj.screen_loss_of((t, *name)))

    obj = objective(tiny_backend, screen_images=4)
    plain = pooled_shortlist(obj, indexes, filt, 500, [(), name], views, 21, name)
    gate = 8
    bar = sorted(best(obj, t) for t in plain)[gate - 1]
    heads = pooled_shortlist(obj, indexes, filt, 500, [(), name], views, 21, name, near, heads=2)
    obj = objective(tiny_backend, screen_images=4)
    gated = pooled_shortlist(obj, indexes, filt, 500, [(), name], views, 21, name, near, heads=2, gate=gate)
    tail = {s[0] for s in filt.accept([(t,) for t in head_neighbours(heads, near(plain[2:]))]) if len(s) == 1}
    tail -= set(heads)  # one-token canonical forms, new to the pool
    screened = set(obj.memo.sequences(Split.SCREEN))
    assert tail and all((t,) in screened and (t, *name) in screened for t in tail)  # all paid for
    joined = set(gated) - set(heads)
    assert joined == {t for t in tail if best(obj, t) <= bar}
    assert 0 < len(joined) < len(tail)  # the gate admits some and refuses others
    assert set(heads) <= set(gated) and len(gated) == len(set(gated))
    assert [best(obj, t) for t in gated] == sorted(best(obj, t) for t in gated)


def test_context_splits_are_the_best_insertions_into_the_name(tiny_backend, index_dir):
    """``SearchContext.splits``: one pooled token inserted into the name at every position, the n best by
    screening loss; none without a name."""
    from alias_opt.search.context import make_context
    from tests.discovery_helpers import synthetic_images

    arrays, images = synthetic_images(5, 3)
    feats = tiny_backend.encode_images(arrays)
    cfg = _cfg(index_dir, max_len=3)
    ctx = make_context(tiny_backend, images, feats, "square", cfg, seed=0)
    name = ctx.name_seq
    splits = ctx.splits(6)
    assert len(splits) == 6 and name not in splits
    for s in splits:  # the name's tokens in order with exactly one token inserted
        assert len(s) == len(name) + 1 and any(s[:i] + s[i + 1 :] == name for i in range(len(s)))
    losses = [ctx.obj.screen_loss_of(s) for s in splits]
    assert losses == sorted(losses)
    assert ctx.shortlist() == ctx.pool()[: cfg.index.shortlist]  # the whole screened pool is kept, best first
    assert len(ctx.pool()) > len(ctx.shortlist())
    assert all(set(s) - set(name) <= set(ctx.pool()) for s in splits)
    assert ctx.splits(0) == [] and make_context(tiny_backend, images, feats, None, cfg, seed=0).splits(4) == []


def test_qualifier_losses_on_a_fake_objective():
    from alias_opt.search.shortlist import qualifier_losses

    class Obj:
        calls: list = []

        def screen_losses(self, seqs):
            self.calls.append(list(seqs))
            return np.array([float(sum(s)) for s in seqs])

    obj = Obj()
    filt = lambda seq: seq if len(seq) <= 2 else None  # noqa: E731  (max_len 2)
    out = qualifier_losses(obj, filt, [5, 7, 5], (1,))
    assert out.tolist() == [6.0, 8.0, 6.0] and obj.calls == [[(5, 1), (7, 1)]]  # a repeat is scored once
    assert np.isinf(qualifier_losses(obj, filt, [5], (1, 2))).all()  # too long for max_len: never scored


def test_bad_view_is_rejected():
    with pytest.raises(ValueError, match="view"):
        load_config(overrides={"index": {"views": ["scoring", "-nope"]}})
    with pytest.raises(ValueError, match="view 'embed'"):  # the embedding table has no concept vector
        load_config(overrides={"index": {"views": ["embed"]}})
    assert load_config(overrides={"index": {"views": ["distinct:embed"]}}).index.views == ["distinct:embed"]
    with pytest.raises(ValueError, match="positive number of tokens"):
        load_config(overrides={"index": {"views": ["-key@0"]}})
    with pytest.raises(ValueError, match="positive number of tokens"):
        load_config(overrides={"index": {"views": ["-key@many"]}})


def test_view_pool_takes_each_views_own_depth_in_turn():
    """ "VIEW@N" takes N tokens from that view, a bare view pool / len(views); the views are taken in turn
    (one view running out does not stop the others), repeats once, the first ``pool`` kept."""
    import torch

    from alias_opt.config import parse_view, view_tokens
    from alias_opt.search.shortlist import view_pool

    assert parse_view("-key@120") == (False, -1.0, "key") and view_tokens("-key@120", 7) == 120
    assert parse_view("distinct:embed@80") == (True, 1.0, "embed") and view_tokens("distinct", 7) == 7

    class Index:  # "scoring": concept-ranked tokens 100, 101, ...; distinct rows 1, 2, 3, ...
        def search(self, concept, k, allowed=None):
            return np.array([[100 + i for i in range(k)]])

        def distinct(self, k, allowed=None):
            return np.array([1 + i for i in range(k)])

    class Obj:
        def concept(self, space, probes):
            return torch.ones(2)

    class Filt:
        allowed = None

        def accept(self, seqs):
            return [s for s in seqs if s[0] != 3]  # token 3 is not a usable alias

    views = ["scoring@4", "distinct@2", "distinct"]  # the bare one takes ceil(12 / 3) = 4
    got = view_pool(Obj(), {"scoring": Index()}, Filt(), [()], views, pool=12)
    assert got == [100, 1, 101, 2, 102, 103, 4]  # in turn; 1 and 2 once; 3 filtered; the first 12 kept
    assert view_pool(Obj(), {"scoring": Index()}, Filt(), [()], views, pool=6) == [100, 1, 101, 2, 102, 103]  # bare: 2


def test_resume_after_kill(world, index_dir, tmp_path):
    data, cats = world
    out = tmp_path / "out"
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({**TINY, "index": {**TINY["index"], "cache_dir": str(index_dir)}}))
    env = {**os.environ, "SAM3_ALIAS_CACHE": str(tmp_path / "features"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        str(REPO / "main.py"),
        "--dataset",
        str(data),
        "--output",
        str(out),
        "--model",
        "random:tiny",
        "--config",
        str(config),
        "--categories",
        *map(str, cats),
        "--device",
        "cpu",
        "--no-progress",
        "--threads",
        "1",
    ]
    first = out / "categories" / f"{cats[0]}.json"
    marker = tmp_path / "paused"  # the run blocks right after its first checkpoint: a known point to kill at
    paused = {**env, "SAM3_ALIAS_PAUSE_AT": f"category-checkpoint:{marker}"}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=paused, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while not marker.is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None and marker.is_file(), (
        "the run ended before its first category finished: " + proc.stderr.read().decode()[-2000:]
    )
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert first.is_file() and not (out / "aliases.json").is_file()
    assert len(list((out / "categories").glob("*.json"))) == 1 < len(cats)
    saved = first.read_bytes()
    history = (out / "history" / f"{cats[0]}.jsonl").read_bytes()
    done = subprocess.run([*cmd, "--resume"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-2000:]
    assert first.read_bytes() == saved  # the finished category was neither redone nor rewritten
    assert (out / "history" / f"{cats[0]}.jsonl").read_bytes() == history
    f = read_aliases(out / "aliases.json")
    assert [r.category_id for r in f.aliases] == cats
    # without --resume the run starts over
    again = subprocess.run(
        [*cmd, "--categories", str(cats[0])], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400
    )
    assert again.returncode == 0 and first.read_bytes() != saved


def test_resume_refuses_checkpoints_of_other_settings_unless_overwrite(world, tiny_backend, index_dir, tmp_path):
    from alias_opt.resume import ResumeMismatch

    data, cats = world
    out = tmp_path / "out"
    run(data, out, _cfg(index_dir), categories=cats[:1], backend=tiny_backend, progress=False)
    first = (out / "categories" / f"{cats[0]}.json").read_bytes()
    with pytest.raises(ResumeMismatch, match="config.max_len: 2 there, 1 now"):
        run(data, out, _cfg(index_dir, max_len=1), categories=cats[1:2], backend=tiny_backend, resume=True)
    assert (out / "categories" / f"{cats[0]}.json").read_bytes() == first
    run(
        data,
        out,
        _cfg(index_dir, max_len=1),
        categories=cats[:1],
        backend=tiny_backend,
        progress=False,
        resume=True,
        overwrite=True,
    )
    rec = read_aliases(out / "categories" / f"{cats[0]}.json")
    assert (out / "categories" / f"{cats[0]}.json").read_bytes() != first
    assert rec.provenance.config["max_len"] == 1


def test_narrowing_losses_take_the_better_side_of_the_base():
    from alias_opt.search.shortlist import narrowing_losses

    class Obj:
        def screen_losses(self, seqs):
            return np.array([10.0 * s[0] + s[-1] for s in seqs])  # asymmetric: the order matters

    filt = lambda seq: seq if len(seq) <= 2 else None  # noqa: E731  (max_len 2)
    # before (5, 1) = 51, after (1, 5) = 15; before (7, 1) = 71, after (1, 7) = 17
    assert narrowing_losses(Obj(), filt, [5, 7], (1,)).tolist() == [15.0, 17.0]
    assert np.isinf(narrowing_losses(Obj(), filt, [5], (1, 2))).all()  # neither order fits max_len


def test_context_ranks_scanned_singles_by_train_ap_and_narrows_a_base(tiny_backend, index_dir):
    """``ranked_singles`` after a scan: the ``scan_ranked`` best fully scored singles by train AP (paid once),
    then the other fully scored ones by loss, then the rest; ``narrowing``: pool tokens by their better
    screening loss beside the base."""
    from alias_opt.eval.predict import evaluate_prompts
    from alias_opt.search.context import make_context, metric_ap
    from alias_opt.search.phases import scan_phase
    from tests.discovery_helpers import synthetic_images

    arrays, images = synthetic_images(5, 3)
    feats = tiny_backend.encode_images(arrays)
    ctx = make_context(tiny_backend, images, feats, None, _cfg(index_dir, max_len=3, scan_ranked=3), seed=0)
    ctx.results.append(scan_phase(ctx))
    full = [c for c in ctx.results[-1].candidates if ctx.obj.loss_of(c) is not None]
    assert len(full) >= 5 and [ctx.obj.loss_of(c) for c in full] == sorted(ctx.obj.loss_of(c) for c in full)
    before = ctx.obj.usage().forward
    ranked = ctx.ranked_singles()
    assert ctx.obj.usage().forward - before == 3 * ctx.obj.n_images  # one AP forward per ranked single and image
    aps = [metric_ap(m) for m in evaluate_prompts(tiny_backend, images, [list(c) for c in full[:3]], feats=feats)]
    want = [full[i][0] for i in np.argsort([-a for a in aps], kind="stable")]
    assert ranked[:3] == want and ranked[3 : len(full)] == [c[0] for c in full[3:]]  # the rest by loss
    assert sorted(ranked) == sorted(set(ranked))
    again = ctx.obj.usage().forward
    assert ctx.ranked_singles() == ranked and ctx.obj.usage().forward == again  # memoized
    base = (ranked[0],)
    narrow = ctx.narrowing(base, 5)
    assert len(narrow) == 5 and ranked[0] not in narrow and set(narrow) <= set(ctx.pool())
    best = [min(ctx.obj.screen_loss_of(p) for p in ((t, *base), (*base, t))) for t in narrow]
    assert best == sorted(best)
    head = [t for t in ctx.pool()[:6] if (t,) != base]
    few = ctx.narrowing(base, 10, head=6)  # only the pool's first 6 are screened beside the base
    assert set(few) <= set(head) and len(few) == len(head)
    few_best = [min(ctx.obj.screen_loss_of(p) for p in ((t, *base), (*base, t))) for t in few]
    assert few_best == sorted(few_best)


def test_context_insertions_use_the_built_pool_only(tiny_backend, index_dir):
    """The name's insertions for the alias-set pairs: none before a phase built the pool (a strategy without
    a shortlist must not pay for one), then every position of the pool's first n tokens, free."""
    from alias_opt.search.context import make_context
    from tests.discovery_helpers import synthetic_images

    arrays, images = synthetic_images(5, 3)
    feats = tiny_backend.encode_images(arrays)
    ctx = make_context(tiny_backend, images, feats, "red", _cfg(index_dir, max_len=3), seed=0)
    name = ctx.name_seq
    assert name is not None and ctx.insertions(4) == [] and ctx.obj.usage().forward == 0
    pool = ctx.pool()
    spent = ctx.obj.usage().forward
    ins = ctx.insertions(4)
    assert ctx.obj.usage().forward == spent
    want = {(t, *name) for t in pool[:4]} | {(*name, t) for t in pool[:4]}
    assert set(ins) == {s for s in want if s != name} and len(ins) == len(set(ins))
