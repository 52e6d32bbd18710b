"""``--precision bf16`` and ``--compile`` for every torch method, and no host synchronisation per step.

On the CPU these check the code paths a GPU takes: bf16 autocast is real on the CPU too, torch.compile runs
inductor's CPU backend, and a read-back to the host (``.item()``, ``.tolist()``, boolean-mask indexing, ...)
is counted whether or not a GPU would have to wait for it.
"""

import contextlib
import sys

import numpy as np
import pytest
import torch
from helpers import repeatable, run_bench

from bench.cell import CellEnv, run_cell
from bench.datasets import load_dataset
from bench.datasets.base import ImageSet
from bench.datasets.imbalance import make_imbalanced
from bench.errors import BenchError
from bench.grid import Preset, build_grid
from bench.methods import FitContext, get_method
from bench.methods.dagan import rotate_pairs
from bench.store import Store

CPU = torch.device("cpu")
TORCH_METHODS = ["imbalanced", "crl", "gan", "acgan", "dagan", "bagan", "gamo", "capsan", "capsan-conv"]
# Small, fast versions of each method: the paths are what matter here, not the numbers.
SMALL = {"gan": {"width": 16}, "acgan": {"width": 16}, "dagan": {"g_width": 8, "d_width": 8},
         "bagan": {"width": 16}, "capsan": {"g_channels": 16, "d_width": 16, "primary_types": 8},
         "capsan-conv": {"g_channels": 16, "d_width": 16}}


@pytest.fixture(scope="module")
def task():
    train, test = load_dataset("digits", split="train"), load_dataset("digits", split="test")
    return make_imbalanced(train, test, pair=(3, 5), ratio=0.2, seed=0)


def _fit(name, train, tmp_path, precision="fp32", compile=None, epochs=1, **params):
    torch.manual_seed(0)
    method = get_method(name)(**{**SMALL.get(name, {}), **params})
    ctx = FitContext(device=CPU, seed=0, epochs=epochs, artifact_dir=tmp_path, precision=precision, compile=compile)
    method.fit(train, ctx)
    return method


@contextlib.contextmanager
def layer_dtypes(training: bool = False):
    """The output dtypes of every convolution and linear layer run inside the block; with ``training``, only
    those of forward passes that record gradients (not the shape probes and data-dependent initialisation
    that models run once, in fp32, under no_grad)."""
    seen = set()

    def hook(module, inputs, output):
        if training and not torch.is_grad_enabled():
            return
        if isinstance(module, torch.nn.Conv2d | torch.nn.ConvTranspose2d | torch.nn.Linear):
            seen.add(output.dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


@pytest.mark.parametrize("name", TORCH_METHODS)
def test_bf16_runs_every_layer_of_training_and_prediction_in_bf16(name, task, tmp_path):
    with layer_dtypes(training=True) as seen:
        method = _fit(name, task.train, tmp_path, precision="bf16")
    assert seen == {torch.bfloat16}, f"{name} trained layers in {seen}"
    with layer_dtypes() as seen:
        proba = method.predict_proba(task.test.images)
    assert seen == {torch.bfloat16}
    assert proba.dtype == np.float64 and np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("name", ["imbalanced", "gan", "capsan"])
def test_fp32_runs_no_layer_in_bf16(name, task, tmp_path):
    with layer_dtypes() as seen:
        _fit(name, task.train, tmp_path).predict_proba(task.test.images[:10])
    assert seen == {torch.float32}


def test_generated_samples_follow_the_precision(task, tmp_path):
    method = _fit("gan", task.train, tmp_path, precision="bf16")
    with layer_dtypes() as seen:
        images = method.sample(5, 1)
    assert seen == {torch.bfloat16} and images.dtype == np.uint8 and images.shape == (5, 1, 8, 8)


# --------------------------------------------------------------------------- host synchronisation

SYNCING = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "nonzero", "unique")


