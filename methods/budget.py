"""The training budget contract every method follows, and the ledger that counts what a cell spent.

The contract (README, "Training budget"), for a cell of E epochs on an imbalanced training set of N images
whose C present classes have at most n_max images each:
- the predicting network (the common classifier; CapsAN's and capsan-conv's discriminator; GAMO's
  classifier M) gets exactly U = E x ceil(C x n_max / B_c) optimiser updates, B_c the classifier's batch:
  the updates of E epochs over the fully balanced set, whatever set the method actually trains it on
  (``imbalanced`` and ``crl`` make more passes over their smaller set; a ``phi`` below 1 changes how many
  images are generated, not U);
- every generator gets G = round(epoch_scale x E) x ceil(N / B) updates (at least one epoch), B the
  method's batch; a critic or discriminator stepped n times per generator step does so on top;
- auxiliary networks (BAGAN's autoencoder, GAMO's gamo2pix decoders) get a budget of their own, at least
  G, which their method's docstring states.
A method's parameters can break the contract on purpose (``gan_epochs``, ``schedule = "paper"``); the
ledger then shows it, and the report flags a table whose predicting networks' updates differ.

The ledger is what the runner stores as ``metrics["budget"]``: per network role (``ROLES``), the optimiser
updates, how many optimisers made them (``gan`` trains one generator per minority class, GAMO one pair of
optimisers per minority class), the images (or feature vectors) in the batches those updates were computed
on, and the seconds of the phases that trained the role (roles trained in one loop share its seconds).
It is filled by ``Ledger.update``, the one call every optimiser update of every method goes through (zero the
gradients, backward, step, count), so the counts are what ran, not what a formula says should have run, and no
method can step an optimiser past the ledger by accident.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

# Network roles; the predicting network is always "classifier", so every method's ledger compares on it.
# Training schedules a method may offer: "contract" (the default, above) and "paper" (the schedule its paper or
# official code prescribes, off the contract on purpose; the grid stores it as ``name[schedule=paper]``).
SCHEDULES = ("contract", "paper")
def check_schedule(method: str, schedule: str) -> None:
    """A ValueError naming the valid schedules when ``schedule`` is not one of them."""
    if schedule not in SCHEDULES:
        raise ValueError(f"{method}: schedule must be one of {', '.join(SCHEDULES)}; got {schedule!r}")


ROLES = ("classifier", "generator", "discriminator", "critic", "autoencoder", "decoder")


@dataclass(frozen=True)
class Budget:
    """The contract's numbers for one training set (``counts``: images per class) and cell."""

    epochs: int  # E, the cell's epochs
    n_classes: int  # C, the classes present in the training set
    n_max: int  # the largest class
    n_train: int  # N, the imbalanced training set

    @classmethod
    def of(cls, counts, epochs: int) -> Budget:
        counts = np.asarray(counts)
        return cls(int(epochs), int((counts > 0).sum()), int(counts.max()), int(counts.sum()))

    def classifier_steps(self, batch_size: int) -> int:
        """Updates of the predicting network per epoch: one pass over the fully balanced set."""
        return math.ceil(self.n_classes * self.n_max / batch_size)

    def classifier_updates(self, batch_size: int) -> int:
        """U = E x ceil(C x n_max / B)."""
        return self.epochs * self.classifier_steps(batch_size)

    def classifier_rest(self, spent: int, batch_size: int, who: str, knob: str) -> int:
        """What is left of U after ``spent`` updates of the predicting network in a method's generator phase
        (CapsAN's adversarial phase, GAMO's game); a ValueError naming ``knob`` when that phase alone spends
        more than U."""
        classifier = self.classifier_updates(batch_size)
        if spent > classifier:
            raise ValueError(f"{who}: its generator phase makes {spent} updates of the predicting network, more "
                             f"than its budget U = {classifier}; lower epoch_scale or {knob}")
        return classifier - spent

    def generator_epochs(self, epoch_scale: float) -> int:
        return max(1, round(self.epochs * epoch_scale))

    def generator_steps(self, batch_size: int) -> int:
        """Generator updates per generator epoch: ceil(N / B)."""
        return math.ceil(self.n_train / batch_size)

    def generator_updates(self, epoch_scale: float, batch_size: int) -> int:
        """G = round(epoch_scale x E) x ceil(N / B)."""
        return self.generator_epochs(epoch_scale) * self.generator_steps(batch_size)


