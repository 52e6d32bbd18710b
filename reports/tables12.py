"""The paper's Tables 1 and 2 rebuilt from the results store, with the paper's numbers beside ours.

Table 1 (discriminator as a classifier). Input: cells of protocol ``subset`` whose method is exactly
``capsan`` (the capsule discriminator) or ``capsan-conv`` (the convolutional one); swept variants such as
``capsan[phi=0.5]`` are other methods and are left out. The subset protocol stores its training-set size
``n`` in ``ratio``. Per cell, error = 1 - accuracy. Aggregation is two-stage as in Table 3: cells of one
(dataset, n, discriminator, seed) that differ only in what the table does not show (params, epochs) are
averaged first, then the seed values give the mean and the sample std (ddof=1; NaN, shown as a dash, for
one seed) and ``n_seeds``. Failed cells are counted in ``n_failed``. For every (dataset, n) we have, both
discriminators get a row, so a missing one shows as a dash with ``n_seeds`` 0. Best = the lowest mean per
(dataset, n) (ties within 1e-12 are all best). ``paper`` = the paper's error rate for the same dataset, n
and discriminator (NaN where the paper has none).

Table 2 (FID of generated images). Input: done cells whose quality (``cells.Cells.quality``) holds, per
generated class, an entry per FID variant (``fid-inception`` or ``fid-proxy``) with a ``value``. Per cell and variant,
the mean over the cell's generated classes (non-finite values are skipped); per (variant, method, dataset,
seed) the mean over that seed's cells (any protocol, ratio and pair: the paper's Table 2 has one number per
method and dataset, and ``n_cells`` and ``protocols`` say what was pooled); then mean, sample std and
``n_seeds`` over the seeds. Variants never share a table: the result is a dict variant -> table, because a
proxy FID on another feature space is a different number, not a noisy Inception FID. The paper reported
Inception FID, so only the ``fid-inception`` table gets ``fid_paper`` values and the paper's reference rows
(its ``real`` real-vs-real row and the methods it reports that we lack, for the datasets in our table).
``feature_extractor`` (the stored description of the features, all distinct ones joined by "; ") is a
column of every row and is named in each rendered table's caption. Best = lowest mean per
(variant, dataset); ``real`` rows never compete. Our own ``real`` row comes from the cells' stored
``real_vs_real`` FIDs (the class's training images against its real test images, in the same features),
aggregated like a method's; the paper's real value sits beside it in the Inception table.

Both tables carry the 95 % Student-t confidence interval of the mean over the seed values
(``error_ci_low``/``_high``, ``fid_ci_low``/``_high``; NaN below two seeds), and their notes the paired
Wilcoxon signed-rank tests of capsan against the others (``table1_tests``, ``table2_tests``): Table 1 per
dataset on accuracy, paired over (n, seed); Table 2 per variant on the cell FID, paired over (dataset,
protocol, ratio, pair, seed).

Rendering (``render_table1``, ``render_table2``): ``csv`` = the tidy frame (every number, no formatting);
``md`` = pandas ``to_markdown`` (tabulate), bold best; ``latex`` = pandas Styler with booktabs rules
(\\toprule, \\midrule, \\bottomrule), bold best, text escaped. Missing values render as ``-``.
"""

from __future__ import annotations

import re
from importlib import resources

import numpy as np
import pandas as pd

from bench.errors import BenchError

from .aggregate import over_seeds, seed_means
from .cells import REAL as REAL_SOURCE
from .cells import Cells, as_cells, metric
from .cells import done as done_cells
from .formats import TABLE_FORMATS, check_formats
from .paper import PAPER_CITATION
from .stats import ci_text, paired_wilcoxon, wilcoxon_note

TABLE1_METHODS = {"capsan": "capsule", "capsan-conv": "convolutional"}
TABLE1_PROTOCOL = "subset"
DISCRIMINATORS = tuple(TABLE1_METHODS.values())  # row order: capsule first
FID_VARIANTS = ("fid-inception", "fid-proxy")  # table order; other "fid*" keys follow alphabetically
PAPER_VARIANT = "fid-inception"  # the paper's FID used Inception-v3 features
REAL = "real"  # the paper's real-vs-real reference row of Table 2
FORMATS = TABLE_FORMATS
NONE = "-"
TIE_TOL = 1e-12
N_DECIMALS = 6  # subset sizes are grouped after rounding

