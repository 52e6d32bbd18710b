"""One self-contained HTML page of a report (``bench report --format html``): every table as HTML, every
PNG figure embedded (base64 data URIs, so the page is one file that works offline), the "Budget" section
(``budget.md``: what each method's networks spent), the statistics, and the run's provenance (package versions, devices, seeds, dates) and failed cells with their errors."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import pandas as pd

from .paper import PAPER_CITATION
from .render import failure_lines
from .table3 import failed_cells

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 75em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; display: block; overflow-x: auto; }
th, td { border-bottom: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
figure { display: inline-block; margin: 1em; } img { max-width: 36em; }
figcaption { font-size: 0.85em; color: #555; } .note { color: #555; } td.t { text-align: left; }
table.prov td { white-space: normal; text-align: left; }
"""


def render_page(cells: pd.DataFrame, out_dir: Path, written: list[Path], notes: list[str]) -> str:
    """The page for the report already written into ``out_dir`` (``written``: its files)."""
    parts = [f"<h1>capsan-bench report</h1><p class='note'>Paper: {html.escape(PAPER_CITATION)}.</p>"]
    parts.append(_provenance(cells))
    tables = sorted((p for p in written if p.suffix == ".md" and p.name != "friedman.md"),
                    key=lambda p: (p.name == "budget.md", p.name))  # the tables, then what they cost
    for path in tables:
        title = "Budget" if path.name == "budget.md" else path.stem
        parts.append(f"<h2>{html.escape(title)}</h2>" + _markdown_tables(path.read_text(encoding="utf-8")))
    stats = [p for p in written if p.name in ("wilcoxon.csv", "friedman.md")]
    if stats:
        parts.append("<h2>Statistics</h2>")
        for path in stats:
            if path.suffix == ".csv":
                frame = pd.read_csv(path)
                parts.append("<h3>Paired Wilcoxon signed-rank tests</h3>" + frame.to_html(index=False, na_rep="-"))
            else:
                parts.append("<h3>Friedman test</h3>" + _markdown_tables(path.read_text(encoding="utf-8")))
    figures = sorted(p for p in written if p.suffix == ".png")
    if figures:
        parts.append("<h2>Figures</h2>")
        for path in figures:
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            parts.append(f"<figure><img alt='{html.escape(path.stem)}' src='data:image/png;base64,{data}'>"
                         f"<figcaption>{html.escape(path.stem)}</figcaption></figure>")
    if notes:
        parts.append("<h2>Not in this report</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes)
                     + "</ul>")
    parts.append(_failures(cells))
    body = "\n".join(p for p in parts if p)
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>capsan-bench report</title>"
            f"<style>{STYLE}</style></head><body>{body}</body></html>\n")


def _provenance(cells: pd.DataFrame) -> str:
    if cells.empty:
        return "<p>No results in the store yet.</p>"
    versions = {}
    for entry in cells["versions"].dropna():
        for name, value in (entry or {}).items():
            versions.setdefault(name, set()).add(str(value))
    rows = [("cells", f"{len(cells)} ({int((cells['status'] == 'done').sum())} done, "
                      f"{int((cells['status'] == 'failed').sum())} failed)"),
            ("methods", ", ".join(sorted(cells["method"].unique()))),
            ("datasets", ", ".join(sorted(cells["dataset"].unique()))),
            ("seeds", ", ".join(map(str, sorted(cells["seed"].unique())))),
            ("devices", ", ".join(sorted(cells["device"].unique()))),
            ("run between", f"{cells['started_at'].min()} and {cells['finished_at'].max()} (UTC)")]
    if "results" in cells:
        rows.append(("results folders", ", ".join(dict.fromkeys(cells["results"].astype(str)))))
    rows += [(name, ", ".join(sorted(values))) for name, values in sorted(versions.items())]
    table = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<h2>Provenance</h2><table class='prov'>{table}</table>"


def _failures(cells: pd.DataFrame) -> str:
    failed = failed_cells(cells)
    if failed.empty:
        return ""
    items = "".join(f"<li>{html.escape(str(dataset))} ({html.escape(str(protocol))}): {html.escape(line)}</li>"
                    for (dataset, protocol), group in failed.groupby(["dataset", "protocol"], sort=False)
                    for line in failure_lines(group))
    return f"<h2>Failed cells ({len(failed)})</h2><ul>{items}</ul>"


def _markdown_tables(text: str) -> str:
    """Our own Markdown files as HTML: pipe tables become tables, every other line a paragraph."""
    out, rows = [], []

    def flush():
        if rows:
            header, body = rows[0], [r for r in rows[2:]]
            head = "".join(f"<th>{html.escape(c)}</th>" for c in header)
            cells = "".join("<tr>" + "".join(_cell(c) for c in r) + "</tr>" for r in body)
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>")
            rows.clear()

    for line in text.splitlines():
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
            continue
        flush()
        line = line.strip()
        if line.startswith("#"):
            level = min(6, len(line) - len(line.lstrip("#")) + 2)
            out.append(f"<h{level}>{html.escape(line.lstrip('#').strip())}</h{level}>")
        elif line:
            out.append(f"<p>{_bold(line)}</p>")
    flush()
    return "\n".join(out)


def _cell(text: str) -> str:
    """A table cell; words (method names, pairs) are left-aligned, numbers and dashes right-aligned."""
    numeric = re.match(r"^(\*\*)?[-+]?(\d|\.\d|-$|- \()", text.strip())
    return f"<td>{_bold(text)}</td>" if numeric else f"<td class='t'>{_bold(text)}</td>"


def _bold(text: str) -> str:
    escaped = html.escape(text)
    parts = escaped.split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))
