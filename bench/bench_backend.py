"""Backend benchmark: measured ratios in one run.

(a) cached + batched ``ground`` over P x I prompt-image pairs vs a naive per-pair full
    ``Sam3Model`` forward from pixels (what an uncached, unbatched search pays per candidate);
(b) truncated vs full-length (32) text encoding;
(c) masks of every query vs a lean selection (the queries above a score, as the pair estimate predicts
    a name's insertions): the pixel decoder runs only for the pairs with a selected query.

    python bench/bench_backend.py --model random:toy --prompts 16 --images 8
    python bench/bench_backend.py --model random:full --device cuda --prompts 32 --images 8   # GPU
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sam3 import Sam3Backend  # noqa: E402
from sam3.preprocess import preprocess  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats: int) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` runs (after one warm-up)."""
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="random:toy", help="model source (random:NAME, toy, or a checkpoint dir)")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--dtype", default="auto", help="auto, fp32 or bf16")
    ap.add_argument("--prompts", type=int, default=16, help="P: candidate prompts")
    ap.add_argument("--images", type=int, default=8, help="I: images")
    ap.add_argument("--tokens", type=int, default=3, help="alias tokens per prompt")
    ap.add_argument("--naive-pairs", type=int, default=8, help="pairs timed for the naive path (extrapolated)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats (median)")
    ap.add_argument(
        "--lean-score",
        type=float,
        default=0.05,
        help="(c) a lean selection keeps the queries scoring above this (the pair estimate's COVER_MIN_SCORE)",
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    b = Sam3Backend.load(args.model, device=args.device, dtype=args.dtype, use_cache=False)
    dev = b.device
    rng = np.random.default_rng(0)
    side = b.image_size
    images = [rng.integers(0, 256, (side + 37, side - 11, 3), dtype=np.uint8) for _ in range(args.images)]
    seqs = [rng.integers(1000, 40000, args.tokens).tolist() for _ in range(args.prompts)]
    P, I = args.prompts, args.images
    pairs = P * I

    with torch.inference_mode():
        t_encode = timed(lambda: b.encode_images(images), dev, 1)
        feats = b.encode_images(images)
        ids, mask = b.prompt_ids(seqs)
        text = b.encode_text(ids=(ids, mask))
        t_cached = timed(lambda: b.ground(b.encode_text(ids=(ids, mask)), feats), dev, args.repeats)

        # naive: per pair, preprocess + full forward from pixels with a 32-token prompt
        ids32 = torch.full((P, 32), b.tokenizer.eot_id, device=dev)
        mask32 = torch.zeros((P, 32), dtype=torch.long, device=dev)
        ids32[:, : ids.shape[1]] = ids
        mask32[:, : ids.shape[1]] = mask.long()
        n_naive = min(args.naive_pairs, pairs)

        def naive():
            for k in range(n_naive):
                p, i = k % P, k % I
                px = preprocess(images[i], side).to(dev, b.dtype)
                b.model(pixel_values=px, input_ids=ids32[p : p + 1], attention_mask=mask32[p : p + 1])

        t_naive = timed(naive, dev, max(1, args.repeats - 1)) / n_naive * pairs

        # (c) masks for selected queries only: every query (a full prediction) vs those above a score (a lean
        # one), where the pixel decoder runs only for the pairs with a selected query
        def every(out, sl):
            return torch.ones_like(out.query_logits, dtype=torch.bool)

        def lean(out, sl):
            return out.scores() > args.lean_score

        encoded = b.encode_text(ids=(ids, mask))
        with_sel = int((b.ground(encoded, feats).scores() > args.lean_score).any(-1).sum())
        t_every = timed(lambda: b.ground(encoded, feats, masks=every), dev, args.repeats)
        t_lean = timed(lambda: b.ground(encoded, feats, masks=lean), dev, args.repeats)

        full = b.model.get_text_features
        t_text_trunc = timed(lambda: b.encode_text(ids=(ids, mask)), dev, args.repeats)
        t_text_full = timed(lambda: full(input_ids=ids32, attention_mask=mask32), dev, args.repeats)
    del text

    res = {
        "model": args.model,
        "device": str(dev),
        "dtype": str(b.dtype),
        "prompts": P,
        "images": I,
        "encode_images_s": t_encode,
        "cached_batched_ground_s": t_cached,
        "naive_per_pair_s_extrapolated": t_naive,
        "ms_per_pair_cached": 1000 * t_cached / pairs,
        "ms_per_pair_naive": 1000 * t_naive / pairs,
        "speedup_cached_batched_vs_naive": t_naive / t_cached,
        "speedup_cached_incl_encoding": t_naive / (t_cached + t_encode),
        "text_truncated_ms": 1000 * t_text_trunc,
        "text_full32_ms": 1000 * t_text_full,
        "speedup_truncated_text": t_text_full / t_text_trunc,
        "lean_pairs_with_a_selection": with_sel,
        "ms_per_pair_every_query": 1000 * t_every / pairs,
        "ms_per_pair_lean": 1000 * t_lean / pairs,
        "speedup_lean": t_every / t_lean,
    }
    print(f"model {args.model} on {dev} ({b.dtype}); P={P} prompts x I={I} images = {pairs} pairs")
    print(f"(a) naive per-pair forward from pixels: {res['ms_per_pair_naive']:.2f} ms/pair")
    print(f"    cached + batched ground:            {res['ms_per_pair_cached']:.2f} ms/pair")
    print(
        f"    ratio: {res['speedup_cached_batched_vs_naive']:.1f}x "
        f"({res['speedup_cached_incl_encoding']:.1f}x counting the one-off image encoding)"
    )
    print(
        f"(b) text encoding of {P} prompts: full 32 tokens {res['text_full32_ms']:.2f} ms, "
        f"truncated to {ids.shape[1]} {res['text_truncated_ms']:.2f} ms: {res['speedup_truncated_text']:.1f}x"
    )
    print(
        f"(c) masks of every query {res['ms_per_pair_every_query']:.2f} ms/pair, of those above "
        f"{args.lean_score:g} {res['ms_per_pair_lean']:.2f} ms/pair: {res['speedup_lean']:.1f}x "
        f"({with_sel} of {pairs} pairs have one: the pixel decoder runs for those only)"
    )
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