TABLE1_COLUMNS = [
    "dataset",
    "n",
    "discriminator",
    "method",
    "n_seeds",
    "n_failed",
    "error_mean",
    "error_std",
    "error_ci_low",
    "error_ci_high",
    "error_best",
    "error_paper",
]
TABLE2_COLUMNS = [
    "variant",
    "method",
    "dataset",
    "n_seeds",
    "n_cells",
    "protocols",
    "fid_mean",
    "fid_std",
    "fid_ci_low",
    "fid_ci_high",
    "fid_best",
    "fid_paper",
    "feature_extractor",
]

_TABLE1 = "table1_discriminator_error.csv"
_TABLE2 = "table2_fid.csv"


def _reference(name: str) -> pd.DataFrame:
    source = resources.files("bench.reports").joinpath("reference", name)
    with source.open("r", encoding="utf-8") as handle:
        return pd.read_csv(handle)


def paper_table1() -> pd.DataFrame:
    """The paper's Table 1: columns dataset, n_samples, discriminator (capsule/convolutional), error_rate."""
    return _reference(_TABLE1)


def paper_table2() -> pd.DataFrame:
    """The paper's Table 2 (Inception FID), tidy: one row per (method, dataset), columns method, dataset, fid.

    ``method`` ``real`` is the paper's real-vs-real reference value.
    """
    wide = _reference(_TABLE2)
    return wide.melt(id_vars="method", var_name="dataset", value_name="fid")


# ---------------------------------------------------------------------------------------------- Table 1


def table1(cells: pd.DataFrame) -> pd.DataFrame:
    """Table 1 from the tidy table (``cells.Cells``): one row per (dataset, n, discriminator); columns ``TABLE1_COLUMNS``.

    Rows sorted by dataset, n, then capsule before convolutional. Empty input (or no subset cells of
    capsan/capsan-conv) gives an empty frame with the same columns; never raises on partial results.
    """
    cells = as_cells(cells).frame
    frame = cells[cells["protocol"].eq(TABLE1_PROTOCOL) & cells["method"].isin(list(TABLE1_METHODS))]
    if frame.empty:
        return pd.DataFrame(columns=TABLE1_COLUMNS)
    frame = pd.DataFrame(
        {
            "dataset": frame["dataset"].astype(str).to_numpy(),
            "n": frame["ratio"].astype(float).round(N_DECIMALS).to_numpy(),
            "method": frame["method"].to_numpy(),
            "seed": frame["seed"].to_numpy(),
            "done": frame.index.isin(done_cells(frame).index),
            "error": 1.0 - metric(frame, "accuracy").to_numpy(),
        }
    )
    frame["discriminator"] = frame["method"].map(TABLE1_METHODS)
    keys = ["dataset", "n", "discriminator", "method"]
    done = frame[frame["done"] & frame["error"].notna()]
    stats = over_seeds(seed_means(done, keys, ["error"]), keys, ["error"])
    failed = frame[~frame["done"]].groupby(keys).size().rename("n_failed")
    # every (dataset, n) we have gets both discriminators, so a missing one is a visible dash
    grid = frame[["dataset", "n"]].drop_duplicates()
    full = pd.MultiIndex.from_tuples(
        [
            (d, n, disc, method)
            for d, n in grid.itertuples(index=False)
            for method, disc in TABLE1_METHODS.items()
        ],
        names=keys,
    )
    table = pd.concat([stats, failed], axis=1).reindex(full).reset_index()
    for count in ("n_seeds", "n_failed"):
        table[count] = table[count].fillna(0).astype(int)
    best = table.groupby(["dataset", "n"])["error_mean"].transform("min")
    table["error_best"] = table["error_mean"].notna() & (table["error_mean"] <= best + TIE_TOL)
    paper = paper_table1()
    lookup = {
        (str(r.dataset).lower(), float(r.n_samples), str(r.discriminator)): float(r.error_rate)
        for r in paper.itertuples(index=False)
    }
    table["error_paper"] = [
        lookup.get((str(d).lower(), float(n), disc), np.nan)
        for d, n, disc in zip(table["dataset"], table["n"], table["discriminator"], strict=True)
    ]
    order = table["discriminator"].map({d: i for i, d in enumerate(DISCRIMINATORS)})
    table = table.assign(_order=order).sort_values(["dataset", "n", "_order"], kind="stable")
    return table.drop(columns="_order").reset_index(drop=True)[TABLE1_COLUMNS]


