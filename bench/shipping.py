"""Cells on machines that share no disk with the driver (``--executor ray`` and ``slurm``).

A cluster node need not hold the data folder nor the results folder. The driver loads every dataset the
grid needs (it does anyway, to fail fast) and ships each once: Ray's object store, or one file in the
Slurm jobs folder. A unit (a cell or a fused group) then runs on its node against a private scratch results
folder (``run_shipped``; a user's ``--method-file`` goes as text: ``ship_method_files``), and what the cells wrote there (sample grids, loss logs, a failed cell's
traceback, FID's caches) comes back as bytes with the rows; the driver writes it into the results folder
(``land``) before it stores the rows, so a stored row's artifacts are always beside it.

FID's caches (reference statistics, the proxy classifier) also live in a cache folder on each node that
outlives the units (``node_cache``), so a node computes a reference once however many of its units need it;
a file new in it comes back to the driver's ``fid-cache`` like any artifact. The Inception weights the driver
found (``--fid-weights``, torch's hub cache) are shipped too, so every node computes the same FID.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath

from bench.errors import BenchError
from bench.executors import Job, execute, members, unit_rows

FID_CACHE = "fid-cache"  # the results folder's FID cache, relative to it (bench.runner)


def node_cache() -> Path:
    """This node's cache folder for bench (per user), kept between units and runs."""
    folder = Path(tempfile.gettempdir()) / f"capsan-bench-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _files(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()} if folder.is_dir() else {}


def _weights_file(weights: bytes, cache: Path) -> Path:
    """The shipped Inception weights as a file on this node (written once, named by their hash)."""
    path = cache / f"inception-{hashlib.sha256(weights).hexdigest()[:16]}.pth"
    if not path.is_file() or path.stat().st_size != len(weights):
        partial = path.with_suffix(f".{os.getpid()}.part")
        partial.write_bytes(weights)
        os.replace(partial, path)
    return path


def ship_method_files(job: Job) -> Job:
    """The job with its ``--method-file`` files as text, for nodes that cannot read the driver's paths."""
    sources = tuple((Path(path).name, Path(path).read_text(encoding="utf-8")) for path in job.method_files)
    return dataclasses.replace(job, method_files=(), method_sources=sources)


def _method_files(job: Job, cache: Path) -> tuple[str, ...]:
    """The shipped method files written on this node (each under its own hash, keeping its file name, which
    names its module)."""
    paths = []
    for name, text in job.method_sources:
        path = cache / "methods" / hashlib.sha256(text.encode()).hexdigest()[:16] / name
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{name}.{os.getpid()}.part")
            partial.write_text(text, encoding="utf-8")
            os.replace(partial, path)
        paths.append(str(path))
    return tuple(paths)


def run_shipped(unit, job: Job, device: str, data: tuple, weights: bytes | None = None) -> dict:
    """Run ``unit`` on its shipped ``data`` (``(train, test)``) in a scratch results folder; return
    ``{"rows": [...], "files": {path relative to the results folder: bytes}}``. Nothing is left on the node
    but its cache."""
    cache = node_cache()
    fid_cache = cache / FID_CACHE
    known = set(_files(fid_cache))
    scratch = Path(tempfile.mkdtemp(prefix="bench-unit-"))
    try:
        job = dataclasses.replace(job, results_dir=str(scratch), data_dir=None, download=False,
                                  fid_weights=None if weights is None else str(_weights_file(weights, cache)),
                                  method_files=job.method_files + _method_files(job, cache))
        result = execute(unit, job, device, data=data, fid_cache=fid_cache)
        files = {name: path.read_bytes() for name, path in _files(scratch).items()}
        files.update({f"{FID_CACHE}/{name}": path.read_bytes()
                      for name, path in _files(fid_cache).items() if name not in known})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"rows": result if isinstance(result, list) else [result], "files": files}


def land(results_dir: Path, files: dict[str, bytes]) -> None:
    """Write the files a unit brought back into ``results_dir`` (each whole: a kill never leaves half a
    file); a path that would leave the folder is refused."""
    results_dir = Path(results_dir)
    for name, content in files.items():
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts:
            raise BenchError(f"a worker sent back the file '{name}', outside the results folder; refused")
        target = results_dir.joinpath(*relative.parts)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.{os.getpid()}.part")
            partial.write_bytes(content)
            os.replace(partial, target)
        except OSError as exc:
            raise BenchError(f"cannot write {target} ({exc.strerror}); free space or give a writable --results "
                             "folder, then run the same command again") from exc


def ship_datasets(units: list, data: dict, data_source, put) -> list:
    """For each unit, the handle of its dataset shipped with ``put((train, test))``: each dataset once, however
    many units read it (Ray's object store, a file of the Slurm jobs folder)."""
    shipped = {}
    handles = []
    for unit in units:
        source = data_source(members(unit)[0])
        if source not in shipped:
            shipped[source] = put(data[source])
        handles.append(shipped[source])
    return handles


def deliver(results_dir: Path, unit, result: dict) -> list:
    """``(cell, row)`` of a unit's shipped ``result``, its files written into ``results_dir`` first, so a
    stored row's artifacts are always beside it."""
    land(results_dir, result["files"])
    return unit_rows(unit, result["rows"] if isinstance(unit, list | tuple) else result["rows"][0])


def fid_weights_bytes(fid_settings) -> bytes | None:
    """The Inception weights the driver found, to ship (None: no FID, or the proxy)."""
    path = getattr(fid_settings, "weights_path", None)
    return None if path is None else Path(path).read_bytes()
