"""Fused generator phases (``methods/stacked.py``, ``methods/generator_group.py``, issue 30): a member of a group
trains exactly its own cell's generator.

For every method whose generator phase fuses (``fused_generators``), three members' generator phases train as one
group for k >= 3 updates of every network, and each member's again alone from the same seed and set; every
trained network the method keeps for sampling (and its batch-norm buffers) and every logged epoch loss is then
compared with the solo cell's.

Tolerances. A grouped convolution adds in another order than a plain one, so members match their solo cells to
float rounding, not in bits: every weight and buffer within ``ATOL`` (measured on the suite's 2-core AVX2 machine:
7e-8 for gan, 1.2e-7 for dagan, after 3 updates of every network), the last update's gradients within ``GRAD_RTOL``
of each tensor's largest gradient (measured 5e-7 and 6e-6: a loss averaged over three members would be off by
2/3), the logged epoch losses within ``LOSS_RTOL``. A member that saw another's data, noise or dropout mask fails
at once. (Adam's first steps move a weight whose gradient is near zero by about lr whatever its size, so
rounding could flip such a step's sign; at these settings none did.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.methods.base import FitContext
from bench.methods.budget import Ledger
from bench.methods.generator_group import Phase
from bench.methods.registry import get_method
from tests.test_fused import image_set

CPU = torch.device("cpu")
ATOL = 1e-5
GRAD_RTOL = 1e-3
LOSS_RTOL = 1e-4
SEEDS = (0, 1, 2)
# small settings per method: three generator updates (one epoch of ceil(116 / 40) steps) of small networks
SETTINGS = {
    "acgan": {"batch_size": 40, "width": 8, "z_dim": 16},
    "gan": {"batch_size": 40, "width": 8, "z_dim": 16},
    "bagan": {"batch_size": 40, "width": 8, "latent_dim": 16, "ae_epochs": 1},
    "bagan-gp": {"batch_size": 40, "width": 8, "latent_dim": 16, "ae_epochs": 1, "n_critic": 2},
    "deepsmote": {"batch_size": 40, "width": 8, "latent_dim": 16},
    "dagan": {"batch_size": 40, "g_width": 8, "d_width": 8, "z_dim": 16, "n_critic": 2},
}


def phase(name: str, seed: int, tmp_path) -> Phase:
    method = get_method(name)(**SETTINGS[name])
    ctx = FitContext(device=CPU, seed=seed, epochs=1, artifact_dir=tmp_path / f"s{seed}", ledger=Ledger())
    return method._prepare(image_set(seed), ctx)


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
    cls = get_method(name)
    group = [phase(name, seed, tmp_path / "group") for seed in SEEDS]
    assert cls.train_generators(group) == [None] * len(SEEDS)
    for seed, member in zip(SEEDS, group, strict=True):
        alone = phase(name, seed, tmp_path / "solo")
        assert cls.train_generators([alone]) == [None]
        ours, theirs = networks(member.method), networks(alone.method)
        assert ours and ours.keys() == theirs.keys()
        updates = member.ctx.ledger.record()["generator"]["updates"]
        assert updates >= 3 and updates == alone.ctx.ledger.record()["generator"]["updates"]
        for key in ours:
            assert (ours[key] - theirs[key]).abs().max().item() <= ATOL, f"seed {seed}: {key}"
        ours, theirs = gradients(member.method), gradients(alone.method)
        assert ours and ours.keys() == theirs.keys()
        for key in ours:  # a loss averaged over members would give a third of each gradient
            scale = theirs[key].abs().max().item()
            assert (ours[key] - theirs[key]).abs().max().item() <= GRAD_RTOL * scale + 1e-7, key
        for loss, values in alone.method.history.items():
            np.testing.assert_allclose(member.method.history[loss], values, rtol=LOSS_RTOL)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_members_of_a_fused_generator_group_do_not_see_each_other(name, tmp_path):
    """The same seed beside other mates gets the same networks: nothing crosses between members."""
    cls = get_method(name)
    one = [phase(name, seed, tmp_path / "a") for seed in (0, 1)]
    other = [phase(name, seed, tmp_path / "b") for seed in (0, 2)]
    cls.train_generators(one)
    cls.train_generators(other)
    a, b = networks(one[0].method), networks(other[0].method)
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
