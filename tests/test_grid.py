"""Presets, grid expansion and cell keys."""

import dataclasses
import re

import pytest

from bench.errors import BenchError
from bench.grid import Preset, build_grid, load_preset, parse_pairs, preset_names
from bench.methods import method_names


def _config(**kw):
    base = dict(name="t", methods=["imbalanced", "smote"], datasets=["digits"], ratios=[0.1, 0.05], seeds=2,
                pairs="default", epochs=2)
    base.update(kw)
    return Preset(**base)


def test_presets_are_shipped_and_load():
    assert {"smoke", "quick", "paper-table3"} <= set(preset_names())
    quick = load_preset("quick")
    assert quick.datasets == ["digits"] and quick.ratios == [0.1, 0.025] and quick.seeds == 3
    assert {"imbalanced", "smote", "adasyn"} <= set(quick.methods)
    table3 = load_preset("paper-table3")
    assert table3.ratios == [0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.02] and table3.seeds == 10
    assert table3.datasets == ["mnist"]
    for name in preset_names():
        assert build_grid(load_preset(name))  # every shipped preset expands to a valid grid


def test_grid_is_the_full_product_with_unique_keys():
    cells = build_grid(_config())
    assert len(cells) == 2 * 2 * 3 * 2  # methods x ratios x default pairs x seeds
    assert len({c.key for c in cells}) == len(cells)
    assert {c.pair for c in cells} == {(3, 5), (4, 9), (0, 6)}
    assert [c.seed for c in cells[:12]] == [0] * 12  # seeds outermost: whole seeds finish first


def test_keys_are_stable_and_depend_on_what_defines_the_cell():
    a = build_grid(_config())
    b = build_grid(_config())
    assert [c.key for c in a] == [c.key for c in b]
    more_epochs = build_grid(_config(epochs=3))
    assert not {c.key for c in a} & {c.key for c in more_epochs}
    other_param = build_grid(_config(method_params={"smote": {"k_neighbors": 3}}))
    changed = {c.key for c in other_param} ^ {c.key for c in a}
    assert changed and all(c.method == "smote" for c in other_param if c.key in changed)


def test_all_pairs_and_explicit_pairs():
    assert len(build_grid(_config(methods=["imbalanced"], ratios=[0.1], seeds=1, pairs="all"))) == 90
    cells = build_grid(_config(pairs=parse_pairs("1:7,7:1")))
    assert {c.pair for c in cells} == {(1, 7), (7, 1)}


@pytest.mark.parametrize("overrides, message", [
    ({"methods": ["nope"]}, lambda: f"unknown method 'nope'; valid names: {', '.join(method_names())}"),
    ({"datasets": ["nope"]}, "unknown dataset 'nope'; valid names:"),
    ({"methods": ["smote", "smote"]}, "listed twice"),
    ({"ratios": [0.1, 1.5]}, r"outside \(0, 1\]"),
    ({"ratios": []}, "no ratios"),
    ({"methods": []}, "no methods"),
    ({"seeds": 0}, "at least 1"),
    ({"epochs": 0}, "at least 1"),
    ({"pairs": [[3, 3]]}, "same class"),
    ({"pairs": [[3, 12]]}, "does not exist"),
    ({"pairs": [[3, 5], [3, 5]]}, "listed twice"),
    ({"protocol": "nope"}, "unknown protocol"),
    ({"method_params": {"smote": {"k": 3}}}, "has no parameter k; valid parameters: classifier, classifier_schedule, k_neighbors"),
])
def test_bad_configurations_are_one_line_errors(overrides, message):
    if callable(message):  # every registered name, from the registry: a new built-in needs no edit here
        message = f"^{re.escape(message())}$"
    with pytest.raises(BenchError, match=message) as info:
        build_grid(_config(**overrides))
    assert "\n" not in str(info.value)


def test_pair_syntax_and_unknown_preset():
    with pytest.raises(BenchError, match="MAJORITY:MINORITY"):
        parse_pairs("3-5")
    with pytest.raises(BenchError, match="unknown preset 'nope'; valid names: .*quick"):
        load_preset("nope")


