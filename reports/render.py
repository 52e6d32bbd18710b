"""Write Table 3 as CSV (tidy numbers), Markdown and LaTeX (one table per dataset and protocol), or text."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate

from bench.errors import BenchError

from .aggregate import NO_PAIR
from .budget import budget_note
from .cells import as_cells, done
from .formats import TABLE_FORMATS, check_formats
from .paper import (
    LONGTAIL_DEFINITIONS,
    PAPER_CITATION,
    PAPER_SHORT,
    REFERENCE_METRICS,
    deviation_notes,
    gamo_definitions,
    table3_definitions,
)
from .stats import ci_text, paired_wilcoxon, wilcoxon_note
from .table3 import METRICS, failed_cells, table3
from .tasks import DEFAULT_TEST, task_label, test_set_note

FILES = {"csv": "table3.csv", "latex": "table3.tex", "md": "table3.md"}
HEADERS = {
    "precision": "precision",
    "recall": "recall",
    "accuracy": "accuracy",
    "f_measure": "F-measure",
    "g_mean": "G-mean",
    "g_mean_macro": "G-mean macro",
    "balanced_accuracy": "ACSA",
}
SHORT_HEADERS = {
    "precision": "prec",
    "recall": "recall",
    "accuracy": "acc",
    "f_measure": "F",
    "g_mean": "G-mean",
    "g_mean_macro": "GM-macro",
    "balanced_accuracy": "ACSA",
}
# Multi-class protocols: macro averages, with the mean per-class recall (ACSA = balanced accuracy) first; both
# G-means (bench/metrics.py): of the per-class recalls, and imbalanced-learn's macro one that DeepSMOTE prints.
MULTICLASS_METRICS = ("balanced_accuracy", "g_mean", "g_mean_macro", "f_measure", "precision", "recall")
NONE = "-"
LONGTAIL_NOTE = (" Their top-1 accuracy on the balanced test split is the mean per-class recall, shown as balanced "
                 "accuracy (100 minus the error where a paper prints an error), only beside rows trained as they "
                 "trained (ResNet-32 with SGD; reports/reference/README.md).")
CITED = ("paper", "published")  # sub-columns of cited values beside ours
EMPTY = "No results in the store yet."
REFERENCE = "capsan"  # the method the tables' Wilcoxon notes test against every other
CI_NOTE = "[95 % CI of the mean, Student t over the seeds; not clipped to the metric's range]"
# Under every Table 3 with the paper's columns: what our positive class is, and what the paper says of its.
POSITIVE_NOTE = ("Positive class: ours is the minority class (precision, recall and F-measure are the minority "
                 "class's); the paper does not state which class its precision, recall and F-measure take as "
                 "positive.")
_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text) -> str:
    return "".join(_LATEX_SPECIALS.get(char, char) for char in str(text))


def _num(value: float, short: bool = False) -> str:
    text = f"{value:.3f}"
    return text[1:] if short and text.startswith("0.") else text


def _cell(mean: float, std: float, pm: str = " ± ", short: bool = False, ci: str = "") -> str:
    """``mean ± std`` and, when given, the confidence interval after it (``ci`` is already formatted)."""
    if pd.isna(mean):
        return NONE
    text = _num(mean, short) if pd.isna(std) else f"{_num(mean, short)}{pm}{_num(std, short)}"
    return f"{text} {ci}" if ci else text


def _ci(row, metric: str, latex: bool) -> str:
    text = ci_text(row[f"{metric}_ci_low"], row[f"{metric}_ci_high"])
    return f"{{\\scriptsize {text}}}" if latex and text else text


GROUP_KEYS = ["dataset", "protocol", "test"]  # one rendered table each


def _groups(table: pd.DataFrame):
    return table.groupby(GROUP_KEYS, sort=False)


def _task(dataset, protocol, test) -> str:
    """``mnist, gamo, imbalanced test (...)`` (``tasks.task_label``)."""
    return f"{dataset}, {task_label(protocol, test)}"


def _metrics(group: pd.DataFrame) -> tuple[str, ...]:
    return METRICS if group["protocol"].iloc[0] == "binary" else MULTICLASS_METRICS


def _has_paper(group: pd.DataFrame) -> bool:
    return _metrics(group) == METRICS and bool(group[[f"{m}_paper" for m in METRICS]].notna().any().any())


def _has_reference(group: pd.DataFrame) -> bool:
    columns = [f"{m}_ref" for m in REFERENCE_METRICS]
    return all(c in group for c in columns) and bool(group[columns].notna().any().any())


def _sources(group: pd.DataFrame) -> list[str]:
    """The published sources of a group's ``published`` column, in order of appearance."""
    return [s for s in dict.fromkeys(group["ref_source"]) if isinstance(s, str) and s]


