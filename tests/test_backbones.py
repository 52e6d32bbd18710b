"""The common classifier's backbone and recipe choices: ``classifier = "resnet32"`` (He et al.'s CIFAR ResNet-32)
and ``classifier_schedule = "longtail-sgd"`` (LDAM-DRW's SGD recipe), on every method that trains the
common classifier, in the cell key; the defaults keep every stored key."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import digits_cell

from bench.cell import CellEnv, run_cell
from bench.methods import FitContext, get_method
from bench.methods.classifier import CLASSIFIER_SPEC, build_optimizer, classifier_spec, crop_flip
from bench.methods.resnet import ResNet32

CPU = torch.device("cpu")


def test_resnet32_is_he_et_als_network():
    net = ResNet32((3, 32, 32), 10, torch.nn.Linear(64, 10))
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) + 1 == 32  # 6n + 2 weighted layers, n = 5 (option A shortcuts have no weights)
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(0.46e6, rel=0.02)  # the paper's 0.46M
    x = torch.randn(4, 3, 32, 32)
    net.eval()
    assert net(x).shape == (4, 10) and net.embed(x).shape == (4, 64)
    assert torch.equal(net.classify(net.embed(x)), net(x))
    for shape in ((1, 28, 28), (1, 8, 8)):  # MNIST and digits sizes go through too
        assert ResNet32(shape, 2, torch.nn.Linear(64, 2))(torch.randn(2, *shape)).shape == (2, 2)


def test_the_defaults_give_the_stored_spec_and_keys():
    assert classifier_spec() == CLASSIFIER_SPEC
    for name in ("imbalanced", "smote", "crl", "focal", "gan", "bagan"):
        method = get_method(name)()
        assert method.key_params()["classifier"] == CLASSIFIER_SPEC
        assert "classifier_schedule" not in method.key_params()
    resnet = get_method("smote")(classifier="resnet32", classifier_schedule="longtail-sgd").key_params()
    assert resnet["classifier"]["arch"] == "resnet32" and resnet["classifier"]["optimizer"] == "sgd"
    assert digits_cell("smote").key != digits_cell("smote", classifier="resnet32").key
    with pytest.raises(ValueError, match="classifier must be one of cnn, resnet32; got 'vgg'"):
        get_method("focal")(classifier="vgg")
    with pytest.raises(ValueError, match="classifier_schedule must be one of adam, longtail-sgd"):
        get_method("gan")(classifier_schedule="cosine")


def test_the_longtail_schedule_warms_up_then_steps_down():
    spec = classifier_spec("resnet32", "longtail-sgd")
    model = torch.nn.Linear(2, 2)
    optimizer, schedule = build_optimizer(spec, model, updates=200)  # warm-up 5, steps at 160 and 180
    assert isinstance(optimizer, torch.optim.SGD)
    group = optimizer.param_groups[0]
    assert (group["momentum"], group["weight_decay"]) == (0.9, 2e-4)
    seen = []
    for _ in range(200):
        seen.append(group["lr"])
        optimizer.step()
        schedule.step()
    assert seen[:5] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])
    assert seen[5] == seen[159] == pytest.approx(0.1)
    assert seen[160] == seen[179] == pytest.approx(1e-3) and seen[180] == seen[199] == pytest.approx(1e-5)


def test_crop_flip_takes_padded_windows_and_flips_deterministically():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).reshape(2, 1, 6, 6)
    a = crop_flip(x, torch.Generator().manual_seed(3), pad=2)
    b = crop_flip(x, torch.Generator().manual_seed(3), pad=2)
    assert torch.equal(a, b) and a.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), value=-1.0)
    for i in range(2):  # every output is one window of its padded image, flipped or not
        windows = [padded[i, :, r:r + 6, c:c + 6] for r in range(5) for c in range(5)]
        assert any(torch.equal(a[i], w) or torch.equal(a[i], w.flip(-1)) for w in windows)
    draws = {tuple(crop_flip(x, torch.Generator().manual_seed(s), pad=2).flatten().tolist()) for s in range(8)}
    assert len(draws) > 1  # the seed decides the crops


def test_a_loss_method_trains_resnet32_with_the_longtail_recipe(colour_task, tmp_path):
    probas = []
    for run in ("a", "b"):
        method = get_method("ldam-drw")(classifier="resnet32", classifier_schedule="longtail-sgd")
        ctx = FitContext(device=CPU, seed=0, epochs=1, artifact_dir=tmp_path / run)
        method.fit(colour_task.train, ctx)
        probas.append(method.predict_proba(colour_task.test.images))
    assert isinstance(method.classifier.model, ResNet32) and np.array_equal(*probas)
    counts = colour_task.train.counts()
    assert ctx.ledger.record()["classifier"]["updates"] == math.ceil(2 * counts.max() / 128)  # batch 128
    assert method.classifier.model.head[0].weight.shape == (2, 64)  # LDAM's cosine layer on 64-d features


@pytest.mark.parametrize("name", ["smote", "crl", "gan"])
def test_a_resampler_a_loss_and_a_generator_run_on_resnet32(name, digits, tmp_path):
    row = run_cell(digits_cell(name, classifier="resnet32"), *digits, CellEnv(CPU, tmp_path))
    assert row["status"] == "done", row["error"]
    assert row["params"]["classifier"]["arch"] == "resnet32"