def test_preset_from_a_file_with_per_dataset_epochs(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('methods = ["imbalanced"]\ndatasets = ["digits", "mnist"]\nratios = [0.1]\n'
                    'epochs = { digits = 7, default = 2 }\n')
    config = load_preset(str(path))
    assert config.name == "mine" and config.epochs_for("digits") == 7 and config.epochs_for("mnist") == 2
    path.write_text('methods = ["imbalanced"]\ncolour = "red"\n')
    with pytest.raises(BenchError, match="unknown keys colour"):
        load_preset(str(path))


def test_a_sweep_makes_one_labelled_variant_per_combination():
    config = Preset(name="t", methods=["imbalanced", "capsan"], datasets=["digits"], ratios=[0.1], seeds=1,
                       pairs=[[3, 5]], epochs=1, method_params={"capsan": {"pi": 0.3}},
                       sweep={"capsan": {"phi": [0.5, 1.0], "pt_weight": [0.0, 0.1]}})
    cells = build_grid(config)
    variants = sorted(c.variant for c in cells if c.method == "capsan")
    assert variants == ["capsan[phi=0.5,pt_weight=0.0]", "capsan[phi=0.5,pt_weight=0.1]",
                        "capsan[phi=1.0,pt_weight=0.0]", "capsan[phi=1.0,pt_weight=0.1]"]
    capsan = [c for c in cells if c.method == "capsan"]
    assert all(c.params["pi"] == 0.3 for c in capsan)  # the preset's parameters stay under the sweep
    assert len({c.key for c in capsan}) == 4
    assert [c.variant for c in cells if c.method == "imbalanced"] == [""]
    with pytest.raises(BenchError, match="sweep names smote, which the run does not include"):
        build_grid(dataclasses.replace(config, sweep={"smote": {"k_neighbors": [3]}}))
    with pytest.raises(BenchError, match="must be a non-empty list"):
        build_grid(dataclasses.replace(config, sweep={"capsan": {"phi": 0.5}}))


def test_a_list_of_sweeps_is_their_union_and_a_shared_point_runs_once():
    config = Preset(name="t", methods=["capsan"], datasets=["digits"], ratios=[0.1], seeds=1, pairs=[[3, 5]],
                       epochs=1, sweep={"capsan": [{"g_conv_layers": [4, 5]}, {"d_pool_layers": [0, 1]}]})
    cells = build_grid(config)
    # 5 conv layers and 0 pools are both the defaults: that point is one cell, under the first label
    assert [c.variant for c in cells] == ["capsan[g_conv_layers=4]", "capsan[g_conv_layers=5]",
                                          "capsan[d_pool_layers=1]"]
    assert [(c.params["g_conv_layers"], c.params["d_pool_layers"]) for c in cells] == [(4, 0), (5, 0), (5, 1)]
    assert len({c.key for c in cells}) == 3
    with pytest.raises(BenchError, match="must be a table"):
        build_grid(dataclasses.replace(config, sweep={"capsan": [{"phi": [0.5]}, 3]}))
    with pytest.raises(BenchError, match="must be a non-empty list"):
        build_grid(dataclasses.replace(config, sweep={"capsan": [{"phi": []}]}))


def test_the_paper_fig6_preset_moves_one_knob_at_a_time():
    cells = build_grid(load_preset("paper-fig6"))
    knobs = {(c.params["g_conv_layers"], c.params["d_pool_layers"], c.params["g_cbn_layers"]) for c in cells}
    defaults = (5, 0, 5)
    assert all(sum(a != b for a, b in zip(k, defaults, strict=True)) <= 1 for k in knobs)  # one knob moves
    assert knobs == {(2, 0, 5), (3, 0, 5), (4, 0, 5), (5, 0, 5), (5, 1, 5), (5, 2, 5), (5, 0, 0), (5, 0, 1),
                     (5, 0, 3)}
    assert len(cells) == len(knobs) * 3 * 10  # MNIST's 3 default pairs, 10 seeds


def test_the_paper_fig7_preset_sweeps_phi():
    cells = build_grid(load_preset("paper-fig7"))
    assert {c.params["phi"] for c in cells} == {0.0, 0.25, 0.5, 0.75, 1.0}
    assert {c.variant for c in cells} == {f"capsan[phi={v}]" for v in (0.0, 0.25, 0.5, 0.75, 1.0)}


def test_a_variant_is_stored_under_its_label(digits, tmp_path):
    import torch

    from bench.cell import CellEnv, run_cell

    config = Preset(name="t", methods=["smote"], datasets=["digits"], ratios=[0.1], seeds=1, pairs=[[3, 5]],
                       epochs=1, sweep={"smote": {"k_neighbors": [3]}})
    (cell,) = build_grid(config)
    row = run_cell(cell, *digits, CellEnv(torch.device("cpu"), tmp_path))
    assert row["status"] == "done" and row["method"] == "smote[k_neighbors=3]"
    assert row["params"]["k_neighbors"] == 3


def test_the_paper_figure_presets_compute_what_their_figures_draw():
    fig4, fig5 = (build_grid(load_preset(name)) for name in ("paper-fig4", "paper-fig5"))
    for cells, metric in ((fig4, "ssim"), (fig5, "fid")):
        assert {c.ratio for c in cells} == {0.4, 0.2, 0.1, 0.05, 0.025}
        assert all(metric in c.options.get("quality", []) for c in cells), metric  # the figure's metric per cell
        assert "imbalanced" not in {c.method for c in cells}  # generators only: the metric is of their samples
