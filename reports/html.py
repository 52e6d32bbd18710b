"""One self-contained HTML page of a report (``bench report --format html``): every table as HTML, every
PNG figure embedded (base64 data URIs, so the page is one file that works offline), the "Budget" section
(``budget.md``: what each method's networks spent), the statistics, and the run's provenance (package versions, devices, seeds, dates) and failed cells with their errors."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import pandas as pd

from .cells import as_cells, done
from .paper import PAPER_CITATION
from .render import failure_lines
from .stats import readable, readable_p
from .table3 import failed_cells
from .tasks import task_label

# Readable at 1,280 px without horizontal scrolling: a metric's 95 % interval goes on a second line under its
# mean +- std (the widest part of Table 3), and figures never exceed the page; Figure 8 (sample grids) and the
# multi-panel figures take the full width so that their panels can be read.
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; padding: 0 1em; max-width: 75em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.85em; display: block; overflow-x: auto; }
th, td { border-bottom: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
td small { color: #666; }
figure { display: inline-block; vertical-align: top; margin: 1em; max-width: 36em; }
figure.wide { display: block; max-width: 100%; } img { max-width: 100%; }
figcaption { font-size: 0.85em; color: #555; } figcaption code { color: #888; }
.note { color: #555; } td.t { text-align: left; }
table.prov td { white-space: normal; text-align: left; } table.wrap td.t { white-space: normal; }
"""

# What each figure shows, for its caption (the file name follows it); by file-name prefix.
BAND = "shaded band: the 95 % Student-t interval of the mean over seeds (an error bar where there is one point)"
CAPTIONS = {
    "figure3": f"Figure 3: balanced accuracy against the imbalance ratio (log scale), mean over seeds; {BAND}.",
    "figure4": (f"Figure 4: SSIM among generated images (lower = more diverse) against the imbalance ratio, mean "
                f"over seeds; dashed grey: real images; {BAND}."),
    "figure5": f"Figure 5: FID of generated images against the imbalance ratio, one panel per FID variant; {BAND}.",
    "figure6": f"Figure 6: the CapsAN ablation (C convolutions, P pooling, BN batch normalisation layers); {BAND}.",
    "figure7": f"Figure 7: metrics against the number of generated images (the phi sweep); {BAND}.",
    "figure8": "Figure 8: samples of each generative method, one row per generated class.",
    "figure9": ("Figure 9: ROC curves, mean true positive rate over seeds at each false positive rate; shaded "
                "band: its 95 % Student-t interval over seeds; AUC of the mean curve in the legend."),
    "cd_diagram": ("Critical-difference diagram: average ranks (1 = best) over the Friedman test's blocks; methods "
                   "joined by a bar do not differ significantly (Nemenyi, alpha = 0.05)."),
}
WIDE = ("figure5", "figure6", "figure7", "figure8")  # several panels: the page's full width


def render_page(cells: pd.DataFrame, out_dir: Path, written: list[Path], notes: list[str]) -> str:
    """The page for the report already written into ``out_dir`` (``written``: its files)."""
    cells = as_cells(cells)
    parts = [f"<h1>capsan-bench report</h1><p class='note'>Paper: {html.escape(PAPER_CITATION)}.</p>"]
    parts.append(_provenance(cells.frame))
    tables = sorted((p for p in written if p.suffix == ".md" and p.name != "friedman.md"),
                    key=lambda p: (p.name == "budget.md", p.name))  # the tables, then what they cost
    for path in tables:  # each file's own first heading is its section's (no "table3" above "Table 3")
        title, text = _title(path.read_text(encoding="utf-8"), path.stem)
        parts.append(f"<h2>{html.escape(title)}</h2>" + _markdown_tables(text))
    stats = [p for p in written if p.name in ("wilcoxon.csv", "friedman.md")]
    if stats:
        parts.append("<h2>Statistics</h2>")
        for path in stats:
            if path.suffix == ".csv":
                parts.append("<h3>Paired Wilcoxon signed-rank tests</h3>" + _wilcoxon_table(pd.read_csv(path)))
            else:
                title, text = _title(path.read_text(encoding="utf-8"), "Friedman test")
                parts.append(f"<h3>{html.escape(title)}</h3>" + _markdown_tables(text))
    figures = sorted(p for p in written if p.suffix == ".png")
    if figures:
        parts.append("<h2>Figures</h2>")
        for path in figures:
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            kind = path.stem.split("_")[0] if not path.stem.startswith("cd_diagram") else "cd_diagram"
            wide = " class='wide'" if kind in WIDE else ""
            caption = html.escape(CAPTIONS.get(kind, path.stem))
            parts.append(f"<figure{wide}><img alt='{html.escape(path.stem)}' src='data:image/png;base64,{data}'>"
                         f"<figcaption>{caption} <code>{html.escape(path.name)}</code></figcaption></figure>")
    if notes:
        parts.append("<h2>Not in this report</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes)
                     + "</ul>")
    parts.append(_failures(cells))
    body = "\n".join(p for p in parts if p)
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>capsan-bench report</title>"
            f"<style>{STYLE}</style></head><body>{body}</body></html>\n")