def _display(group: pd.DataFrame, pm: str, paper: bool, short: bool = False, ci: str | None = None):
    """Strings for one (dataset, protocol, test) group, and where the best values are: (columns, rows, bold).
    Beside ours: the CapsAN paper's value (``paper``) or, where the group has one, another paper's
    published value (sub-column ``published``).

    ``ci``: None (no intervals, the terminal table), ``"md"`` or ``"latex"`` (each cell gets its 95 % CI)."""
    level = "size" if group["protocol"].iloc[0] == "subset" else "ratio"  # the subset protocol's n images
    lead = [level] + (["pair"] if "pair" in group else []) + ["method", "n"]
    columns, rows, bold = [(name, "") for name in lead], [], []
    metrics = _metrics(group)
    paper = paper and metrics == METRICS
    published = _has_reference(group)
    cited = {m for m in REFERENCE_METRICS if published and group[f"{m}_ref"].notna().any()} if not paper else set()
    for metric in metrics:
        columns.append((metric, "ours"))
        if paper:
            columns.append((metric, "paper"))
        elif metric in cited:
            columns.append((metric, "published"))
    for _, row in group.iterrows():
        cells = (
            [f"{row['ratio']:g}"]
            + ([row["pair"]] if "pair" in group else [])
            + [row["method"], str(row["n_seeds"])]
        )
        marks = [False] * len(cells)
        for metric in metrics:
            interval = _ci(row, metric, ci == "latex") if ci else ""
            cells.append(_cell(row[f"{metric}_mean"], row[f"{metric}_std"], pm, short, interval))
            marks.append(bool(row[f"{metric}_best"]))
            if paper or metric in cited:
                value = row[f"{metric}_paper" if paper else f"{metric}_ref"]
                cells.append(NONE if pd.isna(value) else _num(value, short))
                marks.append(False)
        rows.append(cells)
        bold.append(marks)
    return columns, rows, np.array(bold, dtype=bool).reshape(len(rows), len(columns))


def _notes(group: pd.DataFrame) -> list[str]:
    """Rows whose seeds lack some of the grid's pairs (never marked best: they average another task mix)."""
    partial = group[group["n_partial_seeds"] > 0]
    return [
        f"{row['method']} at ratio {row['ratio']:g}: {row['n_partial_seeds']} of {row['n_seeds']} seeds "
        f"have only some of the grid's {row['n_grid_pairs']} pairs done, so its row is not marked best"
        for _, row in partial.iterrows()
    ]


def _pooled(group: pd.DataFrame) -> list[str]:
    """Rows that average cells of several training lengths or parameter sets (``bench export`` tells them apart)."""
    mixed = group[group["n_configs"] > 1] if "n_configs" in group else group.iloc[:0]
    return [
        f"{row['method']} at ratio {row['ratio']:g} pools cells of {row['n_configs']} configurations "
        f"(epochs {_span(row['epochs_min'], row['epochs_max'])}); bench export lists them apart"
        for _, row in mixed.iterrows()
    ]


def _span(low, high) -> str:
    return f"{low:g}" if low == high else f"{low:g} to {high:g}"


def _missing(group: pd.DataFrame) -> list[str]:
    """Rows with fewer seeds than the grid has at their ratio (the seeds any cell there, done or failed, of
    any method has): never marked best."""
    short = group[group["n_seeds"] < group["n_grid_seeds"]]
    return [
        f"{row['method']} at ratio {row['ratio']:g}: {row['n_seeds']} of {row['n_grid_seeds']} seeds done"
        + (f", {row['n_failed']} failed cell{'s' if row['n_failed'] > 1 else ''}" if row["n_failed"] else "")
        for _, row in short.iterrows()
    ]


def _failures(failed: pd.DataFrame, dataset, protocol, test=DEFAULT_TEST) -> list[str]:
    rows = failed[(failed["dataset"] == dataset) & (failed["protocol"] == protocol) & (failed["test"] == test)]
    return failure_lines(rows)


