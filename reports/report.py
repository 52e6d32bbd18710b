"""``bench report``: every table, statistic and figure the stored results support, in the chosen formats.

- Tables (``--tables``): 1 (discriminator error by n: the subset protocol), 2 (FID per method x dataset,
  Inception and fid-proxy apart), 3 (the resampling table, every dataset and protocol) as
  ``table<k>.csv|.tex|.md``; a table without data is skipped and said so.
- The training budget (``budget.csv|.md``, with the CSV or Markdown tables): per method and dataset, the
  median optimiser updates of every network role and seconds per cell (``reports/budget.py``); Table 3
  says under it when its methods' predicting networks trained unequally.
- Statistics (with Table 3, when CapsAN and baselines are there), each in the formats asked for:
  ``wilcoxon.csv`` with csv (paired Wilcoxon signed-rank tests of CapsAN against each baseline over seeds
  and cells, Holm-adjusted), ``friedman.md`` with md (the Friedman test and average ranks over every binary
  dataset x ratio block, every method left out named with the reason, statistics rounded) and the
  critical-difference diagram ``cd_diagram.png|.pdf`` with an image format, drawn only when the test ran
  (at least ``stats.MIN_BLOCKS`` blocks; below, ``friedman.md`` says the test is underpowered).
- Figures (``--figures``; PNG and PDF): ``reports/figures.py``.
- ``validation.md`` (``validation=True``, ``bench report --validation``): the store's numbers beside the
  published ones, with differences (``reports/validation.py``); ``VALIDATION.md``'s tables are this file's.
- ``html``: ``report.html``, one self-contained page of all the above (``reports/html.py``); it needs the
  Markdown tables and PNG figures, so asking for it writes those too.
Nothing here writes to the store; a half-finished or failed run gives what it can and lists the rest.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from bench.errors import BenchError

from .cells import Cells, as_cells, read
from .formats import IMAGE_FORMATS, TABLE_FORMATS, check_formats
from .render import make_folder, write_table3

TABLES = (1, 2, 3)
FIGURES = (3, 4, 5, 6, 7, 8, 9)
SUFFIX = {"csv": "csv", "latex": "tex", "md": "md"}


def parse_numbers(text: str | None, valid: tuple[int, ...], what: str) -> tuple[int, ...]:
    """``"1,3"`` -> (1, 3); None -> all of ``valid``; anything else is a one-line error."""
    if text is None:
        return valid
    try:
        chosen = tuple(int(item) for item in text.split(",") if item.strip())
    except ValueError:
        raise BenchError(f"--{what} takes numbers like {','.join(map(str, valid))}; got '{text}'") from None
    bad = [n for n in chosen if n not in valid]
    if bad or not chosen:
        raise BenchError(f"--{what} takes any of {', '.join(map(str, valid))}; got '{text}'")
    return chosen


def write_all(results_dir, out_dir, formats: Iterable[str] = ("csv", "latex", "md"), tables=TABLES,
              figures=FIGURES, by_pair: bool = False, validation: bool = False) -> tuple[list[Path], list[str]]:
    """Write what the store supports; return (files written, notes on what was skipped and why). A figure
    that failed (raised although its data is there) is a note too, of type ``figures.Failed``
    (``failures(notes)``): the others are still written, and ``bench report`` exits non-zero.

    ``results_dir``: one results folder, or several, read as one (``cells.read``: the tidy table every
    output reads, read once), or that table already read."""
    formats = check_formats(formats)
    cells = results_dir if isinstance(results_dir, Cells) else \
        as_cells(results_dir) if isinstance(results_dir, pd.DataFrame) else read(results_dir)
    out = make_folder(out_dir)
    page = "html" in formats
    if page:  # the page is built from the Markdown tables and the PNG figures
        formats += [f for f in ("md", "png") if f not in formats]
    table_formats = [f for f in formats if f in TABLE_FORMATS]
    image_formats = [f for f in formats if f in IMAGE_FORMATS]
    written, notes = [], []

    if 3 in tables and table_formats:
        written += write_table3(cells, out, table_formats, by_pair)
    if 3 in tables and table_formats:  # what Table 3's methods spent, named in its notes
        written += _budget(out, cells, table_formats)
    if 1 in tables and table_formats:
        written += _table(out, "table1", cells, table_formats, notes)
    if 2 in tables and table_formats:
        written += _table(out, "table2", cells, table_formats, notes)
    if 3 in tables:
        written += _statistics(out, cells, formats + (["csv"] if page else []), notes)
    if validation:
        from .validation import render_validation

        path = out / "validation.md"
        path.write_text(render_validation(cells), encoding="utf-8")
        written.append(path)
    if figures and image_formats:
        written += _figures(out, cells, figures, image_formats, notes)
    if page:
        from .html import render_page

        path = out / "report.html"
        path.write_text(render_page(cells, out, written, notes), encoding="utf-8")
        written.append(path)
    return written, notes


def _budget(out: Path, cells, formats) -> list[Path]:
    """``budget.csv`` and ``budget.md``: what each method spent (``reports/budget.py``)."""
    from .budget import budget_table, render_budget_markdown

    table = budget_table(cells)
    paths = []
    if "csv" in formats:
        paths.append(out / "budget.csv")
        table.to_csv(paths[-1], index=False)
    if "md" in formats:
        paths.append(out / "budget.md")
        paths[-1].write_text(render_budget_markdown(table), encoding="utf-8")
    return paths


def _table(out: Path, name: str, cells, formats, notes) -> list[Path]:
    from . import tables12

    if name == "table1":
        table, render, tests = tables12.table1(cells), tables12.render_table1, tables12.table1_tests
        empty = table.empty or not (table["n_seeds"] > 0).any()
    else:
        table, render, tests = tables12.table2(cells), tables12.render_table2, tables12.table2_tests
        empty = not table
    if empty:
        notes.append("table1: no subset-protocol cells of capsan and capsan-conv in the store (--preset paper-table1)"
                     if name == "table1" else
                     "table2: no FID results in the store (run generative methods with --metrics fid)")
        return []
    paths, notes_text = [], tests(cells)
    for fmt in formats:
        path = out / f"{name}.{SUFFIX[fmt]}"
        path.write_text(render(table, fmt, notes_text), encoding="utf-8")
        paths.append(path)
    return paths


def _statistics(out: Path, cells, formats, notes) -> list[Path]:
    """``wilcoxon.csv`` (csv), ``friedman.md`` (md), ``cd_diagram.<png|pdf>`` (image formats, when the test ran)."""
    from .stats import cd_diagram, friedman_ranking, paired_wilcoxon

    done = cells.done
    if done.empty or "capsan" not in set(done["method"]) or done["method"].nunique() < 2:
        notes.append("statistics: need CapsAN and at least one baseline with done cells")
        return []
    binary = done[done["protocol"] == "binary"]
    paths = []
    if "csv" in formats:
        path = out / "wilcoxon.csv"
        paired_wilcoxon(done).to_csv(path, index=False)
        paths.append(path)
    ranking = friedman_ranking(binary if not binary.empty else done)
    if "md" in formats:
        path = out / "friedman.md"
        path.write_text(friedman_markdown(ranking), encoding="utf-8")
        paths.append(path)
    images = [f for f in formats if f in IMAGE_FORMATS]
    if images and ranking.get("reason"):
        notes.append(f"cd_diagram: not drawn ({ranking['reason']})")
    elif images:
        paths += [cd_diagram(ranking, out / f"cd_diagram.{fmt}") for fmt in images]
    return paths


def friedman_markdown(ranking: dict) -> str:
    """``friedman.md``: what was tested, the result rounded (or why it was not run), the average ranks, and
    every method left out with the reason."""
    from .stats import readable, readable_p

    head = (f"# Friedman test on {ranking['metric']}\n\n{ranking['n_blocks']} blocks (dataset x protocol x "
            f"ratio), {ranking['k']} methods with a complete row in every block.")
    if ranking.get("reason"):
        result = f"Not tested: {ranking['reason']}. The average ranks below are descriptive only."
    else:
        result = (f"chi2 = {readable(ranking['statistic'])}, p = {readable_p(ranking['p_value'])}; Iman-Davenport "
                  f"F = {readable(ranking['iman_davenport'])}, p = {readable_p(ranking['iman_davenport_p'])}; "
                  f"Nemenyi critical difference at alpha = {ranking['alpha']}: {readable(ranking['cd'])} (ranks "
                  f"1 to {ranking['k']}).")
    ranks = "\n".join(f"| {m} | {r:.2f} |" for m, r in ranking["average_ranks"].items())
    table = f"\n\n| method | average rank |\n|---|---|\n{ranks}" if ranks else ""
    left = ranking.get("excluded") or {}
    left_out = ("\n\nLeft out (a rank needs a complete row in every block): "
                + "; ".join(f"{m}: {why}" for m, why in sorted(left.items())) + ".") if left else ""
    return f"{head}\n\n{result}{table}{left_out}\n"


def _figures(out: Path, cells, figures, formats, notes) -> list[Path]:
    from .figures import write_figures

    # reading made every artifacts path absolute, so any one results folder resolves them (figure 8)
    first = next((r for r in cells.frame["results"] if isinstance(r, str)), ".")
    result = write_figures(cells, out, which=tuple(figures), formats=tuple(formats), results_dir=first)
    paths = []
    for number, value in result.items():
        if isinstance(value, str):  # Skipped or Failed: the note keeps the kind
            notes.append(type(value)(f"figure {number}: {value}"))
        else:
            paths += list(value)
    return paths


def is_failure(note: str) -> bool:
    """Whether a note says an output failed (not merely skipped for want of data)."""
    from .figures import Failed

    return isinstance(note, Failed)


def failures(notes: Iterable[str]) -> list[str]:
    """The notes that say an output failed."""
    return [note for note in notes if is_failure(note)]
