"""sam3-toy training: prompt sampling, exact resume, and an export that the backend loads."""

from __future__ import annotations

import json

import torch

from sam3 import Sam3Backend
from sam3.tokenizer import Sam3Tokenizer
from sam3.toy import train, world

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
