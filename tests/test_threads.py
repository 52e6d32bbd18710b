"""torch's CPU threads per cell (``bench/threads.py``): an explicit choice is kept, the default follows the
threads other processes keep busy, and every cell stores the count it ran with. Speed is measured by
``benchmarks/threads.py``, not here."""

import os

import pytest
import torch
from helpers import cli_exit

from bench import threads
from bench.errors import BenchError
from bench.store import Store


@pytest.fixture(autouse=True)
def torch_threads(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _stat(root, pid, tid, state):
    folder = root / str(pid) / "task" / str(tid)
    folder.mkdir(parents=True)
    (folder / "stat").write_text(f"{tid} (py thon) {state} 1 2 3\n")  # a name with a space, as comm can have


def test_runnable_threads_of_other_processes_are_counted(tmp_path, monkeypatch):
    (tmp_path / "self").mkdir()
    _stat(tmp_path, 100, 100, "R")
    _stat(tmp_path, 100, 101, "R")  # a second runnable thread of the same process
    _stat(tmp_path, 200, 200, "S")  # sleeping
    _stat(tmp_path, os.getpid(), os.getpid(), "R")  # ourselves: not load
    monkeypatch.setattr(threads, "SAMPLE_GAP_S", 0.0)
    assert threads.runnable_elsewhere(tmp_path) == 2
    assert threads.runnable_elsewhere(tmp_path / "no-proc") is None


def test_the_default_gives_torch_the_cores_other_processes_leave_and_looks_again_only_after_a_while(monkeypatch):
    seen = iter([1, 0])
    monkeypatch.setattr(threads, "runnable_elsewhere", lambda: next(seen))
    policy = threads.ThreadPolicy(cores=2)
    assert policy.apply() == 1 and torch.get_num_threads() == 1  # one core busy elsewhere
    assert policy.apply() == 1  # within RECHECK_S: no new look
    policy._checked -= threads.RECHECK_S
    assert policy.apply() == 2  # the other process is gone


def test_an_explicit_choice_is_kept(monkeypatch):
    monkeypatch.setattr(threads, "runnable_elsewhere", lambda: pytest.fail("an explicit choice looks at nothing"))
    assert threads.ThreadPolicy(3, cores=2).apply() == 3 and torch.get_num_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.ThreadPolicy(cores=2).apply() == 1
    assert threads.worker_threads(None, 4, cores=8) == 1  # OMP_NUM_THREADS wins over cores // jobs
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads.worker_threads(None, 4, cores=8) == 2 and threads.worker_threads(None, 1, cores=8) is None
    assert threads.worker_threads(3, 4, cores=8) == 3
    with pytest.raises(BenchError, match="--threads must be at least 1; got 0"):
        threads.ThreadPolicy(0)


def test_every_cell_stores_the_thread_count_it_ran_with(smoke_run, tmp_path, capsys):
    run, results = smoke_run  # --threads 1
    assert run.returncode == 0, run.stderr
    with Store(results, create=False) as store:
        cells = store.cells()
    assert (cells["metrics"].map(lambda m: m["threads"]) == 1).all()
    assert cells["device"].str.contains(r"\(.*, 1 threads\)").all()
    code, err = cli_exit(["run", "--preset", "smoke", "--threads", "0", "--results", tmp_path / "bad"], capsys)
    assert code == 2 and "--threads must be at least 1" in err