def failure_lines(failed: pd.DataFrame) -> list[str]:
    """One line per (method, ratio, error) of failed cells, naming their seeds and pairs: a grid repeats the
    same refusal over seeds and pairs, and one line per cell buries the different ones."""
    if failed.empty:
        return []
    rows = failed.assign(reason=failed["error"].map(
        lambda e: "no error recorded" if pd.isna(e) else str(e).strip()))
    lines = []
    for (method, ratio, reason), group in rows.groupby(["method", "ratio", "reason"], sort=False):
        seeds = ", ".join(map(str, sorted(set(group["seed"]))))
        pairs = sorted({str(p) for p in group["pair"] if str(p) != NO_PAIR})
        where = f"seed{'s' if group['seed'].nunique() > 1 else ''} {seeds}"
        if pairs:
            where += f"; pair{'s' if len(pairs) > 1 else ''} {', '.join(pairs)}"
        count = f"{len(group)} cell{'s' if len(group) > 1 else ''}"
        lines.append(f"{method} at ratio {ratio:g}, {count} ({where}): {reason}")
    return lines


def _caption(dataset, protocol, pm: str = " ± ", escape=str, test=DEFAULT_TEST) -> str:
    where = task_label(protocol, test, " protocol")
    if protocol != "binary":
        return (
            f"Table 3 on {escape(dataset)}, {escape(where)}: ACSA (mean per-class recall), G-mean (of the per-class "
            f"recalls), G-mean macro (sqrt(mean sensitivity x mean specificity), one-vs-rest) and macro-averaged F-measure, precision and recall, mean{pm}std over the n seeds {escape(CI_NOTE)}. Bold: the "
            "best mean per ratio."
        )
    return (
        f"Table 3 on {escape(dataset)}, {escape(where)}: minority-class metrics, mean{pm}std "
        f"over the n seeds {escape(CI_NOTE)} (per seed, the mean over the class pairs first). Bold: the best mean per ratio."
    )


def table_tests(cells: pd.DataFrame) -> dict[tuple, str]:
    """{(dataset, protocol, test): the note of paired Wilcoxon tests of capsan against each method on G-mean}."""
    finished = as_cells(cells).done
    if finished.empty:
        return {}
    notes = {}
    for (dataset, protocol, test), group in finished.groupby(GROUP_KEYS, sort=False):
        if REFERENCE in set(group["method"]) and group["method"].nunique() > 1:
            units = "(ratio, pair, seed) units" if protocol == "binary" else "(level, seed) units"
            notes[(dataset, protocol, test)] = wilcoxon_note(paired_wilcoxon(group, REFERENCE, "g_mean"), "G-mean", units)
    return notes


def table_budgets(cells: pd.DataFrame) -> dict[tuple, str]:
    """{(dataset, protocol, test): the notes on what a table's cells used (``tasks.test_set_note``: the test set
    where the protocol fixes its counts) and spent (``budget.budget_note``)}, for the tables that need one."""
    cells = as_cells(cells).frame
    if cells.empty:
        return {}
    notes = {}
    for key, group in cells.groupby(GROUP_KEYS, sort=False):
        note = " ".join(n for n in (test_set_note(done(group)), budget_note(group)) if n)
        if note:
            notes[key] = note
    return notes


def _extra_notes(group: pd.DataFrame, paper: bool, tests: dict | None, budgets: dict | None) -> list[str]:
    """The notes under one table, in order: the paper's source and positive class, the Wilcoxon tests, the
    budgets, then partial, missing and pooled rows."""
    key = tuple(group[k].iloc[0] for k in GROUP_KEYS)
    notes = [f"paper: the values reported in {PAPER_CITATION}, Table 3.", POSITIVE_NOTE, table3_definitions()] if paper else []
    if not paper and _has_reference(group):
        notes.append(f"published: the values reported in {'; '.join(_sources(group))} (the same protocol, test set "
                     "and method; their classifier and training budget are theirs, not the suite's: VALIDATION.md)."
                     + (f"{LONGTAIL_NOTE} {LONGTAIL_DEFINITIONS}" if key[1] == "longtail" else "")
                     + (f" {gamo_definitions()}" if key[1] == "gamo" else "")
                     + "".join(f" {n}" for n in deviation_notes(group.loc[group["ref_source"].notna(), "method"])))
    notes += [n for n in ((tests or {}).get(key), (budgets or {}).get(key)) if n]
    notes += [f"Partial seeds: {note}." for note in _notes(group)]
    notes += [f"Missing: {note}." for note in _missing(group)]
    notes += [f"Pooled: {note}." for note in _pooled(group)]
    return notes


