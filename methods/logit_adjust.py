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

Deviations: the training recipe. On CIFAR-10-LT the suite trains this loss like every long-tail method, with
``classifier = "resnet32"`` and ``classifier_schedule = "longtail-sgd"`` (the ``cifar10-lt`` preset): LDAM-DRW's
recipe (He et al.'s ResNet-32, SGD with momentum 0.9, weight decay 2e-4, batch 128, lr 0.1, 2.5 % warm-up, x 0.01
at 80 % and x 0.0001 at 90 % of the contract's U updates). The paper's official code (github.com/google-research/
google-research, ``logit_adjustment/``: ``main.py`` and ``utils.py`` read at commit 1d4d2f1a, ``models.py`` at
5b09c22d) trains its own recipe: SGD with Nesterov momentum 0.9, batch 128 (the last, incomplete batch of each
epoch dropped), base lr 0.1 with a linear warm-up over the first 20 epochs, then x 0.1 from epoch 604, x 0.01
from 926 and x 0.001 from 1,128 of 1,241 epochs over its CIFAR-10-LT (12,406 images, 96 updates an epoch: about
119,000 updates, six times the preset's 19,550), an L2 penalty of 1e-4 (a weight decay of 2e-4) including the
last layer's bias, random 4-pixel crops and flips, inputs scaled to [-0.5, 0.5], and a Keras ResNet-32 of its
own (three-convolution 1x1-3x3-1x1 blocks, a 1x1 projection shortcut opening each stage, where He et al.'s has
two 3x3 convolutions and parameter-free shortcuts). The published number beside this method (the paper's Table 3) comes from that
recipe, not ours.
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
