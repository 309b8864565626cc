"""Union clusters: do a union category's target instances fall apart into its members by their features?

Per union category of a generated world-v2 *policy* dataset (the train split a run uses), each target
instance gets a descriptor, the descriptors are split into two clusters (k-means), and the clusters are
compared with the instances' true members (which clause of the annotation they match):

    purity      share of instances whose cluster's majority member is theirs (0.5 is chance for halves)

Descriptors: ``fpn`` (the image features pooled over the mask, what the ``text`` concept vector averages)
and ``query`` (the scoring head's query vector of the decoder query matched to the instance under the
name's prompt: the model's own detection space, where the ``scoring`` concept vector lives).

With ``--search`` each cluster is then searched alone (the other cluster's targets ignored) and the cover
set is chosen among the whole search's candidates and the clusters' (``greedy_cover``): ``found`` says
whether it holds every member, ``cover_train_ap`` beside the name's.

    python bench/union_clusters.py --model toy-v2 --seed 6161 --images 240 --threads 2 [--search]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alias_opt.config import load_config  # noqa: E402
from alias_opt.data.loader import CocoDataset  # noqa: E402
from alias_opt.discover import encode, train_images  # noqa: E402
from alias_opt.eval.predict import predict  # noqa: E402
from alias_opt.search.clusters import cluster_images, instance_descriptors, two_means  # noqa: E402
from alias_opt.search.cover import COVER_MIN_SCORE, above, greedy_cover, merged_ap  # noqa: E402
from alias_opt.search.pipeline import search, search_seed  # noqa: E402
from sam3 import Sam3Backend  # noqa: E402
from sam3.toy import vocab, world2  # noqa: E402


def _purity(labels: np.ndarray, truth: np.ndarray) -> float:
    hits = 0
    for c in np.unique(labels):
        _, counts = np.unique(truth[labels == c], return_counts=True)
        hits += counts.max()
    return hits / len(truth)


def union_rows(args, backend: Sam3Backend, data: Path) -> list[dict]:
    cfg = load_config(args.config)
    tok = backend.tokenizer
    ds = CocoDataset.open(data)
    clauses = {c.id: c.clauses for c in world2.categories("policy", args.seed)}
    attrs = {a["id"]: a["attributes"] for a in json.loads((data / "annotations.json").read_text())["annotations"]}
    rows = []
    for ts in ds.target_sets(seed=cfg.seed, train_fraction=cfg.train_fraction, max_negatives=cfg.max_negatives):
        if isinstance(ts.oracle_name, str) or not ts.name:
            continue
        t0 = time.perf_counter()
        images = train_images(ts, cfg, cfg.seed)
        feats = encode(backend, images)
        truth = np.array(
            [
                next(i for i, c in enumerate(clauses[ts.category_id]) if vocab.matches(c, attrs[a]))
                for im in images
                for a in im.ann_ids
            ]
        )
        row = {"category": ts.category_id, "name": ts.name, "oracle": ts.oracle_name, "instances": len(truth)}
        name = tok.encode(ts.name, special=False)
        for kind in ("fpn", "query"):
            desc = instance_descriptors(backend, images, feats, kind, name)
            labels = two_means(desc, seed=cfg.seed)
            row[f"purity_{kind}"] = round(_purity(labels, truth), 3)
        if args.search:
            seed = search_seed(cfg.seed, ts.category_id)
            first = search(backend, images, feats, ts.name, cfg, seed)
            pool = {tuple(s) for s in first.candidates[: cfg.set_pool]}
            labels = two_means(instance_descriptors(backend, images, feats, args.kind, name), seed=cfg.seed)
            picks = []
            for c, (sub, idx) in enumerate(cluster_images(images, labels)):
                out = search(backend, sub, feats.select(idx), ts.name, cfg, seed + 1 + c)
                got = [tuple(r.token_ids) for r in out.reranked] + [tuple(s) for s in out.candidates[: cfg.rerank]]
                picks.append(tok.decode(list(out.token_ids)))
                pool |= set(got)
            seqs = sorted(pool)
            preds = predict(backend, feats, images, [list(s) for s in seqs])
            trimmed = {s: [above(p, COVER_MIN_SCORE) for p in pr] for s, pr in zip(seqs, preds)}
            cover, m = greedy_cover(trimmed, images, cfg.max_aliases, margin=cfg.set_margin)
            members = [tuple(tok.encode(p, special=False)) for p in ts.oracle_name]
            name_ap = merged_ap(predict(backend, feats, images, [name])[:1], images)
            row.update(
                cluster_aliases=picks,
                cover=[tok.decode(list(s)) for s in cover],
                cover_train_ap=None if m is None else round(float(m.ap), 4),
                name_train_ap=round(name_ap, 4),
                first=tok.decode(list(first.token_ids)),
                found=all(s in cover for s in members),
            )
        row["seconds"] = round(time.perf_counter() - t0, 1)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="toy-v2", help="a world-v2 model source (default the shipped sam3-toy v2)")
    ap.add_argument("--seed", type=int, default=6161, help="world seed of the generated policy dataset")
    ap.add_argument("--images", type=int, default=240, help="images in the generated world")
    ap.add_argument("--config", default=str(REPO / "configs" / "fast.json"), help="discovery config JSON")
    ap.add_argument("--search", action="store_true", help="also search each cluster and choose a cover set")
    ap.add_argument("--kind", default="fpn", choices=["fpn", "query"], help="descriptor the searches cluster by")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    backend = Sam3Backend.load(args.model)
    data = Path(tempfile.mkdtemp(prefix="union_clusters_"))
    world2.write_dataset(data, "policy", args.images, args.seed)
    rows = union_rows(args, backend, data)
    summary = {"unions": len(rows)}
    for kind in ("fpn", "query"):
        summary[f"mean_purity_{kind}"] = round(float(np.mean([r[f"purity_{kind}"] for r in rows])), 3)
    if args.search:
        summary["cover_finds_all_members"] = float(np.mean([r["found"] for r in rows]))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
