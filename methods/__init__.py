"""Methods: one file per method, plus the registry.

Importing this package registers the built-in methods; ``method_names()`` and ``get_method()`` also
find methods declared by installed packages under the entry-point group ``capsan_bench.methods``.
"""

from bench.methods import acgan, adasyn, bagan, capsan, crl, dagan, gamo, gan, imbalanced, smote  # noqa: F401  (registers the built-in methods)
from bench.methods.base import FitContext, Method
from bench.methods.registry import get_method, load_method_file, method_names, register

__all__ = ["FitContext", "Method", "get_method", "load_method_file", "method_names", "register"]