def _wilcoxon_table(frame: pd.DataFrame) -> str:
    """``wilcoxon.csv`` as a table that fits the page: the columns people read, rounded, headers on two lines
    (the CSV keeps every column at full precision)."""
    shown = {"method": "method", "metric": "metric", "n_pairs": "pairs", "reference_median": "CapsAN median",
             "method_median": "method median", "median_difference": "median difference", "statistic": "W",
             "p_value": "p", "p_holm": "p (Holm)", "reason": "note"}
    frame = frame[[c for c in shown if c in frame]].rename(columns=shown)
    for column in ("CapsAN median", "method median", "median difference", "W"):
        if column in frame:
            frame[column] = frame[column].map(lambda v: readable(v, 3))
    for column in ("p", "p (Holm)"):
        if column in frame:
            frame[column] = frame[column].map(readable_p)
    head = "".join(f"<th>{html.escape(str(c)).replace(' ', '<br>', 1)}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(_cell("-" if pd.isna(v) else str(v)) for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    return f"<table class='wrap'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _provenance(cells: pd.DataFrame) -> str:
    if cells.empty:
        return "<p>No results in the store yet.</p>"
    versions = {}
    for entry in cells["versions"].dropna():
        for name, value in (entry or {}).items():
            versions.setdefault(name, set()).add(str(value))
    rows = [("cells", f"{len(cells)} ({len(done(cells))} done, "
                      f"{int((cells['status'] == 'failed').sum())} failed)"),
            ("methods", ", ".join(sorted(cells["method"].unique()))),
            ("datasets", ", ".join(sorted(cells["dataset"].unique()))),
            ("seeds", ", ".join(map(str, sorted(cells["seed"].unique())))),
            ("devices", ", ".join(sorted(cells["device"].unique()))),
            ("run between", f"{cells['started_at'].min()} and {cells['finished_at'].max()} (UTC)")]
    if cells["results"].notna().any():
        rows.append(("results folders", ", ".join(dict.fromkeys(cells["results"].astype(str)))))
    rows += [(name, ", ".join(sorted(values))) for name, values in sorted(versions.items())]
    table = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<h2>Provenance</h2><table class='prov'>{table}</table>"


def _failures(cells: pd.DataFrame) -> str:
    failed = failed_cells(cells)
    if failed.empty:
        return ""
    items = "".join(f"<li>{html.escape(str(dataset))} ({html.escape(label)}): {html.escape(line)}</li>"
                    for (dataset, protocol, test), group in failed.groupby(["dataset", "protocol", "test"], sort=False)
                    for label in [task_label(protocol, test)]
                    for line in failure_lines(group))
    return f"<h2>Failed cells ({len(failed)})</h2><ul>{items}</ul>"


def _title(text: str, default: str) -> tuple[str, str]:
    """(the Markdown file's first ``# `` heading, the rest of the text); ``default`` when it has none."""
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is not None and lines[first].startswith("# "):
        return lines[first][2:].strip(), "\n".join(lines[first + 1:])
    return default, text


def _markdown_tables(text: str) -> str:
    """Our own Markdown files as HTML: pipe tables become tables, "- " lines a list, every other line a
    paragraph."""
    out, rows, items = [], [], []

    def flush_items():
        if items:
            out.append("<ul>" + "".join(f"<li>{_bold(item)}</li>" for item in items) + "</ul>")
            items.clear()

    def flush():
        if rows:
            header, body = rows[0], [r for r in rows[2:]]
            head = "".join(f"<th>{html.escape(c)}</th>" for c in header)
            cells = "".join("<tr>" + "".join(_cell(c) for c in r) + "</tr>" for r in body)
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>")
            rows.clear()

    for line in text.splitlines():
        if line.startswith("|"):
            flush_items()
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
            continue
        flush()
        line = line.strip()
        if line.startswith("- "):
            items.append(line[2:])
            continue
        flush_items()
        if line.startswith("#"):
            level = min(6, len(line) - len(line.lstrip("#")) + 2)
            out.append(f"<h{level}>{html.escape(line.lstrip('#').strip())}</h{level}>")
        elif line:
            out.append(f"<p>{_bold(line)}</p>")
    flush()
    flush_items()
    return "\n".join(out)


def _cell(text: str) -> str:
    """A table cell; words (method names, pairs) are left-aligned, numbers and dashes right-aligned. A value's
    95 % interval (``0.91 ± 0.02 [0.87, 0.95]``) goes on a second line, in small type."""
    numeric = re.match(r"^(\*\*)?[-+]?(\d|\.\d|-$|- \()", text.strip())
    if not numeric:
        return f"<td class='t'>{_bold(text)}</td>"
    found = re.match(r"^(\*\*)?(.*?) (\[[^\]]*\])(\*\*)?$", text.strip())
    if found:
        value, interval = f"{found[1] or ''}{found[2]}{found[4] or ''}", found[3]
        return f"<td>{_bold(value)}<br><small>{html.escape(interval)}</small></td>"
    return f"<td>{_bold(text)}</td>"


def _bold(text: str) -> str:
    escaped = html.escape(text)
    parts = escaped.split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))
