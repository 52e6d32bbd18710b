"""``deepsmote``: end to end on digits and on a 3x32x32 task, SMOTE within each class's latents, the refusal of a
class too small for k neighbours, the loss terms, and the paper's schedule."""

from __future__ import annotations

import json

import numpy as np
import torch
from helpers import digits_cell, repeatable
from sklearn.neighbors import NearestNeighbors

from bench.cell import CellEnv, run_cell
from bench.datasets.imbalance import make_imbalanced
from bench.methods import FitContext, get_method

CPU = torch.device("cpu")


def test_end_to_end_on_digits_deterministic_for_a_seed(digits, tmp_path):
    a = run_cell(digits_cell("deepsmote", seed=1), *digits, CellEnv(CPU, tmp_path / "a"))
    b = run_cell(digits_cell("deepsmote", seed=1), *digits, CellEnv(CPU, tmp_path / "b"))
    c = run_cell(digits_cell("deepsmote", seed=2), *digits, CellEnv(CPU, tmp_path / "c"))
    assert a["status"] == "done", a["error"]
    assert repeatable(a["metrics"]) == repeatable(b["metrics"]) and a["curves"] == b["curves"]
    assert a["curves"] != c["curves"]
    folder = tmp_path / "a" / a["artifacts"]
    losses = json.loads((folder / "losses.json").read_text())
    train = a["counts"]["train"]
    assert losses["generated_counts"] == [0, max(train) - min(train)]  # class 5 topped up to n_max
    assert len(losses["reconstruction"]) == len(losses["penalty"]) == 2 and (folder / "samples.png").exists()
    roles = a["metrics"]["budget"]["roles"]
    assert roles["generator"]["optimizers"] == 2  # the encoder and the decoder


def test_smote_runs_within_each_class_latents(colour_task, tmp_path):
    method = get_method("deepsmote")(latent_dim=16)
    method.fit(colour_task.train, FitContext(device=CPU, seed=0, epochs=1, artifact_dir=tmp_path))
    assert method.latents.shape == (len(colour_task.train), 16)
    assert method.sample(5, 1).shape == (5, 3, 32, 32)  # images of the task's size and channels
    method.decoder = torch.nn.Identity()  # what generate decodes: the new latents themselves
    new = method.generate(40, 1, torch.Generator().manual_seed(0)).numpy()
    own = method.latents[method.latent_labels == 1]
    _, neighbours = NearestNeighbors(n_neighbors=6).fit(own).kneighbors(own)
    for z in new:  # on the segment from one latent of the class to one of its 5 nearest neighbours there
        found = False
        for i, row in enumerate(neighbours):
            for j in row[1:]:
                step = own[j] - own[i]
                t = float(np.dot(z - own[i], step) / np.dot(step, step))
                if 0 <= t <= 1 and np.allclose(own[i] + t * step, z, atol=1e-4):
                    found = True
        assert found


def test_a_small_class_uses_fewer_neighbours_and_a_single_image_is_refused(digits, tmp_path):
    task = make_imbalanced(*digits, pair=(3, 5), ratio=0.025, seed=0)  # 3 images of class 5
    assert task.train.counts()[1] == 3
    method = get_method("deepsmote")()
    assert method.skip(task) is None and method.neighbours(3) == 2 and method.neighbours(50) == 5
    method.fit(task.train, FitContext(device=CPU, seed=0, epochs=1, artifact_dir=tmp_path))
    assert json.loads((tmp_path / "deepsmote.json").read_text())["smote_k"] == {"1": 2}
    assert method.sample(10, 1).shape == (10, *task.train.image_shape)
    lone = make_imbalanced(*digits, pair=(3, 5), ratio=0.005, seed=0)  # one image of class 5
    assert lone.train.counts()[1] == 1
    assert "needs at least 2 images of every class it tops up; class 1 has 1" in method.skip(lone)


def test_the_penalty_trains_the_decoder_only(colour_task, tmp_path, monkeypatch):
    """The class sample is encoded without gradient: with the reconstruction term zeroed, an update leaves
    the encoder's weights as they were and moves the decoder's."""
    from bench.methods import deepsmote as module

    real_mse = torch.nn.functional.mse_loss
    calls = []

    def only_penalty(a, b):
        calls.append(len(calls))
        value = real_mse(a, b)
        return value * 0.0 if len(calls) % 2 == 1 else value  # the first of each step is the reconstruction

    monkeypatch.setattr(module.nn.functional, "mse_loss", only_penalty)
    method = get_method("deepsmote")(latent_dim=8, gan_epochs=1, batch_size=512)  # one step (144 images)
    method.fit(colour_task.train, FitContext(device=CPU, seed=0, epochs=1, artifact_dir=tmp_path))
    assert len(calls) == 2  # one step: the reconstruction, then the penalty
    # the last step's gradients stay on the networks: none reached the encoder, the decoder's are not zero
    assert all(p.grad is None or torch.count_nonzero(p.grad) == 0 for p in method.encoder.parameters())
    assert any(p.grad is not None and torch.count_nonzero(p.grad) for p in method.decoder.parameters())


def test_the_paper_schedule_is_the_codes():
    method = get_method("deepsmote")(schedule="paper")
    assert (method.params["gan_epochs"], method.params["batch_size"]) == (200, 100)
    assert method.key_params()["schedule"] == "paper"


def test_the_declared_network_sizes_are_ours():
    """The parameter counts methods/deepsmote.py declares against the official networks (and VALIDATION.md
    repeats) are what its default networks have on MNIST."""
    import re

    from bench.methods import deepsmote
    from bench.methods.dcgan_nets import DCGANGenerator

    width = get_method("deepsmote").defaults["width"]
    encoder = deepsmote.Encoder((1, 28, 28), 300, width)
    decoder = DCGANGenerator((1, 28, 28), 300, width)
    counts = [sum(p.numel() for p in net.parameters()) for net in (encoder, decoder)]
    declared = re.findall(r"Ours .*?: ([\d,]+) parameters", " ".join(deepsmote.__doc__.split()))
    assert [int(n.replace(",", "")) for n in declared] == counts
