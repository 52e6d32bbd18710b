"""``imbalanced``: the baseline without resampling.

The common classifier (``bench.methods.classifier``) trained on the imbalanced training set as it is.
This is the "Imbalanced" row of the CapsAN paper's Table 3 (Shamsolmoali et al., Neurocomputing 2021).
Deviations: the paper does not describe its classifier; ours is the suite's documented common CNN.
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
