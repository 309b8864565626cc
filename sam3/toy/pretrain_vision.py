"""Stage A of a world-v2 sam3-toy: teach the vision encoder the attributes, cell by cell.

Only the vision encoder (ViT + FPN neck) and a throwaway ``attributes.AttributeHead`` train; the
text encoder and the DETR / mask heads are copied through unchanged. Without prompts a step costs
about half a grounding step for four times the images (16 vs 4), and shape, the attribute the
set loss never taught (``bench/attribute_probe.py``), is image-hungry. The exported model is the
``init_from`` of the grounding stage (``sam3.toy.train``), which teaches the heads to read it.

Each step renders fresh world-v2 training images (``prompts_v2.training_image``, deterministic by
seed and step, ``PRETRAIN_STREAM``). AdamW, linear warmup + cosine decay, gradient clipping; a
checkpoint (model, head, optimizer, RNG, step) is written atomically every ``--ckpt-every`` steps
and ``--resume`` continues it exactly; the per-attribute cell accuracy of the 12 x 12 level goes
to ``DIR/pretrain_log.jsonl``.

    python -m sam3.toy.pretrain_vision --init results/toy_v2w/model --out results/toy_v2a --steps 6000
    python -m sam3.toy.pretrain_vision --init results/toy_v2w/model --out results/toy_v2a --steps 6000 --resume
    python -m sam3.toy.pretrain_vision --init sam3/toy/sam3-toy --arch toy --out results/v2s_a --steps 6000

``--arch`` warm-starts another architecture from the init's weights that fit (the shipped v1 sam3-toy is
``toy24d``; world v2 needs ``toy``'s 48 x 48 masks): the first FPN level starts fresh and trains here.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from sam3.preprocess import preprocess
from sam3.toy import vocab
from sam3.toy.attributes import AttributeHead, attribute_loss, cell_accuracy, cell_labels
from sam3.toy.checkpoint import load_checkpoint, restore_run, save_checkpoint
from sam3.toy.modeling import export_model, init_model, load_exported
from sam3.toy.prompts_v2 import training_image
from sam3.toy.train import lr_at  # the same warmup + cosine (it reads lr, warmup, steps, min_lr_ratio)
from sam3.toy.train_config import TrainConfig

PRETRAIN_STREAM = 0x7E1  # SeedSequence([seed, PRETRAIN_STREAM, step]): neither a training step's nor a dataset's
CKPT_NAME = "pretrain_checkpoint.pt"
LOG_NAME = "pretrain_log.jsonl"


@dataclass(frozen=True)
class PretrainConfig:
    init: str  # exported sam3-toy HF directory whose vision encoder trains (the rest is copied through)
    steps: int = 6000  # total optimizer steps
    images_per_step: int = 16  # world-v2 training images per step
    lr: float = 1e-3  # peak AdamW learning rate
    min_lr_ratio: float = 0.05  # the cosine ends at lr x this
    warmup: int = 100  # linear warmup steps
    weight_decay: float = 0.05  # AdamW weight decay (weights of 2+ dims)
    grad_clip: float = 1.0  # max global gradient norm
    seed: int = 0  # seed of the head's init and the image stream
    # "": the init's own architecture. A name (sam3.configs.ARCHS): a fresh model of that architecture
    # takes the init's weights that fit in name and shape (a warm start across architectures, e.g. the v1
    # sam3-toy's toy24d -> toy, which differ only in the first FPN level; the rest starts fresh).
    arch: str = ""


def step_images(cfg: PretrainConfig, step: int, image_size: int, sizes: list[tuple[int, int]]):
    """Step ``step``'s pixels (I, 3, S, S) and per-level cell labels [(I, 4, h, w)], a pure function of (seed, step)."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, PRETRAIN_STREAM, step]))
    imgs = [training_image(rng, TrainConfig(world="v2")) for _ in range(cfg.images_per_step)]
    labels = [torch.stack([cell_labels(im.instances, s) for im in imgs]) for s in sizes]
    return preprocess([im.rgb for im in imgs], image_size), labels


def _initial_model(cfg: PretrainConfig):
    """The Sam3Model stage A starts from: the init as it is, or ``cfg.arch`` warm-started from it."""
    from transformers import Sam3Model

    if not cfg.arch:
        return Sam3Model.from_pretrained(cfg.init, dtype=torch.float32)
    model = init_model(TrainConfig(arch=cfg.arch, seed=cfg.seed))
    fresh = load_exported(model, Path(cfg.init), partial=True)
    print(f"{cfg.arch} from {cfg.init}: {len(fresh)} weights kept fresh ({', '.join(fresh)})")
    return model


