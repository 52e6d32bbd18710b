"""Refresh the measured tables of VALIDATION.md from the committed validation stores.

Every block of VALIDATION.md between ``<!-- validation: FOLDER -->`` and ``<!-- end validation -->`` is
replaced by what ``bench report --results FOLDER --validation`` writes into ``validation.md`` (its title
line dropped), so the file's numbers are the suite's output, never typed by hand. ``tests/test_validation.py``
fails when a block differs from a fresh rendering.

    python benchmarks/validation/update.py            # rewrite VALIDATION.md in place
    python benchmarks/validation/update.py --check    # exit 1 when a block is stale
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "VALIDATION.md"
BLOCK = re.compile(r"(<!-- validation: (?P<folder>[^ ]+) -->\n)(?P<body>.*?)(<!-- end validation -->)", re.S)


def rendered(folder: str) -> str:
    """The validation tables of one store folder (relative to the repository root), as VALIDATION.md embeds them."""
    from bench.reports.validation import render_validation
    from bench.store import read_cells

    text = render_validation(read_cells([ROOT / folder]))
    # VALIDATION.md has its own title: drop validation.md's, and put its sections one level down
    body = text.split("\n", 2)[2] if text.startswith("# Validation\n") else text
    return re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", body, flags=re.M)


def refresh(text: str) -> str:
    return BLOCK.sub(lambda m: m.group(1) + rendered(m.group("folder")) + m.group(4), text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when VALIDATION.md is stale; write nothing")
    args = parser.parse_args(argv)
    text = DOCUMENT.read_text(encoding="utf-8")
    fresh = refresh(text)
    if args.check:
        if fresh != text:
            print("Error: VALIDATION.md is stale; run python benchmarks/validation/update.py", file=sys.stderr)
            return 1
        return 0
    DOCUMENT.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
