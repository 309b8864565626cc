"""Stage A (sam3.toy.pretrain_vision) on the tiny architecture: what trains, what does not, resume."""

from __future__ import annotations

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
