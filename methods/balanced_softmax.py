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

Deviations: the training recipe. On CIFAR-10-LT the suite trains this loss like every long-tail method, with
``classifier = "resnet32"`` and ``classifier_schedule = "longtail-sgd"`` (the ``cifar10-lt`` preset): LDAM-DRW's
recipe (SGD with momentum 0.9, weight decay 2e-4, batch 128, lr 0.1, 2.5 % warm-up, x 0.01 at 80 % and x 0.0001
at 90 % of the contract's U updates). The official code's CIFAR-10-LT configuration (github.com/jiawei-ren/
BalancedMetaSoftmax-Classification, ``config/CIFAR10_LT/balanced_softmax_imba200.yaml``, read at commit
502ba89e) trains its own: ResNet-32 features and a dot-product classifier, SGD with momentum 0.9, weight decay
5e-4, batch 512, lr 0.05, 13,000 iterations, a cosine schedule to 0 (``coslrwarmup``, ``endlr`` 0) after an
800-iteration warm-up (``warmup_lr`` 0.1). Its ``run_networks.py`` (read at commit 468354f7) turns the iterations
into whole epochs, ceil(13,000 / batches per epoch), and steps the schedule per epoch; the scheduler class itself
(``CosineAnnealingLRWarmup``) could not be read here, so the shape of the warm-up is not verified. The
published numbers beside this method (the paper's Table 5) come from that recipe, not ours.
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
