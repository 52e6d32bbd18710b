"""``ldam-drw``: the label-distribution-aware margin loss with deferred re-weighting, on the common classifier.

Paper: K. Cao, C. Wei, A. Gaidon, N. Arechiga and T. Ma, "Learning imbalanced datasets with label-distribution-
aware margin loss", NeurIPS 2019 (arXiv:1906.07413); official code github.com/kaidic/LDAM-DRW (read for the
constants below, not copied).

- **LDAM** (Eq. 13): the true class's logit is lowered by a margin Delta_c = C / n_c^(1/4) before a scaled
  softmax cross-entropy: L = CE(s * (z - Delta_y 1_y), y). C is set so the largest margin (the rarest class's)
  is ``max_margin`` = 0.5 and the logits are cosines scaled by s = 30 (the official code's constants): the
  common classifier's last layer is replaced by a normalised one (``classifier.CosineLinear``: cosine of the
  L2-normalised 128-d features and class weights, no bias), stored in the key as ``classifier.head = cosine``.
- **DRW** (Algorithm 1): plain LDAM for the first part of training, then the same loss with the class-balanced
  weights of Cui et al. (beta = 0.9999, normalised to sum to the number of classes; ``class_balanced.py``),
  divided by the batch's summed weights (``cross_entropy(weight=...)``, as the official code). The official CIFAR
  schedule re-weights epochs 161-200 of 200 (``epoch // 160`` picks the weights): the last 20 %.
  Reading, for any budget: the switch is per optimiser update. Of the classifier's U updates (the budget
  contract's, ``Classifier.updates``), update k (0-based) is re-weighted when k / U >= ``drw_fraction``
  (``ResamplingMethod.training_fraction``): every update from k = ceil(drw_fraction x U) to the last, U - 1,
  i.e. the last (1 - drw_fraction) of training, whatever E is. With the default 0.8 and S updates per epoch
  (U = E x S): at E a multiple of 5 this is exactly the official epoch boundary, epochs 0.8 E + 1 to E (E = 50:
  epochs 41-50; E = 200: 161-200); at E = 1 the updates from ceil(0.8 S) on, at E = 2 from ceil(1.6 S) on (in
  the second epoch), at E = 7 from ceil(5.6 S) on (in the sixth); the rounding is up, so a run of fewer than 5
  updates in all (U < 5, where ceil(0.8 U) = U) is not re-weighted. ``drw_fraction = 1.0`` never re-weights
  (LDAM alone, the paper's "LDAM" rows); 0.0 re-weights every update. Under ``longtail-sgd`` the switch and the first
  learning-rate step (at update round(0.8 U)) coincide when 0.8 U is whole, as both fall at epoch 161 in the
  official code, and are at most one update apart otherwise.

Deviations: by default the common classifier's recipe (CNN, Adam lr 1e-3, batch 64) replaces the paper's
ResNet-32 with SGD and its step schedule, as for every method on the common classifier; ``classifier =
"resnet32"`` with ``classifier_schedule = "longtail-sgd"`` (the ``cifar10-lt`` preset) is the paper's, and only
such cells get the paper's Table 2 number beside them in the reports. Either way the run is the budget
contract's U updates (the preset's 50 epochs are the paper's 200 at factor 100). The class counts are the
imbalanced training set's (``self.train_counts``). Prediction takes the softmax of the unscaled cosines (the
same ranking as the scaled ones). LDAM alone (the paper's "LDAM" rows) is ``drw_fraction = 1.0``.
- **Model selection.** The official ``cifar_train.py`` evaluates on the test set after every epoch and reports
  the best test accuracy over all epochs (``best_acc1``): a model chosen on the test set. The suite scores the
  classifier as it is after its last update, so the paper's Table 2 numbers shown beside ours (its "LDAM" and
  "LDAM-DRW" rows) are best-epoch figures, optimistic against a last-epoch one.
"""

from __future__ import annotations

import numpy as np
import torch

from bench.methods.base import one_hot
from bench.methods.class_balanced import class_balanced_weights
from bench.methods.registry import register
from bench.methods.resampling import ResamplingMethod


def ldam_margins(counts, max_margin: float) -> np.ndarray:
    """Delta_c proportional to n_c^(-1/4), the largest equal to ``max_margin`` (a class with no sample gets the
    largest margin: it never appears in a batch)."""
    counts = np.asarray(counts, dtype=np.float64)
    margins = np.zeros_like(counts)
    present = counts > 0
    margins[present] = counts[present] ** -0.25
    margins[~present] = margins[present].max() if present.any() else 1.0
    return margins * (max_margin / margins.max())


def ldam_loss(cosines: torch.Tensor, y: torch.Tensor, margins: torch.Tensor, scale: float,
              weight: torch.Tensor | None = None) -> torch.Tensor:
    """CE(scale * (cosines - margins[y] on the true class), y), with class weights when given."""
    shifted = cosines.float() - one_hot(y, cosines.shape[1]) * margins[y][:, None]
    return torch.nn.functional.cross_entropy(scale * shifted, y, weight=weight)


@register
class LDAMDRW(ResamplingMethod):
    name = "ldam-drw"
    family = "loss-based"
    summary = "LDAM margin loss on a cosine last layer, class-balanced re-weighting deferred to the last 20 %"
    citation = "Cao et al., Learning imbalanced datasets with label-distribution-aware margin loss, NeurIPS 2019"
    defaults = {"max_margin": 0.5, "scale": 30.0, "drw_fraction": 0.8, "beta": 0.9999}
    classifier_head = "cosine"
    # 3: deferred re-weighting switches per update, from update ceil(drw_fraction x U) on (2 switched per epoch,
    # from the first with (epoch - 1) / E >= drw_fraction: never below 5 epochs; 2 and 3 give the same numbers wherever
    # drw_fraction x E is whole, e.g. the default 0.8 at E = 5, 10, ..., 50)
    version = 3

    def __init__(self, **params):
        super().__init__(**params)
        if not 0.0 <= float(self.params["drw_fraction"]) <= 1.0:
            raise ValueError(f"drw_fraction must lie in [0, 1]; got {self.params['drw_fraction']!r}")
        class_balanced_weights([1, 2], float(self.params["beta"]))  # beta's range, checked before any cell runs

    def batch_loss(self, model, x, y):
        cosines, p = model(x), self.params
        margins = self.per_class("margins", lambda n: ldam_margins(n, float(p["max_margin"])), cosines.device)
        weights = None
        if self.training_fraction >= float(p["drw_fraction"]):  # deferred re-weighting, per update
            weights = self.per_class("weights", lambda n: class_balanced_weights(n, float(p["beta"])), cosines.device)
        return ldam_loss(cosines, y, margins, float(p["scale"]), weights)
