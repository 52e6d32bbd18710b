"""capsan-bench: a benchmarking suite for learning from imbalanced image data.

One import namespace: ``bench`` is the harness (CLI, grid, runner, store, metrics); ``bench.methods``,
``bench.datasets`` and ``bench.reports`` are installed from the top-level folders ``methods/``,
``datasets/`` and ``reports/``.
"""

__version__ = "0.1.0"
