"""``adasyn``: ADASYN over-sampling on raw pixels, then the common classifier.

He, Bai, Garcia and Li, "ADASYN: Adaptive Synthetic Sampling Approach for Imbalanced Learning", IJCNN 2008.
imbalanced-learn's ``ADASYN`` generates more synthetic images for minority images whose ``n_neighbors``
nearest neighbours (Euclidean, on flattened pixels) are mostly majority images.
Deviations: none from the library; pixels are rounded back to uint8. When no minority image has a majority
neighbour, or too few minority images exist, the library refuses and the cell is recorded as failed with
its message.
"""

from bench.methods.registry import register
from bench.methods.resampling import PixelOversampling


@register
class Adasyn(PixelOversampling):
    name = "adasyn"
    family = "resampling"
    summary = "ADASYN on raw pixels (imbalanced-learn), then the common classifier"
    citation = "He et al., ADASYN: Adaptive Synthetic Sampling Approach for Imbalanced Learning, IJCNN 2008"
    sampler = "ADASYN"
    defaults = {"n_neighbors": 5, "sampling_strategy": "auto"}

