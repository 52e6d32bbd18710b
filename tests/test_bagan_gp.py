"""``bagan-gp``: end to end on digits, deterministic for a seed; the gradient penalty, the labelled latent and
the conditional discriminator by hand; the code's schedule. (Its budget: ``test_budget.py``.)"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import digits_cell, repeatable

from bench.cell import CellEnv, run_cell
from bench.methods import get_method
from bench.methods.bagan_gp import ConditionalDiscriminator, LabeledGenerator, gradient_penalty

CPU = torch.device("cpu")


def test_end_to_end_on_digits_deterministic_for_a_seed(digits, tmp_path):
    a = run_cell(digits_cell("bagan-gp", seed=1), *digits, CellEnv(CPU, tmp_path / "a"))
    b = run_cell(digits_cell("bagan-gp", seed=1), *digits, CellEnv(CPU, tmp_path / "b"))
    c = run_cell(digits_cell("bagan-gp", seed=2), *digits, CellEnv(CPU, tmp_path / "c"))
    assert a["status"] == "done", a["error"]
    assert repeatable(a["metrics"]) == repeatable(b["metrics"]) and a["curves"] == b["curves"]
    assert a["curves"] != c["curves"]
    losses = json.loads((tmp_path / "a" / a["artifacts"] / "losses.json").read_text())
    assert len(losses["ae_loss"]) == 2 and len(losses["d_loss"]) == len(losses["g_loss"]) == 2
    assert (tmp_path / "a" / a["artifacts"] / "samples.png").exists()


def test_it_trains_on_a_3x32x32_task_and_the_seed_matters(colour_task, tmp_path):
    from bench.methods import FitContext

    probas, ledgers = {}, {}
    for run, seed in (("a", 0), ("b", 0), ("c", 1)):
        method = get_method("bagan-gp")(gan_epochs=1, width=16, latent_dim=16)
        ctx = FitContext(device=CPU, seed=seed, epochs=1, artifact_dir=tmp_path / run)
        method.fit(colour_task.train, ctx)
        probas[run], ledgers[run] = method.predict_proba(colour_task.test.images), ctx.ledger.record()
    assert method.sample(3, 1).shape == (3, 3, 32, 32)
    assert np.array_equal(probas["a"], probas["b"]) and not np.allclose(probas["a"], probas["c"])
    assert ledgers["a"]["classifier"]["updates"] > 0 and ledgers["a"]["generator"]["updates"] > 0  # the ledger is filled


def test_the_gradient_penalty_by_hand():
    """D linear in the image, w . x: its gradient is w everywhere, so the penalty is (||w|| - 1)^2 whatever
    alpha is; D(x) = 0.5 * ||x||^2 has gradient x_hat, whose norm the interpolation decides."""
    w = torch.full((1, 2, 2), 0.25)  # ||w|| = 0.5

    def linear(x, labels):
        return (x * w).flatten(1).sum(1)

    real, fake = torch.randn(6, 1, 2, 2), torch.randn(6, 1, 2, 2)
    labels = torch.zeros(6, dtype=torch.long)
    assert float(gradient_penalty(linear, real, fake, labels, torch.Generator().manual_seed(0)).detach()) == pytest.approx(0.25)

    def square(x, labels):
        return 0.5 * (x ** 2).flatten(1).sum(1)

    same = torch.ones(3, 1, 2, 2)  # real = fake: x_hat = 1, ||grad|| = 2 -> (2 - 1)^2
    assert float(gradient_penalty(square, same, same, labels[:3], torch.Generator().manual_seed(0)).detach()) == pytest.approx(1.0)


def test_the_labelled_latent_and_the_conditional_discriminator():
    torch.manual_seed(0)
    G = LabeledGenerator((1, 8, 8), 3, 4, 8).eval()
    z = torch.randn(2, 4)
    with torch.no_grad():
        G.embedding.weight.copy_(torch.tensor([[1.0] * 4, [2.0] * 4, [0.0] * 4]))
        # class 1's embedding doubles z: the decoder sees 2z; class 2's zeroes it
        assert torch.allclose(G(z, torch.tensor([1, 1])), G.decoder(2 * z))
        assert torch.allclose(G(z, torch.tensor([2, 2])), G.decoder(torch.zeros_like(z)))
    D = ConditionalDiscriminator((1, 8, 8), 3, 8)
    x = torch.randn(2, 1, 8, 8)
    assert D(x, torch.tensor([0, 0])).shape == (2,)
    assert not torch.allclose(D(x, torch.tensor([0, 0])), D(x, torch.tensor([1, 1])))  # the label matters


def test_the_paper_schedule_is_the_codes_and_generation_needs_a_present_class(digits, tmp_path):
    method = get_method("bagan-gp")(schedule="paper")
    assert (method.params["batch_size"], method.params["ae_epochs"], method.params["gan_epochs"]) == (128, 30, 100)
    from bench.datasets.imbalance import make_imbalanced
    from bench.methods import FitContext

    task = make_imbalanced(*digits, pair=(3, 5), ratio=0.1, seed=0)
    model = get_method("bagan-gp")(gan_epochs=1)
    model.fit(task.train, FitContext(device=CPU, seed=0, epochs=1, artifact_dir=tmp_path))
    assert model.sample(4, 1).shape == (4, *task.train.image_shape)
    assert not np.array_equal(model.sample(4, 1), model.sample(4, 1))  # each call draws fresh z
    with pytest.raises(ValueError, match="absent from the training set"):
        model.generate(2, 7)
