"""Train sam3-toy: a tiny ``transformers.Sam3Model`` on the shapes world, exported as an HF directory.

Each step renders fresh world images (deterministic by seed and step, a stream no dataset seed
reaches), runs the vision encoder once per image, and grounds K prompts per image:

    positives  "<colour> <shape>", "<colour>", "<shape>": every matching instance is a target
    negatives  absent concepts (mostly sharing a colour or shape with what is there), absent
               colours/shapes, and 1-3 random vocabulary tokens: no targets, presence 0

The renamed-variant words (``world.RENAMED_WORDS``) are never used, not even as random negatives.
Batches: ``sam3.toy.batch``; loss: ``sam3.toy.set_loss.set_prediction_loss`` (with ``aux_weight`` > 0
also DETR's auxiliary losses on the earlier decoder layers; with ``attr_weight`` > 0 the dense attribute
loss of ``sam3.toy.attributes`` on the FPN cells); initialization and export: ``sam3.toy.modeling``.
AdamW, linear warmup + cosine decay, gradient clipping. A checkpoint (model, optimizer, schedule,
RNG, step) is written atomically every ``--ckpt-every`` steps; ``--resume`` continues from it
exactly. Losses go to ``DIR/train_log.jsonl``.
At the end the model is exported to ``DIR/model`` (or ``--export-to``) in fp16 with the tokenizer
files: a checkpoint directory that ``Sam3Backend.load`` reads like facebook/sam3.

    python -m sam3.toy.train --out results/toy_train                  # stage 1 of the shipped recipe
    python -m sam3.toy.train --out results/toy_train --resume
    python -m sam3.toy.train --out results/toy_train --steps 6000 --device cuda
    python -m sam3.toy.train --out results/toy_train --export-only --export-to sam3/toy/sam3-toy
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput, box_cxcywh_to_xyxy, inverse_sigmoid

from sam3.configs import named_config
from sam3.tokenizer import ASSET_DIR, Sam3Tokenizer
from sam3.toy.attributes import AttrTraining
from sam3.toy.batch import (  # noqa: F401  (re-exported: the step's data is part of train's interface)
    OBJECT_WORD,
    TRAIN_STREAM,
    Batch,
    PromptSampler,
    batch_sizes,
    instance_targets,
    make_batch,
    make_sampler,
    pad_prompts,
    step_rng,
)
from sam3.toy.checkpoint import load_checkpoint, restore_run, save_checkpoint
from sam3.toy.modeling import export_model, init_model, load_exported, tie_row_norms
from sam3.toy.set_loss import LossWeights, aux_layer_loss, set_prediction_loss
from sam3.toy.train_config import TrainConfig, apply_overrides

CKPT_NAME = "checkpoint.pt"
LOG_NAME = "train_log.jsonl"


def forward_pairs(model, pixels: torch.Tensor, img_idx: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, vis=None):
    """Vision once per image (or ``vis``, the images' ``get_vision_features`` output, when the caller
    has it), then the Sam3Model heads on every (image, prompt) pair."""
    if vis is None:
        vis = model.get_vision_features(pixel_values=pixels)
    vision = Sam3VisionEncoderOutput(
        fpn_hidden_states=tuple(x.index_select(0, img_idx) for x in vis.fpn_hidden_states),
        fpn_position_encoding=tuple(x.index_select(0, img_idx) for x in vis.fpn_position_encoding),
    )
    return model(vision_embeds=vision, input_ids=ids, attention_mask=mask)


@dataclass
class LayerOutputs:
    """The predictions of one DETR decoder layer, for B pairs."""

    logits: torch.Tensor  # (B, Q) query logits
    boxes: torch.Tensor  # (B, Q, 4) xyxy normalized
    presence: torch.Tensor  # (B, 1) presence logits


def forward_pairs_aux(model, pixels, img_idx, ids, mask, vis=None):
    """``forward_pairs``, and the predictions of every decoder layer (for DETR's auxiliary losses
    on the layers before the last), built from the decoder's per-layer outputs (captured by forward
    hooks) with the model's own box head and scoring, as ``Sam3Model.forward`` builds the last one's.

    Returns:
        (the model's output, a list of ``LayerOutputs``, first layer first; the last one is the
        model's own ``pred_logits`` / ``pred_boxes`` / ``presence_logits``)
    """
    seen = {}
    hooks = [
        model.detr_encoder.register_forward_hook(lambda _m, _a, out: seen.__setitem__("encoder", out)),
        model.detr_decoder.register_forward_hook(lambda _m, _a, out: seen.__setitem__("decoder", out)),
    ]
    try:
        out = forward_pairs(model, pixels, img_idx, ids, mask, vis)
    finally:
        for h in hooks:
            h.remove()
    dec, text = seen["decoder"], seen["encoder"].text_features
    layers = []
    for i in range(dec.intermediate_hidden_states.shape[0]):
        hidden = dec.intermediate_hidden_states[i]  # (B, Q, D)
        cxcywh = (inverse_sigmoid(dec.reference_boxes[i]) + model.detr_decoder.box_head(hidden)).sigmoid()
        logits = model.dot_product_scoring(
            decoder_hidden_states=hidden[None], text_features=text, text_mask=mask.bool()
        )
        layers.append(LayerOutputs(logits.squeeze(-1)[0], box_cxcywh_to_xyxy(cxcywh), dec.presence_logits[i]))
    return out, layers


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def build_optimizer(model, cfg: TrainConfig) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or "embedding" in name or "norm" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98))


class StepBatches(torch.utils.data.Dataset):
    """Step k's batch (``make_batch``): a pure function of (seed, k), so a worker process can make it."""

    def __init__(self, sampler, cfg: TrainConfig, image_size: int, mask_size: tuple[int, int]):
        self.sampler, self.cfg, self.image_size, self.mask_size = sampler, cfg, image_size, mask_size

    def __len__(self) -> int:
        return self.cfg.steps

    def __getitem__(self, step: int):
        return make_batch(self.sampler, self.cfg, step, self.image_size, self.mask_size)


def _as_is(batch):
    return batch


def batches(sampler, cfg: TrainConfig, start: int, image_size: int, mask_size: tuple[int, int], workers: int):
    """The batches of steps ``start`` .. ``cfg.steps - 1``, in order. With ``workers`` > 0 a
    ``torch.utils.data.DataLoader`` renders them in that many worker processes, a few steps ahead of
    the model (rendering world v2 costs about a third of a step); the batches are the same."""
    if workers <= 0:
        return (make_batch(sampler, cfg, k, image_size, mask_size) for k in range(start, cfg.steps))
    return iter(
        torch.utils.data.DataLoader(
            StepBatches(sampler, cfg, image_size, mask_size),
            batch_size=None,
            sampler=range(start, cfg.steps),
            num_workers=workers,
            prefetch_factor=2,
            collate_fn=_as_is,
            generator=torch.Generator(),  # its own seed draw: the global RNG (saved in checkpoints) stays untouched
        )
    )


def train(
    out: Path,
    cfg: TrainConfig,
    resume: bool = False,
    ckpt_every: int = 200,
    log_every: int = 10,
    threads: int = 2,
    export_to: Path | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    extend_to: int | None = None,
    device: str = "cpu",
    workers: int = 1,
    resume_overrides: list[str] | None = None,
):
    """Train (or resume) a run in ``out``; export the final model; return it.

    ``stop_after`` ends the run early after that many steps (with a checkpoint, no export), as an
    interrupted run would; ``--resume`` then continues it. ``extend_to`` (with ``resume``) continues a
    finished or interrupted run to a new total number of steps; the cosine schedule is recomputed for
    the new total (a warm restart of the learning rate). ``device`` runs the model there (e.g.
    ``cuda``); images and prompts are still made on the CPU, and a CUDA run matches a CPU run only up
    to floating-point differences. Resume is exact on the CPU; CUDA's RNG state is not saved.
    """
    torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path, log_path = out / CKPT_NAME, out / LOG_NAME
    tokenizer = Sam3Tokenizer(ASSET_DIR)
    state = load_checkpoint(ckpt_path) if resume and ckpt_path.is_file() else None
    if state is not None:  # the checkpoint's config builds the model (its architecture, not the command line's)
        saved = TrainConfig(**state["config"])
        if extend_to is not None:
            saved = replace(saved, steps=extend_to)
        if resume_overrides:  # explicit --set on a resume: e.g. tie_word_norms switched on for the rest of a run
            changed = apply_overrides(saved, resume_overrides, _refuse)
            if changed.arch != saved.arch:
                raise ValueError(f"--resume cannot change the architecture ({saved.arch} -> {changed.arch})")
            diff = {
                f.name: getattr(changed, f.name)
                for f in fields(saved)
                if getattr(changed, f.name) != getattr(saved, f.name)
            }
            print(f"resuming with changed settings from --set: {diff}")
            saved = changed
        if saved != cfg:
            print(
                f"resuming with the checkpoint's config (command-line changes but --steps and --set ignored): {saved}"
            )
            cfg = saved
    sampler = make_sampler(tokenizer, cfg)
    model = init_model(cfg)
    if cfg.init_from and state is None:
        fresh = load_exported(model, Path(cfg.init_from), partial=cfg.init_partial)
        if fresh:
            print(f"warm start from {cfg.init_from}: {len(fresh)} weights kept fresh ({', '.join(fresh)})")
    if cfg.init_vision_from and state is None:
        load_exported(model, Path(cfg.init_vision_from), prefix="vision_encoder.")
        print(f"vision encoder from {cfg.init_vision_from}")
    model.to(device).train()
    if cfg.freeze_vision:
        model.vision_encoder.requires_grad_(False)
    elif cfg.freeze_backbone:
        model.vision_encoder.backbone.requires_grad_(False)
    optimizer = build_optimizer(model, cfg)
    attr = AttrTraining.build(model, cfg, state, device)
    start, elapsed = restore_run(state, model, optimizer, log_path)
    image_size, mask_size = batch_sizes(model.config)
    tied_rows = torch.as_tensor(sorted(sampler.trained_ids()), device=device) if cfg.tie_word_norms else None
    weights = LossWeights(cls=cfg.cls_weight, presence=cfg.presence_weight)
    bar = tqdm(total=cfg.steps, initial=start, desc="train sam3-toy", unit="step", disable=not progress)
    t0 = time.time() - elapsed
    running: dict[str, float] = {}
    with open(log_path, "a") as log:
        for step, batch in zip(range(start, cfg.steps), batches(sampler, cfg, start, image_size, mask_size, workers)):
            ids, mask = pad_prompts(batch.prompts, tokenizer)
            pixels, img_idx, ids, mask = (t.to(device) for t in (batch.pixels, batch.img_idx, ids, mask))
            targets = [t.to(device) for t in batch.targets]  # no-op on the CPU
            for g in optimizer.param_groups:
                g["lr"] = lr_at(step, cfg)
            vis = model.get_vision_features(pixel_values=pixels)
            if cfg.aux_weight:
                out_, layers = forward_pairs_aux(model, pixels, img_idx, ids, mask, vis)
                layers = layers[:-1]  # the last layer is the main loss's
            else:
                out_, layers = forward_pairs(model, pixels, img_idx, ids, mask, vis), []
            loss = set_prediction_loss(
                out_.pred_logits,
                out_.pred_boxes,
                out_.pred_masks,
                out_.presence_logits,
                out_.semantic_seg,
                targets,
                weights,
            )
            total, terms = loss.total, dict(loss.terms)
            if layers:
                aux = sum(aux_layer_loss(x.logits, x.boxes, x.presence, targets, weights) for x in layers)
                total, terms["aux"] = total + cfg.aux_weight * aux, float(aux.detach())
            if attr is not None:
                dense = attr.loss(vis, batch.attr_labels.to(device))
                total, terms["attr"] = total + cfg.attr_weight * dense, float(dense.detach())
            optimizer.zero_grad(set_to_none=True)
            if attr is not None:
                attr.optimizer.zero_grad(set_to_none=True)
            total.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            if attr is not None:
                attr.step(lr_at(step, cfg), cfg.grad_clip)
            if cfg.tie_word_norms:
                tie_row_norms(model.text_encoder.text_model.embeddings.token_embedding.weight, tied_rows)
            rec = {"step": step, "loss": float(total.detach()), **terms}
            for k, v in rec.items():
                if k != "step":
                    running[k] = 0.95 * running.get(k, v) + 0.05 * v
            if step % log_every == 0 or step == cfg.steps - 1:
                rec.update(lr=lr_at(step, cfg), grad_norm=float(gnorm), elapsed_s=round(time.time() - t0, 1))
                log.write(json.dumps(rec) + "\n")
                log.flush()
            bar.set_postfix(loss=f"{running['loss']:.3f}", pres=f"{running['presence']:.3f}")
            bar.update(1)
            if (step + 1) % ckpt_every == 0 or step + 1 == cfg.steps or step + 1 == stop_after:
                extra = attr.state() if attr is not None else None
                save_checkpoint(ckpt_path, model, optimizer, step + 1, cfg, time.time() - t0, extra)
            if step + 1 == stop_after:
                bar.close()
                return model
    bar.close()
    model.cpu().eval()
    target = export_to or out / "model"
    export_model(model, target)
    total = time.time() - t0
    (out / "train_summary.json").write_text(
        json.dumps({"steps": cfg.steps, "train_seconds": round(total, 1), "threads": threads, "config": cfg.__dict__})
    )
    print(f"trained {cfg.steps} steps in {total / 60:.1f} min; exported to {target}")
    return model


def _refuse(msg: str):
    raise ValueError(msg)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Train sam3-toy on the shapes world.")
    ap.add_argument("--out", required=True, type=Path, help="run directory (checkpoint, log, exported model)")
    ap.add_argument(
        "--steps", type=int, default=None, help=f"total steps (default {TrainConfig.steps}); with --resume: extend to"
    )
    ap.add_argument(
        "--images-per-step", type=int, default=TrainConfig.images_per_step, help="world images rendered per step"
    )
    ap.add_argument(
        "--prompts-per-image", type=int, default=TrainConfig.prompts_per_image, help="prompts grounded per image"
    )
    ap.add_argument("--lr", type=float, default=TrainConfig.lr, help="peak AdamW learning rate")
    ap.add_argument("--warmup", type=int, default=TrainConfig.warmup, help="linear warmup steps")
    ap.add_argument("--seed", type=int, default=TrainConfig.seed, help="seed of the init and the training stream")
    ap.add_argument("--arch", default=TrainConfig.arch, help="named architecture (sam3.configs.ARCHS)")
    ap.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.pt")
    ap.add_argument("--ckpt-every", type=int, default=200, help="steps between checkpoints")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument(
        "--workers", type=int, default=1, help="processes that render the next steps' images ahead (0: in the loop)"
    )
    ap.add_argument("--device", default="cpu", help="torch device of the model, e.g. cuda (default cpu)")
    ap.add_argument("--export-to", type=Path, default=None, help="HF directory to write (default DIR/model)")
    ap.add_argument("--export-only", action="store_true", help="export the checkpoint's weights and stop")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override any TrainConfig field, e.g. --set p_concept=0.6 --set init_from=sam3/toy/sam3-toy; "
        "with --resume it changes the checkpoint's settings from there on (not the architecture)",
    )
    args = ap.parse_args(argv)
    cfg = TrainConfig(
        arch=args.arch,
        steps=args.steps or TrainConfig.steps,
        images_per_step=args.images_per_step,
        prompts_per_image=args.prompts_per_image,
        lr=args.lr,
        warmup=args.warmup,
        seed=args.seed,
    )
    cfg = apply_overrides(cfg, args.set, ap.error)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: this machine has no CUDA device; train with --device cpu")
    if args.export_only:
        from transformers import Sam3Model

        state = load_checkpoint(args.out / CKPT_NAME)
        model = Sam3Model(named_config(state["config"]["arch"]))
        model.load_state_dict(state["model"])
        print(f"exported step {state['step']} to {export_model(model, args.export_to or args.out / 'model')}")
        return
    train(
        args.out,
        cfg,
        resume=args.resume,
        extend_to=args.steps if args.resume else None,
        ckpt_every=args.ckpt_every,
        threads=args.threads,
        export_to=args.export_to,
        progress=not args.no_progress,
        device=args.device,
        workers=args.workers,
        resume_overrides=args.set if args.resume else None,
    )


if __name__ == "__main__":
    main()
