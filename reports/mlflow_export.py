"""``bench export --mlflow [URI]``: every cell as an MLflow run, where researchers browse runs.

**Where.** Without a URI, each results folder gets its own local tracking store beside its cells:
``<results>/mlflow.db`` (SQLite: nothing to start; MLflow 3 refuses a folder store, ``file:``, unless
``MLFLOW_ALLOW_FILE_STORE`` is set) with the runs' files in ``<results>/mlartifacts``. A URI names any tracking
store: a server (``http://host:5000``), ``sqlite:///path/mlflow.db`` (its files in ``mlartifacts`` beside the
database) or a folder (``file:/path``). ``MLFLOW_TRACKING_URI`` is not read: the store is the one given here.

**Experiments.** One per results folder, named after the folder's resolved path (two folders named
``results`` stay apart in one tracking store), tagged ``bench.results``.

**Runs.** One per cell of the store's tidy table (``reports/cells.py``: a cell's newest done attempt, else its
newest attempt), named ``method dataset ratio pair seed N``:

- tags: ``bench.key``, ``bench.status``, ``bench.device``, ``bench.node``, ``bench.test`` (the test set),
  ``bench.results``; a failed cell's error, its first line as ``bench.error`` and whole as the run's note;
- params: ``method``, ``dataset``, ``protocol``, ``pair``, ``ratio``, ``seed``, ``epochs``, ``test``, the
  method's parameters as ``method.<name>`` and the run settings in the key as ``options.<name>`` (nested ones
  by dotted name; a value that is not text is its JSON, so ``json.loads`` gives the stored value back);
- metrics: every number of the cell by the dotted name ``bench compare --metrics`` uses (``cells.numbers``:
  ``g_mean``, ``per_class_recall.1``, ``confusion_matrix.1.0``, ``budget.roles.classifier.updates``,
  ``quality.5.fid-proxy.value``; NaN, by ``cells.py``'s rule a number that is missing or not finite, left
  out), at step 0 and the cell's finish time; each per-epoch loss history of the cell's
  ``losses.json`` / ``classifier_losses.json`` as a metric history ``<file>.<loss>`` (``losses.g_loss``,
  ``classifier_losses.epoch_loss``), step = epoch from 1;
- artifacts: the cell's artifacts folder as it is (loss histories, ``samples.png``, ``training_counts.json``, a
  failed cell's ``error.txt``), ``budget.json`` (the budget ledger) and ``cell.json`` (the cell's row of the
  tidy table: task, counts, ROC curves, package versions, its numbers as above and its quality text, such as
  the feature extractor and the battle's winner, by the same dotted names);
- status FINISHED for a done cell, FAILED for a failed one; start and end times are the cell's.

**Again.** A run is a cell's key and status: exporting again adds only the cells whose (key, status) has no
finished run in the experiment, so a cell that failed and is now done gets a second run (FINISHED) beside
the failed one. A run left RUNNING by an interrupted export is deleted and written again; a run deleted in
MLflow counts as exported. The store is only read.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import math
import os
import re
import socket
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

from bench.errors import BenchError, one_line

from .aggregate import pair_label
from .cells import COLUMNS, Cells, leaves, numbers, quality_name, read
from .tasks import test_of

DATABASE = "mlflow.db"
ARTIFACTS = "mlartifacts"
LOSS_FILES = ("losses.json", "classifier_losses.json")
NOT_PER_EPOCH = {"generated_counts"}  # lists in a loss file that are per class, not per epoch
BATCH = {"params": 100, "metrics": 1000}  # MLflow's limits per log_batch call
QUIET_URLS = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"
INSTALL = "bench export --mlflow needs MLflow: pip install 'capsan-bench[mlflow]' (or mlflow)"


@dataclass(frozen=True)
class Exported:
    """One results folder's export: its experiment, the runs added and those already there."""

    results: str
    experiment: str
    uri: str
    added: int
    present: int

    def line(self) -> str:
        return (f"{self.results}: {self.added} run(s) added, {self.present} already there, experiment "
                f"{self.experiment!r} in {self.uri}; browse: {browse_command(self.uri)}")


