"""sam3-toy training: prompt sampling, exact resume, and an export that the backend loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sam3 import Sam3Backend
from sam3.configs import named_config
from sam3.tokenizer import Sam3Tokenizer
from sam3.toy import train, world
from sam3.toy.set_loss import LossWeights

CFG = train.TrainConfig(arch="tiny", steps=4, images_per_step=2, prompts_per_image=3, warmup=2)
RUN = dict(ckpt_every=2, log_every=1, threads=1, progress=False)


def test_prompts_and_targets():
    tok = Sam3Tokenizer()
    sampler = train.PromptSampler(tok, train.TrainConfig())
    renamed = {i for w in world.RENAMED_WORDS for i in tok.encode(w, special=False)}
    assert renamed.isdisjoint(sampler.random_pool.tolist())
    word_of = {ids[0]: w for w, ids in sampler.word_ids.items()}
    n_pos = n_neg = 0
    for step in range(40):
        rng = train.step_rng(0, step)
        img = world.render_image(rng)
        for ids, inst in sampler.sample(rng, img, 5):
            assert not renamed & set(ids)
            words = {word_of.get(i) for i in ids}
            matching = [i for i, t in enumerate(img.instances) if words <= {t.colour, t.shape, train.OBJECT_WORD}]
            if inst:
                n_pos += 1
                assert inst == matching  # every instance the words name, nothing else
            else:
                n_neg += 1
                assert not matching  # negatives name nothing in the image
    assert n_pos > 50 and n_neg > 50
    target = train.instance_targets(img, list(range(len(img.instances))), (12, 12))
    assert target.masks.shape == (len(img.instances), 12, 12) and float(target.masks.max()) <= 1
    assert (target.boxes[:, 2:] > target.boxes[:, :2]).all() and target.boxes.max() <= 1


def test_resume_continues_exactly(tmp_path):
    full = train.train(tmp_path / "full", CFG, **RUN)
    train.train(tmp_path / "cut", CFG, stop_after=2, **RUN)
    assert torch.load(tmp_path / "cut" / train.CKPT_NAME, weights_only=False)["step"] == 2
    resumed = train.train(tmp_path / "cut", CFG, resume=True, **RUN)
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    logs = [(tmp_path / d / train.LOG_NAME).read_text().splitlines() for d in ("full", "cut")]
    steps = [[json.loads(line)["step"] for line in log] for log in logs]
    assert steps[0] == steps[1] == [0, 1, 2, 3]


def test_resume_builds_the_checkpoints_architecture(tmp_path):
    """`--resume` without `--arch` (the command line's default architecture differs) continues the run."""
    train.train(tmp_path, CFG, stop_after=2, **RUN)
    resumed = train.train(tmp_path, train.TrainConfig(), resume=True, **RUN)  # default arch toy24d, 8,000 steps
    assert (
        resumed.config.vision_config.backbone_config.image_size
        == named_config("tiny").vision_config.backbone_config.image_size
    )
    steps = [json.loads(line)["step"] for line in (tmp_path / train.LOG_NAME).read_text().splitlines()]
    assert steps == [0, 1, 2, 3]


def test_export_loads_through_the_backend(tmp_path):
    model = train.train(tmp_path / "run", CFG, **RUN)
    backend = Sam3Backend.load(str(tmp_path / "run" / "model"), device="cpu", use_cache=False)
    assert backend.dtype == torch.float32
    loaded = backend.model.state_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(loaded[k], v.to(torch.float16).float()), k
    img = world.render_image(world.image_rng(0, 0))
    out = backend.ground(backend.encode_text(backend.text_ids(["red circle"])), backend.encode_images([img.rgb]))
    assert out.mask_logits.shape[-2:] == tuple(model.config.vision_config.backbone_feature_sizes[0])


def test_resume_can_extend_a_finished_run(tmp_path):
    train.train(tmp_path, CFG, **RUN)
    train.train(tmp_path, CFG, resume=True, extend_to=6, **RUN)
    state = torch.load(tmp_path / train.CKPT_NAME, weights_only=False)
    assert state["step"] == 6 and state["config"]["steps"] == 6
    steps = [json.loads(line)["step"] for line in (tmp_path / train.LOG_NAME).read_text().splitlines()]
    assert steps == list(range(6))


def test_fine_tune_starts_from_an_exported_model(tmp_path):
    base = train.train(tmp_path / "base", CFG, **RUN)
    ft_cfg = train.apply_overrides(CFG, [f"init_from={tmp_path / 'base' / 'model'}", "steps=1"], _raise)
    tuned = train.init_model(ft_cfg)  # a fresh init differs from the base weights ...
    key = "detr_decoder.reference_points.weight"
    train.load_exported(tuned, tmp_path / "base" / "model")  # ... the export's (fp16) weights replace it
    torch.testing.assert_close(tuned.state_dict()[key], base.state_dict()[key], atol=1e-3, rtol=1e-3)
    fresh = train.init_model(ft_cfg)
    model = train.train(tmp_path / "ft", ft_cfg, **RUN)

    def dist(a, b):
        return sum(float((x - y).abs().max().detach()) for x, y in zip(a.parameters(), b.parameters()))

    assert 0 < dist(model, tuned) < 0.2 * dist(model, fresh)  # one step from the base weights
    with pytest.raises(FileNotFoundError, match="written by export_model"):
        train.load_exported(fresh, tmp_path)
    with pytest.raises(ValueError, match="does not fit"):  # a tiny export into the toy architecture
        train.load_exported(train.init_model(train.TrainConfig(arch="toy")), tmp_path / "base" / "model")


def _raise(msg: str):
    raise ValueError(msg)


def test_overrides_are_typed_and_checked():
    cfg = train.apply_overrides(train.TrainConfig(), ["cls_weight=4", "grid_queries=false", "steps=7"], _raise)
    assert (cfg.cls_weight, cfg.grid_queries, cfg.steps) == (4.0, False, 7)
    with pytest.raises(ValueError, match="FIELD one of"):
        train.apply_overrides(cfg, ["nope=1"], _raise)
    with pytest.raises(ValueError, match="not of type int"):
        train.apply_overrides(cfg, ["steps=many"], _raise)
    with pytest.raises(ValueError, match="prompt mix"):
        train.apply_overrides(cfg, ["p_concept=0.9"], _raise)
    with pytest.raises(ValueError, match="world_max_concepts=0"):
        train.apply_overrides(cfg, ["world_max_concepts=0"], _raise)
    with pytest.raises(ValueError, match="p_related_concept=1.5"):
        train.apply_overrides(cfg, ["p_related_concept=1.5"], _raise)
    ok = train.apply_overrides(cfg, ["world_max_concepts=4", "p_related_concept=0.6", "aux_weight=1"], _raise)
    assert (ok.world_max_concepts, ok.p_related_concept, ok.aux_weight) == (4, 0.6, 1.0)


def test_cuda_device_is_refused_without_cuda(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit):
        train.main(["--out", str(tmp_path), "--steps", "1", "--device", "cuda"])
    assert "no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / train.CKPT_NAME).exists()  # refused before anything was written


@pytest.mark.gpu
def test_cuda_training_matches_cpu_and_exports(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    cfg = train.TrainConfig(arch="tiny", steps=2, images_per_step=2, prompts_per_image=3, warmup=1)
    runs = {d: train.train(tmp_path / d, cfg, device=d, **RUN) for d in ("cpu", "cuda")}
    first = {d: json.loads((tmp_path / d / train.LOG_NAME).read_text().splitlines()[0]) for d in runs}
    assert first["cuda"]["loss"] == pytest.approx(first["cpu"]["loss"], rel=1e-3)  # same init, same batch
    assert next(runs["cuda"].parameters()).device.type == "cpu"  # handed back on the CPU after export
    Sam3Backend.load(str(tmp_path / "cuda" / "model"), device="cpu", use_cache=False)


def test_a_damaged_checkpoint_is_named_in_the_error(tmp_path):
    bad = tmp_path / train.CKPT_NAME
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read the training checkpoint"):
        train.train(tmp_path, CFG, resume=True, **RUN)
    assert bad.read_bytes() == b"not a checkpoint"  # left as it was, nothing overwritten


def _one_batch_forward(arch: str):
    """A fresh `arch` model, the mask size train() would use, one 1-image x 2-prompt batch and its outputs."""
    cfg = train.TrainConfig(arch=arch, images_per_step=1, prompts_per_image=2)
    model = train.init_model(cfg).eval()
    tok = Sam3Tokenizer()
    image_size, mask_size = train.batch_sizes(model.config)  # as train() sizes its batches
    batch = train.make_batch(train.PromptSampler(tok, cfg), cfg, 0, image_size, mask_size)
    ids, mask = train.pad_prompts(batch.prompts, tok)
    with torch.no_grad():
        out = train.forward_pairs(model, batch.pixels, batch.img_idx, ids, mask)
    return model, mask_size, batch, out


def test_toy24_predicts_masks_at_half_the_toy_side():
    """`toy24` differs from `toy` only in mask resolution (24x24 instead of 48x48)."""
    assert named_config("toy").vision_config.backbone_feature_sizes[0] == [48, 48]
    model, _, batch, out = _one_batch_forward("toy24")
    assert model.config.vision_config.backbone_feature_sizes[0] == [24, 24]
    assert out.pred_masks.shape == (2, 24, 24, 24)  # (pairs, queries, H, W)
    assert out.semantic_seg.shape[-2:] == (24, 24)
    assert all(t.masks.shape[-2:] == (24, 24) for t in batch.targets)


def test_toy24d_has_two_pixel_decoder_stages_at_24x24():
    """`toy24d` (the shipped sam3-toy's architecture and train()'s default) keeps toy24's 24x24 masks
    but adds back toy's second pixel-decoder stage."""
    shipped = json.loads((Path(train.__file__).parent / "sam3-toy" / "config.json").read_text())
    shipped = shipped.get("vision_config") or shipped["detector_config"]["vision_config"]
    toy24d = named_config("toy24d").vision_config
    assert train.TrainConfig().arch == "toy24d"
    assert toy24d.scale_factors == shipped["scale_factors"]
    assert toy24d.backbone_feature_sizes == shipped["backbone_feature_sizes"]
    # the levels the pixel decoder sees (the last FPN level is dropped)
    assert toy24d.backbone_feature_sizes == [[24, 24], [24, 24], [12, 12]]
    assert named_config("toy24").vision_config.backbone_feature_sizes[:2] == [[24, 24], [12, 12]]
    _, mask_size, _, out = _one_batch_forward("toy24d")
    assert tuple(mask_size) == (24, 24)
    assert out.pred_masks.shape == (2, 24, 24, 24)  # (pairs, queries, H, W)
    assert out.semantic_seg.shape[-2:] == (24, 24)


def test_aux_layer_outputs_rebuild_the_last_layer_and_train(tmp_path):
    """forward_pairs_aux rebuilds each decoder layer's predictions the way Sam3Model builds the last
    one's (checked on the last), and a run with auxiliary losses trains and logs them."""
    cfg = train.TrainConfig(arch="tiny", images_per_step=2, prompts_per_image=3)
    tok = Sam3Tokenizer()
    model = train.init_model(cfg).eval()
    image_size, mask_size = train.batch_sizes(model.config)
    batch = train.make_batch(train.PromptSampler(tok, cfg), cfg, 0, image_size, mask_size)
    ids, mask = train.pad_prompts(batch.prompts, tok)
    with torch.no_grad():
        out, layers = train.forward_pairs_aux(model, batch.pixels, batch.img_idx, ids, mask)
    assert len(layers) == model.config.detr_decoder_config.num_layers
    last = layers[-1]
    torch.testing.assert_close(last.logits, out.pred_logits)
    torch.testing.assert_close(last.boxes, out.pred_boxes)
    torch.testing.assert_close(last.presence, out.presence_logits)
    assert not torch.allclose(layers[0].boxes, last.boxes)  # a different layer, not a copy
    run_cfg = train.TrainConfig(arch="tiny", steps=2, images_per_step=2, prompts_per_image=3, warmup=1, aux_weight=1.0)
    train.train(tmp_path, run_cfg, **RUN)
    rows = [json.loads(x) for x in (tmp_path / train.LOG_NAME).read_text().splitlines()]
    assert all(r["aux"] > 0 for r in rows)
    weighted = sum(getattr(LossWeights(), k) * rows[0][k] for k in ("box_l1", "giou", "mask_focal", "mask_dice"))
    weighted += 2.0 * rows[0]["cls"] + 2.0 * rows[0]["presence"] + LossWeights().semantic * rows[0]["semantic"]
    assert rows[0]["loss"] == pytest.approx(weighted + rows[0]["aux"], rel=1e-4)


def test_partial_warm_start_across_architectures(tmp_path):
    """toy24d -> toy differ only in the first FPN level: those weights stay fresh, the rest load."""
    from sam3.toy.modeling import export_model

    src = train.init_model(train.TrainConfig(arch="toy24d", seed=3))
    export_model(src, tmp_path / "src")
    dst_cfg = train.TrainConfig(arch="toy", seed=4)
    dst = train.init_model(dst_cfg)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    fresh = train.load_exported(dst, tmp_path / "src", partial=True)
    assert fresh == sorted(k for k in fresh) and all(k.startswith("vision_encoder.neck.fpn_layers.0.") for k in fresh)
    assert len(fresh) == 3
    state = dst.state_dict()
    for k in fresh:  # kept as initialized
        torch.testing.assert_close(state[k], before[k])
    key = "text_model.embeddings.token_embedding.weight"
    key = key if key in state else next(k for k in state if k.endswith("token_embedding.weight"))
    assert not torch.equal(state[key], before[key])
    torch.testing.assert_close(state[key], src.state_dict()[key].half().float(), atol=0, rtol=0)


def test_worker_batches_equal_in_loop_batches():
    """A DataLoader worker renders exactly the batches the loop would (world v2, from a later start)."""
    from sam3.configs import named_config
    from sam3.tokenizer import ASSET_DIR, Sam3Tokenizer
    from sam3.toy.batch import batch_sizes, make_sampler

    cfg = train.TrainConfig(arch="tiny", world="v2", steps=5, images_per_step=2, prompts_per_image=3)
    sampler = make_sampler(Sam3Tokenizer(ASSET_DIR), cfg)
    sizes = batch_sizes(named_config("tiny"))
    a = list(train.batches(sampler, cfg, 2, *sizes, workers=0))
    b = list(train.batches(sampler, cfg, 2, *sizes, workers=1))
    assert len(a) == len(b) == 3
    for x, y in zip(a, b):
        assert torch.equal(x.pixels, y.pixels) and x.prompts == y.prompts and torch.equal(x.img_idx, y.img_idx)
        assert all(torch.equal(s.masks, t.masks) for s, t in zip(x.targets, y.targets))
    assert not torch.equal(a[0].pixels, a[1].pixels)


def test_resume_with_set_changes_settings_from_there_on(tmp_path):
    """--resume with --set: the checkpoint's config with the change (saved in the next checkpoint);
    the architecture cannot change."""
    train.train(tmp_path, CFG, stop_after=2, **RUN)
    train.train(tmp_path, CFG, resume=True, resume_overrides=["cls_weight=7.5"], **RUN)
    state = torch.load(tmp_path / train.CKPT_NAME, weights_only=False)
    assert state["config"]["cls_weight"] == 7.5 and state["step"] == CFG.steps
    with pytest.raises(ValueError, match="architecture"):
        train.train(tmp_path, CFG, resume=True, extend_to=CFG.steps + 1, resume_overrides=["arch=toy"], **RUN)
    with pytest.raises(ValueError, match="FIELD=VALUE"):
        train.train(tmp_path, CFG, resume=True, resume_overrides=["nope=1"], **RUN)


def test_dense_attribute_loss_trains_resumes_exactly_and_can_be_switched_on(tmp_path):
    """attr_weight > 0 (world v2): the loss is logged, its head lives in the checkpoint, resume is exact."""
    cfg = train.TrainConfig(
        arch="tiny", steps=4, images_per_step=2, prompts_per_image=2, warmup=2, world="v2", attr_weight=1.0
    )
    full = train.train(tmp_path / "full", cfg, **RUN)
    train.train(tmp_path / "cut", cfg, stop_after=2, **RUN)
    state = torch.load(tmp_path / "cut" / train.CKPT_NAME, weights_only=True)
    assert "attr_head" in state and "attr_optimizer" in state
    resumed = train.train(tmp_path / "cut", cfg, resume=True, **RUN)
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    log = [json.loads(line) for line in (tmp_path / "full" / train.LOG_NAME).read_text().splitlines()]
    assert all(rec["attr"] > 0 for rec in log)
    off = train.TrainConfig(**{**cfg.__dict__, "attr_weight": 0.0})
    train.train(tmp_path / "late", off, stop_after=2, **RUN)
    assert "attr_head" not in torch.load(tmp_path / "late" / train.CKPT_NAME, weights_only=True)
    train.train(tmp_path / "late", off, resume=True, resume_overrides=["attr_weight=0.5"], **RUN)
    assert "attr_head" in torch.load(tmp_path / "late" / train.CKPT_NAME, weights_only=True)
    with pytest.raises(ValueError, match="attr_weight"):
        train.apply_overrides(train.TrainConfig(), ["attr_weight=1"], train._refuse)


def test_freeze_vision_trains_only_the_heads(tmp_path):
    cfg = train.TrainConfig(
        arch="tiny", steps=2, images_per_step=2, prompts_per_image=2, warmup=1, world="v2", freeze_vision=True
    )
    torch.manual_seed(0)
    before = train.init_model(cfg).state_dict()
    after = train.train(tmp_path, cfg, **RUN).state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and not any(k.startswith("vision_encoder.") for k in changed)
    assert any(k.startswith("detr_decoder.") for k in changed) and any(k.startswith("text_encoder.") for k in changed)
    with pytest.raises(ValueError, match="freeze_vision"):
        train.apply_overrides(cfg, ["attr_weight=1"], train._refuse)


def test_freeze_backbone_trains_the_neck_but_not_the_vit(tmp_path):
    cfg = train.TrainConfig(
        arch="tiny", steps=2, images_per_step=2, prompts_per_image=2, warmup=1, world="v2", freeze_backbone=True
    )
    cfg = train.apply_overrides(cfg, ["attr_weight=0.5"], train._refuse)  # the dense loss may train the neck
    torch.manual_seed(0)
    before = train.init_model(cfg).state_dict()
    after = train.train(tmp_path, cfg, **RUN).state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert not any(k.startswith("vision_encoder.backbone.") for k in changed)
    assert any(k.startswith("vision_encoder.neck.") for k in changed)
    assert any(k.startswith("detr_decoder.") for k in changed)
    with pytest.raises(ValueError, match="freeze_backbone"):
        train.apply_overrides(train.TrainConfig(freeze_backbone=True), ["freeze_vision=true"], train._refuse)


def test_init_vision_from_takes_only_the_vision_encoder(tmp_path):
    """init_from gives every weight, then init_vision_from replaces the vision encoder's (a longer stage A)."""
    from sam3.toy.modeling import export_model

    heads, vision = (train.init_model(train.TrainConfig(arch="tiny", seed=s)) for s in (5, 6))
    export_model(heads, tmp_path / "heads")
    export_model(vision, tmp_path / "vision")
    cfg = train.TrainConfig(arch="tiny", steps=0, seed=7)
    cfg = train.apply_overrides(
        cfg, [f"init_from={tmp_path / 'heads'}", f"init_vision_from={tmp_path / 'vision'}"], train._refuse
    )
    state = train.train(tmp_path / "run", cfg, **RUN).state_dict()
    for k, v in state.items():
        src = (vision if k.startswith("vision_encoder.") else heads).state_dict()[k]
        torch.testing.assert_close(v, src.half().to(v.dtype), atol=0, rtol=0, msg=k)
    other = train.init_model(train.TrainConfig(arch="toy", seed=0))
    with pytest.raises(ValueError, match="vision_encoder"):
        train.load_exported(other, tmp_path / "vision", prefix="vision_encoder.")
