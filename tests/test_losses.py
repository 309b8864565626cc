"""The set-level mask loss: pieces equal their definitions, it has gradients, and its sign is right."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alias_opt.config import LossConfig
from alias_opt.search.losses import COMPONENTS, PairTargets, set_loss
from sam3.set_matching import dice_loss, hungarian, pairwise_costs, sigmoid_focal


def test_sigmoid_focal_matches_definition():
    x = torch.tensor([-3.0, -0.5, 0.0, 0.7, 4.0])
    t = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0])
    p = torch.sigmoid(x)
    p_t = p * t + (1 - p) * (1 - t)
    a_t = 0.25 * t + 0.75 * (1 - t)
    ref = -a_t * (1 - p_t) ** 2 * torch.log(p_t)
    assert torch.allclose(sigmoid_focal(x, t, 0.25, 2.0), ref, atol=1e-6)


def test_dice_perfect_and_empty():
    t = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    good = (t * 2 - 1) * 20
    assert float(dice_loss(good, t)) < 1e-3
    assert float(dice_loss(-good, t)) > 0.6
    # an empty target is defined (smoothing) and prefers an empty prediction
    empty = torch.zeros(1, 4)
    assert float(dice_loss(torch.full((1, 4), -20.0), empty)) < float(dice_loss(torch.full((1, 4), 20.0), empty))


def test_pairwise_costs_equal_loops():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 30, generator=gen) * 3
    t = (torch.rand(2, 3, 30, generator=gen) > 0.5).float()
    dice, focal = pairwise_costs(x, t, 0.25, 2.0)
    for b in range(2):
        for q in range(5):
            for k in range(3):
                assert abs(float(dice[b, q, k] - dice_loss(x[b, q], t[b, k]))) < 1e-5
                assert abs(float(focal[b, q, k] - sigmoid_focal(x[b, q], t[b, k]).mean())) < 1e-5


def test_hungarian_finds_optimal_assignment():
    cost = torch.tensor([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0], [0.5, 9.0, 9.0]])
    rows, cols = hungarian(cost)
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(1, 1), (2, 2), (3, 0)]
    r, c = hungarian(torch.zeros(4, 0))
    assert len(r) == len(c) == 0


def _scene(Q=4, side=8):
    """Two target instances on a side x side grid; one query predicts each, the rest are off."""
    P = side * side
    t = torch.zeros(2, P)
    t[0, :8] = 1
    t[1, 40:52] = 1
    good = torch.full((Q, P), -8.0)
    good[1] = t[0] * 16 - 8
    good[3] = t[1] * 16 - 8
    q_good = torch.tensor([-6.0, 6.0, -6.0, 6.0])
    return t, good, q_good


def test_loss_prefers_the_right_answer_and_has_gradients():
    cfg = LossConfig()
    t, good, q_good = _scene()
    gen = torch.Generator().manual_seed(1)
    bad = torch.randn(good.shape, generator=gen)
    masks = torch.stack([good, bad]).requires_grad_(True)
    qlog = torch.stack([q_good, torch.zeros(4)]).requires_grad_(True)
    pres = torch.tensor([6.0, -1.0], requires_grad=True)
    sem = torch.stack([t.amax(0) * 16 - 8, torch.zeros(64)]).requires_grad_(True)
    targets = PairTargets([t, t], [None, None])
    loss, comps = set_loss(masks, qlog, pres, sem, targets, cfg)
    assert loss.shape == (2,) and comps.shape == (2, len(COMPONENTS))
    assert float(loss[0].detach()) < 0.1 * float(loss[1].detach())
    loss.sum().backward()
    for x in (masks, qlog, pres, sem):
        assert x.grad is not None and x.grad.abs().sum() > 0
    # descent direction: raising presence and the matched queries' scores lowers the loss
    assert float(pres.grad[1]) < 0


def test_negative_image_pushes_presence_and_scores_down():
    cfg = LossConfig()
    none = torch.zeros(0, 64)
    masks = torch.zeros(1, 4, 64)
    for level in (-4.0, 0.0, 4.0):
        qlog = torch.full((1, 4), level, requires_grad=True)
        pres = torch.full((1,), level, requires_grad=True)
        loss, comps = set_loss(masks, qlog, pres, None, PairTargets([none], [None]), cfg)
        loss.sum().backward()
        assert float(comps[0, 0]) == 0 and float(comps[0, 1]) == 0  # nothing to match
        assert float(pres.grad) > 0 and (qlog.grad > 0).all()  # gradient descent lowers them
    lo = set_loss(masks, torch.full((1, 4), -4.0), torch.full((1,), -4.0), None, PairTargets([none], [None]), cfg)[0]
    hi = set_loss(masks, torch.full((1, 4), 4.0), torch.full((1,), 4.0), None, PairTargets([none], [None]), cfg)[0]
    assert float(lo) < float(hi)


def test_ignored_pixels_do_not_count():
    cfg = LossConfig(semantic=0.0)
    t, good, q_good = _scene()
    noisy = good.clone()
    noisy[1, 60:] = 8.0  # wrong pixels, but inside an ignore region
    w = torch.ones(64)
    w[60:] = 0
    a = set_loss(good[None], q_good[None], torch.tensor([6.0]), None, PairTargets([t], [w]), cfg)[0]
    b = set_loss(noisy[None], q_good[None], torch.tensor([6.0]), None, PairTargets([t], [w]), cfg)[0]
    c = set_loss(noisy[None], q_good[None], torch.tensor([6.0]), None, PairTargets([t], [None]), cfg)[0]
    assert float(b) == pytest.approx(float(a), abs=1e-4)
    assert float(c) > float(a) + 1e-3


def test_batch_equals_single_pairs():
    cfg = LossConfig()
    t, good, q_good = _scene()
    gen = torch.Generator().manual_seed(3)
    masks = torch.randn(3, 4, 64, generator=gen)
    qlog = torch.randn(3, 4, generator=gen)
    pres = torch.randn(3, generator=gen)
    tg = [t, torch.zeros(0, 64), t[:1]]
    batch, _ = set_loss(masks, qlog, pres, None, PairTargets(tg, [None] * 3), cfg)
    single = [
        set_loss(masks[i : i + 1], qlog[i : i + 1], pres[i : i + 1], None, PairTargets([tg[i]], [None]), cfg)[0]
        for i in range(3)
    ]
    assert np.allclose(batch.detach().numpy(), torch.cat(single).detach().numpy(), atol=1e-5)


def test_one_matching_for_the_alias_loss_and_the_toy_trainer():
    """The alias loss and sam3-toy's training loss match and score masks with the same functions."""
    import alias_opt.search.losses as alias_loss
    import sam3.set_matching as shared
    import sam3.toy.set_loss as toy_loss

    for module in (alias_loss, toy_loss):
        for name in ("sigmoid_focal", "dice_loss", "pairwise_costs", "hungarian"):
            assert getattr(module, name) is getattr(shared, name), (module.__name__, name)
