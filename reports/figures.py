"""The paper's figures (3 to 9) drawn from the tidy table (``reports/cells.py``) with seaborn/matplotlib, as PNG and PDF.

Choices, all deliberate:

* Input is only the cells frame of the results store. Cells that are not ``status == "done"`` or lack the
  value a figure needs are dropped silently; a figure with nothing left to draw is *skipped*: its
  ``figure_N`` logs the reason and returns ``[]``, and :func:`write_figures` returns the reason as a str.
  Any unexpected error inside one figure is also turned into a skip reason, so one bad cell never stops
  the other figures.
* Aggregation is the one of Table 3: per (group, seed) the pairs are averaged first, then the seed means
  give the mean and a 95 % Student-t interval ``mean ± t(0.975, n-1) · sd / sqrt(n)`` (no band with one
  seed). Seaborn's bootstrap interval is not used: it is random and not defined for 2 seeds.
* Methods are grouped by their label (``capsan[phi=0.5]`` stays its own line) except in figures 6 and 7,
  which group variants by the base method name (the text before ``[``) because the knob is the x axis.
* Colours: one look per method name (``reports/colors.py``): the same colour, line style and marker in every
  figure, run and report, 16 distinguishable colours and line styles beyond. Ratios (minority/majority) are drawn on a log x axis; for
  the ``subset`` protocol the "ratio" is the number of images per class, also on a log axis.
* Figure 4 draws, per method, the mean SSIM of generated images (solid) and one dashed grey line for real
  images: the real reference does not depend on the method, so it is averaged over all cells at a ratio.
  Classes in the cells' quality (``cells.Cells.quality``) are averaged per cell.
* Figure 5 keeps ``fid-inception`` and ``fid-proxy`` in separate panels (different feature spaces: the
  numbers are not comparable); :func:`fid_panels` builds one frame per (dataset, protocol, variant). Where
  the cells stored it, the real-vs-real FID (each class's training vs its test images) is the dashed grey
  "real images" line, as in Figure 4.
* Figure 6 (CapsAN ablation): a knob among ``g_conv_layers`` (C), ``d_pool_layers`` (P), ``g_cbn_layers``
  (BN) is plotted when it takes two or more values; the other knobs are held at their reference value
  (the most frequent value, ties to the larger), which is the default configuration of one-at-a-time
  sweeps. One line per ratio.
* Figure 7: the number of generated images of a cell is ``phi x sum_c (n_max - n_c)`` over the train counts
  (``phi x (n_majority - n_minority)`` for binary cells), phi from ``params["phi"]`` or the label
  ``method[phi=...]``. The figure is drawn per (dataset, protocol, ratio) and only when some method was run
  with two or more phi values; x is the mean count over the cells of one phi.
* Figure 8 tiles one ``samples.png`` per method: the cell chosen is the first by (ratio, seed, pair, id)
  whose file exists under ``results_dir / artifacts``.
* Figure 9 (ROC, binary cells): each curve is read as a step function: at an fpr shared by several points
  the highest tpr counts (the operating point reachable at that fpr), then tpr is linearly interpolated on
  101 evenly spaced fpr in [0, 1] (vertical averaging, Fawcett 2006). Pairs are averaged per seed, then
  mean and band over seeds, clipped to [0, 1]. One file per (dataset, ratio).
* Figures are built with ``matplotlib.figure.Figure`` and the Agg canvas, never pyplot, so no global
  figure registry or backend is touched and nothing stays open. PDF and PNG metadata carry no date or
  version, so the same cells give the same files. File names: ``figureN_<dataset>_<protocol>[_r<ratio>]``,
  lower case, characters outside ``[a-z0-9._-]`` replaced by ``-``.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before anything can pick an interactive backend

import matplotlib.image as mpimg  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator, NullLocator  # noqa: E402

from .aggregate import Grid, ci_bounds, summarize  # noqa: E402
from .cells import REAL as REAL_SOURCE  # noqa: E402
from .cells import as_cells, class_means, done, param  # noqa: E402
from .cells import metric as cell_metric  # noqa: E402
from .cells import number as finite_number  # noqa: E402
from .colors import method_looks as palette  # noqa: E402  (one look per method name)
from .formats import IMAGE_FORMATS, check_formats  # noqa: E402

log = logging.getLogger(__name__)

FIGURES = (3, 4, 5, 6, 7, 8, 9)
FORMATS = IMAGE_FORMATS
BASELINE = "imbalanced"
FID_VARIANTS = ("fid-inception", "fid-proxy")
KNOBS = {"g_conv_layers": "C", "d_pool_layers": "P", "g_cbn_layers": "BN"}
ABLATION_METHOD = "capsan"
REAL_IMAGES = "real images"  # the reference line of Figures 4 and 5 (real-vs-real SSIM and FID)
COMPARISON_FIGURES = (3, 4, 5, 8, 9)  # methods side by side: swept variants belong to Figures 6 and 7
FIG7_METRICS = {"accuracy": "accuracy", "g_mean": "G-mean", "f_measure": "F-measure"}
ROC_POINTS = 101
RATIO_DECIMALS = 10
DPI = 150
_METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None, "Producer": None, "Creator": None}}
_PHI_LABEL = re.compile(r"\[[^\]]*\bphi=([0-9.eE+-]+)")


class FigureSkipped(Exception):
    """A figure has nothing to draw; the message says why."""


# --------------------------------------------------------------------------- small helpers


def base_method(label) -> str:
    """``'capsan[phi=0.5]'`` -> ``'capsan'``."""
    return str(label).split("[", 1)[0]


def slug(*parts) -> str:
    text = "_".join(str(p) for p in parts if p is not None and str(p) != "")
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower())


def ratio_tag(ratio: float) -> str:
    return f"r{float(ratio):g}"


def method_order(methods: Iterable[str]) -> list[str]:
    return sorted(set(map(str, methods)), key=lambda m: ("0" if m == BASELINE else "1") + m)


def _cells(cells) -> pd.DataFrame:
    """Every stored cell, done or failed, with rounded ratios: the grid a row is complete against."""
    frame = as_cells(cells).frame.copy()
    frame["ratio"] = frame["ratio"].round(RATIO_DECIMALS)
    return frame[frame["ratio"].notna()]


def _done(cells) -> pd.DataFrame:
    return done(_cells(cells)).copy()


def _x_label(protocol: str) -> str:
    return "images per class" if protocol == "subset" else "imbalance ratio (minority / majority)"


def _save(fig: Figure, out_dir: Path, stem: str, formats: Sequence[str]) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    paths = []
    for fmt in formats:
        path = out_dir / f"{stem}.{fmt}"
        fig.savefig(path, format=fmt, dpi=DPI, bbox_inches="tight", metadata=_METADATA.get(fmt))
        paths.append(path)
    return paths


def _new_figure(n_panels: int, width: float = 4.8, height: float = 3.6):
    fig = Figure(figsize=(width * n_panels, height), layout="constrained")
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    return fig, list(axes)


def _draw_lines(ax, summary: pd.DataFrame, x: str, colours: dict, hue: str = "method", style: str = "-",
                bounds: tuple[float, float] = (-math.inf, math.inf)):
    """One line per hue value with its band; summary has x, hue, mean, lo, hi (and ``complete``: a line with
    an incomplete point says so in its label, as the tables never mark such a row best). The band is drawn
    inside the metric's ``bounds`` (a t interval of a bounded metric can pass them; its values cannot)."""
    for name in method_order(summary[hue]) if hue == "method" else sorted(summary[hue].unique()):
        part = summary[summary[hue] == name].sort_values(x)
        label = str(name) if part.get("complete", pd.Series(True)).all() else f"{name} (incomplete)"
        part = part.assign(lo=part["lo"].clip(*bounds), hi=part["hi"].clip(*bounds))
        given = colours.get(name)
        # a method's look ({color, linestyle, marker}); a plain colour for the other lines (real images, knobs)
        found = given if isinstance(given, dict) else {"color": given, "linestyle": style, "marker": "o"}
        colour = found["color"]
        sns.lineplot(x=part[x].to_numpy(), y=part["mean"].to_numpy(), ax=ax, color=colour, marker=found["marker"],
                     linestyle=found["linestyle"], label=label, errorbar=None, sort=False)
        if (part["hi"] > part["lo"]).any():
            if len(part) > 1:
                ax.fill_between(part[x], part["lo"], part["hi"], color=colour, alpha=0.2, linewidth=0)
            else:  # one point has no band to draw: its interval as an error bar
                mean = part["mean"].to_numpy()
                ax.errorbar(part[x].to_numpy(), mean, yerr=[mean - part["lo"].to_numpy(), part["hi"].to_numpy() - mean],
                            color=colour, capsize=3, linewidth=1, fmt="none")


