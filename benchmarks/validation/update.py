"""Refresh the measured tables of VALIDATION.md from the committed validation stores.

Every block of VALIDATION.md between ``<!-- validation: FOLDER -->`` and ``<!-- end validation -->`` is
replaced by what ``bench report --results FOLDER --validation`` writes into ``validation.md``, and every block
between ``<!-- table3: FOLDER -->`` and ``<!-- end table3 -->`` by what ``bench report --results FOLDER
--tables 3 --format md`` writes into ``table3.md``, every block between ``<!-- budget: FOLDER -->`` and
``<!-- end budget -->`` by the budget study's table (``facts.budget_markdown``: one store per E under FOLDER;
the figure ``FOLDER.png`` is drawn from the same numbers), and every block between ``<!-- compare: NEW against
OLD -->`` and ``<!-- end compare -->`` by ``bench compare --format md`` of the store NEW against the store OLD's
cells of the same methods (a re-run of part of a store on another machine kind) (for a store with no published number to set beside it,
such as the CapsAN study); title lines dropped, headings moved down to sit under VALIDATION.md's own, so the
file's numbers are the suite's output, never typed by hand. Every figure the prose cites sits between
``<!-- fact NAME -->`` and ``<!-- /fact -->`` and is rewritten with ``facts.value(NAME)``, computed from a
committed store (``facts.py`` lists the kinds). ``tests/test_validation.py`` fails when a block or a fact
differs from a fresh rendering.

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
BLOCK = re.compile(r"(<!-- (?P<kind>validation|table3|budget): (?P<folder>[^ ]+) -->\n)(?P<body>.*?)(<!-- end (?P=kind) -->)",
                   re.S)
COMPARE = re.compile(r"(<!-- compare: (?P<new>[^ ]+) against (?P<old>[^ ]+) -->\n)(?P<body>.*?)(<!-- end compare -->)",
                     re.S)
FACT = re.compile(r"(<!-- fact (?P<name>[^ ]+) -->)(?P<body>.*?)(<!-- /fact -->)", re.S)


def _facts():
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import facts

    return facts


def rendered(folder: str, kind: str = "validation") -> str:
    """The tables of one store folder (relative to the repository root), as VALIDATION.md embeds them:
    ``validation.md`` (kind "validation") or ``table3.md`` (kind "table3")."""
    if kind == "budget":  # the budget study: one store per E under the folder (facts.budget_markdown)
        return _facts().budget_markdown(Path(folder).relative_to(_facts().STORES).as_posix())
    from bench.reports.cells import read

    cells = read([ROOT / folder])
    if kind == "table3":
        import tempfile

        from bench.reports.render import write_table3

        with tempfile.TemporaryDirectory() as out:  # bench report's own table3.md, not a second composition
            (path,) = write_table3(cells, Path(out), ["md"])
            text = path.read_text(encoding="utf-8")
        title, depth = "# Table 3\n", "##"
    else:
        from bench.reports.validation import render_validation

        text, title, depth = render_validation(cells), "# Validation\n", "#"
    # VALIDATION.md has its own title: drop the file's, and put its sections under VALIDATION.md's headings
    body = text.split("\n", 2)[2] if text.startswith(title) else text
    return re.sub(r"^(#+) ", lambda m: depth + m.group(1) + " ", body, flags=re.M)


def compared(new: str, old: str) -> str:
    """``bench compare --format md`` of the store ``new`` against the store ``old`` restricted to the methods
    that ``new`` ran (a re-run of part of a store on another machine), without the fit-seconds table (the
    machines' load, not the numbers); headings moved under VALIDATION.md's."""
    from bench.reports.compare_output import render

    facts = _facts()  # the same comparison the section's cited figures read (computed once, cached there)
    result = facts.comparison(*(Path(f).relative_to(facts.STORES).as_posix() for f in (new, old)))
    text = render(result, "md", new, old).split("\nFit seconds")[0].rstrip() + "\n"
    return re.sub(r"^(#+) ", lambda m: "##" + m.group(1) + " ", text, flags=re.M)


def refresh_facts(text: str) -> str:
    """``text`` with every cited figure rewritten from its store."""
    facts = _facts()
    return FACT.sub(lambda m: m.group(1) + facts.value(m.group("name")) + m.group(4), text)


def refresh(text: str) -> str:
    text = BLOCK.sub(lambda m: m.group(1) + rendered(m.group("folder"), m.group("kind")) + m.group(5), text)
    text = COMPARE.sub(lambda m: m.group(1) + compared(m.group("new"), m.group("old")) + m.group(5), text)
    return refresh_facts(text)


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
    for match in BLOCK.finditer(fresh):  # the budget study's figure, drawn from the same numbers as its table
        if match.group("kind") == "budget":
            folder = Path(match.group("folder"))
            _facts().budget_figure(folder.relative_to(_facts().STORES).as_posix(), ROOT / f"{folder}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
