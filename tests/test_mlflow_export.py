"""``bench export --mlflow``: every cell of a smoke store as an MLflow run, read back with MLflow's own client.

The store: the smoke preset's three cells (the session's ``smoke_run``, copied), exported; then a GAN cell
(loss histories, a sample grid) and a failing method's cell added by a second ``bench run`` and exported
again. Everything stays in ``tmp_path``: local SQLite tracking stores, nothing started, no network.
"""

from __future__ import annotations

import json
import shutil
import socket
import sys

import pytest
from helpers import cli_exit, run_bench
from mlflow.entities import ViewType  # MLflow is in the test extra: never skipped
from mlflow.tracking import MlflowClient

from bench.errors import BenchError
from bench.reports.mlflow_export import (
    DATABASE,
    cell_rows,
    default_uri,
    export_mlflow,
    run_metrics,
    run_params,
)
from bench.store import Store, read_cells

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")  # MLflow's

BREAKS = """
from bench.methods.imbalanced import Imbalanced


class Breaks(Imbalanced):
    name = "breaks"

    def fit(self, train, ctx):
        raise RuntimeError("broken on purpose")
"""


@pytest.fixture(scope="module")
def store(smoke_run, tmp_path_factory):
    """(results folder, the three exports): the installed command's ``bench export --mlflow`` of the smoke cells,
    then, after a GAN cell and a failed cell were added, the export again and once more with nothing new."""
    run, smoke = smoke_run
    assert run.returncode == 0, run.stderr
    folder = tmp_path_factory.mktemp("mlflow")
    results = folder / "results"
    shutil.copytree(smoke, results)
    first = run_bench("export", "--results", results, "--mlflow", cwd=folder)
    assert first.returncode == 0, first.stderr
    (folder / "breaks.py").write_text(BREAKS)
    more = run_bench("run", "--methods", "gan,breaks", "--method-file", folder / "breaks.py", "--datasets", "digits",
                     "--pairs", "3:5", "--ratios", "0.1", "--seeds", "1", "--epochs", "1", "--threads", "1",
                     "--results", results, "--quiet", cwd=folder)
    assert more.returncode == 1 and "1 of 2 cells failed" in more.stderr, more.stderr
    [second] = export_mlflow([results])
    [third] = export_mlflow([results])
    return results, (first, second, third)


def runs_of(uri: str, results) -> dict:
    """The experiment of ``results`` in ``uri``: bench key -> its runs."""
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(str(results.resolve()))
    assert experiment is not None
    found = {}
    for run in client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL, max_results=1000):
        found.setdefault(run.data.tags["bench.key"], []).append(run)
    return found


def test_every_cell_of_the_store_is_a_run_with_its_numbers(store, tmp_path):
    results, _ = store
    uri = default_uri(results)
    assert uri == f"sqlite:///{results.resolve() / DATABASE}" and (results / DATABASE).is_file()
    cells = read_cells(results)
    assert len(cells) == 5 and sorted(cells["status"]) == ["done"] * 4 + ["failed"]
    runs = runs_of(uri, results)
    assert set(runs) == set(cells["key"])
    client = MlflowClient(tracking_uri=uri)
    exported = {row["key"]: row for row in cell_rows(results)}
    for cell in cells.to_dict("records"):
        [run] = runs[cell["key"]]
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        assert run.info.run_name == f"{cell['method']} digits 0.1 3 vs 5 seed 0"
        assert (tags["bench.status"], tags["bench.device"], tags["bench.test"]) == (cell["status"], cell["device"],
                                                                                    "balanced")
        assert params == run_params(cell)
        assert (params["method"], params["dataset"], params["protocol"], params["pair"]) == (
            cell["method"], "digits", "binary", "3 vs 5")
        assert (float(params["ratio"]), int(params["seed"]), int(params["epochs"])) == (
            cell["ratio"], cell["seed"], cell["epochs"])
        for name, value in cell["params"]["classifier"].items():  # a nested parameter by its dotted name
            assert json.loads(params[f"method.classifier.{name}"]) == value if not isinstance(value, str) else (
                params[f"method.classifier.{name}"] == value)
        files = {f.path for f in client.list_artifacts(run.info.run_id)}
        assert "cell.json" in files
        if cell["status"] == "failed":
            assert run.info.status == "FAILED" and metrics == {} and "error.txt" in files
            assert "broken on purpose" in tags["bench.error"] and tags["bench.error"] == cell["error"]
            continue
        assert run.info.status == "FINISHED"
        stored = cell["metrics"]
        histories = ("losses.", "classifier_losses.")  # a loss history's last value is a metric too
        assert {k: v for k, v in metrics.items() if not k.startswith(histories)} == run_metrics(exported[cell["key"]])
        assert metrics["g_mean"] == stored["g_mean"]
        assert [metrics[f"per_class_recall.{k}"] for k in range(2)] == stored["per_class_recall"]
        assert metrics["budget.roles.classifier.updates"] == stored["budget"]["roles"]["classifier"]["updates"]
        assert {"budget.json", "classifier_losses.json", "training_counts.json"} <= files
        budget = client.download_artifacts(run.info.run_id, "budget.json", str(tmp_path))
        assert json.loads(open(budget).read()) == stored["budget"]
        losses = json.loads((results / "artifacts" / "digits" / cell["method"] / cell["key"]
                             / "classifier_losses.json").read_text())["epoch_loss"]
        history = client.get_metric_history(run.info.run_id, "classifier_losses.epoch_loss")
        assert [(m.step, m.value) for m in history] == list(enumerate(losses, start=1)) and len(losses) >= 1
        if cell["method"] == "gan":  # a generative cell: its sample grid and its generator phase's losses
            assert {"samples.png", "losses.json"} <= files
            assert [m.step for m in client.get_metric_history(run.info.run_id, "losses.g_loss")] == [1]
            assert "losses.generated_counts" not in metrics  # per class, not per epoch