def cell_rows(folder) -> list[dict]:
    """The one place this module reads the store: one results folder's cells (``cells.read``), each its
    row of the tidy table with ``numbers`` (its numbers by dotted name, NaN left out)."""
    cells: Cells = read([folder])
    found = numbers(cells)
    texts: dict[int, dict[str, str]] = {}  # the quality table's text (feature extractor, battle winner)
    for row in cells.quality[cells.quality["text"].notna()].itertuples(index=False):
        texts.setdefault(row.cell, {})[quality_name(row[1], row.source, row.metric, row.field)] = row.text
    return [{**{c: row[c] for c in COLUMNS}, "numbers": {n: v for n, v in found.get(index, {}).items()
                                                         if not math.isnan(v)}, "texts": texts.get(index, {})}
            for index, row in cells.frame.iterrows()]


def default_uri(folder) -> str:
    """The local store beside a results folder's cells: ``sqlite:///<results>/mlflow.db``."""
    return f"sqlite:///{Path(folder).resolve() / DATABASE}"


def browse_command(uri: str) -> str:
    if uri.startswith(("http://", "https://")):
        return f"open {uri}"
    return f"mlflow ui --backend-store-uri {uri}"


def export_mlflow(results, uri: str | None = None) -> list[Exported]:
    """Every cell of each results folder in ``results`` as a run of the folder's experiment (module docstring)
    in ``uri``, or in each folder's own ``mlflow.db`` when ``uri`` is None."""
    folders = [results] if isinstance(results, str | Path) else list(results)
    if not folders:
        raise BenchError("no results folder given; pass --results DIR")
    _require_mlflow()
    cells = {folder: cell_rows(folder) for folder in dict.fromkeys(str(Path(f)) for f in folders)}  # all, first
    done, clients = [], {}
    with _quiet():
        for folder, frame in cells.items():
            target = uri or default_uri(folder)
            if target not in clients:
                clients[target] = _client(target)
            done.append(_export_folder(clients[target], frame, folder, target))
    return done


def _require_mlflow():
    try:
        return importlib.import_module("mlflow")
    except ImportError:
        raise BenchError(INSTALL) from None


@contextlib.contextmanager
def _quiet():
    """MLflow's own chatter (creating the database's tables, its libraries' deprecation notes) left out of
    ``bench export``'s output; its errors still reach us as exceptions."""
    logger = logging.getLogger("mlflow")
    level, printing = logger.level, os.environ.get(QUIET_URLS)
    logger.setLevel(logging.WARNING)
    os.environ[QUIET_URLS] = "true"  # a server's store prints each run's address (two lines a run) otherwise
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        logger.setLevel(level)
        if printing is None:
            os.environ.pop(QUIET_URLS, None)
        else:
            os.environ[QUIET_URLS] = printing