def render_markdown(table: pd.DataFrame, failed: pd.DataFrame, tests: dict | None = None,
                    budgets: dict | None = None) -> str:
    """Table 3 in Markdown; ``tests``: {(dataset, protocol): note} from :func:`table_tests`; ``budgets``
    the same from :func:`table_budgets`."""
    if table.empty:
        return f"# Table 3\n\n{EMPTY}\n"
    parts = ["# Table 3\n"]
    for (dataset, protocol, test), group in _groups(table):
        paper = _has_paper(group)
        columns, rows, bold = _display(group, " ± ", paper, ci="md")
        rows = [
            [f"**{c}**" if b else c for c, b in zip(r, marks, strict=True)]
            for r, marks in zip(rows, bold, strict=True)
        ]
        headers = [sub if sub in CITED else HEADERS.get(top, top) for top, sub in columns]
        frame = pd.DataFrame(rows, columns=range(len(headers)))
        parts.append(f"## {_task(dataset, protocol, test)}\n\n{_caption(dataset, protocol, test=test)}\n")
        parts.append(frame.to_markdown(index=False, headers=headers, disable_numparse=True) + "\n")
        parts += [note + "\n" for note in _extra_notes(group, paper, tests, budgets)]
        failures = _failures(failed, dataset, protocol, test)
        if failures:
            parts.append("Failed cells:\n\n" + "\n".join(f"- {line}" for line in failures) + "\n")
    return "\n".join(parts)


def _label(*names) -> str:
    return "tab:table3-" + "-".join(re.sub(r"[^A-Za-z0-9]+", "", str(n)) for n in names)


def render_latex(table: pd.DataFrame, failed: pd.DataFrame, tests: dict | None = None,
                 budgets: dict | None = None) -> str:
    """Table 3 in LaTeX (booktabs); ``tests`` and ``budgets`` as in :func:`render_markdown`."""
    if table.empty:
        return f"% Table 3: {EMPTY}\n"
    parts = []
    for (dataset, protocol, test), group in _groups(table):
        paper = _has_paper(group)
        columns, rows, bold = _display(group, r" $\pm$ ", paper, ci="latex")
        index = [(latex_escape(HEADERS.get(top, top)), sub) for top, sub in columns]
        two_level = any(sub in CITED for _, sub in columns)
        frame = pd.DataFrame(
            rows, columns=pd.MultiIndex.from_tuples(index) if two_level else [c for c, _ in index]
        )
        text_columns = [c for c in frame.columns if (c[0] if two_level else c) in ("pair", "method")]
        styler = frame.style.hide(axis="index").format(escape="latex", subset=text_columns)
        styler = styler.apply(lambda _, bold=bold: np.where(bold, "textbf:--rwrap;", ""), axis=None)
        latex = styler.to_latex(
            hrules=True,
            caption=_caption(dataset, protocol, r" $\pm$ ", latex_escape, test),
            label=_label(dataset, protocol, *([test] if test != DEFAULT_TEST else [])),
            position="htbp",
            position_float="centering",
            multicol_align="c",
            column_format="".join("l" if top in ("ratio", "size", "pair", "method") else "r" for top, _ in columns),
        )
        notes = _extra_notes(group, paper, tests, budgets)
        if notes:
            note_tex = "\\par\\smallskip\\footnotesize " + " ".join(latex_escape(n) for n in notes) + "\n"
            latex = latex.replace("\\end{table}", note_tex + "\\end{table}")
        parts.append(latex)
        failures = _failures(failed, dataset, protocol, test)
        if failures:
            items = "\n".join(f"  \\item {latex_escape(line)}" for line in failures)
            parts.append(
                f"Failed cells ({latex_escape(_task(dataset, protocol, test))}):\n"
                f"\\begin{{itemize}}\n{items}\n\\end{{itemize}}\n"
            )
    return "\n".join(parts)


