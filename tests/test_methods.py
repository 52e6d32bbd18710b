"""The method interface, the registry, the built-in methods and ``run_cell``'s handling of failures."""

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import repeatable

from bench.cell import CellEnv, run_cell
from bench.datasets import load_dataset
from bench.datasets.imbalance import make_imbalanced
from bench.errors import BenchError, CellFailure
from bench.grid import Preset, build_grid
from bench.methods import FitContext, get_method, load_method_file, method_names
from bench.methods.classifier import CLASSIFIER_SPEC, Classifier, CommonCNN

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", split="train"), load_dataset("digits", split="test")


def _cell(method, ratio=0.1, seed=0, epochs=2, pair="default", **params):
    config = Preset(name="t", methods=[method], datasets=["digits"], ratios=[ratio], seeds=seed + 1,
                       pairs=[list(pair)] if pair != "default" else "default", epochs=epochs,
                       method_params={method: params} if params else {})
    return [c for c in build_grid(config) if c.seed == seed][0]


def test_builtin_methods_are_registered_with_citations():
    assert {"imbalanced", "smote", "adasyn"} <= set(method_names())
    for name in ("imbalanced", "smote", "adasyn"):
        cls = get_method(name)
        assert cls.summary and cls.citation and cls.__module__.startswith("bench.methods.")
        assert sys.modules[cls.__module__].__doc__  # the module docstring cites the paper


def test_every_method_class_of_the_package_is_found_by_the_registry_unlisted():
    """Importing ``bench.methods`` imports every module of it (``registry.import_package``): each method class
    defined there with a name is registered, and those are the built-ins."""
    import inspect
    import pkgutil

    import bench.methods
    from bench.methods.base import Method
    from bench.methods.registry import built_in_names

    modules = [info.name for info in pkgutil.iter_modules(bench.methods.__path__)]
    assert {"smote", "capsan", "registry", "resnet"} <= set(modules)
    assert all(f"bench.methods.{name}" in sys.modules for name in modules)
    defined = {cls.name: cls for name in modules for cls in vars(sys.modules[f"bench.methods.{name}"]).values()
               if inspect.isclass(cls) and issubclass(cls, Method) and "name" in vars(cls) and cls.name
               and cls.__module__ == f"bench.methods.{name}"}
    assert sorted(defined) == built_in_names() and len(defined) >= 19
    assert all(get_method(name) is cls for name, cls in defined.items())


def test_a_new_module_registers_its_method_without_an_edit_elsewhere(tmp_path, monkeypatch):
    from bench.methods import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # the method is this test's alone
    package = tmp_path / "more_methods"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "zz_new.py").write_text(textwrap.dedent('''
        from bench.methods import ResamplingMethod, register

        @register
        class ZzNew(ResamplingMethod):
            name = "zz-new"
            summary = "a built-in that no list names"
    '''))
    (package / "_private.py").write_text("raise ImportError('a module starting with _ is not imported')\n")
    (package / "helpers.py").write_text("X = 1  # no method: imported, nothing registered\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert registry.import_package("more_methods", [str(package)]) == ["helpers", "zz_new"]
        assert "zz-new" in method_names() and get_method("zz-new").__name__ == "ZzNew"
        assert "zz-new" not in registry.built_in_names()  # not a module of bench.methods
    finally:
        for name in [n for n in sys.modules if n == "more_methods" or n.startswith("more_methods.")]:
            del sys.modules[name]


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 64, 64)])
def test_common_cnn_takes_every_image_size(shape):
    logits = CommonCNN(shape, 2)(torch.zeros(5, *shape))
    assert logits.shape == (5, 2)


def test_resampling_balances_the_training_set(digits, tmp_path):
    task = make_imbalanced(*digits, pair=(3, 5), ratio=0.1, seed=0)
    ctx = FitContext(device=CPU, seed=0, epochs=1, artifact_dir=tmp_path)
    for name in ("smote", "adasyn"):
        method = get_method(name)()
        resampled = method.resample(task.train, ctx)
        counts = resampled.counts()
        assert counts[0] == task.train.counts()[0]
        assert abs(int(counts[1]) - int(counts[0])) <= 0.1 * counts[0]  # ADASYN balances only approximately
        assert resampled.images.dtype == np.uint8 and resampled.images.shape[1:] == task.train.images.shape[1:]
        # The original images are all still there.
        assert np.array_equal(resampled.images[: len(task.train)], task.train.images)


def test_run_cell_stores_metrics_counts_and_artifacts(digits, tmp_path):
    cell = _cell("smote")
    row = run_cell(cell, *digits, CellEnv(CPU, tmp_path))
    assert row["status"] == "done", row.get("error")
    assert 0 <= row["metrics"]["g_mean"] <= 1 and len(row["metrics"]["confusion_matrix"]) == 2
    n_major = int((digits[0].labels == cell.pair[0]).sum())
    assert row["counts"]["train"] == [n_major, int(np.floor(0.1 * n_major + 0.5))]
    assert row["curves"]["roc"]["fpr"][-1] == 1.0
    counts = json.loads((tmp_path / row["artifacts"] / "training_counts.json").read_text())
    assert counts["after"][1] == counts["after"][0]
    assert row["params"]["classifier"] == CLASSIFIER_SPEC and row["device"].startswith("cpu")


