"""Figures 3 to 9 from hand-built cells frames (the columns of ``Store.cells()``) with known numbers."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from bench.errors import BenchError
from bench.reports import figures as F

PAIRS = ([3, 5], [1, 7])
ROC = {"roc": {"fpr": [0.0, 0.0, 0.5, 1.0], "tpr": [0.0, 0.6, 0.9, 1.0]}}


def quality(generated: float, real: float, fid: dict) -> dict:
    entry = {"ssim": {"generated": {"mean": generated, "std": 0.1}, "real": {"mean": real, "std": 0.1}}}
    for variant, value in fid.items():
        entry[variant] = {"metric": variant, "value": value, "kid": 0.0}
    return {"5": entry}


def cell(n, method="gan", ratio=0.1, seed=0, pair=(3, 5), p=0.8, params=None, status="done",
         dataset="mnist", protocol="binary", q=None, curves=ROC, train=(100, 10), artifacts=None):
    metrics = None
    if status == "done":
        metrics = {"accuracy": p, "balanced_accuracy": p, "g_mean": p - 0.1, "f_measure": p - 0.2,
                   "precision": p, "recall": p, "roc_auc": p}
        if q is not None:
            metrics["quality"] = q
    return {"id": n, "key": f"k{n}", "method": method, "params": params or {}, "dataset": dataset,
            "protocol": protocol, "pair": list(pair) if pair else None, "ratio": ratio, "seed": seed,
            "epochs": 1, "counts": {"train": list(train), "test": [50, 50], "classes": ["a", "b"]},
            "status": status, "metrics": metrics, "curves": curves if status == "done" else None,
            "error": None if status == "done" else "boom", "started_at": "", "finished_at": "",
            "duration_s": 1.0, "device": "cpu", "versions": {}, "artifacts": artifacts}


def frame(rows) -> pd.DataFrame:
    return pd.DataFrame([cell(n, **row) for n, row in enumerate(rows)])


@pytest.fixture
def full(tmp_path) -> tuple[pd.DataFrame, object]:
    """Every figure has data: 2 methods x 2 ratios x 2 seeds x 2 pairs, quality, ablation, phi sweep."""
    results = tmp_path / "results"
    image = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    rows = []
    for method in ("imbalanced", "gan"):
        art = f"artifacts/{method}"
        (results / art).mkdir(parents=True)
        mpimg.imsave(results / art / "samples.png", image, cmap="gray")
        for ratio in (0.1, 0.01):
            for seed in (0, 1):
                for pair in PAIRS:
                    q = quality(0.3, 0.25, {"fid-proxy": 10.0, "fid-inception": 50.0}) if method == "gan" else None
                    rows.append(dict(method=method, ratio=ratio, seed=seed, pair=pair, p=0.7 + seed / 10,
                                     q=q, artifacts=art))
    for knob, values in (("g_conv_layers", (3, 4, 5)), ("d_pool_layers", (0, 1))):
        for value in values:
            params = {"g_conv_layers": 5, "d_pool_layers": 0, "g_cbn_layers": 5, "phi": 1.0, knob: value}
            rows.append(dict(method="capsan", params=params, p=0.5 + value / 100))
    for phi in (0.5, 1.0):
        rows.append(dict(method=f"capsan[phi={phi}]", params={"phi": phi}, ratio=0.2, p=0.6 + phi / 10))
    rows.append(dict(method="gan", status="failed", ratio=0.1))
    return frame(rows), results


def test_every_figure_written_in_both_formats(full, tmp_path):
    cells, results = full
    out = F.write_figures(cells, tmp_path / "fig", formats=("png", "pdf"), results_dir=results)
    assert set(out) == set(F.FIGURES)
    for number, paths in out.items():
        assert isinstance(paths, list) and paths, (number, paths)
        assert {p.suffix for p in paths} == {".png", ".pdf"}
        assert all(p.name.startswith(f"figure{number}_") and p.stat().st_size > 0 for p in paths)
    assert (tmp_path / "fig" / "figure3_mnist_binary.png").is_file()
    assert {p.name for p in out[9]} >= {"figure9_mnist_binary_r0.1.pdf", "figure9_mnist_binary_r0.01.pdf"}


def test_deterministic_pdf(full, tmp_path):
    cells, _ = full
    first = F.figure_3(cells, tmp_path / "a", formats=("pdf", "png"))
    second = F.figure_3(cells, tmp_path / "b", formats=("pdf", "png"))
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes()


def test_missing_data_is_skipped_with_reason(tmp_path, caplog):
    caplog.set_level("INFO", logger="bench.reports.figures")
    cells = frame([dict(method="gan", seed=s, pair=p) for s in (0, 1) for p in PAIRS])  # no quality, no phi
    out = F.write_figures(cells, tmp_path, results_dir=None)
    for number in (4, 5, 6, 7, 8):  # skipped for want of data, not failed: a figure that raised is Failed
        assert type(out[number]) is F.Skipped and out[number], (number, out[number])
    assert "SSIM" in out[4] and "FID" in out[5] and "results_dir" in out[8]
    assert isinstance(out[3], list) and isinstance(out[9], list)
    assert F.figure_4(cells, tmp_path) == []
    assert "figure 4 skipped" in caplog.text
    assert not list(tmp_path.glob("figure4_*"))


def test_failed_partial_and_empty_cells_do_not_crash(tmp_path):
    rows = [dict(status="failed"), dict(curves=None, seed=1), dict(curves={"roc": {"fpr": [], "tpr": []}}),
            dict(q={"5": {"ssim": None, "fid-proxy": {"value": None}}}), dict(params=None, method="capsan")]
    cells = frame(rows)
    cells.loc[1, "metrics"] = None  # a done row whose metrics were lost
    out = F.write_figures(cells, tmp_path)
    assert isinstance(out[3], list) and out[3]
    assert all(type(out[n]) is F.Skipped for n in (4, 5, 6, 7, 8)), out
    assert isinstance(out[9], list)  # the one cell with a good ROC curve
    assert all(type(v) is F.Skipped for v in F.write_figures(pd.DataFrame(), tmp_path).values())
    assert all(type(v) is F.Skipped for v in F.write_figures(frame([dict(status="failed")]), tmp_path).values())


def test_a_figure_that_raises_is_failed_not_skipped(tmp_path, monkeypatch):
    def broken(cells, out_dir, formats):
        raise KeyError("a bug")

    monkeypatch.setitem(F._BUILDERS, 4, broken)
    cells = frame([dict(method="gan", seed=s, pair=p) for s in (0, 1) for p in PAIRS])
    out = F.write_figures(cells, tmp_path)
    assert type(out[4]) is F.Failed and out[4] == "KeyError: 'a bug'"
    assert isinstance(out[3], list) and out[3]  # the others are still drawn


def test_two_stage_mean_and_band():
    # seed 0: pairs .6 and .8 -> .7; seed 1: .9 (one pair only). Mean .8; band = t(.975, 1) * sd / sqrt 2.
    cells = frame([dict(p=0.6), dict(p=0.8, pair=PAIRS[1]), dict(p=0.9, seed=1)])
    row = F.accuracy_data(cells).iloc[0]
    half = 12.706204736 * np.std([0.7, 0.9], ddof=1) / np.sqrt(2)
    assert row["mean"] == pytest.approx(0.8)
    assert row["hi"] - row["mean"] == pytest.approx(half, rel=1e-6)
    assert row["n_seeds"] == 2


def test_figure3_marks_incomplete_rows_as_table3_does():
    """smote lost pair 1 vs 7 of seed 1 (failed): its point is incomplete in the figure's data and legend,
    and in Table 3; gan ran every pair of every seed."""
    from matplotlib.figure import Figure

    from bench.reports.figures import _draw_lines
    from bench.reports.table3 import table3

    rows = [dict(method=m, seed=s, pair=pair) for m in ("gan", "smote") for s in (0, 1) for pair in PAIRS]
    rows[-1]["status"] = "failed"
    cells = frame(rows)
    data = F.accuracy_data(cells).set_index("method")
    assert bool(data.loc["gan", "complete"]) and not bool(data.loc["smote", "complete"])
    table = table3(cells).set_index("method")
    assert bool(table.loc["gan", "complete"]) and not bool(table.loc["smote", "complete"])
    ax = Figure().subplots()
    _draw_lines(ax, data.reset_index(), "ratio", {"gan": (0.1, 0.2, 0.3), "smote": (0.3, 0.2, 0.1)})
    assert [t.get_text() for t in ax.legend().get_texts()] == ["gan", "smote (incomplete)"]


def test_roc_vertical_average():
    a = ([0.0, 1.0], [0.0, 1.0])  # the diagonal: tpr(0.5) = 0.5
    b = ([0.0, 0.0, 1.0], [0.0, 1.0, 1.0])  # perfect: the vertical step counts at its top, tpr(0) = 1
    grid = F.roc_grid()
    assert grid.size == 101 and grid[50] == pytest.approx(0.5)
    assert F.interpolate_roc(*b)[0] == pytest.approx(1.0)
    roc = F.mean_roc([a, b])
    assert roc["tpr"].iloc[50] == pytest.approx(0.75)
    assert roc["tpr"].iloc[0] == pytest.approx(0.5)
    assert roc["tpr"].iloc[-1] == pytest.approx(1.0)
    assert (roc["lo"] >= 0).all() and (roc["hi"] <= 1).all() and (roc["n"] == 2).all()
    assert roc["lo"].iloc[50] < 0.75 < roc["hi"].iloc[50]
    c = ([0.0, 0.2, 1.0], [0.0, 0.6, 1.0])  # linear in between: tpr(0.1) = 0.3
    assert F.interpolate_roc(*c)[10] == pytest.approx(0.3)


def test_roc_data_averages_pairs_per_seed_then_seeds():
    diag = {"roc": {"fpr": [0.0, 1.0], "tpr": [0.0, 1.0]}}
    perfect = {"roc": {"fpr": [0.0, 0.0, 1.0], "tpr": [0.0, 1.0, 1.0]}}
    # seed 0: diagonal and perfect pairs -> 0.75 at fpr .5; seed 1: perfect -> 1.0. Mean over seeds .875.
    cells = frame([dict(curves=diag), dict(curves=perfect, pair=PAIRS[1]), dict(curves=perfect, seed=1),
                   dict(curves=perfect, protocol="longtail", pair=None)])
    data = F.roc_data(cells)
    assert list(data) == [("mnist", 0.1)]
    roc = data[("mnist", 0.1)]
    assert roc["tpr"].iloc[50] == pytest.approx(0.875) and (roc["n"] == 2).all()


def test_fid_variants_never_share_a_panel(full):
    cells, _ = full
    panels = F.fid_panels(cells)
    assert set(panels) == {("mnist", "binary", "fid-inception"), ("mnist", "binary", "fid-proxy")}
    for (_, _, variant), panel in panels.items():
        assert set(panel["variant"]) == {variant}
    assert set(panels[("mnist", "binary", "fid-proxy")]["mean"]) == {10.0}
    assert set(panels[("mnist", "binary", "fid-inception")]["mean"]) == {50.0}


def test_ssim_generated_and_real(full):
    cells, _ = full
    data = F.ssim_data(cells)
    assert set(data["method"]) == {"gan"}
    assert set(data["generated"]) == {0.3} and set(data["real"]) == {0.25}


def test_ablation_holds_other_knobs_at_reference(full):
    cells, _ = full
    data = F.ablation_data(cells)
    assert set(data) == {("mnist", "binary", "g_conv_layers"), ("mnist", "binary", "d_pool_layers")}
    conv = data[("mnist", "binary", "g_conv_layers")].set_index("value")["mean"]
    # g_mean = p - 0.1 with p = 0.5 + value / 100 of the swept knob; the reference config (5, 0, 5) is run
    # in both sweeps (g_mean .45 and .40, same seed and pair), so its point is their mean .425
    assert conv.to_dict() == pytest.approx({3.0: 0.43, 4.0: 0.44, 5.0: 0.425})
    pool = data[("mnist", "binary", "d_pool_layers")].set_index("value")["mean"]
    assert pool.to_dict() == pytest.approx({0.0: 0.425, 1.0: 0.41})


def test_generated_counts_from_phi():
    assert F.n_generated(0.5, {"train": [100, 10]}) == pytest.approx(45.0)
    assert F.n_generated(1.0, {"train": [100, 10, 40]}) == pytest.approx(150.0)
    assert np.isnan(F.n_generated(1.0, {}))
    assert F.phi_of("capsan[phi=0.25]", {}) == 0.25
    assert F.phi_of("capsan[phi=0.25]", {"phi": 2}) == 2.0
    assert np.isnan(F.phi_of("smote", {}))


def test_bad_formats_rejected(full, tmp_path):
    with pytest.raises(BenchError, match="unknown report format 'gif'; valid formats: png, pdf"):
        F.figure_3(full[0], tmp_path, formats=("gif",))


def test_a_lone_point_shows_its_interval_as_an_error_bar_and_a_line_as_a_band():
    from matplotlib.collections import PolyCollection
    from matplotlib.container import ErrorbarContainer
    from matplotlib.figure import Figure

    from bench.reports.figures import _draw_lines

    one = pd.DataFrame({"ratio": [0.05], "method": ["gan"], "mean": [0.9], "lo": [0.85], "hi": [0.95]})
    two = pd.DataFrame({"ratio": [0.05, 0.1], "method": ["gan", "gan"], "mean": [0.9, 0.95], "lo": [0.85, 0.9],
                        "hi": [0.95, 0.99]})
    for summary, bar in ((one, True), (two, False)):
        ax = Figure().subplots()
        _draw_lines(ax, summary, "ratio", {"gan": (0.1, 0.2, 0.3)})
        bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
        assert bool(bars) is bar and bool(bands) is not bar  # one point: a bar; two: a band
        if bar:
            (segments,) = [c.get_segments() for c in bars[0].lines[2]]
            assert np.allclose(segments[0], [[0.05, 0.85], [0.05, 0.95]])  # from lo to hi


def test_figure5_draws_the_real_vs_real_fid_as_the_reference_line(tmp_path):
    def q(value, floor):
        return {"5": {"fid-proxy": {"value": value}, "real_vs_real": {"fid-proxy": {"value": floor}}}}

    cells = frame([dict(method="gan", ratio=r, seed=s, pair=p, q=q(20.0 + s, 4.0 + s))
                   for r in (0.1, 0.01) for s in (0, 1) for p in PAIRS])
    panel = F.fid_panels(cells)[("mnist", "binary", "fid-proxy")]
    real = panel[panel["method"] == F.REAL_IMAGES]
    assert list(real["mean"]) == [4.5, 4.5] and set(panel["method"]) == {"gan", F.REAL_IMAGES}
    assert list(panel[panel["method"] == "gan"]["mean"]) == [20.5, 20.5]
    (png,) = F.figure_5(cells, tmp_path, formats=("png",))
    assert png.stat().st_size > 0


def test_comparison_figures_leave_swept_variants_to_figures_6_and_7():
    cells = pd.DataFrame({"method": ["gan", "capsan", "capsan[phi=0.5]", "capsan[phi=0.5]"],
                          "dataset": ["mnist", "mnist", "mnist", "digits"], "protocol": ["binary"] * 4})
    kept = F.comparison_cells(cells)
    assert list(kept["method"]) == ["gan", "capsan", "capsan[phi=0.5]"]  # digits has variants only: kept
    assert list(kept["dataset"]) == ["mnist", "mnist", "digits"]


def test_ratio_ticks_are_the_levels_drawn_and_bands_stay_inside_the_metric_range():
    from matplotlib.collections import PolyCollection
    from matplotlib.figure import Figure

    from bench.reports.figures import _draw_lines, _ratio_axis

    ax = Figure().subplots()
    summary = pd.DataFrame({"ratio": [0.025, 0.1], "method": ["gan", "gan"], "mean": [0.9, 0.95],
                            "lo": [0.7, 0.9], "hi": [1.2, 1.05]})
    _draw_lines(ax, summary, "ratio", {"gan": (0.1, 0.2, 0.3)}, bounds=(0.0, 1.0))
    _ratio_axis(ax, summary["ratio"], "binary")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.025", "0.1"]
    assert ax.xaxis.get_minor_locator().tick_values(0.01, 1) == []  # no crowded minor labels
    (band,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
    ys = np.concatenate([path.vertices[:, 1] for path in band.get_paths()])
    assert ys.max() == pytest.approx(1.0) and ys.min() == pytest.approx(0.7)  # 1.2 and 1.05 clipped at 1


def test_figure9_legend_gives_the_area_under_the_mean_curve(tmp_path, monkeypatch):
    cells = frame([dict(method="gan", seed=s, pair=p) for s in (0, 1) for p in PAIRS])
    grid = F.roc_grid()
    curve = F.interpolate_roc(ROC["roc"]["fpr"], ROC["roc"]["tpr"], grid)
    expected = float(np.sum(np.diff(grid) * (curve[1:] + curve[:-1]) / 2))
    captured, save = {}, F._save

    def keep(fig, out_dir, stem, formats):  # read the legend back before the figure is saved
        captured["labels"] = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        return save(fig, out_dir, stem, formats)

    monkeypatch.setattr(F, "_save", keep)
    F.figure_9(cells, tmp_path, formats=("png",))
    assert captured["labels"] == [f"gan (n=2, AUC {expected:.3f})"]
