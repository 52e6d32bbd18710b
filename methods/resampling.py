"""Shared by the methods that change the training set and then train the common classifier.

Budget (``budget.py``): the classifier gets U = E x ceil(C x n_max / 64) updates, computed from the
imbalanced training set before resampling; a resampler that balances fully (SMOTE) hands over a set of
exactly C x n_max images, so an epoch is one pass over it; ``imbalanced`` passes over its smaller set more
often.
"""

from __future__ import annotations

import json

import numpy as np

from bench.datasets.base import ImageSet
from bench.errors import CellRefused
from bench.methods.base import FitContext, Method
from bench.methods.budget import Budget
from bench.methods.classifier import CLASSIFIER_SPEC, Classifier


class ResamplingMethod(Method):
    """``resample`` the training set (identity by default), then train the common classifier on it."""

    version = 2  # 2: the budget contract (the classifier's U updates, from the imbalanced set)

    def key_params(self) -> dict:
        return {**self.params, "classifier": CLASSIFIER_SPEC}

    def resample(self, train: ImageSet, ctx: FitContext) -> ImageSet:
        return train

    def fit(self, train: ImageSet, ctx: FitContext) -> None:
        budget = Budget.of(train.counts(), ctx.epochs)  # U comes from the imbalanced set, not the resampled one
        resampled = self.resample(train, ctx)
        ctx.artifact_dir.mkdir(parents=True, exist_ok=True)
        (ctx.artifact_dir / "training_counts.json").write_text(
            json.dumps({"before": train.counts().tolist(), "after": resampled.counts().tolist()})
        )
        self.classifier = Classifier()
        self.classifier.fit(resampled, ctx, budget)

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        return self.classifier.predict_proba(images)


class PixelOversampling(ResamplingMethod):
    """An imbalanced-learn over-sampler (``sampler``, built with ``params`` and the cell's seed) applied
    to flattened pixels."""

    sampler: type

    def resample(self, train: ImageSet, ctx: FitContext) -> ImageSet:
        return resample_pixels(self.sampler(random_state=ctx.seed, **self.params), train)


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
