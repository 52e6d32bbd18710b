"""Generative quality at the end of a cell (``--metrics``): what is stored, and that a failure there keeps the cell."""

import dataclasses

import numpy as np
import pytest
import torch
from helpers import digits_cell

from bench.cell import CellEnv, run_cell
from bench.errors import BenchError
from bench.grid import Preset, build_grid
from bench.quality import diversity, parse_quality

CPU = torch.device("cpu")


def _with_quality(cell, which=("ssim",)):
    return dataclasses.replace(cell, options={**cell.options, "quality": list(which)})


def test_parse_quality_accepts_known_names_in_a_fixed_order_and_refuses_others():
    assert parse_quality(["fid", "ssim"]) == ["ssim", "fid"]
    assert parse_quality(["none"]) == []
    with pytest.raises(BenchError, match="unknown metric is; --metrics takes ssim, fid, battle or none"):
        parse_quality(["is"])


def test_the_battle_diversity_and_fid_share_one_image_check():
    from bench.quality.battle import battle
    from bench.quality.fid import fid_proxy

    grey, rgb = np.zeros((3, 1, 8, 8), np.uint8), np.zeros((3, 3, 8, 8), np.uint8)

    def no_features(images):
        raise AssertionError("features of unchecked images")

    calls = {
        "the battle": lambda sets: battle(None, None, *sets),
        "SSIM diversity": lambda sets: diversity.ssim_report(*sets),
        "FID": lambda sets: fid_proxy(*sets, no_features, feature_extractor="x", weights_sha256="0" * 64),
    }
    for purpose, call in calls.items():
        n_sets = 3 if purpose == "the battle" else 2
        needed = 1 if purpose == "the battle" else 2
        refusals = {
            "must be uint8 (N, C, H, W) with C = 1 or 3": [grey.astype(np.float32)] + [grey] * (n_sets - 1),
            f"needs at least {needed} image": [grey] * (n_sets - 1) + [grey[:needed - 1]],
            "image shapes differ": [grey] * (n_sets - 1) + [rgb],
        }
        for message, sets in refusals.items():
            with pytest.raises(BenchError, match=f"^{purpose}") as caught:
                call(sets)
            assert message in str(caught.value) and "\n" not in str(caught.value), (purpose, caught.value)


def test_metrics_are_part_of_the_cell_key():
    config = dict(name="t", methods=["gan"], datasets=["digits"], ratios=[0.1], seeds=1, epochs=1)
    plain = build_grid(Preset(**config))[0]
    with_ssim = build_grid(Preset(**config, metrics=["ssim"]))[0]
    assert with_ssim.options == {"quality": ["ssim"]} and with_ssim.key != plain.key


def test_a_generative_cell_stores_ssim_for_the_class_it_generated(digits, tmp_path):
    row = run_cell(_with_quality(digits_cell("gan", epochs=1)), *digits, CellEnv(CPU, tmp_path))
    assert row["status"] == "done", row["error"]
    quality = row["metrics"]["quality"]
    minority = row["counts"]["classes"][1]
    assert list(quality) == [minority]  # the majority class is never generated
    entry = quality[minority]
    n_real = int((digits[0].labels == int(minority)).sum())  # the class in the FULL training split
    assert entry["n_real"] == entry["n_fake"] == n_real
    assert entry["ssim"]["metric"] == "ssim-diversity"
    assert 0 < entry["ssim"]["generated"]["mean"] <= 1 and 0 < entry["ssim"]["real"]["mean"] <= 1


def test_a_method_that_generates_nothing_stores_no_quality(digits, tmp_path):
    row = run_cell(_with_quality(digits_cell("smote")), *digits, CellEnv(CPU, tmp_path))
    assert row["status"] == "done" and row["metrics"]["quality"] == {}


def test_a_failing_quality_metric_is_recorded_and_the_cell_stands(digits, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("ssim exploded")

    monkeypatch.setattr(diversity, "ssim_report", broken)
    row = run_cell(_with_quality(digits_cell("gan", epochs=1)), *digits, CellEnv(CPU, tmp_path))
    assert row["status"] == "done" and 0 <= row["metrics"]["g_mean"] <= 1
    assert row["metrics"]["quality_error"] == "RuntimeError: ssim exploded"


def test_without_inception_weights_a_run_says_so_once_and_stores_the_named_proxy(tmp_path, monkeypatch, capsys):
    from bench.config import RunConfig
    from bench.quality import inception
    from bench.runner import run_grid
    from bench.store import Store

    def missing(weights_path=None, download=False):
        raise inception.InceptionWeightsMissing("FID Inception weights not found (test); pass --fid-weights PATH")

    monkeypatch.setattr(inception, "inception_weights_path", missing)
    config = Preset(name="t", methods=["gan"], datasets=["digits"], ratios=[0.1], seeds=2, pairs=[[3, 5]],
                       epochs=1, metrics=["fid"])
    summary = run_grid(RunConfig.for_cells(build_grid(config), tmp_path, quiet=True))
    assert summary.done == 2
    assert capsys.readouterr().out.count("FID Inception weights not found") == 1  # once per run, not per cell
    n_test_minority = cells_counts(tmp_path)["test"][1]  # the pair's minority class (5) in the balanced test
    with Store(tmp_path, create=False) as store:
        cells = store.cells()
    for metrics in cells["metrics"]:
        (entry,) = metrics["quality"].values()
        assert "fid-inception" not in entry  # a different metric never shares the Inception column
        proxy = entry["fid-proxy"]
        assert proxy["metric"] == "fid-proxy" and proxy["value"] >= 0
        assert "digits" in proxy["feature_extractor"] and proxy["n_real"] == proxy["n_fake"] == entry["n_real"]
        assert proxy["applies"] in ("fid", "kid") and proxy["kid"] == proxy["kid"]  # KID is always there
        floor = entry["real_vs_real"]["fid-proxy"]  # the same reference against the class's real test images
        assert floor["n_real"] == entry["n_real"] and floor["n_fake"] == n_test_minority
        assert floor["compared"] == "the class's real test images" and floor["value"] >= 0
    assert (tmp_path / "fid-cache").is_dir()  # the proxy classifier and reference statistics are cached


def test_battle_trains_the_convolutional_twin_and_stores_the_ratios(digits, tmp_path):
    small = dict(g_channels=32, d_width=16, primary_types=8, z_dim=16)  # keeps the two fits to a second
    cell = _with_quality(digits_cell("capsan", epochs=1, **small), ["battle"])
    row = run_cell(cell, *digits, CellEnv(CPU, tmp_path))
    assert row["status"] == "done" and "quality_error" not in row["metrics"], row["metrics"].get("quality_error")
    result = row["metrics"]["quality"]["battle"]
    assert (result["model1"], result["model2"]) == ("capsan", "capsan-conv")
    n_test = sum(row["counts"]["test"])
    assert result["n_test"] == result["n_g1"] == result["n_g2"] == n_test
    assert result["winner"] in ("model1", "model2", "tie", "undecided")
    assert (tmp_path / row["artifacts"] / "battle-twin" / "losses.json").is_file()  # the twin really trained
    gan = run_cell(_with_quality(digits_cell("gan", epochs=1), ["battle"]), *digits, CellEnv(CPU, tmp_path))
    assert "battle" not in gan["metrics"]["quality"]  # no twin: the paper's battle is CapsAN vs Conv-GAN


def cells_counts(results) -> dict:
    from bench.store import Store

    with Store(results, create=False) as store:
        return store.cells()["counts"].iloc[0]