def test_exporting_again_adds_only_the_new_cells(store):
    results, (first, second, third) = store
    uri = default_uri(results)
    assert first.stdout == (f"{results}: 3 run(s) added, 0 already there, experiment '{results.resolve()}' in {uri}; "
                            f"browse: mlflow ui --backend-store-uri {uri}\n")
    assert first.stderr == ""  # MLflow's own chatter (creating its tables) is left out
    assert (second.added, second.present, second.uri) == (2, 3, uri)
    assert (third.added, third.present) == (0, 5)


def test_one_experiment_per_folder_in_a_uri_and_a_cell_done_after_it_failed_gets_a_second_run(store, tmp_path):
    results, _ = store
    other = tmp_path / "other"
    shutil.copytree(results, other, ignore=shutil.ignore_patterns(DATABASE, "mlartifacts"))
    uri = f"sqlite:///{tmp_path / 'shared' / 'runs.db'}"
    exported = export_mlflow([results, other], uri)
    assert [(e.added, e.present, e.experiment) for e in exported] == [
        (5, 0, str(results.resolve())), (5, 0, str(other.resolve()))]
    assert not (other / DATABASE).exists() and (tmp_path / "shared" / "mlartifacts").is_dir()
    broken = read_cells(other).set_index("method").loc["breaks"]
    with Store(other) as writer:  # the failed cell, run again and done
        writer.add({**broken.to_dict(), "method": "breaks", "status": "done", "error": None, "artifacts": None,
                    "metrics": {"accuracy": 0.5}, "started_at": "2030-01-01T00:00:00+00:00",
                    "finished_at": "2030-01-01T00:00:01+00:00"})
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(str(other.resolve()))
    cut_short = client.create_run(experiment.experiment_id, tags={"bench.key": broken["key"], "bench.status": "done"})
    [again] = export_mlflow([other], uri)  # a run an interrupted export left RUNNING is written again
    assert (again.added, again.present) == (1, 4)
    assert client.get_run(cut_short.info.run_id).info.lifecycle_stage == "deleted"
    runs = sorted((r for r in runs_of(uri, other)[broken["key"]] if r.info.lifecycle_stage == "active"),
                  key=lambda r: r.info.status)
    assert [r.info.status for r in runs] == ["FAILED", "FINISHED"]
    assert runs[1].data.metrics == {"accuracy": 0.5}
    assert (runs[1].info.start_time, runs[1].info.end_time) == (1893456000000, 1893456001000)
    assert len(runs_of(uri, results)) == 5  # the other folder's experiment is untouched


def test_refusals_are_one_line_naming_the_fix(store, tmp_path, capsys, monkeypatch):
    results, _ = store
    code, err = cli_exit(["export", "--results", results], capsys)
    assert (code, err) == (2, "Error: give --out FILE (the per-cell table), --mlflow [URI] (MLflow runs), or both\n")
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "mlflow", None)  # import mlflow now raises ImportError
        with pytest.raises(BenchError, match=r"^bench export --mlflow needs MLflow: pip install 'capsan-bench\[mlflow\]'"):
            export_mlflow([results])
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(BenchError, match=f"^cannot reach the MLflow tracking server http://127.0.0.1:{port} "):
        export_mlflow([results], f"http://127.0.0.1:{port}")
    (tmp_path / "file").write_text("")  # a database below a file
    with pytest.raises(BenchError, match="^cannot open the MLflow tracking store sqlite:///") as error:
        export_mlflow([results], f"sqlite:///{tmp_path / 'file' / 'runs.db'}")
    assert "\n" not in str(error.value)
