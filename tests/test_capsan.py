
"""CapsAN and capsan-conv: shapes at every supported size, calibration, determinism, end-to-end cells."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from helpers import digits_cell, repeatable

from bench.cell import CellEnv, run_cell
from bench.methods import FitContext, get_method
from bench.methods.capsan_nets import CapsuleDiscriminator, ConvDiscriminator, Generator, upsampling_plan

CPU = torch.device("cpu")
SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 64, 64)]


@pytest.mark.parametrize("shape", SHAPES)
def test_generator_makes_images_of_the_data_shape_in_tanh_range(shape):
    torch.manual_seed(0)
    g = Generator(shape, n_classes=3)
    out = g(torch.randn(4, 128), torch.tensor([0, 1, 2, 1]))
    assert out.shape == (4, *shape)
    assert out.min() >= -1 and out.max() <= 1


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cls", [CapsuleDiscriminator, ConvDiscriminator])
def test_discriminators_score_c_plus_one_classes(shape, cls):
    torch.manual_seed(0)
    d = cls(shape, n_classes=2)
    x = torch.rand(3, *shape) * 2 - 1
    d.calibrate(x)
    out = d(x)
    assert out.scores.shape == (3, 3) and out.embedding.shape == (3, 3 * 16) and out.features.shape[0] == 3
    proba = d.class_proba(out.scores)
    assert proba.shape == (3, 2) and torch.allclose(proba.sum(1), torch.ones(3))


def test_calibration_brings_capsules_to_life():
    torch.manual_seed(0)
    d = CapsuleDiscriminator((1, 28, 28), n_classes=2)
    x = torch.rand(16, 1, 28, 28) * 2 - 1
    before = d(x).scores.mean().item()
    d.calibrate(x)
    after = d(x).scores.mean().item()
    assert before < 1e-3  # default initialisation: squash has all but killed the class capsules
    assert 0.2 < after < 0.9


def test_upsampling_plan_reaches_each_size_from_at_least_four_pixels():
    assert [upsampling_plan(s, 5) for s in (8, 28, 32, 64)] == [1, 2, 3, 4]
    assert upsampling_plan(28, 2) == 1  # never more upsamplings than gaps between convolutions


def test_ablation_knobs_change_the_networks():
    method = get_method("capsan")(g_conv_layers=3, g_cbn_layers=1, d_pool_layers=1)
    method.build((1, 28, 28), torch.tensor([50, 5]), CPU)
    assert len(method.G.convs) == 3
    assert sum(type(n).__name__ == "ConditionalBatchNorm2d" for n in method.G.norms) == 1
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in method.D.stem) == 1


@pytest.mark.parametrize("name", ["capsan", "capsan-conv"])
def test_end_to_end_cell_stores_metrics_samples_and_losses(digits, tmp_path, name):
    row = run_cell(digits_cell(name), *digits, CellEnv(CPU, tmp_path))
    assert row["status"] == "done", row["error"]
    assert 0 <= row["metrics"]["g_mean"] <= 1
    folder = tmp_path / row["artifacts"]
    losses = json.loads((folder / "losses.json").read_text())
    n_major, n_minor = row["counts"]["train"]
    # the budget contract: DC's U updates over both phases, the fine-tuning taking what the 2 GAN epochs leave
    u, g = 2 * math.ceil(2 * n_major / 64), 2 * math.ceil((n_major + n_minor) / 64)
    assert len(losses["d_loss"]) == 2 and len(losses["classifier_loss"]) == math.ceil((u - g) / (u // 2))
    roles = row["metrics"]["budget"]["roles"]
    assert roles["classifier"]["updates"] == u and roles["generator"]["updates"] == g
    assert losses["generated_counts"] == [0, n_major - n_minor]  # phi = 1: fully balanced
    assert (folder / "samples.png").stat().st_size > 0


def test_sample_returns_uint8_images_of_the_requested_class(digits, tmp_path):
    method = get_method("capsan")(gan_epochs=1, finetune_epochs=1)
    train = digits[0].subset(np.flatnonzero(digits[0].labels < 3))  # classes 3..9 are absent
    method.fit(train, FitContext(device=CPU, seed=0, epochs=1, artifact_dir=tmp_path))
    images = method.sample(5, 1)
    assert images.dtype == np.uint8 and images.shape == (5, 1, 8, 8)
    proba = method.predict_proba(train.images[:7])
    assert proba.shape == (7, 10) and np.allclose(proba.sum(1), 1)
    counts = train.counts()
    expected = [int(counts.max() - n) if n else 0 for n in counts]  # nothing for the absent classes
    assert method.generated_counts == expected


def test_same_seed_same_numbers_on_the_cpu(digits, tmp_path):
    a = run_cell(digits_cell("capsan", seed=3), *digits, CellEnv(CPU, tmp_path))
    b = run_cell(digits_cell("capsan", seed=3), *digits, CellEnv(CPU, tmp_path))
    assert a["status"] == b["status"] == "done"
    assert repeatable(a["metrics"]) == repeatable(b["metrics"])


def test_phi_sets_how_many_images_are_generated(digits, tmp_path):
    row = run_cell(digits_cell("capsan", phi=0.5, gan_epochs=1, finetune_epochs=1), *digits, CellEnv(CPU, tmp_path))
    n_major, n_minor = row["counts"]["train"]
    losses = json.loads((tmp_path / row["artifacts"] / "losses.json").read_text())
    assert losses["generated_counts"] == [0, int((n_major - n_minor) * 0.5)]


def test_zero_gan_epochs_trains_the_discriminator_as_a_plain_classifier(digits, tmp_path):
    row = run_cell(digits_cell("capsan", gan_epochs=0, finetune_epochs=3), *digits, CellEnv(CPU, tmp_path))
    assert row["status"] == "done", row["error"]
    losses = json.loads((tmp_path / row["artifacts"] / "losses.json").read_text())
    assert losses["d_loss"] == [] and len(losses["classifier_loss"]) == 3
    assert losses["generated_counts"] == [0, 0]
    assert not (tmp_path / row["artifacts"] / "samples.png").exists()


def test_epoch_scale_sets_the_adversarial_phase_and_dc_keeps_its_budget(digits, tmp_path):
    cell = dataclasses.replace(digits_cell("capsan", epoch_scale=0.5), epochs=4)
    row = run_cell(cell, *digits, CellEnv(CPU, tmp_path))
    losses = json.loads((tmp_path / row["artifacts"] / "losses.json").read_text())
    n_major, n_minor = row["counts"]["train"]
    assert len(losses["d_loss"]) == 2  # round(0.5 x 4) adversarial epochs
    roles = row["metrics"]["budget"]["roles"]
    assert roles["generator"]["updates"] == 2 * math.ceil((n_major + n_minor) / 64)
    assert roles["classifier"]["updates"] == 4 * math.ceil(2 * n_major / 64)  # U whatever the split
