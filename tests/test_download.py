"""Downloads against a local HTTP server on 127.0.0.1 (never the internet)."""

from __future__ import annotations

import re
import socket

import numpy as np
import pytest
from helpers import serve_files

from bench.datasets import load_dataset, mnist
from bench.errors import BenchError

TRAIN = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")


@pytest.fixture
def server():
    with serve_files() as httpd:
        yield httpd


@pytest.fixture
def setup(tmp_path, fake_idx, server, monkeypatch):
    """Fake MNIST files published under <server>/good/; returns (data folder, source folder, data)."""
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")  # a configured proxy must not intercept
    source = tmp_path / "source"
    data, resources = fake_idx(source)
    for file, _ in resources:
        server.files[f"/good/{file}"] = (source / file).read_bytes()
    monkeypatch.setattr(mnist, "RESOURCES", resources)
    monkeypatch.setattr(mnist, "MIRRORS", (f"{server.url}/good/",))
    return tmp_path / "data", source, data


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_download_fetches_missing_files_and_checks_them(setup, server):
    root, source, data = setup
    loaded = load_dataset("mnist", root, "train", download=True)
    assert np.array_equal(loaded.images[:, 0], data["train"][0])
    assert np.array_equal(loaded.labels, data["train"][1])
    folder = root / "mnist"
    for file in TRAIN:
        assert (folder / file).read_bytes() == (source / file).read_bytes()
    assert list(folder.glob("*.part")) == []
    # Only the requested split's files were fetched, each once, without Range.
    assert sorted(server.requests) == sorted((f"/good/{f}", None) for f in TRAIN)
    # Present files are never fetched again.
    server.requests.clear()
    load_dataset("mnist", root, "train", download=True)
    assert server.requests == []


def test_no_download_without_flag(setup, server):
    root, _, _ = setup
    with pytest.raises(BenchError, match="missing file train-images-idx3-ubyte.gz .*--download"):
        load_dataset("mnist", root, "train")
    assert server.requests == [] and not (root / "mnist").exists()


def test_md5_mismatch_leaves_nothing(setup, server):
    root, _, _ = setup
    path = "/good/train-labels-idx1-ubyte.gz"
    server.files[path] = server.files[path][:-1] + b"x"
    expected = dict(mnist.RESOURCES)["train-labels-idx1-ubyte.gz"]
    with pytest.raises(BenchError) as excinfo:
        load_dataset("mnist", root, "train", download=True)
    message = str(excinfo.value)
    got = re.search(r"has MD5 ([0-9a-f]{32}), expected ([0-9a-f]{32})", message)
    assert "\n" not in message and f"{server.url}{path}" in message
    assert got and got.group(2) == expected and got.group(1) != expected
    leftovers = {p.name for p in (root / "mnist").iterdir()}
    assert "train-labels-idx1-ubyte.gz" not in leftovers and not any(n.endswith(".part") for n in leftovers)


def test_failing_mirrors_are_skipped(setup, server, monkeypatch):
    root, _, data = setup
    dead = f"http://127.0.0.1:{closed_port()}/mnist/"
    monkeypatch.setattr(mnist, "MIRRORS", (dead, f"{server.url}/missing/", f"{server.url}/good/"))
    loaded = load_dataset("mnist", root, "train", download=True)
    assert np.array_equal(loaded.labels, data["train"][1])
    paths = [p for p, _ in server.requests]
    assert paths.index("/missing/train-images-idx3-ubyte.gz") < paths.index(
        "/good/train-images-idx3-ubyte.gz"
    )


def test_all_mirrors_failing(setup, server, monkeypatch):
    root, _, _ = setup
    monkeypatch.setattr(mnist, "MIRRORS", (f"{server.url}/missing/", f"{server.url}/gone"))
    with pytest.raises(BenchError) as excinfo:
        load_dataset("mnist", root, "train", download=True)
    message = str(excinfo.value)
    assert "\n" not in message and "could not download train-images-idx3-ubyte.gz" in message
    assert f"{server.url}/missing/train-images-idx3-ubyte.gz" in message
    assert f"{server.url}/gone/train-images-idx3-ubyte.gz" in message and "404" in message


def test_present_corrupt_file_is_not_replaced(setup, server):
    root, _, _ = setup
    folder = root / "mnist"
    folder.mkdir(parents=True)
    (folder / TRAIN[0]).write_bytes(b"user's own file")
    with pytest.raises(BenchError, match="is corrupt"):
        load_dataset("mnist", root, "train", download=True)
    assert (folder / TRAIN[0]).read_bytes() == b"user's own file"
    assert ("/good/" + TRAIN[0], None) not in server.requests


@pytest.mark.parametrize("ranges", [True, False], ids=["range", "no-range"])
def test_resume_from_part(setup, server, ranges):
    root, source, data = setup
    server.ranges = ranges
    folder = root / "mnist"
    folder.mkdir(parents=True)
    whole = (source / TRAIN[0]).read_bytes()
    (folder / (TRAIN[0] + ".part")).write_bytes(whole[:1000])
    loaded = load_dataset("mnist", root, "train", download=True)
    assert np.array_equal(loaded.images[:, 0], data["train"][0])
    assert (folder / TRAIN[0]).read_bytes() == whole and not (folder / (TRAIN[0] + ".part")).exists()
    assert ("/good/" + TRAIN[0], "bytes=1000-") in server.requests


def test_stale_oversized_part_restarts(setup, server):
    root, source, _ = setup
    folder = root / "mnist"
    folder.mkdir(parents=True)
    whole = (source / TRAIN[1]).read_bytes()
    (folder / (TRAIN[1] + ".part")).write_bytes(b"\0" * (len(whole) + 10))  # server answers 416
    load_dataset("mnist", root, "train", download=True)
    assert (folder / TRAIN[1]).read_bytes() == whole


def test_interrupted_download_resumes_on_next_mirror(setup, server, monkeypatch):
    root, source, _ = setup
    for file in TRAIN:
        server.files[f"/cut/{file}"] = server.files[f"/good/{file}"]
        server.cut.add(f"/cut/{file}")
    monkeypatch.setattr(mnist, "MIRRORS", (f"{server.url}/cut/", f"{server.url}/good/"))
    load_dataset("mnist", root, "train", download=True)
    whole = (source / TRAIN[0]).read_bytes()
    assert (root / "mnist" / TRAIN[0]).read_bytes() == whole
    assert ("/good/" + TRAIN[0], f"bytes={len(whole) // 2}-") in server.requests
