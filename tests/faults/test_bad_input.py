"""Bad ``bench run`` input, generated with hypothesis: ratios outside (0, 1], seeds below 1, unknown names
(methods, datasets, presets, protocols, devices, metrics), empty lists, duplicated names, integers out of
range, a results path that is a file, an unwritable results folder. Each is one
``Error:`` line on stderr naming the fix, exit code 2, and the existing store unchanged byte for byte.
Also a damaged store (garbage, truncated, a garbled page, empty, another SQLite file) for ``bench run`` and
``bench report``: one line, the file left as it is.

The CLI runs in this process (``bench.cli.main``, the console script's own entry point) so that hundreds of
inputs fit in seconds; one input per kind also goes through the installed ``bench`` command."""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import shutil
from pathlib import Path

import pytest
from helpers import run_bench
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mounts import can_mount, remount_read_only, tmpfs

from bench.cli import main
from bench.datasets import dataset_names
from bench.grid import preset_names
from bench.methods import method_names

METHODS, DATASETS = method_names(), dataset_names()
FAST = ["imbalanced", "smote", "adasyn"]
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.", min_size=1,
               max_size=12)


def _digest(folder: Path) -> dict:
    """Every file of the results folder and its SHA-256."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A results folder holding a real store (the smoke cells, one epoch)."""
    results = tmp_path_factory.mktemp("bad-input") / "results"
    assert _main("run", "--preset", "smoke", "--epochs", "1", "--results", results, "--quiet")[0] == 0
    assert (results / "bench.sqlite").stat().st_size > 0
    return results