def _ratio_axis(ax, ratios: Iterable[float], protocol: str) -> None:
    """A log axis with a labelled tick at each level drawn (no crowded minor labels like 3x10^-2)."""
    levels = sorted({float(r) for r in ratios})
    ax.set_xscale("log")
    ax.set_xticks(levels, [f"{r:g}" for r in levels])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel(_x_label(protocol))


def _legend(ax, **options) -> None:
    """The legend beside the axes, so it never hides a curve however many methods there are."""
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, **options)


def comparison_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """The cells that compare methods: per (dataset, protocol), swept variants (``capsan[phi=0.5]``) are left
    to Figures 6 and 7 when plain methods are there too; a store of variants only keeps them."""
    if len(cells) == 0:
        return cells
    variant = cells["method"].astype(str).str.contains("[", regex=False)
    plain = (~variant).groupby([cells["dataset"], cells["protocol"]]).transform("any")
    return cells[~(variant & plain)]


def _groups(frame: pd.DataFrame, keys: Sequence[str]):
    return frame.groupby(list(keys), sort=True)


# --------------------------------------------------------------------------- figure 3


def accuracy_data(cells: pd.DataFrame, metric: str = "balanced_accuracy") -> pd.DataFrame:
    """Per (dataset, protocol, method, ratio): seed mean, 95 % band, n and ``complete`` (Table 3's rule:
    every grid pair in every grid seed) of ``metric``."""
    keys = ["dataset", "protocol", "method", "ratio"]
    finished = _done(cells)
    finished[metric] = cell_metric(finished, metric)
    grid = Grid.of(_cells(cells), keys) if len(finished) else None
    return summarize(finished, keys, metric, grid)


