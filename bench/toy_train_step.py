"""Where a sam3-toy training step spends its time, per architecture (CPU by default).

Runs ``--warmup`` then ``--steps`` training steps of ``sam3.toy.train`` (fresh init, default
``TrainConfig`` otherwise) and prints the mean milliseconds of each phase: drawing the batch
(world rendering + prompts), forward, loss, backward, gradient clipping + AdamW.

    python bench/toy_train_step.py --archs toy,toy24
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from sam3.tokenizer import Sam3Tokenizer
from sam3.toy import train
from sam3.toy.set_loss import LossWeights, set_prediction_loss

PHASES = ("batch", "forward", "loss", "backward", "clip+adamw")


def time_steps(arch: str, steps: int, warmup: int) -> np.ndarray:
    """(steps, len(PHASES)) milliseconds of each phase of ``steps`` training steps after ``warmup``."""
    cfg = train.TrainConfig(arch=arch)
    tok = Sam3Tokenizer()
    sampler = train.PromptSampler(tok, cfg)
    model = train.init_model(cfg).train()
    opt = train.build_optimizer(model, cfg)
    image_size, mask_size = train.batch_sizes(model.config)
    rows = []
    for step in range(warmup + steps):
        t = [time.perf_counter()]
        batch = train.make_batch(sampler, cfg, step, image_size, mask_size)
        ids, mask = train.pad_prompts(batch.prompts, tok)
        t.append(time.perf_counter())
        out = train.forward_pairs(model, batch.pixels, batch.img_idx, ids, mask)
        t.append(time.perf_counter())
        preds = (out.pred_logits, out.pred_boxes, out.pred_masks, out.presence_logits, out.semantic_seg)
        loss = set_prediction_loss(*preds, batch.targets, LossWeights())
        t.append(time.perf_counter())
        opt.zero_grad(set_to_none=True)
        loss.total.backward()
        t.append(time.perf_counter())
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        t.append(time.perf_counter())
        if step >= warmup:
            rows.append(np.diff(t) * 1000)
    return np.array(rows)


def main(argv: list[str] | None = None) -> dict[str, np.ndarray]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", default="toy,toy24", help="comma-separated named architectures (sam3.configs)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per architecture")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    means = {}
    for arch in args.archs.split(","):
        means[arch] = time_steps(arch, args.steps, args.warmup).mean(0)
        parts = "  ".join(f"{p} {m:.0f}" for p, m in zip(PHASES, means[arch]))
        print(f"{arch:8s} {means[arch].sum():6.0f} ms/step  ({parts})")
    first = next(iter(means))
    for arch, m in means.items():
        print(f"{arch} / {first}: {m.sum() / means[first].sum():.2f}x")
    return means


if __name__ == "__main__":
    main()
