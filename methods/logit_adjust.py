"""``logit-adjust``: the logit-adjusted softmax cross-entropy on the common classifier.

Paper: A. K. Menon, S. Jayasumana, A. S. Rawat, H. Jain, A. Veit and S. Kumar, "Long-tail learning via logit
adjustment", ICLR 2021 (arXiv:2007.07314). The loss adds tau x log(prior) to the logits during training only:
L = CE(z + tau log pi, y), pi_c the class's share of the training set; prediction uses the plain logits z, so
the classifier is pushed towards the balanced error. tau = 1 is the paper's default (Fisher consistency for
the balanced error).

Readings: pi comes from the imbalanced training set's counts (``self.train_counts``); a class with no sample
(it cannot appear in a batch) takes a count of 1 so log pi stays finite. With tau = 1 this loss equals
``balanced-softmax`` (log n_c and log pi_c differ by the constant log N, which the softmax ignores): the two are
registered separately because the papers are, and give the same predictions up to float rounding (tested).
Everything else is the common classifier's recipe (``classifier.py``), stored in the key as "classifier".
"""

from __future__ import annotations

import numpy as np
import torch

from bench.methods.registry import register
from bench.methods.resampling import ResamplingMethod


def log_prior(counts) -> np.ndarray:
    counts = np.maximum(np.asarray(counts, dtype=np.float64), 1.0)
    return np.log(counts / counts.sum())


@register
class LogitAdjust(ResamplingMethod):
    name = "logit-adjust"
    family = "loss-based"
    summary = "logit-adjusted cross-entropy: CE(z + tau log prior), tau 1; plain logits at test time"
    citation = "Menon et al., Long-tail learning via logit adjustment, ICLR 2021"
    defaults = {"tau": 1.0}

    def batch_loss(self, model, x, y):
        logits = model(x).float()
        offset = self.per_class("offset", lambda n: float(self.params["tau"]) * log_prior(n), logits.device)
        return torch.nn.functional.cross_entropy(logits + offset, y)