def _figure_3(cells, out_dir, formats):
    data = accuracy_data(cells)
    if data.empty:
        raise FigureSkipped("no done cell with balanced_accuracy")
    paths = []
    colours = palette(data["method"])
    for (dataset, protocol), group in _groups(data, ["dataset", "protocol"]):
        fig, (ax,) = _new_figure(1, 6.0, 4.2)
        _draw_lines(ax, group, "ratio", colours, bounds=(0.0, 1.0))
        ax.set(ylabel="balanced accuracy", title=f"{dataset} ({protocol})")
        _ratio_axis(ax, group["ratio"], protocol)
        _legend(ax)
        paths += _save(fig, out_dir, slug("figure3", dataset, protocol), formats)
    return paths


# --------------------------------------------------------------------------- figure 4


def ssim_data(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per done cell with SSIM: dataset, protocol, method, ratio, seed, pair, generated, real."""
    cells = as_cells(cells)
    columns = ["dataset", "protocol", "method", "ratio", "seed", "pair", "generated", "real"]
    means = class_means(cells, "ssim", "generated.mean"), class_means(cells, "ssim", "real.mean")
    rows = []
    for index, cell in _done(cells).iterrows():
        generated, real = (float(m.get(index, math.nan)) for m in means)
        if not (math.isnan(generated) and math.isnan(real)):
            rows.append([cell[c] for c in columns[:6]] + [generated, real])
    return pd.DataFrame(rows, columns=columns)


def _figure_4(cells, out_dir, formats):
    data = ssim_data(cells)
    if data.empty or data["generated"].isna().all():
        raise FigureSkipped("no cell has quality SSIM metrics (metrics['quality'][class]['ssim'])")
    keys = ["dataset", "protocol", "method", "ratio"]
    generated = summarize(data, keys, "generated")
    real = summarize(data.assign(method=REAL_IMAGES), keys, "real")
    colours = palette(generated["method"])
    paths = []
    for (dataset, protocol), group in _groups(generated, ["dataset", "protocol"]):
        fig, (ax,) = _new_figure(1, 6.0, 4.2)
        _draw_lines(ax, group, "ratio", colours, bounds=(-1.0, 1.0))
        ref = real[(real["dataset"] == dataset) & (real["protocol"] == protocol)]
        if not ref.empty:
            _draw_lines(ax, ref, "ratio", {REAL_IMAGES: "0.4"}, hue="method", style="--", bounds=(-1.0, 1.0))
        ax.set(ylabel="SSIM (lower = more diverse)", title=f"{dataset} ({protocol}): diversity")
        _ratio_axis(ax, group["ratio"], protocol)
        _legend(ax)
        paths += _save(fig, out_dir, slug("figure4", dataset, protocol), formats)
    return paths


# --------------------------------------------------------------------------- figure 5


def fid_data(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per (done cell, FID variant): ..., variant, value (mean over the cell's classes)."""
    cells = as_cells(cells)
    columns = ["dataset", "protocol", "method", "ratio", "seed", "pair", "variant", "value"]
    means = {v: (class_means(cells, v, "value"), class_means(cells, v, "value", REAL_SOURCE)) for v in FID_VARIANTS}
    rows = []
    for index, cell in _done(cells).iterrows():
        for variant in FID_VARIANTS:
            value, floor = (float(m.get(index, math.nan)) for m in means[variant])
            if not math.isnan(value):
                rows.append([cell[c] for c in columns[:6]] + [variant, value])
            if not math.isnan(floor):  # the class's real train vs test images: the reference line
                rows.append([cell[c] for c in columns[:2]] + [REAL_IMAGES] + [cell[c] for c in columns[3:6]]
                            + [variant, floor])
    return pd.DataFrame(rows, columns=columns)


def fid_panels(cells: pd.DataFrame) -> dict[tuple[str, str, str], pd.DataFrame]:
    """``{(dataset, protocol, variant): summary}``: one panel per variant, never two variants in one."""
    data = fid_data(cells)
    panels = {}
    if data.empty:
        return panels
    for (dataset, protocol, variant), group in _groups(data, ["dataset", "protocol", "variant"]):
        summary = summarize(group, ["method", "ratio"], "value")
        summary.insert(0, "variant", variant)
        panels[(dataset, protocol, variant)] = summary
    return panels


def _figure_5(cells, out_dir, formats):
    panels = fid_panels(cells)
    if not panels:
        raise FigureSkipped("no cell has FID metrics (metrics['quality'][class]['fid-inception'|'fid-proxy'])")
    methods = pd.concat(panels.values())["method"]
    colours = palette(methods[methods != REAL_IMAGES])
    paths = []
    for dataset, protocol in sorted({k[:2] for k in panels}):
        variants = [v for v in FID_VARIANTS if (dataset, protocol, v) in panels]
        fig, axes = _new_figure(len(variants), 5.2, 4.0)
        for ax, variant in zip(axes, variants, strict=True):
            panel = panels[(dataset, protocol, variant)]
            _draw_lines(ax, panel[panel["method"] != REAL_IMAGES], "ratio", colours, bounds=(0.0, math.inf))
            if (panel["method"] == REAL_IMAGES).any():
                _draw_lines(ax, panel[panel["method"] == REAL_IMAGES], "ratio", {REAL_IMAGES: "0.4"}, style="--",
                            bounds=(0.0, math.inf))
            ax.set(ylabel=f"{variant} (lower = better)", title=f"{dataset} ({protocol}): {variant}")
            _ratio_axis(ax, panel["ratio"], protocol)
            _legend(ax)
        paths += _save(fig, out_dir, slug("figure5", dataset, protocol), formats)
    return paths


# --------------------------------------------------------------------------- figure 6


def ablation_data(cells: pd.DataFrame, metric: str = "g_mean") -> dict[tuple[str, str, str], pd.DataFrame]:
    """``{(dataset, protocol, knob): summary over (ratio, value)}`` for every CapsAN knob that varies."""
    finished = _done(cells)
    finished = finished[finished["method"].map(base_method) == ABLATION_METHOD] if len(finished) else finished
    out = {}
    if finished.empty:
        return out
    finished = finished.copy()
    finished[metric] = cell_metric(finished, metric)
    for knob in KNOBS:
        finished[knob] = param(finished, knob)
    for (dataset, protocol), group in _groups(finished, ["dataset", "protocol"]):
        reference = {}
        for knob in KNOBS:
            counts = group[knob].dropna().value_counts()
            if len(counts):
                reference[knob] = max(counts.index, key=lambda v, c=counts: (c[v], v))
        for knob in KNOBS:
            if group[knob].dropna().nunique() < 2:
                continue
            mask = group[knob].notna()
            for other, value in reference.items():
                if other != knob:
                    mask &= group[other] == value
            summary = summarize(group[mask], ["ratio", knob], metric).rename(columns={knob: "value"})
            if summary["value"].nunique() >= 2:
                out[(dataset, protocol, knob)] = summary
    return out


def _figure_6(cells, out_dir, formats):
    data = ablation_data(cells)
    if not data:
        raise FigureSkipped("no capsan cells with a varying g_conv_layers / d_pool_layers / g_cbn_layers")
    paths = []
    for dataset, protocol in sorted({k[:2] for k in data}):
        knobs = [k for k in KNOBS if (dataset, protocol, k) in data]
        fig, axes = _new_figure(len(knobs), 4.4, 3.6)
        for ax, knob in zip(axes, knobs, strict=True):
            summary = data[(dataset, protocol, knob)].assign(line=lambda f: f["ratio"].map(ratio_tag))
            lines = sorted(summary["line"].unique())
            colours = dict(zip(lines, sns.color_palette("viridis", len(lines)), strict=True))
            _draw_lines(ax, summary, "value", colours, hue="line", bounds=(0.0, 1.0))
            ax.set(xlabel=f"{KNOBS[knob]} ({knob})", ylabel="G-mean", title=f"{dataset}: {KNOBS[knob]}")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # layer counts: no 2.5 layers
            ax.legend(fontsize="small", title="ratio")
        paths += _save(fig, out_dir, slug("figure6", dataset, protocol), formats)
    return paths


# --------------------------------------------------------------------------- figure 7


def phi_of(method, params) -> float:
    """phi from ``params['phi']``, else from a label like ``capsan[phi=0.5]``; NaN when unknown."""
    if isinstance(params, dict) and params.get("phi") is not None:
        return finite_number(params["phi"])
    match = _PHI_LABEL.search(str(method))
    return finite_number(match.group(1)) if match else math.nan


def n_generated(phi: float, counts) -> float:
    """``phi x sum_c (max - n_c)`` over the train class counts; NaN without counts."""
    train = counts.get("train") if isinstance(counts, dict) else None
    try:
        train = [float(n) for n in train]
    except (TypeError, ValueError):
        return math.nan
    if len(train) < 2 or math.isnan(phi):
        return math.nan
    top = max(train)
    return phi * sum(top - n for n in train)


def generated_data(cells: pd.DataFrame) -> dict[tuple[str, str, float], pd.DataFrame]:
    """``{(dataset, protocol, ratio): frame}`` with method (base name), phi, n_generated, seed, pair, metrics.

    Only groups where some method has two or more phi values are kept.
    """
    finished = _done(cells)
    rows = []
    for _, cell in finished.iterrows():
        phi = phi_of(cell["method"], cell["params"])
        count = n_generated(phi, cell["counts"])
        if math.isnan(count):
            continue
        metrics = {m: float(cell.get(m, math.nan)) for m in FIG7_METRICS}
        rows.append({"dataset": cell["dataset"], "protocol": cell["protocol"], "ratio": cell["ratio"],
                     "method": base_method(cell["method"]), "phi": phi, "n_generated": count,
                     "seed": cell["seed"], "pair": cell["pair"], **metrics})
    out = {}
    if not rows:
        return out
    frame = pd.DataFrame(rows)
    for key, group in _groups(frame, ["dataset", "protocol", "ratio"]):
        if (group.groupby("method")["phi"].nunique() >= 2).any():
            out[key] = group.reset_index(drop=True)
    return out


def _figure_7(cells, out_dir, formats):
    data = generated_data(cells)
    if not data:
        raise FigureSkipped("no method was run with two or more phi values (number of generated images)")
    paths = []
    for (dataset, protocol, ratio), group in data.items():
        colours = palette(group["method"])
        x = group.groupby(["method", "phi"])["n_generated"].mean().rename("x")
        fig, axes = _new_figure(len(FIG7_METRICS), 4.4, 3.6)
        for ax, (metric, label) in zip(axes, FIG7_METRICS.items(), strict=True):
            summary = summarize(group, ["method", "phi"], metric).join(x, on=["method", "phi"])
            _draw_lines(ax, summary, "x", colours, bounds=(0.0, 1.0))
            ax.set(xlabel="generated images", ylabel=label, title=f"{dataset} ({protocol}) {ratio_tag(ratio)}")
            if ax is axes[-1]:
                _legend(ax)
            elif ax.get_legend() is not None:  # one legend for the row of panels
                ax.get_legend().remove()
        paths += _save(fig, out_dir, slug("figure7", dataset, protocol, ratio_tag(ratio)), formats)
    return paths


# --------------------------------------------------------------------------- figure 8


def sample_images(cells: pd.DataFrame, results_dir) -> dict[tuple[str, str], dict[str, tuple[Path, str]]]:
    """``{(dataset, protocol): {method: (samples.png path, caption)}}``, one existing file per method."""
    finished = _done(cells)
    out: dict[tuple[str, str], dict[str, tuple[Path, str]]] = {}
    if finished.empty or results_dir is None:
        return out
    finished = finished.sort_values(["dataset", "protocol", "method", "ratio", "seed", "pair", "id"], kind="stable")
    for _, cell in finished.iterrows():
        chosen = out.setdefault((cell["dataset"], cell["protocol"]), {})
        if cell["method"] in chosen or not isinstance(cell["artifacts"], str) or not cell["artifacts"]:
            continue
        path = Path(results_dir) / cell["artifacts"] / "samples.png"
        if path.is_file():
            chosen[cell["method"]] = (path, f"{ratio_tag(cell['ratio'])} {cell['pair']} s{cell['seed']}")
    return {key: value for key, value in out.items() if value}


def _figure_8(cells, out_dir, formats, results_dir=None):
    if results_dir is None:
        raise FigureSkipped("results_dir not given: samples.png files cannot be found")
    data = sample_images(cells, results_dir)
    if not data:
        raise FigureSkipped("no done cell has an artifacts/.../samples.png")
    paths = []
    for (dataset, protocol), chosen in sorted(data.items()):
        methods = method_order(chosen)
        images = {method: mpimg.imread(chosen[method][0]) for method in methods}
        ncols = min(4, len(methods))
        nrows = math.ceil(len(methods) / ncols)
        aspect = max(image.shape[0] / image.shape[1] for image in images.values())  # rows as tall as needed
        fig = Figure(figsize=(3.2 * ncols, (3.2 * aspect + 0.7) * nrows + 0.4), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax in axes:
            ax.axis("off")
        for ax, method in zip(axes, methods, strict=False):
            caption, image = chosen[method][1], images[method]
            ax.imshow(image, cmap="gray" if image.ndim == 2 else None, interpolation="nearest")
            ax.set_title(f"{method}\n{caption}", fontsize="small")
        fig.suptitle(f"{dataset} ({protocol}): generated samples")
        paths += _save(fig, out_dir, slug("figure8", dataset, protocol), formats)
    return paths


# --------------------------------------------------------------------------- figure 9


def roc_grid(points: int = ROC_POINTS) -> np.ndarray:
    return np.linspace(0.0, 1.0, points)


def interpolate_roc(fpr: Sequence[float], tpr: Sequence[float], grid: np.ndarray | None = None) -> np.ndarray:
    """tpr of one ROC curve at the grid's fpr: the highest tpr at a repeated fpr, then linear in between."""
    grid = roc_grid() if grid is None else np.asarray(grid, dtype=float)
    fpr = np.asarray(fpr, dtype=float)
    tpr = np.asarray(tpr, dtype=float)
    if fpr.shape != tpr.shape or fpr.size == 0:
        raise ValueError("fpr and tpr must be non-empty and of the same length")
    keep = np.isfinite(fpr) & np.isfinite(tpr)
    frame = pd.DataFrame({"fpr": fpr[keep], "tpr": tpr[keep]}).groupby("fpr")["tpr"].max()
    if frame.empty:
        raise ValueError("no finite ROC point")
    return np.interp(grid, frame.index.to_numpy(), frame.to_numpy())


def mean_roc(curves: Iterable[tuple[Sequence[float], Sequence[float]]], grid: np.ndarray | None = None,
             level: float = 0.95) -> pd.DataFrame:
    """Vertical average of ``(fpr, tpr)`` curves: columns fpr, tpr (mean), lo, hi (t band, in [0, 1]), n."""
    grid = roc_grid() if grid is None else np.asarray(grid, dtype=float)
    stack = np.array([interpolate_roc(f, t, grid) for f, t in curves], dtype=float).reshape(-1, grid.size)
    n = stack.shape[0]
    if n == 0:
        raise ValueError("no ROC curve to average")
    mean = stack.mean(axis=0)
    if n == 1:  # one curve: a line, no band
        low, high = mean, mean
    else:  # the same Student-t interval as every table, point by point on the grid
        low, high = ci_bounds(mean, stack.std(0, ddof=1), np.full(mean.shape, n), level)
    return pd.DataFrame({"fpr": grid, "tpr": mean, "lo": np.clip(low, 0, 1), "hi": np.clip(high, 0, 1), "n": n})


def _roc_points(curves):
    roc = curves.get("roc") if isinstance(curves, dict) else None
    if not isinstance(roc, dict):
        return None
    fpr, tpr = roc.get("fpr"), roc.get("tpr")
    if not isinstance(fpr, list) or not isinstance(tpr, list) or len(fpr) != len(tpr) or not fpr:
        return None
    return fpr, tpr


def roc_data(cells: pd.DataFrame, grid: np.ndarray | None = None) -> dict[tuple[str, float], pd.DataFrame]:
    """``{(dataset, ratio): frame}`` with method, fpr, tpr, lo, hi, n: binary cells, pairs averaged per seed."""
    grid = roc_grid() if grid is None else grid
    finished = _done(cells)
    finished = finished[finished["protocol"] == "binary"]
    per_seed: dict[tuple, list[np.ndarray]] = {}
    for _, cell in finished.iterrows():
        points = _roc_points(cell["curves"])
        if points is None:
            continue
        try:
            tpr = interpolate_roc(*points, grid)
        except ValueError:
            continue
        per_seed.setdefault((cell["dataset"], cell["ratio"], cell["method"], cell["seed"]), []).append(tpr)
    grouped: dict[tuple, list] = {}
    for (dataset, ratio, method, _seed), tprs in sorted(per_seed.items(), key=lambda kv: str(kv[0])):
        grouped.setdefault((dataset, ratio, method), []).append((grid, np.mean(tprs, axis=0)))
    out: dict[tuple[str, float], list] = {}
    for (dataset, ratio, method), seed_curves in grouped.items():
        out.setdefault((dataset, ratio), []).append(mean_roc(seed_curves, grid).assign(method=method))
    return {key: pd.concat(parts, ignore_index=True) for key, parts in sorted(out.items())}


def _figure_9(cells, out_dir, formats):
    data = roc_data(cells)
    if not data:
        raise FigureSkipped("no done binary cell has curves['roc']")
    paths = []
    for (dataset, ratio), frame in data.items():
        colours = palette(frame["method"])
        fig, (ax,) = _new_figure(1, 5.2, 5.0)
        for method in method_order(frame["method"]):
            part = frame[frame["method"] == method]
            fpr, tpr = part["fpr"].to_numpy(), part["tpr"].to_numpy()
            auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))  # trapezoids under the mean curve
            found = colours[method]
            sns.lineplot(x=part["fpr"].to_numpy(), y=part["tpr"].to_numpy(), ax=ax, color=found["color"],
                         linestyle=found["linestyle"], label=f"{method} (n={int(part['n'].iloc[0])}, AUC {auc:.3f})",
                         errorbar=None, sort=False)
            ax.fill_between(part["fpr"], part["lo"], part["hi"], color=found["color"], alpha=0.15, linewidth=0)
        ax.plot([0, 1], [0, 1], color="0.6", linestyle=":", linewidth=1)
        ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate",
               title=f"{dataset} (binary) {ratio_tag(ratio)}: mean ROC")
        ax.legend(fontsize="small", loc="lower right")
        paths += _save(fig, out_dir, slug("figure9", dataset, "binary", ratio_tag(ratio)), formats)
    return paths


