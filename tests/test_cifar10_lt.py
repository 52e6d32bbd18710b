"""The ``cifar10-lt`` preset: what it runs (ResNet-32 with the long-tail recipe on every method of the common
classifier, factors 100 and 10), its CPU smoke version on the real 4,000-image CIFAR-10 subset of
``../shared/data`` (offline), and the dry run's one line when the full archive is missing."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import SHARED_DATA, require_shared
from test_cifar10 import write_batches

from bench.cli import main
from bench.datasets import cifar10
from bench.grid import build_grid, load_preset
from bench.store import Store

SUBSET = SHARED_DATA / "cifar10" / "cifar10_train_first4000.npz"


def test_the_preset_runs_resnet32_with_the_longtail_recipe():
    preset = load_preset("cifar10-lt")
    assert (preset.protocol, sorted(preset.ratios), preset.datasets) == ("longtail", [0.01, 0.1], ["cifar10"])
    assert {"imbalanced", "focal", "cb-ce", "cb-focal", "ldam-drw", "logit-adjust", "balanced-softmax", "smote", "deepsmote",
            "gamo", "capsan"} == set(preset.methods)
    cells = build_grid(preset)
    assert len(cells) == 11 * 2 * 3
    for cell in cells:
        if cell.method in ("gamo", "capsan"):  # their own classifiers
            continue
        assert cell.params["classifier"]["arch"] == "resnet32", cell.method
        assert cell.params["classifier"]["optimizer"] == "sgd" and cell.params["classifier"]["batch_size"] == 128
    assert next(c for c in cells if c.method == "focal").params["gamma"] == 1.0  # LDAM-DRW's focal baseline


@pytest.fixture
def subset_folder(tmp_path, monkeypatch):
    """A CIFAR-10 folder in the official layout from the real subset: 3,000 training and 1,000 test images."""
    require_shared(SUBSET, "real CIFAR-10 subset cifar10_train_first4000.npz")
    with np.load(SUBSET) as z:
        images, labels = z["images"].transpose(0, 3, 1, 2), z["labels"].astype(np.int64)
    parts = [slice(i * 600, (i + 1) * 600) for i in range(5)]
    splits = {"train": [(images[s], labels[s]) for s in parts], "test": (images[3000:], labels[3000:])}
    monkeypatch.setattr(cifar10, "RESOURCES", write_batches(tmp_path / "data" / "cifar10", splits))
    return tmp_path / "data"


def test_the_smoke_version_runs_offline_on_the_real_subset(subset_folder, tmp_path, capsys):
    results = tmp_path / "results"
    with pytest.raises(SystemExit) as done:
        main(["run", "--preset", "cifar10-lt", "--methods", "ldam-drw", "--ratios", "0.01", "--seeds", "1",
              "--epochs", "1", "--data-dir", str(subset_folder), "--results", str(results), "--quiet"])
        raise SystemExit(0)
    assert done.value.code == 0, capsys.readouterr().err
    with Store(results, create=False) as store:
        cells = store.cells()
    assert list(cells["status"]) == ["done"] and list(cells["method"]) == ["ldam-drw"]
    train = np.asarray(cells.iloc[0]["counts"]["train"])
    # n_max 300 (the mean count; class 0 has 299 images here, all kept), factor 100: the tail 300 x 0.01
    assert train.tolist()[0] == 299 and train[-1] == 3 and list(train) == sorted(train, reverse=True)
    spec = cells.iloc[0]["params"]["classifier"]
    assert (spec["arch"], spec["optimizer"], spec["head"]) == ("resnet32", "sgd", "cosine")
    with pytest.raises(SystemExit) as report:
        main(["report", "--results", str(results), "--out", str(tmp_path / "report"), "--format", "md",
              "--validation"])
        raise SystemExit(0)
    assert report.value.code == 0 and "ldam-drw" in capsys.readouterr().out
    # the published column beside ours: LDAM-DRW's own Table 2 number (top-1 error 22.97 at factor 100)
    table = (tmp_path / "report" / "table3.md").read_text()
    assert "published" in table and f"{1 - 0.2297:.3f}" in table and "LDAM-DRW (Cao" in table
    validation = (tmp_path / "report" / "validation.md").read_text()
    assert "LDAM-DRW, Table 2" in validation and "77.03" in validation


def test_the_full_preset_says_which_file_is_missing(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_code:
        main(["run", "--preset", "cifar10-lt", "--dry-run", "--data-dir", str(tmp_path), "--results",
              str(tmp_path / "r")])
        raise SystemExit(0)
    assert exit_code.value.code == 0  # a dry run plans; the missing file is in its table
    out = capsys.readouterr().out
    assert "missing cifar-10-batches-py/data_batch_1" in out and "cifar-10-python.tar.gz" in out
    assert "--download" in out and "66 pending" in out
