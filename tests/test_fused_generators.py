"""Fused generator phases (``methods/stacked.py``, ``methods/generator_group.py``, issue 30): a member of a group
trains exactly its own cell's generator.

For every method whose generator phase fuses (``fused_generators``), three members' generator phases train as one
group for k >= 3 updates of every network, and each member's again alone from the same seed and set; every
trained network the method keeps for sampling (and its batch-norm buffers) and every logged epoch loss is then
compared with the solo cell's.

Tolerances. A grouped convolution adds in another order than a plain one, so members match their solo cells to
float rounding, not in bits. Adam then amplifies some of that rounding: in its first steps it moves every weight
by about lr whatever the size of its gradient, so a weight whose gradient is itself rounding noise (a bias just
before a batch norm, which the norm cancels: CapsAN's generator, gradients ~1e-8) takes steps of random sign.
What is asserted, after k >= 3 updates of every network:
- at most ``FLIPPED`` (3 %) of the weights and buffers differ from the solo cell's by more than ``ATOL`` (1e-5),
  and none by more than 2 k lr (measured: none above 1e-5 for gan, acgan, bagan, bagan-gp, deepsmote and dagan,
  largest 2.7e-7; capsan 0.5 % and capsan-conv 0.02-1.9 % by seed, largest 7e-4, most of them the biases before
  batch norm). The solo cell is that sensitive itself: with every initial weight moved by 1e-7 of its layer's
  mean size, it ends 0.5-0.6 % (capsan) and 0.02-1.1 % (capsan-conv) of its weights beyond 1e-5, largest 7e-4;
- the last update's gradients within ``GRAD_RTOL`` (10 %) of each tensor's largest gradient plus ``GRAD_ATOL``
  (1e-6, a noise gradient's size) (measured with torch's 2 threads: 6e-6 of the scale, capsan 0.5 %,
  capsan-conv 1.4 %; with 1 thread capsan-conv's discriminator embedding reached 5.0 %, the summation order
  alone: a loss averaged over members is 67 % off);
- the logged epoch losses within ``LOSS_RTOL`` (1e-3; measured at most 1e-4).
A member that saw another member's data, noise or dropout mask, or a loss averaged over members (each gradient a
third of its own), fails at once. torch's thread count is pinned for these tests (``THREADS``): it sets the
summation order, and a test run earlier in the same process (pytest-xdist) may have changed it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_fused import image_set

from bench.errors import CellFailure
from bench.methods.base import FitContext
from bench.methods.budget import Ledger
from bench.methods.capsan import CapsanTrainer
from bench.methods.gamo import GamoTrainer
from bench.methods.generator_group import Phase
from bench.methods.registry import get_method

CPU = torch.device("cpu")
ATOL = 1e-5
FLIPPED = 0.03
GRAD_RTOL = 0.10
GRAD_ATOL = 1e-6
LOSS_RTOL = 1e-3
SEEDS = (0, 1, 2)
THREADS = 2


@pytest.fixture(autouse=True)
def pinned_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(before)
# small settings per method: three generator updates (one epoch of ceil(116 / 40) steps) of small networks
SETTINGS = {
    "acgan": {"batch_size": 40, "width": 8, "z_dim": 16},
    "gan": {"batch_size": 40, "width": 8, "z_dim": 16},
    "bagan": {"batch_size": 40, "width": 8, "latent_dim": 16, "ae_epochs": 1},
    "bagan-gp": {"batch_size": 40, "width": 8, "latent_dim": 16, "ae_epochs": 1, "n_critic": 2},
    "deepsmote": {"batch_size": 40, "width": 8, "latent_dim": 16},
    # CapsAN's whole training: 3 adversarial steps, then DC's 3 fine-tuning updates (U = 2 x 3)
    "capsan": {"batch_size": 40, "z_dim": 16, "g_channels": 16, "d_width": 8, "primary_types": 4, "caps_dim": 4,
               "conv_caps_types": 2, "epochs": 2, "epoch_scale": 0.5},
    "capsan-conv": {"batch_size": 40, "z_dim": 16, "g_channels": 16, "d_width": 8, "epochs": 2, "epoch_scale": 0.5},
    # GAMO's game (3 steps) after F's 3 updates, then the GAMO2pix decoders (each member's own, not fused)
    "gamo": {"batch_size": 40, "z_dim": 16, "pix_z_dim": 16, "epochs": 2, "epoch_scale": 0.5},
    "dagan": {"batch_size": 40, "g_width": 8, "d_width": 8, "z_dim": 16, "n_critic": 2},
}


def phase(name: str, seed: int, tmp_path) -> Phase:
    settings = dict(SETTINGS[name])
    epochs = settings.pop("epochs", 1)
    method = get_method(name)(**settings)
    ctx = FitContext(device=CPU, seed=seed, epochs=epochs, artifact_dir=tmp_path / f"s{seed}", ledger=Ledger())
    return method._prepare(image_set(seed), ctx)


def train(name: str, phases: list[Phase]) -> list:
    """The method's group training: a generative method's ``train_generators``, CapsAN's and GAMO's whole fit."""
    if name.startswith("capsan"):
        return CapsanTrainer(phases).run()
    if name == "gamo":
        return GamoTrainer(phases).run()
    return get_method(name).train_generators(phases)


def modules(method) -> dict[str, torch.nn.Module]:
    """Every network the method keeps after its generator phase (an attribute, or a dict of them)."""
    found = {}
    for attr, value in vars(method).items():
        for key, module in (value if isinstance(value, dict) else {"": value}).items():
            if isinstance(module, torch.nn.Module):
                found[f"{attr}.{key}"] = module
    return found


def networks(method) -> dict[str, torch.Tensor]:
    """Their parameters and buffers, flattened."""
    return {f"{where}.{name}": tensor.detach().float().clone()
            for where, module in modules(method).items() for name, tensor in module.state_dict().items()}


def gradients(method) -> dict[str, torch.Tensor]:
    """The gradients of their last update."""
    return {f"{where}.{name}": p.grad.detach().float().clone()
            for where, module in modules(method).items() for name, p in module.named_parameters()
            if p.grad is not None}


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_a_member_of_a_fused_generator_group_trains_its_own_cell(name, tmp_path):
    group = [phase(name, seed, tmp_path / "group") for seed in SEEDS]
    assert train(name, group) == [None] * len(SEEDS)
    for seed, member in zip(SEEDS, group, strict=True):
        alone = phase(name, seed, tmp_path / "solo")
        assert train(name, [alone]) == [None]
        ours, theirs = networks(member.method), networks(alone.method)
        assert ours and ours.keys() == theirs.keys()
        spent = member.ctx.ledger.record()
        assert spent["generator"]["updates"] >= 3
        assert {r: e["updates"] for r, e in spent.items()} == {r: e["updates"] for r, e in alone.ctx.ledger.record().items()}
        lr = member.method.params["lr"]
        most = max(e["updates"] for e in spent.values())
        weights = torch.cat([(ours[k] - theirs[k]).abs().flatten() for k in ours])
        assert (weights > ATOL).float().mean().item() <= FLIPPED, f"seed {seed}: the members' weights drifted apart"
        assert weights.max().item() <= 2 * most * lr
        ours, theirs = gradients(member.method), gradients(alone.method)
        assert ours and ours.keys() == theirs.keys()
        for key in ours:  # a loss averaged over members would give a third of each gradient
            scale = theirs[key].abs().max().item()
            assert (ours[key] - theirs[key]).abs().max().item() <= GRAD_RTOL * scale + GRAD_ATOL, key
        for loss, values in alone.method.history.items():
            np.testing.assert_allclose(member.method.history[loss], values, rtol=LOSS_RTOL)


@pytest.mark.parametrize("name", ["capsan", "dagan", "gamo"])  # the stacked calls every other method makes too
def test_members_of_a_fused_generator_group_do_not_see_each_other(name, tmp_path):
    """The same seed beside other mates gets the same networks: nothing crosses between members."""
    one = [phase(name, seed, tmp_path / "a") for seed in (0, 1)]
    other = [phase(name, seed, tmp_path / "b") for seed in (0, 2)]
    train(name, one)
    train(name, other)
    a, b = networks(one[0].method), networks(other[0].method)
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


@pytest.mark.parametrize("name", ["capsan", "gamo", "gan"])
def test_a_group_predicts_in_one_pass_what_its_members_predict_alone(name, tmp_path):
    """``predict_group`` (the members' predicting networks stacked: DC, M, the common classifier) gives each
    member's own probabilities."""
    cls, members = get_method(name), []
    for seed in (0, 1):
        settings = dict(SETTINGS[name])
        epochs = settings.pop("epochs", 1)
        ctx = FitContext(device=CPU, seed=seed, epochs=epochs, artifact_dir=tmp_path / f"s{seed}", ledger=Ledger())
        members.append((cls(**settings), image_set(seed), ctx))
    assert cls.fit_group(members) == [None, None]
    methods = [method for method, _, _ in members]
    test = [image_set(seed + 10).images for seed in (0, 1)]
    together = cls.predict_group(methods, test)
    for method, images, proba in zip(methods, test, together, strict=True):
        np.testing.assert_allclose(proba, method.predict_proba(images), atol=1e-5)


@pytest.mark.parametrize("name", ["gan", "capsan"])
def test_a_diverging_member_of_a_generator_group_fails_alone(name, tmp_path):
    """Member 1's images poisoned with NaN: its losses diverge and it fails (a CellFailure, as its solo cell
    would); the other members train on and still match their solo cells."""
    group = [phase(name, seed, tmp_path / "group") for seed in SEEDS]
    group[1].x.fill_(float("nan"))
    failed = train(name, group)
    assert isinstance(failed[1], CellFailure) and failed[0] is None and failed[2] is None
    for seed in (0, 2):
        alone = phase(name, seed, tmp_path / "solo")
        assert train(name, [alone]) == [None]
        member = group[SEEDS.index(seed)]
        for loss, values in alone.method.history.items():
            np.testing.assert_allclose(member.method.history[loss], values, rtol=LOSS_RTOL)