# --------------------------------------------------------------------------- public entry points

_BUILDERS = {3: _figure_3, 4: _figure_4, 5: _figure_5, 6: _figure_6, 7: _figure_7, 8: _figure_8, 9: _figure_9}


def _check_formats(formats) -> tuple[str, ...]:
    return tuple(check_formats(formats, IMAGE_FORMATS))


class Skipped(str):
    """Why a figure was not drawn: the store lacks its data (no FID, no phi sweep, ...). Not an error."""


class Failed(str):
    """Why a figure could not be drawn although its data is there: it raised (a bug). ``bench report``
    exits non-zero on one."""


def _run(number: int, cells, out_dir, formats, **kwargs) -> list[Path] | Skipped | Failed:
    """The files written, why the figure was skipped, or why it failed (each logged)."""
    formats = _check_formats(formats)
    cells = as_cells(cells)
    if number in COMPARISON_FIGURES:
        cells = cells.where(cells.frame.index.isin(comparison_cells(cells.frame).index))
    try:
        paths = _BUILDERS[number](cells, Path(out_dir), formats, **kwargs)
    except FigureSkipped as skip:
        reason = Skipped(skip)
    except Exception as error:  # one figure must not stop the others; the reason is kept and logged
        log.exception("figure %d failed", number)
        return Failed(f"{type(error).__name__}: {error}".splitlines()[0])
    else:
        if paths:
            return paths
        reason = Skipped("nothing to draw")
    log.info("figure %d skipped: %s", number, reason)  # returned too: bench report says it once, as a note
    return reason


