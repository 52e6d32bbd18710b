"""The generator phases of a fused group's members trained as one (issue 30): ``GeneratorGroup``, what a
generative method's ``train_generators`` writes its training loop against.

One loop serves a group of any size, a solo cell being a group of one (``GenerativeOversampling.train_generator``
calls ``train_generators`` with one member). Every tensor of the loop carries the member axis first, (S, B, ...):
``draw`` stacks each member's own random draws (from its own ``method.rng``, in the order its solo cell draws
them), ``build`` makes each member's networks under its own seed and stacks them (``stacked.Stacked``),
``per_member`` computes a loss per member, ``update`` steps on their sum (each member's gradient is its own) and
counts one update in every member's ledger, and ``end_epoch`` checks each member for divergence: a member whose
losses went NaN or Inf fails alone and the others train on (its tensors are its own slice of every stacked one,
and the optimisers are element-wise, so nothing of it reaches them).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.func import vmap

from bench.errors import CellFailure
from bench.methods.base import FitContext, is_out_of_memory
from bench.methods.fused import member_generator
from bench.methods.stacked import Stacked


@dataclass
class Phase:
    """One cell's generator phase: its method instance, its training set on the device (``x`` in [-1, 1],
    ``y``), the class counts, and its ``epochs`` of ``steps`` generator updates."""

    method: Any  # a GenerativeOversampling
    x: torch.Tensor
    y: torch.Tensor
    counts: np.ndarray
    epochs: int
    steps: int
    ctx: FitContext


def per_member(fn, *tensors: torch.Tensor):
    """``fn`` (a loss of one member's tensors, or a tuple of losses) for every member: (S,) each. A group of one
    calls it on ``t[0]``."""
    if tensors[0].shape[0] == 1:
        out = fn(*(t[0] for t in tensors))
        return out.unsqueeze(0) if isinstance(out, torch.Tensor) else tuple(o.unsqueeze(0) for o in out)
    return vmap(fn)(*tensors)


def lockstep_key(phase: Phase) -> tuple:
    """What members must share to train in lockstep: the set's shape, the class counts, the schedule, the
    device, the precision and the compile mode."""
    ctx = phase.ctx
    return (tuple(phase.x.shape), tuple(phase.counts), phase.epochs, phase.steps, str(ctx.device), ctx.precision,
            ctx.compile)


def train_in_lots(members: list, train, key=lockstep_key, finish=None) -> list:
    """A fused group's members (method, training set, context): each ``method._prepare(train_set, ctx)`` -> its
    ``Phase``, then the members whose ``key(phase)`` agree as one lot, ``train(phases)`` -> per member None or
    its failure, then ``finish(phase)`` for each member that trained (its result is the member's outcome).
    Per member the outcome or the exception that failed it: one member's failure is its own, a lot's is each
    of its members'. A group of one raises, as the solo cell; an out-of-memory error always does (the harness
    splits the group)."""
    outcomes: list = [None] * len(members)
    lots: dict[tuple, list[int]] = {}
    phases: dict[int, Phase] = {}

    def record(index: int, exc: Exception) -> None:
        if len(members) == 1 or is_out_of_memory(exc):
            raise exc
        outcomes[index] = exc

    for index, (method, train_set, ctx) in enumerate(members):
        try:
            phases[index] = method._prepare(train_set, ctx)
        except Exception as exc:  # noqa: BLE001 (the member's row records it)
            record(index, exc)
            continue
        lots.setdefault(key(phases[index]), []).append(index)
    for lot in lots.values():
        try:
            failed = train([phases[i] for i in lot])
        except Exception as exc:  # noqa: BLE001 (a fault of the whole lot fails each of its members)
            if len(members) == 1 or is_out_of_memory(exc):
                raise
            failed = [exc] * len(lot)
        for index, failure in zip(lot, failed, strict=True):
            outcomes[index] = failure
            if failure is None and finish is not None:
                try:
                    outcomes[index] = finish(phases[index])
                except Exception as exc:  # noqa: BLE001
                    record(index, exc)
    return outcomes


class GeneratorGroup:
    def __init__(self, phases: list[Phase]):
        self.phases, self.size = phases, len(phases)
        first = phases[0]
        self.params, self.ctx, self.device = first.method.params, first.ctx, first.ctx.device
        self.ledger, self.mates = first.ctx.ledger, tuple(p.ctx.ledger for p in phases[1:])
        self.failed: list[BaseException | None] = [None] * self.size

    def networks(self, factory) -> list[list[torch.nn.Module]]:
        """``factory(phase)`` -> that member's networks (a list, in the solo cell's order of construction),
        called under the member's seed; returned per network, each a list of the members' own."""
        nets, self.generators, self.cpu_states = [], [], []
        for phase in self.phases:
            torch.manual_seed(phase.ctx.seed)  # as the solo cell: its networks are the first draws after it
            nets.append(factory(phase))
            self.generators.append(member_generator(self.device) if self.size > 1 else None)
            self.cpu_states.append(torch.get_rng_state())
        return [[own[k] for own in nets] for k in range(len(nets[0]))]

    @contextlib.contextmanager
    def as_member(self, index: int):
        """The global generators as member ``index``'s solo cell would find them, for work that draws from them
        (a network built after training, a method that samples without a generator of its own): the state after
        that member's networks were built, advanced by its dropout masks (drawn from ``generators[index]``, the
        device's generator's copy) and by earlier ``as_member`` blocks. A group of one changes nothing."""
        if self.size == 1:
            yield
            return
        cuda = torch.device(self.device).type == "cuda"
        own = self.generators[index]
        torch.set_rng_state(self.cpu_states[index] if cuda else own.get_state())
        if cuda:
            torch.cuda.set_rng_state(own.get_state(), self.device)
        try:
            yield
        finally:
            if cuda:
                self.cpu_states[index] = torch.get_rng_state()
                own.set_state(torch.cuda.get_rng_state(self.device))
            else:
                own.set_state(torch.get_rng_state())

    def stack(self, nets: list[torch.nn.Module]) -> Stacked:
        """The members' networks as one, their dropout drawing from each member's generator (``networks``)."""
        return Stacked(nets, self.generators)

    def build(self, factory) -> list[Stacked]:
        """``networks``, each stacked."""
        return [self.stack(nets) for nets in self.networks(factory)]

    def compiled(self, stacked: Stacked, method: str = "forward") -> Stacked:
        """``--compile`` for a group of one (the solo network's ``method``, or submodule, compiled, as before
        fusion); a larger group runs its vmapped networks eagerly."""
        if self.size == 1:
            own = stacked.solo if method == "forward" else getattr(stacked.solo, method)
            stacked.solo_calls[method] = self.ctx.compiled(own)
        return stacked

    def batches(self, make):
        """Each member's batches in lockstep: ``make(phase)`` -> that member's iterator of index batches."""
        return zip(*(make(phase) for phase in self.phases), strict=True)

    def take(self, tensors: str, indices) -> torch.Tensor:
        """Each member's ``phase.<tensors>`` (``"x"`` or ``"y"``) at its own indices, stacked."""
        return torch.stack([getattr(phase, tensors)[i] for phase, i in zip(self.phases, indices, strict=True)])

    def draw(self, fn) -> torch.Tensor:
        """``fn(i, phase)`` -> member i's draw (from its own generator); stacked on the member axis."""
        return torch.stack([fn(i, phase) for i, phase in enumerate(self.phases)])

    def phase(self, *roles: str):
        return self.ledger.phase(*roles, mates=self.mates)

    def step_begin(self) -> None:
        self.ctx.step_begin()

    def update(self, role: str, optimizer, losses: torch.Tensor, images) -> None:
        """One update of every member on the sum of their losses (S,): ``Ledger.update_group``. ``images``: the
        batch's size, the same for every member, or a list of each member's."""
        total = losses[0] if self.size == 1 else losses.sum()
        counts = list(images) if isinstance(images, list) else [images] * self.size
        self.ledger.update_group(list(self.mates), role, optimizer, total, counts)

    def done(self, *stacked: Stacked) -> list[BaseException | None]:
        """The end of the phase: each member's trained tensors into its own networks; per member None or its
        failure."""
        for one in stacked:
            one.write_back()
        return self.failed

    def end_epoch(self, epoch: int, logs: list[dict[str, float]]) -> bool:
        """Each live member's epoch losses to its method's ``end_epoch`` (divergence check, history, progress);
        a member that diverged fails alone. False when no member is left to train."""
        for i, (phase, losses) in enumerate(zip(self.phases, logs, strict=True)):
            if self.failed[i] is None:
                try:
                    phase.method.end_epoch(epoch, losses, phase.ctx)
                except CellFailure as exc:
                    if self.size == 1:
                        raise
                    self.failed[i] = exc
        return any(f is None for f in self.failed)
