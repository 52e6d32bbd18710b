"""Methods: one file per method, plus the registry.

Importing this package imports every module in it, in name order, and so registers the built-in methods: a
new built-in is its file ``methods/<name>.py`` with a ``@register`` class, listed nowhere else.
``method_names()`` and ``get_method()`` also find methods declared by installed packages under the
entry-point group ``capsan_bench.methods``.
It also exports the public extension API (below and README, "Your own method").
"""

from bench.datasets.base import ImageSet
from bench.methods.base import FitContext, Method
from bench.methods.classifier import CLASSIFIER_SPEC, Classifier, CommonCNN, to_input
from bench.methods.generative import GenerativeOversampling
from bench.methods.registry import get_method, import_package, load_method_file, method_names, register
from bench.methods.resampling import ResamplingMethod

# The public extension API (README, "Your own method"): ``Method`` for anything; ``ResamplingMethod`` for a
# resampler (``resample``) or a loss (``batch_loss``) on the common classifier; ``GenerativeOversampling``
# for a generator (``train_generator``, ``generate``) with the shared top-up and classifier phases.
# The common classifier itself, for code outside the methods that trains or reads it (the fid-proxy,
# ``bench/quality/proxy.py``): ``Classifier(spec).fit(train, ctx)`` and its ``model``, the network
# ``CommonCNN`` (``embed``: its 128-d penultimate features), the default ``CLASSIFIER_SPEC`` and ``to_input``
# (uint8 images -> the network's input in [-1, 1]).
__all__ = ["CLASSIFIER_SPEC", "Classifier", "CommonCNN", "FitContext", "GenerativeOversampling", "ImageSet",
           "Method", "ResamplingMethod", "get_method", "load_method_file", "method_names", "register",
           "to_input"]

import_package(__name__, __path__)  # every module of this package: each built-in method registers itself