@contextlib.contextmanager
def count_host_reads():
    """Counts the calls that read a tensor's values back to the host: on a GPU each one waits for every
    queued kernel. Boolean-mask indexing (which needs the mask's count) is counted too."""
    counts = {"n": 0}
    originals = {name: getattr(torch.Tensor, name) for name in (*SYNCING, "__getitem__", "__setitem__")}
    original_nonzero = torch.nonzero

    def counting(name):
        def wrapper(self, *args, **kwargs):
            # Adam keeps its step counters on the host (unless capturable): reading them waits for nothing.
            counts["n"] += not sys._getframe(1).f_globals.get("__name__", "").startswith("torch.optim")
            return originals[name](self, *args, **kwargs)
        return wrapper

    def is_mask(index):
        parts = index if isinstance(index, tuple) else (index,)
        return any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts)

    def getitem(self, index):
        counts["n"] += is_mask(index)
        return originals["__getitem__"](self, index)

    def setitem(self, index, value):
        counts["n"] += is_mask(index)
        return originals["__setitem__"](self, index, value)

    def nonzero(*args, **kwargs):
        counts["n"] += 1
        return original_nonzero(*args, **kwargs)

    try:
        for name in SYNCING:
            setattr(torch.Tensor, name, counting(name))
        torch.Tensor.__getitem__, torch.Tensor.__setitem__ = getitem, setitem
        torch.nonzero = nonzero
        yield counts
    finally:
        for name, fn in originals.items():
            setattr(torch.Tensor, name, fn)
        torch.nonzero = original_nonzero


