"""``balanced-softmax``: the balanced softmax cross-entropy on the common classifier.

Paper: J. Ren, C. Yu, S. Sheng, X. Ma, H. Zhao, S. Yi and H. Li, "Balanced meta-softmax for long-tailed visual
recognition", NeurIPS 2020 (arXiv:2007.10740). Balanced Softmax (Eq. 4) models the training label distribution
inside the softmax: p_y = n_y exp(z_y) / sum_j n_j exp(z_j), i.e. L = CE(z + log n, y) with n the training class
counts; prediction uses the plain logits z.

Readings and deviations: the loss only; the paper's Meta Sampler (the "meta" of BALMS) is a separate training
component and is not part of this method. n comes from the imbalanced training set (``self.train_counts``); a
class with no sample takes a count of 1. This loss equals ``logit-adjust`` at tau = 1 (log n_c = log pi_c + log N,
and the softmax ignores the constant): the same predictions up to float rounding (tested). Everything else is
the common classifier's recipe (``classifier.py``), stored in the key as "classifier".
"""

from __future__ import annotations

import numpy as np
import torch

from bench.methods.registry import register
from bench.methods.resampling import ResamplingMethod


@register
class BalancedSoftmax(ResamplingMethod):
    name = "balanced-softmax"
    family = "loss-based"
    summary = "balanced softmax cross-entropy: CE(z + log n_c); plain logits at test time"
    citation = "Ren et al., Balanced meta-softmax for long-tailed visual recognition, NeurIPS 2020"
    defaults = {}

    def batch_loss(self, model, x, y):
        logits = model(x).float()
        log_counts = self.per_class("log_counts", lambda n: np.log(np.maximum(np.asarray(n, np.float64), 1.0)),
                                    logits.device)
        return torch.nn.functional.cross_entropy(logits + log_counts, y)
