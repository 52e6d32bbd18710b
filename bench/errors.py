"""Errors a user can fix: they print as one line that names the fix, and exit with code 2."""


class BenchError(Exception):
    """An error caused by input the user can correct (a name, a path, a ratio, a missing file)."""


class CellFailure(Exception):
    """A cell cannot complete (a method's own refusal, divergence); it is recorded as failed."""