def _main(*args) -> tuple[int, str]:
    """``bench`` in this process: (exit code, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main([*map(str, args)])
            code = 0
        except SystemExit as exc:
            code = exc.code
    return code, err.getvalue()


def _check(store: Path, tally, args: list, fragment: str, results: Path | None = None) -> None:
    before = _digest(store)
    code, err = _main("run", "--preset", "smoke", "--epochs", "1", "--quiet", "--results", results or store, *args)
    tally["bad_inputs"] += 1
    lines = err.strip().splitlines()
    assert code == 2, (args, err)
    assert len(lines) == 1 and lines[0].startswith("Error: ") and fragment in lines[0], (args, err)
    assert _digest(store) == before, args  # the store (and everything beside it) untouched


def _listing(valid: list[str], bad: str, position: int) -> str:
    items = list(valid)
    items.insert(position % (len(items) + 1), bad)
    return ",".join(items)


def _ratio_text(value: float) -> str:
    return "nan" if math.isnan(value) else repr(value)


@SETTINGS
@given(bad=st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0, exclude_min=True), st.just(math.nan)),
       valid=st.lists(st.sampled_from(["0.5", "0.1", "0.05"]), max_size=2, unique=True), position=st.integers(0, 3))
def test_a_ratio_outside_0_1(store, tally, bad, valid, position):
    _check(store, tally, ["--ratios", _listing(valid, _ratio_text(bad), position)], "is outside (0, 1]")


@SETTINGS
@given(bad=st.text(alphabet="abcxyz%$#/ ", min_size=1, max_size=6).filter(lambda t: t.strip() and "," not in t))
def test_a_ratio_that_is_not_a_number(store, tally, bad):
    _check(store, tally, ["--ratios", f"0.1,{bad}"], "is not a number")


@SETTINGS
@given(seeds=st.integers(max_value=0))
def test_seeds_below_one(store, tally, seeds):
    _check(store, tally, ["--seeds", seeds], "--seeds must be at least 1")


@SETTINGS
@given(kind=st.sampled_from(["method", "dataset"]), bad=NAME, valid=st.lists(st.sampled_from(FAST), unique=True),
       position=st.integers(0, 3))
def test_an_unknown_name(store, tally, kind, bad, valid, position):
    known = METHODS if kind == "method" else DATASETS
    if bad in known:  # hypothesis found a real name: not a bad input
        return
    listing = _listing(valid if kind == "method" else ["digits"], bad, position)
    _check(store, tally, [f"--{kind}s", listing], f"unknown {kind} '{bad}'; valid names: ")


CHOICES = {  # option -> (the valid values a bad one must avoid, the error's start)
    "--preset": (set(preset_names()), "unknown preset '{}'"),
    "--protocol": ({"binary", "longtail", "step", "gamo", "subset"}, "unknown protocol '{}'"),
    "--device": ({"auto", "cpu", "cuda"}, "unknown device '{}'"),
    "--metrics": ({"ssim", "fid", "battle", "none"}, "unknown metric {}"),
}


@SETTINGS
@given(option=st.sampled_from(sorted(CHOICES)), bad=NAME)
def test_an_unknown_choice(store, tally, option, bad):
    valid, message = CHOICES[option]
    if bad in valid or bad.startswith("cuda") or bad.endswith(".toml"):  # real names, or another error
        return
    _check(store, tally, [option, bad], message.format(bad))


@SETTINGS
@given(data=st.data())
def test_an_integer_out_of_range(store, tally, data):
    option, values, message = data.draw(st.sampled_from([
        ("--epochs", st.integers(max_value=0), "epochs must be at least 1"),
        ("--image-size", st.one_of(st.integers(max_value=7), st.integers(min_value=513)),
         "--image-size must be between 8 and 512"),
        ("--jobs", st.integers(max_value=0), "--jobs must be at least 1"),
    ]))
    _check(store, tally, [option, data.draw(values)], message)


@SETTINGS
@given(option=st.sampled_from(["--methods", "--datasets", "--ratios", "--pairs", "--sizes", "--metrics"]),
       text=st.text(alphabet=", \t", max_size=5))
def test_an_empty_list(store, tally, option, text):
    fragment = "is an empty list"
    if option == "--pairs":  # parsed as pairs: an empty one is not MAJORITY:MINORITY
        fragment = "is not MAJORITY:MINORITY"
    elif option == "--metrics":  # an empty --metrics means none: bad only together with something else
        text, fragment = text + ",bogus", "unknown metric bogus"
    _check(store, tally, [option, text], fragment)


@SETTINGS
@given(kind=st.sampled_from(["--methods", "--datasets", "--ratios"]), data=st.data())
def test_a_name_listed_twice(store, tally, kind, data):
    pool = {"--methods": FAST + ["gan", "capsan", "crl"], "--datasets": ["digits", "mnist", "cifar10"],
            "--ratios": ["0.1", "0.5", "0.05", "1"]}[kind]
    names = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3, unique=True))
    twice = data.draw(st.sampled_from(names))
    spelled = {"0.1": "0.10", "0.5": ".5", "0.05": "5e-2", "1": "1.0"}.get(twice, f" {twice} ") if kind == "--ratios" \
        else f" {twice} "
    listing = _listing(names, data.draw(st.sampled_from([twice, spelled])), data.draw(st.integers(0, 3)))
    _check(store, tally, [kind, listing], "is listed twice")


@SETTINGS
@given(contents=st.binary(max_size=64), args=st.sampled_from([[], ["--seeds", "2"], ["--methods", "imbalanced"]]))
def test_a_results_path_that_is_a_file(store, tally, tmp_path_factory, contents, args):
    path = tmp_path_factory.mktemp("file") / "results"
    path.write_bytes(contents)
    _check(store, tally, args, f"results path {path} is a file; give a folder with --results", results=path)
    assert path.read_bytes() == contents


@pytest.fixture(scope="module")
def read_only_results(store, tmp_path_factory):
    """A copy of the store in a folder this process cannot write: a read-only tmpfs as root, else chmod."""
    where = tmp_path_factory.mktemp("read-only") / "mnt"
    if can_mount():
        with tmpfs(where, 4096):
            shutil.copy(store / "bench.sqlite", where / "bench.sqlite")
            remount_read_only(where)
            yield where
    else:
        where.mkdir()
        shutil.copy(store / "bench.sqlite", where / "bench.sqlite")
        where.chmod(0o555)
        yield where
        where.chmod(0o755)


@SETTINGS
@given(args=st.sampled_from([[], ["--seeds", "2"], ["--ratios", "0.2"], ["--no-resume"]]))
def test_an_unwritable_results_folder(read_only_results, tally, args):
    _check(read_only_results, tally, args, "give a writable --results folder")


def test_the_installed_command_exits_2_and_leaves_the_store(store, read_only_results, tally):
    for args, fragment in ((["--ratios", "1.5"], "is outside (0, 1]"), (["--methods", "smote,smote"], "listed twice")):
        before = _digest(store)
        run = run_bench("run", "--preset", "smoke", "--results", store, *args)
        tally["bad_inputs"] += 1
        assert run.returncode == 2 and run.stderr.count("\n") == 1 and fragment in run.stderr, run.stderr
        assert _digest(store) == before
    run = run_bench("run", "--preset", "smoke", "--results", read_only_results)
    tally["bad_inputs"] += 1
    assert run.returncode == 2 and "give a writable --results folder" in run.stderr, run.stderr


def test_a_store_in_a_read_only_folder_is_still_reported(read_only_results, tmp_path):
    """Readers open the store read-only, so an archived or mounted store is reported where it lies."""
    before = _digest(read_only_results)
    code, err = _main("report", "--results", read_only_results, "--out", tmp_path / "report", "--format", "md")
    assert code == 0, err
    assert "imbalanced" in (tmp_path / "report" / "table3.md").read_text()
    assert _digest(read_only_results) == before


def _damage(store: Path, folder: Path, kind: str) -> None:
    folder.mkdir()
    data = (store / "bench.sqlite").read_bytes()
    if kind == "garbage":
        data = bytes(range(256)) * 64
    elif kind == "truncated":  # the header page only: the tables are gone
        data = data[:4096]
    elif kind == "garbled":  # the header is intact, a page in the middle is not
        middle = len(data) // 2
        data = data[:middle] + b"\xff" * 512 + data[middle + 512:]
    elif kind == "empty":
        data = b""
    elif kind == "another-sqlite-file":
        import sqlite3

        with sqlite3.connect(folder / "bench.sqlite") as conn:
            conn.execute("CREATE TABLE notes (text TEXT)")
        return
    (folder / "bench.sqlite").write_bytes(data)


@pytest.mark.parametrize("kind", ["garbage", "truncated", "garbled", "empty", "another-sqlite-file"])
@pytest.mark.parametrize("command", ["run", "report"])
def test_a_damaged_store_is_one_line_and_left_as_it_is(store, tmp_path, tally, kind, command):
    folder = tmp_path / "results"
    _damage(store, folder, kind)
    before = _digest(folder)
    args = ("run", "--preset", "smoke", "--epochs", "1", "--quiet") if command == "run" else (
        "report", "--out", tmp_path / "report")
    code, err = _main(*args, "--results", folder)
    tally["faults"] += 1
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("Error: ") and str(folder / "bench.sqlite") in lines[0], err
    assert "give another --results folder" in lines[0], err
    assert _digest(folder)["bench.sqlite"] == before["bench.sqlite"]  # (a reader may add SQLite's -shm file)
    tally["survived"] += 1