def _check_reachable(uri: str) -> None:
    """A tracking server that does not answer is one line at once (MLflow itself retries for minutes)."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname or "localhost", port), timeout=5).close()
    except OSError as exc:
        raise BenchError(f"cannot reach the MLflow tracking server {uri} ({exc.strerror or exc}); start it "
                         "(mlflow server --backend-store-uri sqlite:///mlflow.db) or give another --mlflow URI, or "
                         "--mlflow alone for a local store beside the results") from None


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    _check_reachable(uri)
    local = _local_database(uri)
    try:
        if local is not None:
            local.parent.mkdir(parents=True, exist_ok=True)
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)  # a store that cannot be opened fails here, not halfway
    except BenchError:
        raise
    except Exception as exc:  # MLflow's, SQLAlchemy's or the OS's: one line with the fix
        raise BenchError(_store_error(uri, exc)) from None
    return client


def _store_error(uri: str, exc: Exception) -> str:
    text = str(exc)
    if "MLFLOW_ALLOW_FILE_STORE" in text:
        return (f"MLflow refuses the folder store {uri} (it is in maintenance mode): give --mlflow "
                "sqlite:///PATH/mlflow.db, or set MLFLOW_ALLOW_FILE_STORE=true to use the folder")
    return (f"cannot open the MLflow tracking store {uri} ({type(exc).__name__}: {one_line(exc)}); give a "
            "writable place or a running server with --mlflow URI")


def _local_database(uri: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` URI (None for any other store, or an in-memory database)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?")[0]
    return Path(path) if path and path != ":memory:" else None


def _artifact_location(uri: str) -> str | None:
    """Where a new experiment keeps its runs' files: beside a local SQLite database (MLflow's default would be
    ``./mlruns`` under whatever folder ``bench export`` ran in); a server or a folder store decides itself."""
    database = _local_database(uri)
    return (database.resolve().parent / ARTIFACTS).as_uri() if database is not None else None


def _experiment(client, folder: str) -> tuple[str, str]:
    """(id, name) of the results folder's experiment, created when missing."""
    name = str(Path(folder).resolve())
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(name, artifact_location=_artifact_location(client.tracking_uri),
                                         tags={"bench.results": name}), name
    if experiment.lifecycle_stage == "deleted":
        raise BenchError(f"the MLflow experiment {name!r} was deleted; restore it (mlflow experiments restore "
                         f"--experiment-id {experiment.experiment_id}) or delete it for good (mlflow gc), then "
                         "export again")
    return experiment.experiment_id, name


def _exported(client, experiment_id: str) -> set[tuple[str, str]]:
    """(key, status) of every finished run in the experiment; runs an interrupted export left RUNNING are
    deleted, to be written again."""
    from mlflow.entities import ViewType

    seen, token = set(), None
    while True:
        page = client.search_runs([experiment_id], run_view_type=ViewType.ALL, max_results=1000, page_token=token)
        for run in page:
            key = run.data.tags.get("bench.key")
            if key is None:
                continue
            if run.info.status in ("FINISHED", "FAILED"):
                seen.add((key, run.data.tags.get("bench.status", "")))
            elif run.info.lifecycle_stage == "active":
                client.delete_run(run.info.run_id)
        token = page.token
        if not token:
            return seen


def _export_folder(client, cells: list[dict], folder: str, uri: str) -> Exported:
    experiment_id, name = _experiment(client, folder)
    seen = _exported(client, experiment_id)
    added = 0
    for cell in cells:
        if (cell["key"], cell["status"]) in seen:
            continue
        _write_run(client, experiment_id, cell, name)
        seen.add((cell["key"], cell["status"]))
        added += 1
    return Exported(folder, name, uri, added, len(cells) - added)


def _write_run(client, experiment_id: str, cell: dict, results: str) -> None:
    from mlflow.entities import Metric, Param

    run = client.create_run(experiment_id, start_time=_ms(cell.get("started_at")), tags=run_tags(cell, results),
                            run_name=run_name(cell))
    run_id = run.info.run_id
    try:
        finished = _ms(cell.get("finished_at"))
        metrics = [Metric(k, v, finished, 0) for k, v in run_metrics(cell).items()]
        metrics += [Metric(k, v, finished, step) for k, v, step in loss_histories(cell.get("artifacts"))]
        params = [Param(k, v) for k, v in run_params(cell).items()]
        for start in range(0, len(params), BATCH["params"]):
            client.log_batch(run_id, params=params[start:start + BATCH["params"]])
        for start in range(0, len(metrics), BATCH["metrics"]):
            client.log_batch(run_id, metrics=metrics[start:start + BATCH["metrics"]])
        _log_files(client, run_id, cell)
        client.set_terminated(run_id, "FINISHED" if cell["status"] == "done" else "FAILED", end_time=finished)
    except BaseException as exc:
        with contextlib.suppress(Exception):
            client.delete_run(run_id)  # never a half-written run that a later export would take for done
        if isinstance(exc, Exception) and not isinstance(exc, BenchError):
            raise BenchError(f"cannot write the run of cell {cell['key']} to {client.tracking_uri} "
                             f"({type(exc).__name__}: {one_line(exc)}); fix that and export again: the "
                             "runs written so far stay") from None
        raise


