"""The report's output formats and the one check of a format list (``bench report --format``, the figures'
and the tables' own writers)."""

from __future__ import annotations

from collections.abc import Iterable

from bench.errors import BenchError

TABLE_FORMATS = ("csv", "latex", "md")
IMAGE_FORMATS = ("png", "pdf")
FORMATS = TABLE_FORMATS + IMAGE_FORMATS + ("html",)


def check_formats(formats: str | Iterable[str], valid: tuple[str, ...] = FORMATS) -> list[str]:
    """``formats`` (one name or several) without repeats, in order; an unknown or empty one is a one-line
    error naming the valid ones."""
    chosen = [formats] if isinstance(formats, str) else list(formats)
    bad = [f for f in chosen if f not in valid]
    if bad or not chosen:
        raise BenchError(f"unknown report format {', '.join(map(repr, bad)) or '(none given)'}; valid formats: "
                         f"{', '.join(valid)}")
    return list(dict.fromkeys(chosen))
