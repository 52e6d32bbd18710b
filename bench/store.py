"""The results store: one SQLite file, ``<results>/bench.sqlite``, an append-only table of cell attempts.

Every attempt at a cell is a new row (nothing is ever updated or deleted), committed in its own
transaction, so a kill at any moment leaves every finished cell intact. ``--resume`` skips a cell whose
key has a ``done`` row; the report reads the newest ``done`` row of each key, or the newest row when the
cell only ever failed. WAL journaling lets ``bench report`` read while ``bench run`` writes; readers open the
store read-only, so reading never changes it. A write that fails (a full disk) rolls back whole and is one
``BenchError``, as is a store that is damaged or not a bench store.
Reading adds a metric that a cell predates where its stored confusion matrix gives it exactly
(``metrics.derived_metrics``: ``g_mean_macro``); the file itself is never rewritten.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from pathlib import Path

import pandas as pd

from bench.errors import BenchError
from bench.metrics import derived_metrics

STORE_NAME = "bench.sqlite"
SCHEMA_VERSION = 3  # 2: the options column; 3: the node column

# Columns holding JSON documents; they are decoded on read.
JSON_COLUMNS = ("params", "pair", "counts", "metrics", "curves", "versions", "options")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    key         TEXT NOT NULL,      -- hash of everything that defines the cell
    method      TEXT NOT NULL,
    params      TEXT NOT NULL,      -- JSON: the method's full parameters (defaults + overrides)
    dataset     TEXT NOT NULL,
    protocol    TEXT NOT NULL,
    pair        TEXT,               -- JSON [majority, minority] for the binary protocol, else null
    ratio       REAL NOT NULL,
    seed        INTEGER NOT NULL,
    epochs      INTEGER NOT NULL,
    counts      TEXT,               -- JSON: realised class counts of the train and test sets
    status      TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    metrics     TEXT,               -- JSON: metric name -> value
    curves      TEXT,               -- JSON: what ROC curves need (fpr, tpr)
    error       TEXT,
    started_at  TEXT NOT NULL,      -- ISO 8601, UTC
    finished_at TEXT NOT NULL,
    duration_s  REAL NOT NULL,
    device      TEXT NOT NULL,
    versions    TEXT NOT NULL,      -- JSON: package versions
    artifacts   TEXT,               -- folder of the cell's artifacts, relative to the results folder
    options     TEXT,               -- JSON: the run's settings in the cell's key (image size, precision, ...)
    node        TEXT                -- the machine that ran the cell: host name, and the Ray node or Slurm job
);
CREATE INDEX IF NOT EXISTS results_key ON results (key, status);
"""

_FIELDS = (
    "key", "method", "params", "dataset", "protocol", "pair", "ratio", "seed", "epochs", "counts",
    "status", "metrics", "curves", "error", "started_at", "finished_at", "duration_s", "device",
    "versions", "artifacts", "options", "node",
)


