"""Shared test helpers (not fixtures): paths and a subprocess runner for the installed ``bench`` command."""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def require_shared(path: Path, what: str) -> Path:
    """``path`` under ``../shared/data`` (the real data beside the checkout, see the README), or skip the test
    with a reason; with ``BENCH_REQUIRE_DATA`` set (CI sets it) a missing file fails the test instead."""
    import pytest

    if not path.exists():
        message = f"{what} not found at {path}"
        if os.environ.get("BENCH_REQUIRE_DATA"):
            pytest.fail(f"{message}, and BENCH_REQUIRE_DATA is set: put the shared data folder beside the checkout "
                        "(../shared/data, see the README's Tests section)")
        pytest.skip(reason=f"{message} (put the shared data folder beside the checkout to run it)")
    return path


def copy_shared(name: str, target: Path, mode: int = 0o755) -> Path:
    """A copy of ``../shared/data/<name>`` at ``target/<name>`` with folder mode ``mode``: tests load from their
    own copy, since loading writes a cache into a writable data folder and ``../shared`` is not theirs."""
    source = require_shared(SHARED_DATA / name, f"real {name} files")
    folder = target / name
    shutil.copytree(source, folder)
    for path in folder.iterdir():
        path.chmod(0o644)
    folder.chmod(mode)
    return folder


def bench_command() -> list[str]:
    """The installed console script; fall back to the module so the tests run from any environment."""
    exe = shutil.which("bench", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    return [exe] if exe else [sys.executable, "-m", "bench.cli"]


def run_bench(*args, cwd=None, env=None, timeout=600) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([*bench_command(), *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env=full_env, timeout=timeout)


def cli_exit(args, capsys) -> tuple[int, str]:
    """``bench ARGS`` through the installed command's entry point, in this process: (exit code, stderr). For
    refusals of bad input; the installed command's own exit codes are tested once (faults/test_bad_input.py)."""
    import pytest

    from bench.cli import main

    with pytest.raises(SystemExit) as exit_code:
        main([*map(str, args)])
        raise SystemExit(0)
    return exit_code.value.code, capsys.readouterr().err


def digits_cell(method: str, seed: int = 0, epochs: int = 2, **params):
    """One grid cell: ``method`` (with ``params``) on the digits pair 3:5 at ratio 0.1 with ``seed``; its key
    (and so its artifact folder) is the seed's own."""
    import dataclasses

    from bench.grid import Preset, build_grid

    config = Preset(name="t", methods=[method], datasets=["digits"], ratios=[0.1], seeds=1, pairs=[[3, 5]],
                       epochs=epochs, method_params={method: params} if params else {})
    return dataclasses.replace(build_grid(config)[0], seed=seed)


class FileHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files`` (URL path with its query -> bytes) from 127.0.0.1 for download tests.

    Honours ``Range: bytes=N-`` when ``server.ranges`` (416 past the end); a response to a path in
    ``server.cut``, or any response while ``server.cuts`` > 0 (counting down), announces the whole rest but
    sends half of it and hangs up: an interrupted download. Every request is logged in ``server.requests``
    as (path, Range header)."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        body = server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "") if server.ranges else None
        start = int(match.group(1)) if match else 0
        if start and start >= len(body):
            self.send_error(416)
            return
        self.send_response(206 if match else 200)
        if match:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        rest = body[start:]
        cut = self.path in server.cut or server.cuts > 0
        if server.cuts > 0:
            server.cuts -= 1
        self.wfile.write(rest[: len(rest) // 2] if cut else rest)  # HTTP/1.0: the connection closes after it


@contextlib.contextmanager
def serve_files(files: dict | None = None):
    """A ``FileHandler`` server on 127.0.0.1 in a thread; yields it (``.url``, ``.files``, ``.requests``,
    ``.ranges``, ``.cut``, ``.cuts``). Set ``no_proxy`` in the test so a configured proxy cannot intercept."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FileHandler)
    httpd.files, httpd.requests, httpd.ranges, httpd.cut, httpd.cuts = dict(files or {}), [], True, set(), 0
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def repeatable(metrics: dict) -> dict:
    """A cell's metrics without what the clock decides (the budget ledger's seconds): what the same seed on
    the same device must reproduce exactly, update counts included."""
    out = dict(metrics)
    budget = out.get("budget")
    if isinstance(budget, dict):
        out["budget"] = {"contract": budget.get("contract"),
                         "roles": {role: {k: v for k, v in entry.items() if k != "seconds"}
                                   for role, entry in budget.get("roles", {}).items()}}
    return out