# ---------------------------------------------------------------------------------------------- Table 2


def _cell_fids(cells: Cells, real: bool = False) -> dict[int, dict[str, tuple[float, set[str]]]]:
    """{cell: {variant: (mean FID over the cell's generated classes, feature extractors)}}; ``real``: the
    real-vs-real FIDs stored beside them instead (the class's train vs its test images). A class whose
    value is NaN (``cells.py``'s rule) is left out, and so is its feature extractor."""
    quality = cells.quality
    quality = quality[(quality["source"] == (REAL_SOURCE if real else "generated"))
                      & quality["metric"].str.startswith("fid")]
    values = quality[(quality["field"] == "value") & quality["value"].notna()]
    names = {(c, k, m): t for c, k, m, t in quality.loc[quality["field"] == "feature_extractor",
                                                        ["cell", "class", "metric", "text"]].itertuples(index=False)}
    fids: dict[int, dict] = {}
    for (cell, variant), group in values.groupby(["cell", "metric"], sort=False):
        extractors = {names[key] for key in ((cell, k, variant) for k in group["class"])
                      if isinstance(names.get(key), str) and names[key]}
        fids.setdefault(cell, {})[variant] = (float(np.mean(group["value"].to_numpy())), extractors)
    return fids


def _variant_order(variant: str) -> tuple:
    return (FID_VARIANTS.index(variant), "") if variant in FID_VARIANTS else (len(FID_VARIANTS), variant)


def _method_order(method) -> str:
    return ("0" if method == REAL else "1") + str(method)