@pytest.mark.parametrize("name, params", [(name, {}) for name in TORCH_METHODS] + [("dagan", {"rotate": True})])
def test_host_reads_do_not_grow_with_the_steps_of_an_epoch(name, params, task, tmp_path):
    """The same fit on the training set and on four copies of it (four times the steps per epoch, the same
    epochs) reads back to the host the same number of times: per epoch and per phase, never per step."""
    train = task.train
    copies = ImageSet(np.concatenate([train.images] * 4), np.concatenate([train.labels] * 4), train.class_names)
    reads = []
    for data in (train, copies):
        with count_host_reads() as counts:
            _fit(name, data, tmp_path, epochs=2, **params)
        reads.append(counts["n"])
    steps = -(-len(train) // 64)
    assert reads[0] > 0  # the counter counts: the per-epoch loss read-back at least
    assert reads[1] == reads[0], (f"{name}: {reads[0]} host reads with {steps} steps per epoch, {reads[1]} with "
                                  f"{4 * steps}: something reads back every step")


def test_rotate_pairs_matches_masked_rotation():
    """The sync-free rotation gives what rotating the selected pairs in place gave."""
    a, b = torch.randn(32, 1, 6, 6), torch.randn(32, 1, 6, 6)
    got = rotate_pairs(a, b, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    k = torch.randint(4, (32,), generator=g)
    k = torch.where(torch.rand(32, generator=g) < 0.5, k, torch.zeros_like(k))
    for i in range(32):
        for out, src in zip(got, (a, b), strict=True):
            assert torch.equal(out[i], torch.rot90(src[i], int(k[i]), dims=(1, 2)))
    assert (k > 0).any() and (k == 0).any()


# --------------------------------------------------------------------------- the grid and the CLI


def _cells(**settings):
    config = Preset(name="t", methods=["imbalanced", "capsan"], datasets=["digits"], ratios=[0.1], seeds=1,
                       pairs=[[3, 5]], epochs=1, **settings)
    return build_grid(config)


def test_precision_and_compile_are_part_of_the_cell_key_only_when_set():
    plain, bf16, compiled = _cells(), _cells(precision="bf16"), _cells(compile="default")
    assert _cells(precision="fp32")[0].key == plain[0].key  # the default keeps earlier runs' keys
    assert len({plain[0].key, bf16[0].key, compiled[0].key}) == 3
    assert bf16[0].options == {"precision": "bf16"} and compiled[0].options == {"compile": "default"}
    # CapsAN's own precision parameter follows the run's, so its stored parameters say what ran.
    assert bf16[1].params["precision"] == "bf16" and plain[1].params["precision"] == "fp32"


@pytest.mark.parametrize("settings, message", [({"precision": "fp16"}, "unknown precision 'fp16'"),
                                               ({"compile": "fast"}, "unknown compile mode 'fast'")])
def test_bad_precision_or_compile_mode_is_refused(settings, message):
    with pytest.raises(BenchError, match=message):
        _cells(**settings)


def test_cli_refuses_an_unknown_precision_before_making_a_store(tmp_path):
    result = run_bench("run", "--methods", "imbalanced", "--datasets", "digits", "--precision", "fp8",
                       "--results", str(tmp_path / "r"))
    assert result.returncode == 2 and "fp8" in result.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("name", ["imbalanced", "capsan"])
def test_compiled_cell_is_deterministic_and_stored_with_its_options(name, tmp_path):
    """``--compile`` through run_cell: the networks really are compiled, the same seed gives the same numbers
    twice, and the row records the options; Table 3 counts a compiled and an eager cell as two configurations."""
    from torch._dynamo.utils import counters

    from bench.reports import table3

    compiled = [c for c in _cells(compile="default", method_params={"capsan": SMALL["capsan"]}) if c.method == name]
    eager = [c for c in _cells(method_params={"capsan": SMALL["capsan"]}) if c.method == name]
    train, test = load_dataset("digits", split="train"), load_dataset("digits", split="test")
    counters.clear()
    import torch._inductor.config as inductor

    inductor.deterministic = False
    rows = [run_cell(compiled[0], train, test, CellEnv(CPU, tmp_path / f"r{i}")) for i in range(2)]
    assert counters["stats"]["unique_graphs"] >= 1  # dynamo captured and compiled the training step
    assert inductor.deterministic and torch.are_deterministic_algorithms_enabled()  # the cell's flag reached it
    assert [r["status"] for r in rows] == ["done", "done"], [r["error"] for r in rows]
    assert repeatable(rows[0]["metrics"]) == repeatable(rows[1]["metrics"])
    assert rows[0]["options"] == {"compile": "default"}
    with Store(tmp_path / "store") as store:
        store.add(rows[0])
        store.add(run_cell(eager[0], train, test, CellEnv(CPU, tmp_path / "eager")))
        stored = store.cells()
    assert stored.loc[0, "options"] == {"compile": "default"} and stored.loc[1, "options"] is None
    assert table3(stored)["n_configs"].tolist() == [2]


def test_an_old_store_gains_the_options_and_node_columns_when_written_not_when_read(tmp_path):
    import sqlite3

    folder = tmp_path / "old"
    folder.mkdir()
    row = {"key": "k", "method": "m", "params": {}, "dataset": "d", "protocol": "binary", "ratio": 0.1, "seed": 0,
           "epochs": 1, "status": "done", "started_at": "t", "finished_at": "t", "duration_s": 0.0, "device": "cpu",
           "versions": {}}
    with Store(folder) as store:
        store.add({**row, "key": "old"})  # a cell stored before the options column existed
    with sqlite3.connect(folder / "bench.sqlite") as conn:  # make it a schema-1 store: no options, no node
        columns = [row[1] for row in conn.execute("PRAGMA table_info(results)") if row[1] not in ("options", "node")]
        conn.execute(f"CREATE TABLE old AS SELECT {', '.join(columns)} FROM results")
        conn.execute("DROP TABLE results")
        conn.execute("ALTER TABLE old RENAME TO results")
        conn.execute("UPDATE meta SET value = '1' WHERE name = 'schema_version'")
    before = (folder / "bench.sqlite").read_bytes()
    with Store(folder, create=False) as store:
        old_cells = store.cells()
    assert old_cells["key"].tolist() == ["old"] and old_cells.loc[0, "options"] is None  # read as "no options"
    assert old_cells.loc[0, "node"] is None
    assert (folder / "bench.sqlite").read_bytes() == before  # reading migrates nothing
    with Store(folder) as store:
        store.add({**row, "options": {"precision": "bf16"}, "node": "host-a"})
        cells = store.cells().set_index("key")
    assert cells.loc["k", "options"] == {"precision": "bf16"} and cells.loc["old", "options"] is None
    assert cells.loc["k", "node"] == "host-a" and cells.loc["old", "node"] is None
    with sqlite3.connect(folder / "bench.sqlite") as conn:
        assert conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone() == ("3",)


def test_bench_run_bf16_end_to_end(tmp_path):
    result = run_bench("run", "--methods", "imbalanced", "--datasets", "digits", "--ratios", "0.1", "--seeds", "1",
                       "--pairs", "3:5", "--epochs", "2", "--precision", "bf16", "--results", str(tmp_path / "r"),
                       "--quiet")
    assert result.returncode == 0, result.stderr
    with Store(tmp_path / "r", create=False) as store:
        cells = store.cells()
    assert list(cells["status"]) == ["done"] and cells.loc[0, "options"] == {"precision": "bf16"}
    g_mean = cells.loc[0, "metrics"]["g_mean"]
    assert isinstance(g_mean, float) and 0.0 <= g_mean <= 1.0  # a G-mean was stored, not a missing value
