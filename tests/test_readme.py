"""Every Python example of the README runs as written: each block is a method file, run on the smoke preset's
task (its 30 epochs), and every cell of its methods must finish and learn (``test_cli.py`` runs one beside
the baselines)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import run_bench

from bench.store import Store

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_the_four_kinds_of_method():
    blocks = python_blocks()
    for base in ("(Method)", "(ResamplingMethod)", "(GenerativeOversampling)"):
        assert any(base in block for block in blocks), base
    assert any("def resample(" in b for b in blocks) and any("def batch_loss(" in b for b in blocks)
    assert any("def skip(" in b for b in blocks)


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_a_readme_example_runs_as_written(index, tmp_path):
    source = python_blocks()[index]
    names = re.findall(r'^    name = "([^"]+)"', source, flags=re.M)
    assert names, "a README example defines a method with a name"
    (tmp_path / "my_method.py").write_text(source)
    run = run_bench("run", "--preset", "smoke", "--methods", ",".join(names), "--method-file", tmp_path / "my_method.py",
                    "--results", tmp_path / "r", "--quiet", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    with Store(tmp_path / "r", create=False) as store:
        cells = store.cells()
    mine = cells[cells["method"].isin(names)]
    assert len(mine) == len(names) and set(mine["status"]) == {"done"}, mine[["method", "status", "error"]]
    assert all(m["g_mean"] > 0 for m in mine["metrics"])  # each learned something on digits 3 vs 5
