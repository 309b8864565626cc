"""bench/attribute_probe.py: per-cell attribute labels and the linear probe, on tiny hand-made data."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch

from sam3.toy import render, vocab
from sam3.toy.attributes import cell_labels

_spec = importlib.util.spec_from_file_location(
    "attribute_probe", Path(__file__).parents[1] / "bench" / "attribute_probe.py"
)
attribute_probe = importlib.util.module_from_spec(_spec)
sys.modules["attribute_probe"] = attribute_probe  # dataclasses look their module up
_spec.loader.exec_module(attribute_probe)


def _instance(rows: slice, cols: slice, **attrs) -> render.Instance:
    m = np.zeros((8, 8), dtype=bool)
    m[rows, cols] = True
    return render.Instance(attrs, m, int(m.sum()))


def test_cell_labels_mark_each_instance_cell_with_its_values():
    a = _instance(slice(0, 4), slice(0, 4), size="small", fill="solid", colour="blue", shape="star")
    b = _instance(slice(4, 8), slice(4, 8), size="large", fill="hollow", colour="red", shape="circle")
    lab = cell_labels([a, b], (4, 4))  # (4, 4, 4): a 2x2 block per instance
    assert lab.shape == (4, 4, 4)
    shape = vocab.ATTRIBUTES.index("shape")
    assert lab[shape, 0, 0] == vocab.VALUES["shape"].index("star") + 1
    assert lab[shape, 3, 3] == vocab.VALUES["shape"].index("circle") + 1
    assert lab[vocab.ATTRIBUTES.index("colour"), 3, 3] == vocab.VALUES["colour"].index("red") + 1
    assert (lab[:, 0, 3] == 0).all() and (lab[:, 3, 0] == 0).all()  # background cells
    assert int((lab[0] > 0).sum()) == 8


def test_probe_separates_a_linear_feature_and_not_noise():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (300,), generator=g)
    signal = torch.nn.functional.one_hot(y, 3).double() + 0.1 * torch.randn(300, 3, generator=g, dtype=torch.float64)
    noise = torch.randn(300, 3, generator=g, dtype=torch.float64)
    w = attribute_probe.fit_probe(signal[:200], y[:200], 3)
    assert (attribute_probe.predict(w, signal[200:]) == y[200:]).double().mean() > 0.95
    w = attribute_probe.fit_probe(noise[:200], y[:200], 3)
    assert (attribute_probe.predict(w, noise[200:]) == y[200:]).double().mean() < 0.6


def test_probe_levels_reports_accuracy_and_chance_per_attribute():
    insts = []
    for i in range(6):
        shape = vocab.VALUES["shape"][i % 2]
        insts.append([_instance(slice(0, 8), slice(0, 8), size="small", fill="solid", colour="red", shape=shape)])
    labels = torch.stack([cell_labels(x, (2, 2)) for x in insts])  # (6, 4, 2, 2)
    shape_k = vocab.ATTRIBUTES.index("shape")
    feat = (labels[:, shape_k : shape_k + 1].double() - 1.5) + 0.01 * torch.randn(6, 1, 2, 2, dtype=torch.float64)
    res = {r.attribute: r for r in attribute_probe.probe_levels([feat], [labels], n_train=4)}
    assert res["shape"].accuracy == 1.0 and res["shape"].cells == 8
    assert res["colour"].chance == 1.0  # one colour everywhere
    assert res["shape"].grid == 2