class Ledger:
    """Counts every optimiser update by network role; ``FitContext.ledger`` holds the cell's."""

    def __init__(self):
        self._roles: dict[str, dict] = {}
        self.contract: dict[str, int] = {}  # what the method was asked to spend: {"classifier": U, ...}

    def _entry(self, role: str) -> dict:
        if role not in ROLES:
            raise ValueError(f"unknown network role {role!r}; valid roles: {', '.join(ROLES)}")
        return self._roles.setdefault(role, {"updates": 0, "optimizers": set(), "images": 0, "seconds": 0.0})

    def update(self, role: str, optimizer, loss: torch.Tensor, images) -> None:
        """One optimiser update of ``role``: zero the gradients, ``loss.backward()``, ``optimizer.step()``, and
        count it on a batch of ``images``. ``optimizer`` may be a sequence of optimisers that one loss trains
        together (DeepSMOTE's encoder and decoder), ``images`` then an int for all or one per optimiser.
        Call it outside autocast: backward passes and steps run in fp32 master weights (``FitContext``)."""
        optimizers = tuple(optimizer) if isinstance(optimizer, (list, tuple)) else (optimizer,)
        counts = tuple(images) if isinstance(images, (list, tuple)) else (images,) * len(optimizers)
        if len(counts) != len(optimizers):
            raise ValueError(f"{len(optimizers)} optimisers but {len(counts)} image counts")
        self._entry(role)  # an unknown role fails before anything is stepped
        for one in optimizers:
            one.zero_grad(set_to_none=True)
        loss.backward()
        for one, count in zip(optimizers, counts, strict=True):
            one.step()
            self._count(role, one, count)

    def _count(self, role: str, optimizer, images: int) -> None:
        entry = self._entry(role)
        entry["updates"] += 1
        entry["images"] += int(images)
        entry["optimizers"].add(id(optimizer))

    def update_group(self, mates: list[Ledger], role: str, optimizer, loss: torch.Tensor, images) -> None:
        """One update of a fused group's stacked networks (``methods/fused.py``): ``update`` here, then counted
        as one update of ``role`` in each mate's ledger too (``images``: this member's count, then one per
        mate; each an int, or one per optimiser as ``update`` takes them). The summed loss's gradient is each member's own: one step is one update of every member."""
        counts = list(images)
        if len(counts) != 1 + len(mates):
            raise ValueError(f"{1 + len(mates)} members but {len(counts)} image counts")
        self.update(role, optimizer, loss, counts[0])
        optimizers = tuple(optimizer) if isinstance(optimizer, (list, tuple)) else (optimizer,)
        for mate, count in zip(mates, counts[1:], strict=True):
            per = tuple(count) if isinstance(count, (list, tuple)) else (count,) * len(optimizers)
            for one, images_of_one in zip(optimizers, per, strict=True):
                mate._count(role, one, images_of_one)

    @contextlib.contextmanager
    def phase(self, *roles: str, mates: tuple[Ledger, ...] = ()):
        """Time a training phase and add its seconds to each of ``roles`` (a GPU is synchronised at the end,
        once, so the time is the work's and not the launch queue's). A fused group's phase (``mates``: the
        other members' ledgers) gives each of its S members an equal share, 1 / S of the seconds."""
        ledgers = (self, *mates)
        entries = [ledger._entry(role) for ledger in ledgers for role in roles]
        start = time.perf_counter()
        try:
            yield
        finally:
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                torch.cuda.synchronize()
            elapsed = (time.perf_counter() - start) / len(ledgers)
            for entry in entries:
                entry["seconds"] += elapsed

    def record(self) -> dict:
        """{role: {updates, optimizers, images, seconds}} for the roles that trained, in ``ROLES`` order."""
        return {role: {"updates": e["updates"], "optimizers": len(e["optimizers"]), "images": e["images"],
                       "seconds": round(e["seconds"], 3)}
                for role in ROLES if (e := self._roles.get(role)) and e["updates"]}
