"""Shared by the generative baselines that oversample with a generator and then train the common classifier
(``gan``, ``acgan``, ``dagan``, ``bagan``).

The protocol, the same for each of them so that their numbers compare; the budget follows the contract of
``budget.py`` (README, "Training budget"):
1. ``train_generator`` trains the method's generative model on the imbalanced training set for
   ``gan_epochs`` epochs (default: round(``epoch_scale`` x the cell's epochs), at least 1). An epoch is
   ceil(N / batch_size) GENERATOR updates, N the size of the whole training set, whatever subset of the
   images the model sees (``gan`` trains on one class only, and would otherwise get a handful of updates at
   high imbalance): every generator gets G = gan_epochs x ceil(N / batch_size) updates. A discriminator or
   critic stepped n times per generator step (DAGAN's n_critic) does so on top; an auxiliary network
   (BAGAN's autoencoder) gets the budget its method's docstring states. ``gan_iterations`` asks for a
   number of generator updates instead (a paper that counts iterations): the nearest whole number of
   epochs, at least one, so the ledger's count can differ from it by up to half an epoch.
2. Every class c present in the training set is topped up with n_c+ = int((n_max - n_c) x phi) generated
   images (phi = 1 balances the classes fully; CapsAN uses the same rule).
3. The common classifier (``classifier.py``) trains on real + generated images for exactly
   U = E x ceil(C x n_max / 64) updates, computed from the imbalanced set (a phi below 1 makes the set
   smaller, not U).
The paper's schedule (StudioGAN-style: a small set of overrides over the documented defaults): a method
whose paper or official code prescribes its own schedule lists it in ``paper_schedule``; ``schedule =
"paper"`` applies those overrides (a parameter the user sets explicitly wins), off the contract on purpose,
and the grid stores and reports the cell as ``name[schedule=paper]``. The ledger's contract still records
the contract's G (at the batch the contract would use), so the budget table shows the difference. A method
whose paper prescribes none refuses ``schedule = "paper"`` with one line.
Every optimiser update goes through ``ctx.ledger.update`` under its role ("generator", "discriminator",
"critic", "autoencoder"; the classifier is "classifier"), which the runner stores as ``metrics["budget"]``.
Precision and compilation (``--precision bf16``, ``--compile``): each method runs its forward passes and
losses in ``ctx.autocast()`` (sampling too) and calls ``ctx.compiled`` networks in its training loop.
Artifacts: ``losses.json`` (per-epoch generator-phase losses and the generated counts),
``training_counts.json``, ``samples.png`` (8 samples per generated class, one row each) and
``classifier_losses.json``.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import json
from typing import ClassVar

import numpy as np
import torch

from bench.datasets.base import ImageSet
from bench.methods.base import FitContext, Method, check_finite
from bench.methods.budget import Budget, check_schedule
from bench.methods.classifier import (
    CLASSIFIER_DEFAULTS,
    Classifier,
    ClassifierCells,
    Member,
    classifier_spec,
    keyed_params,
    to_input,
)
from bench.methods.generator_group import Phase, train_in_lots

# Defaults every generative baseline shares; a method adds its own over these.
COMMON_DEFAULTS = {
    "batch_size": 64,
    "epoch_scale": 1.0,  # generator phase = round(scale x the cell's epochs) epochs (at least 1)
    "gan_epochs": None,  # None = from gan_iterations, else from epoch_scale
    "gan_iterations": None,  # generator updates asked for, in whole epochs (a paper that counts iterations)
    "phi": 1.0,  # balance level: 1.0 tops every class up to the largest one
    "schedule": "contract",  # or "paper": the method's ``paper_schedule`` overrides, off the contract
    **CLASSIFIER_DEFAULTS,  # the common classifier's backbone and recipe (classifier.py), keyed as its spec
}
# Parameters added after the cells of version 2 were first stored, whose defaults train exactly as before:
# left out of the cell key at these values, so that those stores still resume.
UNKEYED_DEFAULTS = {"gan_iterations": None, "schedule": "contract"}


def top_up_counts(counts, phi: float) -> list[int]:
    """int((n_max - n_c) x phi) generated images per class; none for a class absent from the training set."""
    counts = np.asarray(counts)
    return [int((counts.max() - n) * phi) if n > 0 else 0 for n in counts]


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> uint8 images, on the same device."""
    return ((images.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


def save_samples(rows: list[torch.Tensor], path) -> None:
    """Rows of 8 uint8 samples as one PNG grid (the ``samples.png`` every generative method writes)."""
    # Imported here: torchvision's package import takes about 3 s on a CPU machine, which every bench process
    # (and every cell worker) would otherwise pay before its first cell, generative or not.
    from torchvision.utils import save_image

    save_image(torch.cat(rows).float().div(255.0), path, nrow=8, padding=1)


class GenerativeOversampling(ClassifierCells, Method):
    """Subclasses implement ``train_generator`` and ``generate``; ``fit`` does the rest (the top-up and the
    common classifier, the same for every generative method). A public extension point (README, "Your own
    method"); a subclass's ``defaults`` gain the shared ``COMMON_DEFAULTS`` it does not set itself."""

    version = 2  # 2: the budget contract (the classifier's U updates) and the ledger
    # Fused groups (``ClassifierCells.fit_group``): the members' classifiers train as one batched model; their
    # generators too when the method implements ``train_generators`` (``_own_phases``), else one member after
    # another (``_member``), each from its own seed.

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if COMMON_DEFAULTS.keys() - cls.defaults.keys():  # the built-in methods list them all: left as written
            cls.defaults = {**COMMON_DEFAULTS, **cls.defaults}

    autocast = contextlib.nullcontext  # fit sets the cell's (ctx.autocast); fp32 until then
    paper_schedule: ClassVar[dict] = {}  # what schedule="paper" overrides; empty: the paper prescribes none

    def __init__(self, **params):
        super().__init__(**params)
        schedule = self.params["schedule"]
        check_schedule(self.name, schedule)
        self.classifier_spec = classifier_spec(self.params["classifier"], self.params["classifier_schedule"])
        # the batch the contract's G is counted at: the user's, else the default (not the paper's)
        self.contract_batch = self.params["batch_size"]
        if schedule == "paper":
            if not self.paper_schedule:
                raise ValueError(f"{self.name}: its paper prescribes no training schedule of its own; "
                                 "use schedule = 'contract' (the default)")
            self.params.update({k: v for k, v in self.paper_schedule.items() if k not in params})

    def key_params(self) -> dict:
        params = {k: v for k, v in self.params.items() if k not in UNKEYED_DEFAULTS or v != UNKEYED_DEFAULTS[k]}
        return keyed_params(params, self.classifier_spec)

    fused_generators: ClassVar[bool] = False  # True: the method's generator phase is ``train_generators``

    def train_generator(self, x: torch.Tensor, y: torch.Tensor, counts: np.ndarray, epochs: int,
                        steps: int, ctx: FitContext) -> None:
        """Train on ``x`` (float in [-1, 1], on the device) with labels ``y`` for ``epochs`` epochs of
        ``steps`` updates; call ``self.end_epoch(epoch, losses, ctx)`` after each epoch (it checks for
        divergence, records and reports). Return nothing; the history is kept by ``end_epoch``. Implement
        this (your own method: its cells' generators train one after another in a group), or
        ``train_generators`` (the group's generators as one fused loop; this then runs a group of one)."""
        if not self.fused_generators:
            raise NotImplementedError(f"{type(self).__name__} implements neither train_generator nor "
                                      "train_generators")
        type(self).train_generators([Phase(self, x, y, counts, epochs, steps, ctx)])

    @classmethod
    def train_generators(cls, phases: list[Phase]) -> list[BaseException | None]:
        """The generator phases of a group (``generator_group.GeneratorGroup``), each member's ``Phase``; per
        member None or the failure that stopped it (a group of one raises it instead)."""
        raise NotImplementedError

    @abc.abstractmethod
    def generate(self, n: int, label: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images of class ``label`` as a float tensor in [-1, 1] on the device."""

    # -- shared machinery --------------------------------------------------------------------------------
    def gan_epochs(self, epochs: int, steps: int) -> int:
        """Generator epochs of ``steps`` updates: ``gan_epochs``, else ``gan_iterations`` / steps rounded to
        whole epochs, else round(epoch_scale x ``epochs``); at least one, except an explicit ``gan_epochs``."""
        p = self.params
        if p["gan_epochs"] is not None:
            return int(p["gan_epochs"])
        if p["gan_iterations"] is not None:
            return max(1, round(p["gan_iterations"] / steps))
        return max(1, round(epochs * p["epoch_scale"]))

    def end_epoch(self, epoch: int, losses: dict[str, float], ctx: FitContext) -> None:
        check_finite(epoch, losses)
        for name, value in losses.items():
            self.history.setdefault(name, []).append(value)
        ctx.progress(epoch, self._total_epochs, losses)

    def _prepare(self, train: ImageSet, ctx: FitContext) -> Phase:
        """Everything before the generator phase: the seed, the budget, the set on the device."""
        torch.manual_seed(ctx.seed)
        self.device, self.n_classes, self.image_shape = ctx.device, train.n_classes, train.image_shape
        counts = train.counts()
        self.budget = Budget.of(counts, ctx.epochs)
        steps = self.budget.generator_steps(self.params["batch_size"])
        gan_epochs = self.gan_epochs(ctx.epochs, steps)
        self._total_epochs = gan_epochs + ctx.epochs
        self.history: dict[str, list[float]] = {}
        x = to_input(train.images, ctx.device)
        y = torch.as_tensor(train.labels, device=ctx.device)
        ctx.ledger.contract["generator"] = self.budget.generator_updates(self.params["epoch_scale"],
                                                                         self.contract_batch)
        self.rng = torch.Generator(device=ctx.device).manual_seed(ctx.seed)
        self.autocast = ctx.autocast  # sampling runs in the precision of training
        return Phase(self, x, y, counts, gan_epochs, steps, ctx)

    def _finish(self, phase: Phase, train: ImageSet) -> Member:
        """After the generator phase: the top-up, the artifacts, the classifier's share of the group."""
        counts, ctx, gan_epochs = phase.counts, phase.ctx, phase.epochs
        self.generated_counts = top_up_counts(counts, self.params["phi"])
        images, labels = [train.images], [train.labels]
        for c, n in enumerate(self.generated_counts):
            if n > 0:
                images.append(self.sample(n, c))
                labels.append(np.full(n, c, dtype=np.int64))
        balanced = ImageSet(np.concatenate(images), np.concatenate(labels), train.class_names)
        self._save_artifacts(ctx, counts, balanced)

        shifted = dataclasses.replace(
            ctx, progress=lambda epoch, total, logs: ctx.progress(gan_epochs + epoch, self._total_epochs, logs))
        self.classifier = Classifier(self.classifier_spec)
        return Member(self.classifier, balanced, shifted, self.budget)

    def _member(self, train: ImageSet, ctx: FitContext) -> Member:
        """The generator phase and the top-up; the classifier's share of the group (the balanced set)."""
        phase = self._prepare(train, ctx)
        self.train_generator(phase.x, phase.y, phase.counts, phase.epochs, phase.steps, ctx)
        return self._finish(phase, train)

    @classmethod
    def _own_phases(cls, members: list) -> list:
        """A group's generator phases: as one fused loop (``train_generators``) for the members whose loops
        run in lockstep (same set shape, class counts and schedule); one after another otherwise."""
        if not cls.fused_generators or len(members) == 1:
            return super()._own_phases(members)
        trains = {id(method): train for method, train, _ in members}
        return train_in_lots(members, cls.train_generators,
                             finish=lambda phase: phase.method._finish(phase, trains[id(phase.method)]))

    @torch.no_grad()
    def sample(self, n: int, label: int, chunk: int = 1024) -> np.ndarray:
        """``n`` generated images of class ``label``, uint8 (n, C, H, W); seeded by the cell's seed."""
        out = []
        for start in range(0, n, chunk):
            with self.autocast():
                images = self.generate(min(chunk, n - start), label, self.rng)
            out.append(to_uint8(images).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, *self.image_shape), np.uint8)

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        return self.classifier.predict_proba(images)

    def _save_artifacts(self, ctx: FitContext, counts: np.ndarray, balanced: ImageSet) -> None:
        folder = ctx.artifact_dir
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "losses.json").write_text(json.dumps({**self.history, "generated_counts": self.generated_counts}))
        (folder / "training_counts.json").write_text(
            json.dumps({"before": counts.tolist(), "after": balanced.counts().tolist()}))
        classes = [c for c, n in enumerate(self.generated_counts) if n > 0][:10]
        if classes:
            rows = [torch.from_numpy(self.sample(8, c)) for c in classes]
            save_samples(rows, folder / "samples.png")