def table3_text(cells: pd.DataFrame) -> str:
    """Table 3 for the terminal: mean±std per metric, ``*`` on the best, the paper's value in its own column."""
    cells = as_cells(cells)
    table = table3(cells)
    if table.empty:
        return EMPTY
    failed = failed_cells(cells)
    budgets = table_budgets(cells)
    parts = []
    for (dataset, protocol, test), group in _groups(table):
        paper = _has_paper(group)
        published = not paper and _has_reference(group)
        columns, rows, bold = _display(group, "±", paper, short=True)
        ours = [i for i, (_, sub) in enumerate(columns) if sub not in CITED]
        lines = [[row[i] + ("*" if marks[i] else "") for i in ours] for row, marks in zip(rows, bold, strict=True)]
        headers = [SHORT_HEADERS.get(columns[i][0], columns[i][0]) for i in ours]
        parts.append(f"{_task(dataset, protocol, test).replace(', ', ' / ', 1)} (mean±std over seeds, * best)")
        parts.append(tabulate(lines, headers=headers, tablefmt="simple", disable_numparse=True))
        if paper or published:  # cited values as a table of their own (square brackets hold intervals everywhere)
            lead = [i for i, (_, sub) in enumerate(columns) if sub == "" and columns[i][0] in ("ratio", "size",
                                                                                                 "pair", "method")]
            cited = [i for i, (_, sub) in enumerate(columns) if sub in CITED]
            paper_rows = [[row[i] for i in lead + cited] for row in rows if any(row[i] != NONE for i in cited)]
            parts.append(f"the paper's values ({PAPER_SHORT}):" if paper else
                         f"published values ({'; '.join(_sources(group))}):")
            parts.append(tabulate(paper_rows, headers=[columns[i][0] if i in lead else
                                                       SHORT_HEADERS.get(columns[i][0], columns[i][0])
                                                       for i in lead + cited],
                                  tablefmt="simple", disable_numparse=True))
            if paper:
                parts.append(textwrap.fill(POSITIVE_NOTE, 110))
        note = budgets.get((dataset, protocol, test))
        if note:
            parts.append(textwrap.fill(note, 110))
        parts += [f"partial seeds: {note}" for note in _notes(group)]
        parts += [f"missing: {note}" for note in _missing(group)]
        parts += _failure_summary(failed, dataset, protocol, test)
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"


def _failure_summary(failed: pd.DataFrame, dataset, protocol, test=DEFAULT_TEST) -> list[str]:
    """One line per method, ratio and error: a grid repeats the same refusal over seeds and pairs."""
    rows = failed[(failed["dataset"] == dataset) & (failed["protocol"] == protocol) & (failed["test"] == test)].copy()
    if rows.empty:
        return []
    rows["reason"] = rows["error"].map(lambda e: "no error recorded" if pd.isna(e) else _shorten(str(e).strip()))
    lines = [f"failed cells ({len(rows)}):"]
    for (method, ratio, reason), group in rows.groupby(["method", "ratio", "reason"], sort=False):
        lines.append(f"  {method} at ratio {ratio:g}, {len(group)} cell(s): {reason}")
    return lines


def _shorten(line: str, width: int = 100) -> str:
    line = line.splitlines()[0] if line else line
    return line if len(line) <= width else line[: width - 3] + "..."


def make_folder(out_dir) -> Path:
    """The report folder, created if needed; an unwritable place is a one-line error."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchError(
            f"cannot create report folder {out} ({exc.strerror}); give another output folder"
        ) from exc
    return out


def write_table3(cells: pd.DataFrame, out: Path, formats: Iterable[str], by_pair: bool = False) -> list[Path]:
    """Table 3 of ``cells`` (``cells.Cells``) into the existing folder ``out``, in ``formats``."""
    formats = check_formats(formats, TABLE_FORMATS)
    cells = as_cells(cells)
    table, failed = table3(cells, by_pair=by_pair), failed_cells(cells)
    tests = table_tests(cells) if not table.empty else {}
    budgets = table_budgets(cells) if not table.empty else {}
    written = []
    for fmt in formats:
        path = out / FILES[fmt]
        if fmt == "csv":
            table.to_csv(path, index=False)
        else:
            path.write_text(
                (render_latex if fmt == "latex" else render_markdown)(table, failed, tests, budgets),
                encoding="utf-8"
            )
        written.append(path)
    return written
