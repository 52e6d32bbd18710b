"""The interface every method shares, and the context the runner hands to ``fit``."""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from bench.datasets.base import ImageSet
from bench.errors import CellFailure
from bench.methods.budget import Ledger


def is_out_of_memory(exc: BaseException) -> bool:
    """An out-of-memory error on any device: CUDA's, Python's ``MemoryError``, or torch's CPU allocator. A fused
    group lets it through (never a member's failure): the harness then splits the group in halves."""
    if isinstance(exc, torch.cuda.OutOfMemoryError | MemoryError):
        return True
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in str(exc) or "out of memory" in str(exc))


def one_hot(labels: torch.Tensor, n_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``F.one_hot(labels, n_classes).to(dtype)`` without its host synchronisation (``F.one_hot`` reads the
    labels' range back with ``.item()``: a GPU stalls on every call) and with a batching rule under vmap
    (``stacked.py``): a comparison with the class indices. The same 0/1 values."""
    return (labels.unsqueeze(-1) == torch.arange(n_classes, device=labels.device)).to(dtype)


def check_finite(epoch: int, losses: dict) -> None:
    """Stop a cell whose losses went NaN or Inf: "diverged at epoch k" is recorded as its failure."""
    bad = {name: value for name, value in losses.items() if not math.isfinite(value)}
    if bad:
        raise CellFailure(f"diverged at epoch {epoch}: " + ", ".join(f"{k} is {v}" for k, v in bad.items())
                          + "; lower the method's learning rate (lr) or run it in fp32")


def _no_progress(epoch: int, total: int, logs: dict) -> None:
    return None


PRECISIONS = ("fp32", "bf16")
# torch.compile modes --compile accepts: "default" fuses kernels (inductor); "reduce-overhead" also replays
# CUDA graphs (a GPU's launch overhead dominates these small models); "max-autotune" also tunes kernels.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
RECOMPILE_LIMIT = 32  # compiled variants kept per function under --compile


def check_run_settings(precision: str, compile_mode: str | None) -> None:
    """The one check of ``--precision`` and ``--compile`` (the grid's and every fit's): ValueError naming
    the valid values."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision '{precision}'; valid: {', '.join(PRECISIONS)}")
    if compile_mode is not None and compile_mode not in COMPILE_MODES:
        raise ValueError(f"unknown compile mode '{compile_mode}'; valid: {', '.join(COMPILE_MODES)}")


@dataclass
class FitContext:
    """What the runner gives a method: where to train, how long, with which seed, where to write, and the
    ledger its optimiser updates go through (``ctx.ledger.update(role, optimizer, loss, images)``)."""

    device: torch.device
    seed: int
    epochs: int  # the training budget of the cell (the preset's, or --epochs)
    artifact_dir: Path  # the cell's own folder for sample grids, loss logs, ...
    progress: Callable[[int, int, dict], None] = field(default=_no_progress)  # (epoch, epochs, logs)
    precision: str = "fp32"  # --precision: "bf16" runs forward passes and losses under bf16 autocast
    compile: str | None = None  # --compile: a torch.compile mode for the training networks, None = eager
    ledger: Ledger = field(default_factory=Ledger)  # every optimiser update, by role (``budget.py``)

    def __post_init__(self):
        check_run_settings(self.precision, self.compile)

    def autocast(self):
        """The context for forward passes and losses: bf16 autocast under ``--precision bf16`` (on the CPU
        too), a no-op under fp32. Backward passes and optimiser steps run outside it, in fp32 master
        weights; bf16 keeps fp32's exponent range, so no loss scaling is needed."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def compiled(self, fn):
        """``fn`` (a module or a function) through ``torch.compile`` under ``--compile``, else ``fn`` itself.
        A compiled module shares its parameters with ``fn``: keep ``fn`` for optimisers, state and sampling,
        and call the compiled one in the training loop."""
        if self.compile is None:
            return fn
        # A GAN calls its networks on real and generated batches, with and without gradients, and on a shorter
        # last batch: each a compiled variant. Past dynamo's default 8 the function would silently run eager.
        config = torch._dynamo.config
        name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"  # torch < 2.6
        setattr(config, name, max(getattr(config, name), RECOMPILE_LIMIT))
        if torch.are_deterministic_algorithms_enabled():  # the cell's flag, for inductor's kernels too (the
            # cell sets it without loading inductor: bench.cell.deterministic_algorithms)
            torch.use_deterministic_algorithms(True, warn_only=torch.is_deterministic_algorithms_warn_only_enabled())
        return torch.compile(fn, mode=self.compile)

    def step_begin(self) -> None:
        """Call before each training step: under ``--compile reduce-overhead`` it tells the CUDA-graph trees
        that a new iteration starts, so outputs of the previous one may be overwritten."""
        if self.compile == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()


# ``bench list methods`` shows the methods by family, in this order; a method of another family comes last.
FAMILIES = ("the paper's", "baseline", "resampling", "generative oversampling", "loss-based", "your own")


class Method(abc.ABC):
    """A learning method under test.

    Subclasses set ``name`` (the registry name), ``summary`` (one line), ``citation`` and
    ``defaults`` (every parameter with its documented default); ``Method(**overrides)`` validates the
    overrides against ``defaults``. ``fit`` trains on an imbalanced training set; ``predict_proba``
    returns class probabilities (N, n_classes) for uint8 images (N, C, H, W). Generative methods also
    implement ``sample(n, label)`` returning uint8 images. A GAN that can be battled (``--metrics battle``,
    Im et al.; ``bench/quality/battle.py``) names its opponent in ``battle_twin`` and implements
    ``discriminate(images)``: the "is real" decision of its fitted discriminator, bool (N,).

    The budget contract (``budget.py``; README "Training budget"), which every built-in method follows and
    a new one should: for E = ``ctx.epochs``, the predicting network makes exactly
    U = E x ceil(C x n_max / B) optimiser updates, every generator G = round(epoch_scale x E) x ceil(N / B),
    a critic stepped n times per generator step n G on top, an auxiliary network a documented budget of at
    least G. Make every optimiser update through ``ctx.ledger.update(role, optimizer, loss, images)`` (the
    predicting network's role is always "classifier") and wrap each training phase in ``ctx.ledger.phase(*roles)``:
    the runner stores the ledger with the cell, and the report compares it across methods. A method that
    steps its optimisers itself still runs; its ledger is then empty, and the report says so.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    defaults: ClassVar[dict] = {}
    version: ClassVar[int] = 1  # bump when a change alters results: it is part of the cell key
    family: ClassVar[str] = "your own"  # how ``bench list methods`` groups it (``FAMILIES``)
    battle_twin: ClassVar[str | None] = None  # the registered method this one is battled against, if any
    # Whether ``fit_group`` trains several cells of this method as one batched model (``fused.py``; README,
    # "Fused cells"); False: the runner runs each cell alone.
    fusable: ClassVar[bool] = False

    def __init__(self, **params):
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            valid = ", ".join(sorted(self.defaults)) or "none"
            raise ValueError(f"method '{self.name}' has no parameter {', '.join(unknown)}; valid parameters: {valid}")
        self.params = {**self.defaults, **params}

    def key_params(self) -> dict:
        """Everything that defines this method's results: stored with the cell and hashed into its key."""
        return dict(self.params)

    @classmethod
    def run_overrides(cls, precision: str) -> dict:
        """Parameters that the run's settings set on this method (so its key follows them): a method with a
        ``precision`` parameter of its own (CapsAN's capsule routing) takes ``--precision``."""
        return {"precision": precision} if precision != "fp32" and "precision" in cls.defaults else {}

    @classmethod
    def variant_label(cls, name: str, params: dict) -> str:
        """The label under which a configuration is stored and reported apart ("" for none): one trained off
        the budget contract (``schedule``) is ``name[schedule=...]``."""
        schedule = params.get("schedule", "contract")
        return "" if schedule == "contract" else f"{name}[schedule={schedule}]"

    @abc.abstractmethod
    def fit(self, train: ImageSet, ctx: FitContext) -> None:
        """Train on ``train`` (labels 0..n_classes-1) within ``ctx``'s budget."""

    @abc.abstractmethod
    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities, float (N, n_classes), rows summing to 1."""

    @classmethod
    def fit_group(cls, members: list[tuple[Method, ImageSet, FitContext]]) -> list[BaseException | None]:
        """Fit several cells of this method, each an instance with the same parameters, its own training set
        and its own context (seed, ledger, artifacts); return per member None, or the exception that failed
        it (one member's failure never stops the others). Here one ``fit`` after another; a method with
        ``fusable = True`` trains them as one batched model."""
        outcomes: list[BaseException | None] = []
        for method, train, ctx in members:
            try:
                method.fit(train, ctx)
                outcomes.append(None)
            except Exception as exc:  # noqa: BLE001 (the member's row records it)
                if is_out_of_memory(exc):
                    raise
                outcomes.append(exc)
        return outcomes

    @classmethod
    def predict_group(cls, methods: list[Method], images: list[np.ndarray]) -> list[np.ndarray]:
        """Class probabilities of fitted members of a group, each on its own test images: here one
        ``predict_proba`` after another; a fused method predicts its members in one batched pass."""
        return [method.predict_proba(own) for method, own in zip(methods, images, strict=True)]

    def skip(self, task) -> str | None:
        """Why this method declines ``task`` (benchopt's idea), or None to run it. ``task`` has ``train``
        and ``test`` (``ImageSet``), ``positive`` (the minority label of a binary task, else None) and
        ``counts``. A reason is recorded as a refused cell (exit 0), the method never fitted: say what the
        method cannot do, e.g. "needs at least 6 images of every class"."""
        return None

    def discriminate(self, images: np.ndarray) -> np.ndarray:
        """The fitted discriminator's "is real" decision per uint8 image, bool (N,) (or P(real) in [0, 1]):
        what the battle metric asks of a method with a ``battle_twin``."""
        raise NotImplementedError(f"method '{self.name}' has no discriminator to battle with")


class FitsAsGroup:
    """Mixed into a ``Method`` (first among its bases) whose cells fuse: ``fusable``, and ``fit`` as a group of
    one of the method's ``fit_group``, so that a solo cell and a group share one training path."""

    fusable = True

    def fit(self, train: ImageSet, ctx: FitContext) -> None:
        failure = type(self).fit_group([(self, train, ctx)])[0]
        if failure is not None:
            raise failure
