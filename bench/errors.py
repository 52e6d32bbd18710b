"""Errors a user can fix: they print as one line that names the fix, and exit with code 2."""


class BenchError(Exception):
    """An error caused by input the user can correct (a name, a path, a ratio, a missing file)."""


class CellFailure(Exception):
    """A cell cannot complete (a method's own refusal, divergence); it is recorded as failed."""


class CellRefused(CellFailure):
    """A task that the method or the protocol cannot do at all (too few images for SMOTE's neighbours, a ratio
    that keeps no minority image): recorded as failed like any failure, but it is the answer for that cell,
    not an error of the run, and ``bench run`` still exits 0."""


def one_line(error: BaseException) -> str:
    """An exception's message on one line (its whitespace collapsed), or its type's name when it has none."""
    return " ".join(str(error).split()) or type(error).__name__
