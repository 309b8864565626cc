"""Stage A (sam3.toy.pretrain_vision) on the tiny architecture: what trains, what does not, resume."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from sam3.toy import vocab
from sam3.toy.attributes import AttributeHead, attribute_loss, cell_accuracy
from sam3.toy.modeling import export_model, init_model
from sam3.toy.pretrain_vision import PretrainConfig, main, pretrain
from sam3.toy.train_config import TrainConfig


def _init(tmp_path):
    return export_model(init_model(TrainConfig(arch="tiny")), tmp_path / "init")


def test_only_the_vision_encoder_changes(tmp_path):
    init = _init(tmp_path)
    pretrain(tmp_path / "run", PretrainConfig(init=str(init), steps=2, images_per_step=2, warmup=1), threads=1)
    before, after = load_file(str(init / "model.safetensors")), load_file(str(tmp_path / "run/model/model.safetensors"))
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("vision_encoder.") for k in changed)
    assert any(k.startswith("vision_encoder.backbone.") for k in changed)


def test_resume_continues_exactly(tmp_path):
    init = _init(tmp_path)
    cfg = PretrainConfig(init=str(init), steps=4, images_per_step=2, warmup=1)
    pretrain(tmp_path / "whole", cfg, threads=1)
    pretrain(tmp_path / "split", PretrainConfig(**{**cfg.__dict__, "steps": 2}), threads=1)
    main(["--init", str(init), "--out", str(tmp_path / "split"), "--steps", "4", "--resume", "--threads", "1",
          "--images-per-step", "2"])  # fmt: skip
    a = load_file(str(tmp_path / "whole/model/model.safetensors"))
    b = load_file(str(tmp_path / "split/model/model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_head_loss_and_accuracy_on_a_hand_made_grid():
    head = AttributeHead(channels=3, levels=1)
    labels = torch.zeros(1, 4, 2, 2, dtype=torch.long)
    labels[0, :, 0, 0] = torch.tensor([1, 2, 3, 4])  # one instance cell: small, hollow, orange, star
    logits = [[torch.zeros(1, n, 2, 2) for n in head.sizes]]
    for k in range(len(head.sizes)):
        logits[0][k][0, int(labels[0, k, 0, 0]), 0, 0] = 20.0
        logits[0][k][0, 0, :, :] += torch.tensor([[0.0, 20.0], [20.0, 20.0]])
    assert cell_accuracy(logits[0], labels) == [1.0] * len(vocab.ATTRIBUTES)
    assert float(attribute_loss(logits, [labels])) < 1e-6
    wrong = [[x.flip(1) for x in logits[0]]]
    assert float(attribute_loss(wrong, [labels])) > 1.0
    assert [x.shape[1] for x in head([torch.zeros(1, 3, 2, 2)])[0]] == [3, 3, 9, 7]


def test_arch_warm_starts_across_architectures(tmp_path):
    """--arch toy from a toy24d export (the v1 sam3-toy's): the weights that fit are copied, the rest trains."""
    init = export_model(init_model(TrainConfig(arch="toy24d")), tmp_path / "v1")
    cfg = PretrainConfig(init=str(init), steps=1, images_per_step=1, warmup=1, arch="toy")
    pretrain(tmp_path / "run", cfg, threads=1)
    before, after = load_file(str(init / "model.safetensors")), load_file(str(tmp_path / "run/model/model.safetensors"))
    new = after.keys() - before.keys()
    reshaped = {k for k in before.keys() & after.keys() if before[k].shape != after[k].shape}
    assert before.keys() <= after.keys() and new and reshaped
    assert all(k.startswith("vision_encoder.neck.fpn_layers.0.") for k in new | reshaped)
    outside = [k for k in after if not k.startswith("vision_encoder.")]
    assert outside and all(torch.equal(before[k], after[k]) for k in outside)
    config = json.loads((tmp_path / "run/model/config.json").read_text())["vision_config"]
    assert config["scale_factors"] == [4.0, 2.0, 1.0, 0.5]
    with pytest.raises(ValueError, match="another --out"):
        pretrain(tmp_path / "run", PretrainConfig(**{**cfg.__dict__, "arch": "", "steps": 2}), resume=True, threads=1)
