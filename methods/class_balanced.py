"""``cb-ce`` and ``cb-focal``: the common classifier trained with the class-balanced loss.

Paper: Y. Cui, M. Jia, T.-Y. Lin, Y. Song and S. Belongie, "Class-balanced loss based on effective number of
samples", CVPR 2019 (arXiv:1901.05555). A class with n samples has the effective number E_n = (1 - beta^n) /
(1 - beta); its loss weight is 1 / E_n = (1 - beta) / (1 - beta^n), normalised so the C weights sum to C.
beta = 0 weighs every class 1 (no re-balancing); beta -> 1 tends to inverse class frequency.

- ``cb-ce``: softmax cross-entropy with the class-balanced weights (the paper's "CB softmax"), the weighted sum
  divided by the batch's summed weights (below).
- ``cb-focal``: the paper's class-balanced focal loss, on per-class sigmoids as the paper defines it (one-vs-all
  binary focal terms over the C classes, ``torchvision.ops.sigmoid_focal_loss``), each sample's C terms times
  its class's weight, summed and divided by the batch size (one positive per sample), as Cui et al.'s code
  (``src/cifar_main.py``: the weighted focal terms summed, divided by the sum of the one-hot labels).

Readings and deviations:
- The weights come from the imbalanced training set's class counts (``self.train_counts``), computed once.
- **cb-ce's normalisation is LDAM-DRW's, not Cui et al.'s.** We divide the batch's weighted cross-entropy
  sum_i w_(y_i) CE_i by the batch's summed weights sum_i w_(y_i): ``cross_entropy(weight=..., reduction="mean")``,
  what LDAM-DRW's ``cifar_train.py`` does for its "CB RW" baseline (github.com/kaidic/LDAM-DRW,
  ``train_rule = "Reweight"``, ``loss_type = "CE"``). Cui et al.'s official code divides the same sum by the
  batch size (``tf.losses.softmax_cross_entropy`` with per-sample weights, whose default reduction divides by
  the number of non-zero weights: every sample's). Why: the published number the reports show beside ``cb-ce``
  is LDAM-DRW's Table 2 "CB RW" row, computed with LDAM-DRW's code, so we train what produced it. The size of
  the difference: the two losses differ by the factor B / sum_i w_(y_i), one over the batch's mean weight,
  which changes from batch to batch; one over the expected weight of a training sample (weights summing to C,
  beta 0.9999) it is 5.85 on CIFAR-10-LT at factor 100 (12,406 images, 5,000 ... 50), 1.6 at factor 10, and 22.6 for a binary
  5,000:50 task, so our loss is that much larger than Cui et al.'s (over batches of 128 drawn from CIFAR-10-LT
  at factor 100 the factor's 5th-95th percentiles are 4.4 and 8.0; for 5,000:50, 14 and 40). Under SGD
  (``longtail-sgd``) that scales the effective learning rate; Adam is nearly invariant to a constant factor,
  not to its per-batch variation. ``cb-focal`` divides by the batch size in both codes (LDAM-DRW's
  ``FocalLoss`` takes the batch mean), so it has no such difference; but LDAM-DRW's code, run with
  ``Reweight`` and ``Focal``, computes a softmax focal loss with the weight inside the cross-entropy, where we
  keep Cui et al.'s sigmoid definition (which code produced LDAM-DRW's "CB Focal" row is not stated in the code
  we read).
- **beta = 0.9999, gamma = 1.0**: Cui et al.'s own long-tailed CIFAR values: their script
  ``cifar_im_trainval_cb.sh`` (github.com/richardaecn/class-balanced-loss, read at commit 1d7857208a2a) runs
  CIFAR-10 at imbalance factor 50 (``IM_FACTOR=0.02``) with ``BETA=0.9999`` for the softmax, sigmoid and focal
  losses and ``GAMMA=1.0`` for the focal one. The paper searches beta in {0.9, 0.99, 0.999, 0.9999} and gamma
  in {0.5, 1.0, 2.0}; its per-factor best (Table 2) could not be read here. 0.9999 is also the beta of
  LDAM-DRW's code for its re-weighting (``Reweight``) and deferred re-weighting (``DRW``).
- **Model selection.** The published numbers beside ``cb-ce`` and ``cb-focal`` are LDAM-DRW's Table 2 "CB RW"
  and "CB Focal" rows; LDAM-DRW's ``cifar_train.py`` reports the best test accuracy over all epochs (a model
  chosen on the test set), the suite the classifier after its last update: those numbers are best-epoch
  figures, optimistic against ours.
- The paper initialises the last layer's bias to -log((1 - pi) / pi), pi = 0.1, for the sigmoid losses'
  stability; the common classifier keeps its default initialisation (every method shares one classifier), so
  ``cb-focal`` starts from the same network as the others. Predictions take the softmax of the logits (the
  ranking of the sigmoids' argmax is the same).
- Everything else is the common classifier's recipe (``classifier.py``), stored in the key as "classifier".
"""

from __future__ import annotations

import numpy as np
import torch

from bench.methods.base import one_hot
from bench.methods.registry import register
from bench.methods.resampling import ResamplingMethod


def class_balanced_weights(counts, beta: float) -> np.ndarray:
    """(1 - beta) / (1 - beta^n_c) per class, normalised to sum to the number of classes; a class with no
    sample gets the largest weight of the others (it cannot appear in a batch; the value only keeps the
    normalisation finite)."""
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must lie in [0, 1); got {beta!r}")
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    weights = np.ones_like(counts)
    weights[present] = (1.0 - beta) / (1.0 - np.power(beta, counts[present]))
    if (~present).any():
        weights[~present] = weights[present].max()
    return weights / weights.sum() * len(counts)


class _ClassBalanced(ResamplingMethod):
    def __init__(self, **params):
        super().__init__(**params)
        class_balanced_weights([1, 2], float(self.params["beta"]))  # beta's range, checked before any cell runs

    def class_weights(self, device) -> torch.Tensor:
        return self.per_class("weights", lambda n: class_balanced_weights(n, float(self.params["beta"])), device)


@register
class ClassBalancedCE(_ClassBalanced):
    name = "cb-ce"
    family = "loss-based"
    summary = "class-balanced softmax cross-entropy (effective number of samples, beta 0.9999)"
    citation = "Cui et al., Class-balanced loss based on effective number of samples, CVPR 2019"
    defaults = {"beta": 0.9999}

    def batch_loss(self, model, x, y):
        logits = model(x)
        return torch.nn.functional.cross_entropy(logits.float(), y, weight=self.class_weights(logits.device))


@register
class ClassBalancedFocal(_ClassBalanced):
    name = "cb-focal"
    family = "loss-based"
    summary = "class-balanced sigmoid focal loss (effective number of samples, beta 0.9999, gamma 1)"
    citation = "Cui et al., Class-balanced loss based on effective number of samples, CVPR 2019"
    defaults = {"beta": 0.9999, "gamma": 1.0}

    def batch_loss(self, model, x, y):
        # torchvision's import is slow (seconds): only a run of this loss pays it
        from torchvision.ops import sigmoid_focal_loss

        logits = model(x).float()
        target = one_hot(y, logits.shape[1])
        terms = sigmoid_focal_loss(logits, target, alpha=-1, gamma=float(self.params["gamma"]), reduction="none")
        return (self.class_weights(logits.device)[y][:, None] * terms).sum() / len(y)