def test_same_seed_same_numbers_and_other_seed_differs(digits, tmp_path):
    a = run_cell(_cell("imbalanced", seed=1), *digits, CellEnv(CPU, tmp_path))
    b = run_cell(_cell("imbalanced", seed=1), *digits, CellEnv(CPU, tmp_path))
    assert repeatable(a["metrics"]) == repeatable(b["metrics"])
    assert a["curves"] == b["curves"]
    # Another seed trains another network: its probabilities differ (metrics alone may tie).
    task = make_imbalanced(*digits, pair=(3, 5), ratio=0.1, seed=1)
    probabilities = []
    for seed in (1, 1, 2):
        classifier = Classifier()
        classifier.fit(task.train, FitContext(device=CPU, seed=seed, epochs=2, artifact_dir=tmp_path))
        probabilities.append(classifier.predict_proba(task.test.images))
    np.testing.assert_array_equal(probabilities[0], probabilities[1])
    assert not np.allclose(probabilities[0], probabilities[2])


@pytest.mark.parametrize("method, library", [("smote", "SMOTE"), ("adasyn", "ADASYN")])
def test_library_refusal_is_a_failed_cell_with_the_library_message(digits, tmp_path, method, library):
    row = run_cell(_cell(method, ratio=0.025), *digits, CellEnv(CPU, tmp_path))  # 3 minority images, 5 neighbours asked
    assert row["status"] == "failed"
    assert row["error"].startswith(f"{library} refused: Expected n_neighbors <= n_samples_fit")
    assert row["metrics"] is None and row["counts"]["train"][1] == 3


def test_a_nan_loss_fails_the_cell_as_diverged(digits, tmp_path):
    task = make_imbalanced(*digits, pair=(3, 5), ratio=0.5, seed=0)
    classifier = Classifier({**CLASSIFIER_SPEC, "lr": 1e30})  # the first Adam step overflows the weights
    with pytest.raises(CellFailure, match="diverged at epoch 1: training loss is nan"):
        classifier.fit(task.train, FitContext(device=CPU, seed=0, epochs=3, artifact_dir=tmp_path))


def test_unknown_method_and_unknown_parameter():
    names = method_names()  # every registered name, sorted: a new built-in needs no edit here
    assert names == sorted(names) and {"capsan", "capsan-conv", "imbalanced", "smote"} <= set(names)
    message = "unknown method 'capsan2'; valid names: " + ", ".join(names)
    with pytest.raises(BenchError, match=f"^{re.escape(message)}$"):
        get_method("capsan2")
    with pytest.raises(ValueError, match="method 'smote' has no parameter k; valid parameters: classifier, classifier_schedule, k_neighbors"):
        get_method("smote")(k=3)


USER_METHOD = textwrap.dedent('''
    import numpy as np
    from bench.methods import Method

    class Broken(Method):
        name = "broken-test-method"
        summary = "raises inside fit"
        defaults = {}

        def fit(self, train, ctx):
            raise ZeroDivisionError("on purpose")

        def predict_proba(self, images):
            return np.full((len(images), 2), 0.5)
''')


def test_an_exception_inside_a_method_is_a_failed_cell_with_its_traceback(digits, tmp_path, monkeypatch):
    from bench.methods import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # the method is this test's alone
    path = tmp_path / "broken.py"
    path.write_text(USER_METHOD)
    assert load_method_file(path) == ["broken-test-method"]
    row = run_cell(_cell("broken-test-method"), *digits, CellEnv(CPU, tmp_path))
    where = Path(row["artifacts"]) / "error.txt"
    assert row["status"] == "failed" and row["error"] == f"ZeroDivisionError: on purpose (traceback in {where})"
    assert "on purpose" in (tmp_path / where).read_text()


def test_method_files_that_define_nothing_or_do_not_import(tmp_path):
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(BenchError, match="defines no Method subclass"):
        load_method_file(empty)
    bad = tmp_path / "bad.py"
    bad.write_text("import not_a_module_anywhere\n")
    with pytest.raises(BenchError, match="cannot import method file"):
        load_method_file(bad)
    with pytest.raises(BenchError, match="does not exist"):
        load_method_file(tmp_path / "missing.py")


def test_installed_packages_add_methods_through_entry_points(tmp_path):
    (tmp_path / "myplugin").mkdir()
    (tmp_path / "myplugin" / "__init__.py").write_text(USER_METHOD.replace("broken-test-method", "plugin-method"))
    dist = tmp_path / "myplugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myplugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[capsan_bench.methods]\nplugin-method = myplugin:Broken\n")
    code = "from bench.methods import method_names, get_method; print(method_names()); print(get_method('plugin-method'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(tmp_path), "PATH": ""}, cwd=tmp_path).stdout
    assert "'plugin-method'" in out and "myplugin.Broken" in out