def _log_files(client, run_id: str, cell: dict) -> None:
    budget = cell.get("budget")
    if isinstance(budget, dict):
        client.log_dict(run_id, budget, "budget.json")
    row = {k: v for k, v in cell.items() if k not in ("results", "recorded")}
    client.log_text(run_id, json.dumps(row, indent=1, sort_keys=True, default=_plain), "cell.json")
    folder = cell.get("artifacts")
    if isinstance(folder, str) and Path(folder).is_dir():
        client.log_artifacts(run_id, folder)


def _plain(value):
    """numpy numbers (a frame's ids, seeds) as Python's."""
    return value.item() if hasattr(value, "item") else str(value)


def _ms(stamp) -> int | None:
    """An ISO 8601 time (naive: UTC) as MLflow's milliseconds since the epoch; None when unknown."""
    if not isinstance(stamp, str) or not stamp:
        return None
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=_plain)


def run_name(cell: dict) -> str:
    pair = pair_label(cell.get("pair"))
    test = test_of(cell.get("options"))
    parts = [cell["method"], cell["dataset"], f"{float(cell['ratio']):g}", *([pair] if pair != "-" else []),
             f"seed {int(cell['seed'])}", *([f"{test} test"] if test != "balanced" else [])]
    return " ".join(parts)


def run_tags(cell: dict, results: str) -> dict[str, str]:
    tags = {"bench.key": cell["key"], "bench.status": cell["status"], "bench.device": str(cell.get("device") or ""),
            "bench.node": str(cell.get("node") or ""), "bench.test": test_of(cell.get("options")),
            "bench.results": results}
    error = cell.get("error")
    if isinstance(error, str) and error.strip():
        tags["bench.error"] = error.strip().splitlines()[0][:500]
        tags["mlflow.note.content"] = error[:5000]
    quality_error = cell.get("quality_error")
    if isinstance(quality_error, str):
        tags["bench.quality_error"] = " ".join(quality_error.split())[:500]
    return tags


def run_params(cell: dict) -> dict[str, str]:
    """The cell's task and settings as MLflow parameters (module docstring)."""
    params = {"method": cell["method"], "dataset": cell["dataset"], "protocol": cell["protocol"],
              "ratio": _text(float(cell["ratio"])), "seed": _text(int(cell["seed"])),
              "epochs": _text(int(cell["epochs"])), "test": test_of(cell.get("options"))}
    if pair_label(cell.get("pair")) != "-":
        params["pair"] = pair_label(cell.get("pair"))
    for prefix in ("params", "options"):
        value = cell.get(prefix)
        if isinstance(value, dict):
            label = "method" if prefix == "params" else prefix
            params.update({f"{label}.{name}": _text(leaf) for name, leaf in leaves(value)})
    return params


def metric_name(name: str) -> str:
    """A dotted metric name as MLflow accepts it (letters, digits, ``_ - . / `` and spaces)."""
    return re.sub(r"[^\w.\-/ ]", "_", name)


def run_metrics(cell: dict) -> dict[str, float]:
    """Every number of the cell (``cell_rows``' ``numbers``), by a dotted name MLflow accepts (empty for a
    failed cell)."""
    return {metric_name(name): value for name, value in cell.get("numbers", {}).items()}


def loss_histories(folder) -> list[tuple[str, float, int]]:
    """(metric name, value, epoch from 1) for each per-epoch loss in a cell's loss files."""
    found = []
    for file in LOSS_FILES:
        path = Path(folder) / file if isinstance(folder, str) else None
        if path is None or not path.is_file():
            continue
        try:
            history = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # an unreadable file is still uploaded as it is
        for loss, values in (history.items() if isinstance(history, dict) else ()):
            if loss in NOT_PER_EPOCH or not isinstance(values, list):
                continue
            numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
            if len(numbers) == len(values):
                name = metric_name(f"{Path(file).stem}.{loss}")
                found += [(name, float(v), epoch) for epoch, v in enumerate(numbers, start=1)]
    return found