class Store:
    """Read and append cell results in ``<results_dir>/bench.sqlite``."""

    def __init__(self, results_dir: str | Path, create: bool = True):
        self.results_dir = check_results_dir(results_dir)
        self.path = self.results_dir / STORE_NAME
        if not create and not self.path.exists():
            raise BenchError(f"no results store at {self.path}; run 'bench run --results {self.results_dir}' first")
        try:
            if create:
                self.results_dir.mkdir(parents=True, exist_ok=True)
                self._conn = sqlite3.connect(self.path, timeout=30.0)
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=FULL")
                with self._conn:
                    self._conn.executescript(_SCHEMA)
                    self._conn.execute("INSERT OR IGNORE INTO meta (name, value) VALUES ('schema_version', ?)",
                                       (str(SCHEMA_VERSION),))
                    self._migrate()
            else:  # readers (reports, --dry-run) open read-only: a store is never changed by reading it
                self._conn = _connect_read_only(self.path)
        except sqlite3.DatabaseError as exc:
            raise BenchError(_database_error(self.path, exc)) from exc
        except PermissionError as exc:
            raise BenchError(f"cannot write to {self.results_dir} ({exc.strerror}); give a writable --results folder") from exc
        except OSError as exc:
            raise BenchError(f"cannot create the results store {self.path} ({exc.strerror}); free space or give "
                             "another --results folder") from exc

    def _migrate(self) -> None:
        """Bring a store written by an earlier version up to this schema (only when writing: a report leaves
        the stores it reads as they are)."""
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(results)")}
        added = [name for name in ("options", "node") if name not in columns]  # schema 2, schema 3
        for name in added:
            self._conn.execute(f"ALTER TABLE results ADD COLUMN {name} TEXT")
        if added:
            self._conn.execute("UPDATE meta SET value = ? WHERE name = 'schema_version'", (str(SCHEMA_VERSION),))

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def add(self, row: dict) -> None:
        """Append one attempt; JSON columns may be given as Python objects."""
        values = []
        for field in _FIELDS:
            value = row.get(field)
            if field in JSON_COLUMNS and value is not None and not isinstance(value, str):
                value = json.dumps(value, sort_keys=True)
            values.append(value)
        try:
            with self._conn:  # one transaction per cell: a kill never leaves half a row
                self._conn.execute(
                    f"INSERT INTO results ({', '.join(_FIELDS)}) VALUES ({', '.join('?' * len(_FIELDS))})", values
                )
        except sqlite3.OperationalError as exc:  # disk full, an I/O error: the transaction rolled back whole
            raise BenchError(_database_error(self.path, exc, writing=True)) from exc

    @contextlib.contextmanager
    def _reading(self):
        """A damaged store shows only when a page is read: one line, never a traceback."""
        try:
            yield
        except (sqlite3.DatabaseError, pd.errors.DatabaseError) as exc:  # pandas wraps SQLite's own error
            raise BenchError(_database_error(self.path, exc.__cause__ or exc)) from exc

    def check(self) -> None:
        """SQLite's ``quick_check`` over every page: damage in a page that no query of ours happens to read
        (a table's free space, ``sqlite_sequence``) is still one line, before a run appends to the store or a
        report trusts it."""
        with self._reading():
            problems = [text for (text,) in self._conn.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise BenchError(_database_error(self.path, sqlite3.DatabaseError(
                f"database disk image is malformed: {problems[0]}")))

    def done_keys(self) -> set[str]:
        self.check()
        with self._reading():
            return {k for (k,) in self._conn.execute("SELECT DISTINCT key FROM results WHERE status = 'done'")}

    def attempts(self) -> pd.DataFrame:
        """Every stored attempt, oldest first, JSON columns decoded."""
        self.check()
        with self._reading():
            frame = pd.read_sql_query("SELECT * FROM results ORDER BY id", self._conn)
        for column in ("options", "node"):  # a store from before schema 2 or 3, read without migrating it
            if column not in frame:
                frame[column] = None
        frame["node"] = frame["node"].astype(object).where(frame["node"].notna(), None)  # unknown: None, not NaN
        for column in JSON_COLUMNS:
            frame[column] = frame[column].map(lambda v: json.loads(v) if isinstance(v, str) else None)
        # a metric added after a cell ran, computed from what the cell stored (never written back)
        frame["metrics"] = frame["metrics"].map(derived_metrics)
        return frame

    def cells(self) -> pd.DataFrame:
        """One row per cell key: its newest done attempt, or its newest attempt if none succeeded."""
        frame = self.attempts()
        if frame.empty:
            return frame
        frame["_done"] = frame["status"].eq("done")
        frame = frame.sort_values(["_done", "id"]).groupby("key", sort=False).tail(1)
        return frame.drop(columns="_done").sort_values("id").reset_index(drop=True)


def check_results_dir(results_dir: str | Path) -> Path:
    """``results_dir`` as a Path; a ``BenchError`` when it names a file."""
    results_dir = Path(results_dir)
    if results_dir.exists() and not results_dir.is_dir():
        raise BenchError(f"results path {results_dir} is a file; give a folder with --results")
    return results_dir


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection. A WAL store needs its ``-shm`` file, which SQLite cannot create in a read-only
    folder (an archive, a colleague's mount): there no run can be writing, so the file is opened immutable."""
    uri = path.resolve().as_uri()
    try:
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=30.0)
        conn.execute("SELECT 1 FROM results LIMIT 1").fetchall()
        return conn
    except sqlite3.OperationalError as exc:
        if "unable to open" not in str(exc) or os.access(path.parent, os.W_OK):
            raise
    conn = sqlite3.connect(f"{uri}?immutable=1", uri=True)
    conn.execute("SELECT 1 FROM results LIMIT 1").fetchall()
    return conn


def _database_error(path: Path, exc: Exception, writing: bool = False) -> str:
    """One line for an SQLite error: what happened to which file, and the fix."""
    text = str(exc)
    if "full" in text or "disk I/O" in text:
        done = "every cell stored before is intact; " if writing else ""
        return (f"cannot write the results store {path} ({text}): the disk is full or failing; {done}free space "
                "(or give another --results folder) and run the same command again to finish the rest")
    if "malformed" in text:
        return (f"the results store {path} is damaged ({text}); give another --results folder (sqlite3's .recover "
                f"may rescue its rows: sqlite3 {path} .recover | sqlite3 recovered/bench.sqlite)")
    if "locked" in text or "busy" in text:
        return f"the results store {path} is busy ({text}); another process holds it, try again when it is done"
    if "readonly" in text or "unable to open" in text:
        return f"cannot open the results store {path} ({text}); give a readable, writable --results folder"
    return f"cannot open results store {path} ({text}); it is not a bench store or is damaged: give another --results folder"


def read_cells(results_dirs) -> pd.DataFrame:
    """``Store.cells()`` of one or several results folders, as one frame (what ``bench report`` reads).

    Several folders (a grid split over machines, a CPU and a GPU run) are merged: where a cell key is in more
    than one, its newest done attempt wins (by finish time), else its newest attempt. ``artifacts`` become
    absolute paths, since they no longer share one folder, and ``results`` names the folder each row came
    from. The folders are only read.
    """
    folders = [results_dirs] if isinstance(results_dirs, str | Path) else list(results_dirs)
    if not folders:
        raise BenchError("no results folder given; pass --results DIR")
    frames = []
    for folder in dict.fromkeys(str(Path(f)) for f in folders):
        with Store(folder, create=False) as store:
            cells = store.cells()
        if cells.empty:
            continue
        root = Path(folder).resolve()
        cells["artifacts"] = [str(root / a) if isinstance(a, str) and a else a for a in cells["artifacts"]]
        cells["results"] = folder
        frames.append(cells)
    if not frames:
        with Store(folders[0], create=False) as store:  # an empty store keeps its columns
            return store.cells()
    frame = pd.concat(frames, ignore_index=True)
    if len(frames) == 1:
        return frame
    frame["_done"] = frame["status"].eq("done")
    frame = frame.sort_values(["_done", "finished_at"], kind="stable").groupby("key", sort=False).tail(1)
    return frame.drop(columns="_done").sort_values(["results", "id"], kind="stable").reset_index(drop=True)