def _paths(result) -> list[Path]:
    return result if isinstance(result, list) else []


def figure_3(cells, out_dir, formats=FORMATS) -> list[Path]:
    """Balanced accuracy vs ratio, one line per method, 95 % band over seeds; per dataset and protocol."""
    return _paths(_run(3, cells, out_dir, formats))


def figure_4(cells, out_dir, formats=FORMATS) -> list[Path]:
    """SSIM diversity of generated images vs ratio per method, real-image reference dashed."""
    return _paths(_run(4, cells, out_dir, formats))


def figure_5(cells, out_dir, formats=FORMATS) -> list[Path]:
    """FID vs ratio, one panel per FID variant (fid-inception, fid-proxy), never mixed."""
    return _paths(_run(5, cells, out_dir, formats))


def figure_6(cells, out_dir, formats=FORMATS) -> list[Path]:
    """CapsAN ablation: G-mean vs C, P, BN (one panel per knob that varies)."""
    return _paths(_run(6, cells, out_dir, formats))


def figure_7(cells, out_dir, formats=FORMATS) -> list[Path]:
    """Accuracy, G-mean and F-measure vs the number of generated images (phi sweeps)."""
    return _paths(_run(7, cells, out_dir, formats))


def figure_8(cells, out_dir, formats=FORMATS, results_dir=None) -> list[Path]:
    """One samples.png per method tiled in a grid; ``results_dir`` resolves the artifacts folders."""
    return _paths(_run(8, cells, out_dir, formats, results_dir=results_dir))


def figure_9(cells, out_dir, formats=FORMATS) -> list[Path]:
    """Mean ROC over seeds (vertical averaging on 101 fpr points) per method; per dataset and ratio."""
    return _paths(_run(9, cells, out_dir, formats))


def write_figures(cells, out_dir, which=FIGURES, formats=FORMATS,
                  results_dir=None) -> dict[int, list[Path] | Skipped | Failed]:
    """Write the figures in ``which``: ``{number: files written | why it was skipped | why it failed}``."""
    formats = _check_formats(formats)
    cells = as_cells(cells)  # the tidy table, once for every figure
    out: dict[int, list[Path] | str] = {}
    for number in which:
        if number not in _BUILDERS:
            out[number] = Skipped(f"no figure {number}: choose from {list(FIGURES)}")
            continue
        kwargs = {"results_dir": results_dir} if number == 8 else {}
        out[number] = _run(number, cells, out_dir, formats, **kwargs)
    return out
