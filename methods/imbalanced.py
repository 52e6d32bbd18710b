"""``imbalanced``: the baseline without resampling.

The common classifier (``bench.methods.classifier``) trained on the imbalanced training set as it is.
This is the "Imbalanced" row of the CapsAN paper's Table 3 (Shamsolmoali et al., Neurocomputing 2021).
Deviations: the paper does not describe its classifier; ours is the suite's documented common CNN.
On CIFAR-10-LT (the ``cifar10-lt`` preset, ResNet-32 with ``longtail-sgd``) the reports show LDAM-DRW's Table 2
"ERM" row beside it (Cao et al., NeurIPS 2019). LDAM-DRW's official ``cifar_train.py`` reports the best test
accuracy over all epochs (a model chosen on the test set); the suite scores the classifier after its last
update, so that number is a best-epoch figure, optimistic against ours.
"""

from bench.methods.registry import register
from bench.methods.resampling import ResamplingMethod


@register
class Imbalanced(ResamplingMethod):
    name = "imbalanced"
    family = "baseline"
    summary = "no resampling: the common classifier on the imbalanced training set"
    citation = "baseline (Shamsolmoali et al., Neurocomputing 2021, Table 3 'Imbalanced')"
    defaults = {}