class _Trainable(torch.nn.Module):
    """The Sam3Model and the attribute head, one state dict for the checkpoint."""

    def __init__(self, model, head: AttributeHead):
        super().__init__()
        self.model, self.head = model, head


def pretrain(out: Path, cfg: PretrainConfig, resume: bool = False, ckpt_every: int = 200, threads: int = 2):
    """Train (or resume) stage A in ``out``; export the Sam3Model to ``out/model``; return it."""

    torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path, log_path = out / CKPT_NAME, out / LOG_NAME
    state = load_checkpoint(ckpt_path) if resume and ckpt_path.is_file() else None
    if state is not None:
        saved = PretrainConfig(**state["config"])
        if saved.init != cfg.init or saved.seed != cfg.seed or saved.arch != cfg.arch:
            raise ValueError(
                f"{ckpt_path} was started from {saved.init} (seed {saved.seed}, arch {saved.arch or 'its own'}), "
                f"not {cfg.init} (seed {cfg.seed}, arch {cfg.arch or 'its own'}): use another --out"
            )
        cfg = PretrainConfig(**{**asdict(saved), "steps": cfg.steps})  # only the length may change
    model = _initial_model(cfg)
    torch.manual_seed(cfg.seed)
    head = AttributeHead(model.config.vision_config.fpn_hidden_size, levels=3)
    both = _Trainable(model, head)
    for p in model.parameters():
        p.requires_grad_(False)
    params = [*model.vision_encoder.parameters(), *head.parameters()]
    for p in params:
        p.requires_grad_(True)
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.98),
    )
    start, elapsed = restore_run(state, both, opt, log_path)
    image_size = int(model.config.vision_config.backbone_config.image_size)
    sizes = [tuple(s) for s in model.config.vision_config.backbone_feature_sizes]
    model.train()
    t0 = time.time() - elapsed
    with open(log_path, "a") as log:
        for step in range(start, cfg.steps):
            pixels, labels = step_images(cfg, step, image_size, sizes)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, cfg)
            fpn = list(model.get_vision_features(pixel_values=pixels).fpn_hidden_states[: len(sizes)])
            logits = head(fpn)
            loss = attribute_loss(logits, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            if step % 20 == 0 or step == cfg.steps - 1:
                acc = cell_accuracy([x.detach() for x in logits[-1]], labels[-1])
                rec = {"step": step, "loss": round(float(loss.detach()), 4), "lr": lr_at(step, cfg)}
                rec.update({f"acc_{a}": round(v, 4) for a, v in zip(vocab.ATTRIBUTES, acc)})
                rec["elapsed_s"] = round(time.time() - t0, 1)
                log.write(json.dumps(rec) + "\n")
                log.flush()
            if (step + 1) % ckpt_every == 0 or step + 1 == cfg.steps:
                save_checkpoint(ckpt_path, both, opt, step + 1, cfg, time.time() - t0)
    model.eval()
    export_model(model, out / "model")
    print(f"stage A: {cfg.steps} steps in {(time.time() - t0) / 60:.1f} min; exported to {out / 'model'}")
    return model


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Stage A of a world-v2 sam3-toy: dense attribute supervision of the ViT.")
    ap.add_argument("--init", required=True, help="exported sam3-toy directory to start from")
    ap.add_argument("--out", required=True, type=Path, help="run directory (checkpoint, log, exported model)")
    ap.add_argument("--steps", type=int, default=PretrainConfig.steps, help="total steps (with --resume: extend to)")
    ap.add_argument("--images-per-step", type=int, default=PretrainConfig.images_per_step, help="images per step")
    ap.add_argument("--lr", type=float, default=PretrainConfig.lr, help="peak AdamW learning rate")
    ap.add_argument("--seed", type=int, default=PretrainConfig.seed, help="seed of the head and the image stream")
    ap.add_argument(
        "--arch", default="", help="architecture to warm-start from --init's fitting weights (default: --init's own)"
    )
    ap.add_argument("--resume", action="store_true", help="continue from DIR/pretrain_checkpoint.pt")
    ap.add_argument("--ckpt-every", type=int, default=200, help="steps between checkpoints")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = ap.parse_args(argv)
    if not (Path(args.init) / "config.json").is_file():
        ap.error(f"--init {args.init}: not an exported sam3-toy directory (no config.json)")
    cfg = PretrainConfig(
        init=str(args.init),
        steps=args.steps,
        images_per_step=args.images_per_step,
        lr=args.lr,
        seed=args.seed,
        arch=args.arch,
    )
    pretrain(args.out, cfg, resume=args.resume, ckpt_every=args.ckpt_every, threads=args.threads)


if __name__ == "__main__":
    main()