def table2(cells: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Table 2 from the tidy table (``cells.Cells``: its quality rows): {variant: one row per (method, dataset)}; columns ``TABLE2_COLUMNS``.

    One table per FID variant found (``fid-inception`` first, then ``fid-proxy``); no quality results
    gives ``{}``. Never raises on partial or failed results.
    """
    cells = as_cells(cells)
    generated, real = _cell_fids(cells), _cell_fids(cells, real=True)
    rows = []
    for cell in done_cells(cells.frame).itertuples():
        fids = [(str(cell.method), generated.get(cell.Index, {})), (REAL, real.get(cell.Index, {}))]
        for method, variant, (value, extractors) in ((m, v, r) for m, f in fids for v, r in f.items()):
            rows.append(
                {
                    "variant": variant,
                    "method": method,
                    "dataset": str(cell.dataset),
                    "seed": cell.seed,
                    "protocol": str(cell.protocol),
                    "fid": value,
                    "extractors": extractors,
                }
            )
    if not rows:
        return {}
    frame = pd.DataFrame(rows)
    keys = ["variant", "method", "dataset"]
    stats = over_seeds(seed_means(frame, keys, ["fid"]), keys, ["fid"])
    extra = frame.groupby(keys).agg(
        n_cells=("fid", "size"),
        protocols=("protocol", lambda p: ", ".join(sorted(set(p)))),
        feature_extractor=("extractors", lambda e: "; ".join(sorted(set().union(*e)))),
    )
    table = pd.concat([stats, extra], axis=1).reset_index()
    tables = {}
    for variant in sorted(table["variant"].unique(), key=_variant_order):
        part = table[table["variant"] == variant].copy()
        part["fid_paper"] = np.nan
        if variant == PAPER_VARIANT:
            part = _with_paper(part)
        best = part[part["method"] != REAL].groupby("dataset")["fid_mean"].min()
        part["fid_best"] = (
            (part["method"] != REAL)
            & part["fid_mean"].notna()
            & (part["fid_mean"] <= part["dataset"].map(best) + TIE_TOL)
        )
        for count in ("n_seeds", "n_cells"):
            part[count] = part[count].fillna(0).astype(int)
        part = part.sort_values(["method", "dataset"], key=_sort_key, kind="stable")
        tables[variant] = part.reset_index(drop=True)[TABLE2_COLUMNS]
    return tables


def _sort_key(column: pd.Series) -> pd.Series:
    return column.map(_method_order) if column.name == "method" else column


def _with_paper(part: pd.DataFrame) -> pd.DataFrame:
    """Add the paper's values, and its rows (``real`` and methods we lack) for the datasets we have."""
    paper = paper_table2()
    paper = paper[paper["dataset"].isin(set(part["dataset"])) & paper["fid"].notna()]
    variant = part["variant"].iloc[0]
    extractor = "; ".join(sorted({e for e in part["feature_extractor"] if e}))
    lookup = {(m, d): f for m, d, f in paper.itertuples(index=False)}
    part["fid_paper"] = [
        lookup.get((m, d), np.nan) for m, d in zip(part["method"], part["dataset"], strict=True)
    ]
    have = set(zip(part["method"], part["dataset"], strict=True))
    missing = [
        {
            "variant": variant,
            "method": m,
            "dataset": d,
            "n_seeds": 0,
            "n_cells": 0,
            "protocols": "",
            "fid_mean": np.nan,
            "fid_std": np.nan,
            "fid_paper": f,
            "feature_extractor": extractor,
        }
        for m, d, f in paper.itertuples(index=False)
        if (m, d) not in have
    ]
    return pd.concat([part, pd.DataFrame(missing)], ignore_index=True) if missing else part


# ---------------------------------------------------------------------------------------------- tests


def table1_tests(cells: pd.DataFrame) -> str:
    """The note of Table 1: per dataset, capsan (capsule) against capsan-conv on accuracy, paired over (n, seed)."""
    cells = as_cells(cells).frame
    frame = cells[cells["protocol"].eq(TABLE1_PROTOCOL) & cells["method"].isin(list(TABLE1_METHODS))]
    notes = []
    for dataset, group in frame.groupby("dataset", sort=True):
        if set(group["method"]) == set(TABLE1_METHODS):
            tests = paired_wilcoxon(group, "capsan", "accuracy")
            notes.append(f"{dataset}: " + wilcoxon_note(tests, "accuracy (1 - error)", "(n, seed) units"))
    return " ".join(notes)


def table2_tests(cells: pd.DataFrame) -> dict[str, str]:
    """{variant: note}: capsan against each method on the cell FID (mean over its generated classes)."""
    cells = as_cells(cells)
    generated = _cell_fids(cells)
    rows = []
    for cell in done_cells(cells.frame).itertuples():
        fids = {variant: value for variant, (value, _) in generated.get(cell.Index, {}).items()}
        if fids:  # a tidy frame, one column per variant (``cells.as_cells`` reads it as it is)
            rows.append({"method": cell.method, "dataset": cell.dataset, "protocol": cell.protocol, "test": cell.test,
                         "ratio": cell.ratio, "pair": cell.pair, "seed": cell.seed, "status": "done", **fids})
    frame = pd.DataFrame(rows)
    notes = {}
    for variant in sorted((c for c in frame.columns if c.startswith("fid")), key=_variant_order):
        has = frame[frame[variant].notna()]
        if "capsan" in set(has["method"]) and has["method"].nunique() > 1:
            tests = paired_wilcoxon(has, "capsan", variant)
            notes[variant] = wilcoxon_note(tests, variant, "(dataset, protocol, ratio, pair, seed) units",
                                           lower_is_better=True)
    return notes


# ---------------------------------------------------------------------------------------------- rendering


def _check_format(fmt: str) -> None:
    check_formats([fmt], FORMATS)


def _num(value, decimals: int) -> str:
    return NONE if pd.isna(value) else f"{value:.{decimals}f}"


def _cell(mean, std, decimals: int, pm: str, low=None, high=None, latex: bool = False) -> str:
    """``mean ± std [ci_low, ci_high]``; the interval only where there is one (two seeds or more)."""
    if pd.isna(mean):
        return NONE
    text = _num(mean, decimals) + ("" if pd.isna(std) else f"{pm}{_num(std, decimals)}")
    ci = ci_text(low, high, decimals)
    if ci:
        text += f" {{\\scriptsize {ci}}}" if latex else f" {ci}"
    return text


def _latex_escape(text) -> str:
    from .render import latex_escape  # render imports table3 only; imported lazily to keep this light

    return latex_escape(text)


def _markdown(rows: list[list[str]], bold: np.ndarray, headers: list[str]) -> str:
    marked = [
        [f"**{c}**" if b else c for c, b in zip(r, m, strict=True)] for r, m in zip(rows, bold, strict=True)
    ]
    frame = pd.DataFrame(marked, columns=range(len(headers)))
    return frame.to_markdown(index=False, headers=headers, disable_numparse=True)


def _latex(rows, bold, headers, caption, label, text_columns, note="") -> str:
    frame = pd.DataFrame(rows, columns=[_latex_escape(h) for h in headers])
    text = [frame.columns[i] for i in text_columns]
    styler = frame.style.hide(axis="index").format(escape="latex", subset=text)
    styler = styler.apply(lambda _: np.where(bold, "textbf:--rwrap;", ""), axis=None)
    latex = styler.to_latex(
        hrules=True,
        caption=caption,
        label=label,
        position="htbp",
        position_float="centering",
        column_format="".join("l" if i in text_columns else "r" for i in range(len(headers))),
    )
    if note:
        latex = latex.replace("\\end{table}", f"\\par\\smallskip\\footnotesize {note}\n\\end{{table}}")
    return latex


def _label(*names) -> str:
    return "tab:" + "-".join(re.sub(r"[^A-Za-z0-9]+", "", str(n)) for n in names)


TABLE1_CAPTION = (
    "Table 1: error rate (1 - accuracy) of the discriminator used as a classifier on n training images "
    "(capsule = capsan, convolutional = capsan-conv), mean{pm}std over the n_seeds seeds "
    "[95 % CI of the mean, Student t]. Bold: the lowest mean per dataset and n."
)


def render_table1(table: pd.DataFrame, fmt: str = "md", tests: str = "") -> str:
    """Table 1 as ``csv`` (the tidy frame), ``md`` (Markdown) or ``latex`` (booktabs) text; ``tests``: the
    note of :func:`table1_tests`."""
    _check_format(fmt)
    if fmt == "csv":
        return table.to_csv(index=False)
    if table.empty:
        return "# Table 1\n\nNo Table 1 results in the store.\n" if fmt == "md" else "% Table 1: no results\n"
    pm = " ± " if fmt == "md" else r" $\pm$ "
    headers = ["dataset", "n", "discriminator", "n_seeds", "error (ours)", "error (paper)"]
    rows, bold = [], []
    for row in table.itertuples(index=False):
        rows.append(
            [
                str(row.dataset),
                f"{row.n:g}",
                str(row.discriminator),
                str(row.n_seeds),
                _cell(row.error_mean, row.error_std, 4, pm, row.error_ci_low, row.error_ci_high, fmt == "latex"),
                _num(row.error_paper, 4),
            ]
        )
        bold.append([False] * 4 + [bool(row.error_best), False])
    bold = np.array(bold, dtype=bool)
    note = f"paper: the values reported in {PAPER_CITATION}, Table 1." + (f" {tests}" if tests else "")
    if fmt == "md":
        caption = TABLE1_CAPTION.format(pm=pm)
        return f"# Table 1\n\n{caption}\n\n{_markdown(rows, bold, headers)}\n\n{note}\n"
    caption = _latex_escape(TABLE1_CAPTION.format(pm="±")).replace("±", r"$\pm$")
    return _latex(rows, bold, headers, caption, _label("table1"), [0, 2], _latex_escape(note))


def _table2_caption(variant: str, extractors: str) -> str:
    paper = (
        " Paper: the paper's Inception FID."
        if variant == PAPER_VARIANT
        else (" Not comparable with the paper's Inception FID.")
    )
    return (
        f"Table 2 ({variant}): FID of generated minority-class images, lower is better; per cell the mean "
        f"over its generated classes, then mean{{pm}}std over seeds [95 % CI of the mean, Student t] (n = seeds). "
        "Bold: the lowest per dataset. real: the real-vs-real reference (ours: each class's training images "
        "against its real test images)."
        f"{paper} Features: {extractors or 'not recorded'}."
    )


def _table2_display(table: pd.DataFrame, pm: str, latex: bool = False):
    datasets = list(dict.fromkeys(table["dataset"]))
    paper = bool(table["fid_paper"].notna().any())
    headers = ["method"]
    for dataset in datasets:
        headers += [f"{dataset}", f"{dataset} (paper)"] if paper else [dataset]
    rows, bold = [], []
    for method in dict.fromkeys(table["method"]):
        line, marks = [str(method)], [False]
        for dataset in datasets:
            match = table[(table["method"] == method) & (table["dataset"] == dataset)]
            if match.empty:
                line.append(NONE if method == REAL else f"{NONE} (0)")
                marks.append(False)
                if paper:
                    line.append(NONE)
                    marks.append(False)
                continue
            r = match.iloc[0]
            ours = _cell(r["fid_mean"], r["fid_std"], 2, pm, r["fid_ci_low"], r["fid_ci_high"], latex)
            line.append(NONE if ours == NONE and method == REAL else f"{ours} ({r['n_seeds']})")
            marks.append(bool(r["fid_best"]))
            if paper:
                line.append(_num(r["fid_paper"], 2))
                marks.append(False)
        rows.append(line)
        bold.append(marks)
    return headers, rows, np.array(bold, dtype=bool).reshape(len(rows), len(headers))


def render_table2(tables: dict[str, pd.DataFrame], fmt: str = "md", tests: dict | None = None) -> str:
    """Table 2 as ``csv`` (all variants' tidy rows, a ``variant`` column apart), ``md`` or ``latex``.

    Markdown and LaTeX give one table per variant, each naming its feature extractor; ``tests``: the
    {variant: note} of :func:`table2_tests`.
    """
    _check_format(fmt)
    if not isinstance(tables, dict):
        raise BenchError(f"render_table2 expects the dict of table2(), got {type(tables).__name__}")
    tables = {v: t for v, t in tables.items() if t is not None and not t.empty}
    if fmt == "csv":
        frames = list(tables.values())
        return (
            pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=TABLE2_COLUMNS)
        ).to_csv(index=False)
    if not tables:
        return "# Table 2\n\nNo FID results in the store.\n" if fmt == "md" else "% Table 2: no results\n"
    parts = ["# Table 2\n"] if fmt == "md" else []
    for variant, table in tables.items():
        extractors = "; ".join(sorted({e for e in table["feature_extractor"] if isinstance(e, str) and e}))
        caption = _table2_caption(variant, extractors)
        test = (tests or {}).get(variant, "")
        if fmt == "md":
            headers, rows, bold = _table2_display(table, " ± ")
            parts.append(f"## {variant}\n\n{caption.format(pm=' ± ')}\n\n{_markdown(rows, bold, headers)}\n"
                         + (f"\n{test}\n" if test else ""))
        else:
            headers, rows, bold = _table2_display(table, r" $\pm$ ", latex=True)
            tex_caption = _latex_escape(caption.format(pm="±")).replace("±", r"$\pm$")
            note = (f"paper: {PAPER_CITATION}, Table 2. " if variant == PAPER_VARIANT else "") + test
            note = _latex_escape(note.strip())
            parts.append(_latex(rows, bold, headers, tex_caption, _label("table2", variant), [0], note))
    return "\n".join(parts)
