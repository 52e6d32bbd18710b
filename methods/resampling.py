"""Shared by the methods that train the common classifier: change the training set (``resample``), or the
loss (``batch_loss``), or neither (``imbalanced``). A public extension point (README, "Your own method"):
a new resampler or loss is compared on exactly the baselines' classifier and budget.

Budget (``budget.py``): the classifier gets U = E x ceil(C x n_max / 64) updates, computed from the
imbalanced training set before resampling; a resampler that balances fully (SMOTE) hands over a set of
exactly C x n_max images, so an epoch is one pass over it; ``imbalanced`` passes over its smaller set more
often.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from bench.datasets.base import ImageSet
from bench.errors import CellRefused
from bench.methods.base import FitContext, Method
from bench.methods.budget import Budget
from bench.methods.classifier import (
    CLASSIFIER_DEFAULTS,
    Classifier,
    ClassifierCells,
    Member,
    classifier_spec,
    keyed_params,
)


class ResamplingMethod(ClassifierCells, Method):
    """``resample`` the training set (identity by default), then train the common classifier on it with
    ``batch_loss`` (cross-entropy by default).

    Override one of them (with ``name``, ``summary``, ``citation`` and ``defaults``):
    - ``resample(train, ctx) -> ImageSet``: the set the classifier trains on (imbalanced-learn's
      ``fit_resample`` idea; ``ctx.seed`` seeds any randomness);
    - ``batch_loss(model, x, y) -> scalar tensor``: the loss of one batch (``model(x)`` gives the logits,
      ``x`` in [-1, 1]); ``self.train_counts``, the imbalanced training set's class counts, is set before
      the classifier trains (what class-balanced and margin losses need), and ``self.training_fraction`` says
      where training is, per optimiser update (what a schedule such as deferred re-weighting needs);
      ``self.per_class`` turns the counts into a per-class tensor once per fit (class weights, margins,
      log-priors);
    - ``classifier_head = "cosine"``: a normalised last layer (``classifier.CosineLinear``) for a margin loss.
    Every subclass takes the parameters ``classifier`` ("cnn", the default, or "resnet32") and
    ``classifier_schedule`` ("adam", the default, or "longtail-sgd": LDAM-DRW's SGD recipe); the
    classifier they give is stored in the key (``classifier.classifier_spec``).
    The classifier gets the budget contract's U updates, counted from the imbalanced set whatever
    ``resample`` returns.
    Cells of one such method train as a fused group (``fusable``; ``fit_group``): each member resamples on its
    own, then the members whose resampled sets have one size train their classifiers as one batched model
    (``classifier.ClassifierCells``; a member's loss is its own ``batch_loss``, given a view of its own
    outputs: ``model(x)``, ``model.embed(x)``, ``model.classify(features)``). A subclass that overrides
    ``fit`` runs its cells alone (``fusable`` False) unless it says otherwise.
    """

    version = 2  # 2: the budget contract (the classifier's U updates, from the imbalanced set)
    classifier_head = "linear"  # "cosine": a normalised last layer (a margin loss's)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.defaults = {**CLASSIFIER_DEFAULTS, **cls.defaults}  # every method on the common classifier takes them

    def __init__(self, **params):
        super().__init__(**params)
        self.classifier_spec = classifier_spec(self.params["classifier"], self.params["classifier_schedule"],
                                               self.classifier_head)

    def key_params(self) -> dict:
        return keyed_params(self.params, self.classifier_spec)

    @property
    def training_fraction(self) -> float:
        """The share of the classifier's U updates done before the current one, k / U for its update k
        (0-based): 0 at the first update, (U - 1) / U at the last, never 1. What a loss with a schedule reads
        inside ``batch_loss``; a schedule "from fraction f on" (``training_fraction >= f``) so starts at update
        ceil(f x U) and runs to the end, never for f = 1 and always for f = 0. (0 before training.)"""
        classifier = getattr(self, "classifier", None)
        if classifier is None or not classifier.updates:
            return 0.0
        return classifier.update / classifier.updates

    def per_class(self, name: str, values, device) -> torch.Tensor:
        """``values(self.train_counts)`` (one number per class) as a float32 tensor on ``device``, computed once
        per fit and kept under ``name``: what class-weighted, margin and prior-adjusted losses need."""
        cache = self.__dict__.setdefault("_per_class", {})
        tensor = cache.get(name)
        if tensor is None or tensor.device != device:
            tensor = cache[name] = torch.as_tensor(values(self.train_counts), dtype=torch.float32, device=device)
        return tensor

    def resample(self, train: ImageSet, ctx: FitContext) -> ImageSet:
        """The training set the classifier sees: ``train`` itself here."""
        return train

    def batch_loss(self, model, x, y):
        """One batch's training loss: cross-entropy on the common CNN's logits here."""
        return torch.nn.functional.cross_entropy(model(x), y)

    def _member(self, train: ImageSet, ctx: FitContext) -> Member:
        """Resample, and the classifier's share of the group: this cell's set, context and budget."""
        self.train_counts = train.counts()
        self._per_class = {}  # per_class tensors belong to these counts
        budget = Budget.of(self.train_counts, ctx.epochs)  # U comes from the imbalanced set, not the resampled one
        resampled = self.resample(train, ctx)
        if not isinstance(resampled, ImageSet):
            raise TypeError(f"{self.name}.resample must return an ImageSet; got {type(resampled).__name__}")
        ctx.artifact_dir.mkdir(parents=True, exist_ok=True)
        (ctx.artifact_dir / "training_counts.json").write_text(
            json.dumps({"before": self.train_counts.tolist(), "after": resampled.counts().tolist()})
        )
        self.classifier = Classifier(self.classifier_spec, loss=self.batch_loss)
        return Member(self.classifier, resampled, ctx, budget)

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        return self.classifier.predict_proba(images)


class PixelOversampling(ResamplingMethod):
    """An imbalanced-learn over-sampler (``sampler``: its class name in ``imblearn.over_sampling``, built with
    ``params`` and the cell's seed) applied to flattened pixels. The library is imported when a cell
    resamples: with scikit-learn it costs a process about 2.5 s, which ``bench list`` or a refused run need
    not pay."""

    sampler: str

    def resample(self, train: ImageSet, ctx: FitContext) -> ImageSet:
        import imblearn.over_sampling

        sampler_params = {k: v for k, v in self.params.items() if k not in CLASSIFIER_DEFAULTS}
        sampler = getattr(imblearn.over_sampling, self.sampler)
        return resample_pixels(sampler(random_state=ctx.seed, **sampler_params), train)


def resample_pixels(sampler, train: ImageSet) -> ImageSet:
    """Run an imbalanced-learn over-sampler on flattened pixels and return uint8 images.

    The library's own refusals (too few neighbours, nothing to generate) become a failed cell that
    carries its message.
    """
    x = train.images.reshape(len(train), -1).astype(np.float32)
    try:
        x_new, y_new = sampler.fit_resample(x, train.labels)
    except (ValueError, RuntimeError) as exc:
        raise CellRefused(f"{type(sampler).__name__} refused: {exc}") from exc
    images = np.clip(np.rint(x_new), 0, 255).astype(np.uint8).reshape((-1, *train.image_shape))
    return ImageSet(images, np.asarray(y_new, dtype=np.int64), train.class_names)
