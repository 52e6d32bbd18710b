"""Every report output's SHA-256, to show a refactoring of ``reports/`` changes no byte.

For each results folder, ``bench report --validation`` in every format (tables, statistics, budget,
``validation.md``, figures, the HTML page), ``bench export`` (CSV) and ``bench compare`` (the saved
reference file, and the store against itself in Markdown) are written into a scratch folder,
and each file's digest is recorded under ``<store>/<file>``. Save the digests before a change and check
them after it; a difference is listed file by file (explain it, or it is a regression). The terminal
Table 3 that ``bench report`` prints is recorded too (``<store>/stdout``).

    python benchmarks/report_digest.py --save before.json [STORE ...]
    python benchmarks/report_digest.py --check before.json [STORE ...]

STORE defaults to every committed store under ``benchmarks/validation/`` (a folder holding
``bench.sqlite``). Figures depend on matplotlib's version: compare digests made on one machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def committed_stores() -> list[Path]:
    return sorted(p.parent for p in (ROOT / "benchmarks" / "validation").rglob("bench.sqlite"))


def _name(store: Path) -> str:
    try:
        return str(store.resolve().relative_to(ROOT))
    except ValueError:
        return str(store)


def digests(store: Path) -> dict[str, str]:
    """{file name: sha256} of everything ``bench report`` and ``bench export`` write for one store."""
    out = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "report"
        # relative output paths: the "wrote ..." lines must not name the scratch folder
        report = subprocess.run([sys.executable, "-m", "bench.cli", "report", "--results", str(store.resolve()),
                                 "--out", "report", "--validation"], capture_output=True, text=True, cwd=scratch)
        out["stdout"] = hashlib.sha256(report.stdout.encode()).hexdigest()
        out["exit"] = str(report.returncode)
        export = Path(scratch) / "cells.csv"
        subprocess.run([sys.executable, "-m", "bench.cli", "export", "--results", str(store.resolve()), "--out",
                        "cells.csv"],
                       capture_output=True, cwd=scratch, check=False)
        # bench compare: the reference file it saves, and the store against itself
        saved = Path(scratch) / "reference.json"
        subprocess.run([sys.executable, "-m", "bench.cli", "compare", "--results", str(store), "--save", str(saved)],
                       capture_output=True, cwd=scratch, check=False)
        against = subprocess.run([sys.executable, "-m", "bench.cli", "compare", "--results", str(store), "--against",
                                  str(store), "--format", "md"], capture_output=True, text=True, cwd=scratch)
        out["compare.md"] = hashlib.sha256(against.stdout.encode()).hexdigest()
        files = sorted(folder.rglob("*")) + [p for p in (export, saved) if p.exists()]
        for path in files:
            if path.is_file():
                out[str(path.relative_to(folder)) if folder in path.parents else path.name] = \
                    hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--save", type=Path)
    mode.add_argument("--check", type=Path)
    parser.add_argument("stores", nargs="*", type=Path)
    args = parser.parse_args(argv)
    stores = args.stores or committed_stores()
    now = {_name(s): digests(s) for s in stores}
    if args.save:
        args.save.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
        print(f"{sum(map(len, now.values()))} digests of {len(now)} stores -> {args.save}")
        return 0
    before = json.loads(args.check.read_text())
    differ = 0
    for store, files in now.items():
        old = before.get(store, {})
        for name in sorted(set(old) | set(files)):
            if old.get(name) != files.get(name):
                differ += 1
                state = "new" if name not in old else "gone" if name not in files else "differs"
                print(f"{store}/{name}: {state}")
    print(f"{differ} of {sum(map(len, now.values()))} outputs differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
