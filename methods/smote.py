"""``smote``: SMOTE over-sampling on raw pixels, then the common classifier.

Chawla, Bowyer, Hall and Kegelmeyer, "SMOTE: Synthetic Minority Over-sampling Technique", JAIR 16, 2002.
imbalanced-learn's ``SMOTE`` interpolates each new minority image between a minority image and one of its
``k_neighbors`` nearest minority neighbours (Euclidean, on flattened pixels) until the classes balance.
Deviations: none from the library; pixels are rounded back to uint8 after interpolation. With fewer than
``k_neighbors + 1`` minority images the library refuses and the cell is recorded as failed with its message.
"""

from bench.methods.registry import register
from bench.methods.resampling import PixelOversampling


@register
class Smote(PixelOversampling):
    name = "smote"
    family = "resampling"
    summary = "SMOTE on raw pixels (imbalanced-learn), then the common classifier"
    citation = "Chawla et al., SMOTE: Synthetic Minority Over-sampling Technique, JAIR 2002"
    sampler = "SMOTE"
    defaults = {"k_neighbors": 5, "sampling_strategy": "auto"}

