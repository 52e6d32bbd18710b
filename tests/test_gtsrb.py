"""GTSRB loader: fixture archives written here in the official layout (real GTSRB pixels when the shared
subset is present), ROI cropping, damaged archives, the cache, and downloads from a server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import re
import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import SHARED_DATA, require_shared, serve_files
from PIL import Image

from bench.datasets import gtsrb
from bench.datasets.base import LoadOptions
from bench.datasets.registry import _info
from bench.errors import BenchError

SUBSET = SHARED_DATA / "gtsrb" / "gtsrb32_classes_00_01.npz"
TRAIN, TEST, GT = gtsrb.TRAIN_ARCHIVE, gtsrb.TEST_ARCHIVE, gtsrb.GT_ARCHIVE
HEADER = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2"


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# --- writing archives in the official layout ----------------------------------------------------------


def ppm(image: np.ndarray) -> bytes:
    """An (H, W, 3) uint8 image as a binary PPM (P6), the format of the official files."""
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PPM")
    return out.getvalue()


def csv_text(rows, class_column: bool = True, eol: str = "\r\n") -> bytes:
    """A GT CSV: rows are (filename, width, height, (x1, y1, x2, y2), class_id)."""
    lines = [HEADER + (";ClassId" if class_column else "")]
    for name, w, h, roi, class_id in rows:
        lines.append(";".join(map(str, (name, w, h, *roi, *([class_id] if class_column else [])))))
    return (eol.join(lines) + eol).encode()


def official_members(train, test, eol: str = "\r\n") -> dict[str, dict[str, bytes]]:
    """The three archives' members. ``train``: (class, file name, image, roi); ``test``: (file name, image,
    roi, class). ROIs are (x1, y1, x2, y2), X2/Y2 inclusive as in the official CSVs."""
    members = {TRAIN: {"GTSRB/Readme-Images.txt": b"GTSRB training images\n"}, TEST: {}, GT: {}}
    rows = {}
    for class_id, name, image, roi in train:
        members[TRAIN][f"GTSRB/Final_Training/Images/{class_id:05d}/{name}"] = ppm(image)
        rows.setdefault(class_id, []).append((name, image.shape[1], image.shape[0], roi, class_id))
    for class_id, class_rows in rows.items():
        members[TRAIN][f"GTSRB/Final_Training/Images/{class_id:05d}/GT-{class_id:05d}.csv"] = csv_text(
            class_rows, eol=eol
        )
    test_rows = [(name, image.shape[1], image.shape[0], roi, c) for name, image, roi, c in test]
    for name, image, _, _ in test:
        members[TEST][f"GTSRB/Final_Test/Images/{name}"] = ppm(image)
    members[TEST]["GTSRB/Final_Test/Images/GT-final_test.test.csv"] = csv_text(test_rows, False, eol)
    members[TEST]["GTSRB/Readme-Images-Final-test.txt"] = b"GTSRB test images\n"
    members[GT]["GT-final_test.csv"] = csv_text(test_rows, eol=eol)
    return members


def write_zip(path: Path, members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return hashlib.md5(path.read_bytes()).hexdigest()


def publish(folder: Path, members, monkeypatch, compression=zipfile.ZIP_DEFLATED) -> tuple:
    """Write the archives into ``folder`` and accept their MD5s as the official ones."""
    resources = tuple((file, write_zip(folder / file, members[file], compression)) for file in (TRAIN, TEST, GT))
    monkeypatch.setattr(gtsrb, "RESOURCES", resources)
    monkeypatch.setattr(gtsrb, "MIRRORS", ("http://127.0.0.1:9/never/",))
    return resources


def accept(folder: Path, file: str, monkeypatch) -> Path:
    """Accept the MD5 of ``file`` as it now is, so the archive reader (not the MD5 check) must catch it."""
    path = folder / file
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    monkeypatch.setattr(gtsrb, "RESOURCES", tuple((f, md5 if f == file else m) for f, m in gtsrb.RESOURCES))
    return path


def rgb(shape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


@pytest.fixture
def tiny():
    """A few synthetic images in classes 0, 5 and 42 (a gap on purpose), of varied sizes, with ROIs."""
    train, test = [], []
    for k, class_id in enumerate((0, 5, 42)):
        for i in range(3):
            h, w = 34 + 3 * i + k, 40 - 2 * i
            train.append((class_id, f"{i // 2:05d}_{i:05d}.ppm", rgb((h, w), 10 * k + i), (5, 5, w - 6, h - 6)))
    for i, class_id in enumerate((42, 0, 5, 5, 0)):
        h, w = 30 + 2 * i, 36 - i
        test.append((f"{i:05d}.ppm", rgb((h, w), 100 + i), (5, 6, w - 6, h - 5), class_id))
    return train, test


# --- the real GTSRB subset, written back into the official archives -------------------------------------


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """(folder holding the three archives, their (file, MD5) table, the subset's arrays)."""
    require_shared(SUBSET, "GTSRB subset gtsrb32_classes_00_01.npz")
    with np.load(SUBSET) as z:
        data = {k: z[k] for k in z.files}
    whole = (0, 0, 31, 31)  # the whole 32x32 image, X2/Y2 inclusive
    train = []
    for name, image, label in zip(data["train_filenames"], data["x_train"], data["y_train"], strict=True):
        folder_class, file = str(name).split("/")
        assert int(folder_class) == label  # the subset's own layout
        train.append((int(label), file, image, whole))
    test = [(str(n), im, whole, int(c)) for n, im, c in zip(data["test_filenames"], data["x_test"], data["y_test"],
                                                            strict=True)]
    folder = tmp_path_factory.mktemp("gtsrb-real")
    members = official_members(train, test, eol="\n")
    resources = tuple((file, write_zip(folder / file, members[file])) for file in (TRAIN, TEST, GT))
    return folder, resources, data


def test_real_subset_round_trip(real, monkeypatch):
    folder, resources, data = real
    monkeypatch.setattr(gtsrb, "RESOURCES", resources)
    for split in ("train", "test"):
        loaded = gtsrb.load(folder, split)
        images, labels = data[f"x_{split}"], data[f"y_{split}"]
        assert loaded.images.shape == (len(labels), 3, 32, 32) and loaded.class_names == gtsrb.CLASS_NAMES
        assert np.array_equal(loaded.labels, labels.astype(np.int64))
        # ROI = the whole 32x32 image and no resize at the target size: the very same pixels, in file order.
        assert np.array_equal(loaded.images, images.transpose(0, 3, 1, 2))
        # The subset holds classes 0 and 1 completely: their official counts.
        official = gtsrb.TRAIN_COUNTS if split == "train" else gtsrb.TEST_COUNTS
        assert loaded.counts().tolist() == list(official[:2]) + [0] * 41


def test_constants():
    assert len(gtsrb.CLASS_NAMES) == len(set(gtsrb.CLASS_NAMES)) == 43
    assert gtsrb.CLASS_NAMES[0] == "Speed limit (20km/h)" and gtsrb.CLASS_NAMES[14] == "Stop"
    assert gtsrb.CLASS_NAMES[42] == "End of no passing by vehicles over 3.5 metric tons"
    # The official release: 39,209 training and 12,630 test images, naturally imbalanced.
    assert sum(gtsrb.TRAIN_COUNTS) == 39209 and sum(gtsrb.TEST_COUNTS) == 12630
    assert min(gtsrb.TRAIN_COUNTS) == 210 and max(gtsrb.TRAIN_COUNTS) == 2250
    for majority, minority in gtsrb.DEFAULT_PAIRS:
        assert gtsrb.TRAIN_COUNTS[majority] > gtsrb.TRAIN_COUNTS[minority]
    assert {f for f, _ in gtsrb.RESOURCES} == {TRAIN, TEST, GT}
    assert all(re.fullmatch(r"[0-9a-f]{32}", md5) for _, md5 in gtsrb.RESOURCES)
    info = _info(gtsrb)  # what the registry builds from the module
    assert info.takes_options and info.needs_files and info.image_shape == (3, 32, 32) and "http" in info.source


# --- decoding, ROI and size ---------------------------------------------------------------------------


def test_tiny_round_trip(tiny, tmp_path, monkeypatch):
    train, test = tiny
    publish(tmp_path, official_members(train, test), monkeypatch)
    assert gtsrb.available(tmp_path)
    loaded = gtsrb.load(tmp_path, "train")
    assert loaded.images.shape == (9, 3, 32, 32) and loaded.images.dtype == np.uint8
    assert loaded.labels.tolist() == [0, 0, 0, 5, 5, 5, 42, 42, 42]
    loaded = _info(gtsrb).load(tmp_path, "test", False, LoadOptions(image_size=16))
    assert loaded.images.shape == (5, 3, 16, 16) and loaded.labels.tolist() == [42, 0, 5, 5, 0]
    assert loaded.counts()[[0, 5, 42]].tolist() == [2, 2, 1]


def test_roi_is_inclusive_and_exact(tmp_path, monkeypatch):
    """A 32x32 ROI (X2/Y2 inclusive) needs no resize: the output is exactly that region of the photo."""
    big, small = rgb((45, 50), 1), rgb((32, 32), 2)
    train = [(3, "00000_00000.ppm", big, (5, 7, 36, 38)),
             # X2 = Width and Y2 = Height - 1: one edge past the image is clamped to it.
             (3, "00000_00001.ppm", small, (0, 0, 32, 31))]
    test = [("00000.ppm", big, (10, 2, 41, 33), 7)]
    publish(tmp_path, official_members(train, test), monkeypatch)
    loaded = gtsrb.load(tmp_path, "train")
    assert np.array_equal(loaded.images[0], big[7:39, 5:37].transpose(2, 0, 1))
    assert np.array_equal(loaded.images[1], small.transpose(2, 0, 1))
    loaded = gtsrb.load(tmp_path, "test")
    assert np.array_equal(loaded.images[0], big[2:34, 10:42].transpose(2, 0, 1)) and loaded.labels[0] == 7


def test_resize_is_pil_bilinear(tmp_path, monkeypatch):
    """The documented filter: PIL's BILINEAR (antialiased when shrinking), aspect ratio not kept."""
    image = rgb((70, 90), 3)
    roi = (6, 5, 83, 64)  # a 78x60 crop
    publish(tmp_path, official_members([(2, "00000_00000.ppm", image, roi)], []), monkeypatch)
    loaded = gtsrb.load(tmp_path, "train")
    crop = Image.fromarray(image[5:65, 6:84])
    for flt in (Image.Resampling.BILINEAR, Image.Resampling.NEAREST, Image.Resampling.LANCZOS):
        expected = np.asarray(crop.resize((32, 32), flt)).transpose(2, 0, 1)
        assert np.array_equal(loaded.images[0], expected) == (flt == Image.Resampling.BILINEAR)
    assert gtsrb.load(tmp_path, "test").images.shape == (0, 3, 32, 32)  # an empty CSV is an empty split


@pytest.mark.parametrize("size", [32, 16, 48])
def test_coloured_roi_fills_the_output(tmp_path, monkeypatch, size):
    """A red ROI on a blue photo, not square and not 32 pixels: after cropping and resizing, all red (in
    channel 0, RGB order), so nothing outside the ROI leaks in and all of the ROI is used."""
    image = np.zeros((50, 60, 3), np.uint8)
    image[..., 2] = 255
    image[8:24, 10:30] = (255, 0, 0)  # rows 8..23, columns 10..29
    roi = (10, 8, 29, 23)
    train = [(1, "00000_00000.ppm", image, roi)]
    test = [("00000.ppm", image, roi, 1)]
    publish(tmp_path, official_members(train, test), monkeypatch)
    for split in ("train", "test"):
        loaded = gtsrb.load(tmp_path, split, options=LoadOptions(image_size=size))
        assert loaded.images.shape == (1, 3, size, size)
        assert np.all(loaded.images[0, 0] == 255) and np.all(loaded.images[0, 1:] == 0)
    # One pixel more on either side of the ROI would bring in blue: the rim of the output shows it.
    wider = official_members([(1, "00000_00000.ppm", image, (9, 7, 30, 24))], test)
    publish(tmp_path / "wider", wider, monkeypatch)
    rim = gtsrb.load(tmp_path / "wider", "train", options=LoadOptions(image_size=size)).images[0, 2]
    assert rim[0].max() > 0 and rim[:, -1].max() > 0


# --- missing, corrupt and damaged files ----------------------------------------------------------------


def test_missing_archive(tiny, tmp_path, monkeypatch):
    resources = publish(tmp_path, official_members(*tiny), monkeypatch)
    (tmp_path / GT).unlink()
    assert not gtsrb.available(tmp_path)
    gtsrb.load(tmp_path, "train")  # the training split does not need the test archives
    with pytest.raises(BenchError) as excinfo:
        gtsrb.load(tmp_path, "test")
    message = one_line_error(excinfo)
    assert message.startswith(f"gtsrb: missing file {GT} in {tmp_path} ") and "--download" in message
    assert f"expected MD5 {dict(resources)[GT]}" in message


def test_wrong_md5(tiny, tmp_path, monkeypatch):
    resources = publish(tmp_path, official_members(*tiny), monkeypatch)
    (tmp_path / TEST).write_bytes((tmp_path / TEST).read_bytes() + b"\0")
    with pytest.raises(BenchError) as excinfo:
        gtsrb.load(tmp_path, "test")
    message = one_line_error(excinfo)
    assert f"{tmp_path / TEST} is corrupt" in message and f"expected {dict(resources)[TEST]}" in message
    assert "delete it" in message


def damage(members, case: str):
    train_csv = "GTSRB/Final_Training/Images/00005/GT-00005.csv"
    first = "GTSRB/Final_Training/Images/00005/00000_00000.ppm"
    if case == "missing-ppm":  # the CSV names a file the archive lacks
        del members[TRAIN][first]
    elif case == "extra-row":
        members[TRAIN][train_csv] += b"00009_00009.ppm;30;30;5;5;24;24;5\r\n"
    elif case == "class-mismatch":
        members[TRAIN][train_csv] = members[TRAIN][train_csv].replace(b";5\r\n", b";6\r\n", 1)
    elif case == "bad-column":
        members[TRAIN][train_csv] = members[TRAIN][train_csv].replace(b"Roi.X2", b"RoiX2")
    elif case == "not-integer":
        members[TRAIN][train_csv] = members[TRAIN][train_csv].replace(b";5\r\n", b";five\r\n", 1)
    elif case == "not-ppm":
        members[TRAIN][first] = b"P6\n40 34\n255\n" + bytes(10)
    elif case == "size-mismatch":
        members[TRAIN][first] = ppm(rgb((20, 20), 0))
    elif case == "no-csv":
        members[TRAIN] = {k: v for k, v in members[TRAIN].items() if not k.endswith(".csv")}


@pytest.mark.parametrize(
    "case, reason",
    [
        ("missing-ppm", "no member GTSRB/Final_Training/Images/00005/00000_00000.ppm, named in "
                        "GTSRB/Final_Training/Images/00005/GT-00005.csv"),
        ("extra-row", "no member GTSRB/Final_Training/Images/00005/00009_00009.ppm"),
        ("class-mismatch", "GT-00005.csv line 2 has ClassId 6 in the folder of class 5"),
        ("bad-column", "lacks the column(s) Roi.X2"),
        ("not-integer", "line 2 has a non-integer field"),
        ("not-ppm", "00000_00000.ppm is not a readable image"),
        ("size-mismatch", "00000_00000.ppm is 20x20 but GTSRB/Final_Training/Images/00005/GT-00005.csv line 2"),
        ("no-csv", "no GTSRB/Final_Training/Images/<class>/GT-<class>.csv inside"),
    ],
)
def test_damaged_training_archive(tiny, tmp_path, monkeypatch, case, reason):
    members = official_members(*tiny)
    damage(members, case)
    publish(tmp_path, members, monkeypatch)
    with pytest.raises(BenchError) as excinfo:
        gtsrb.load(tmp_path, "train")
    message = one_line_error(excinfo)
    assert message.startswith(f"gtsrb: {tmp_path / TRAIN} is not a valid GTSRB archive (")
    assert reason in message and message.endswith("rerun with --download, or replace it with the canonical file")


def test_test_csv_names_a_missing_ppm(tiny, tmp_path, monkeypatch):
    members = official_members(*tiny)
    del members[TEST]["GTSRB/Final_Test/Images/00003.ppm"]
    publish(tmp_path, members, monkeypatch)
    with pytest.raises(BenchError) as excinfo:
        gtsrb.load(tmp_path, "test")
    message = one_line_error(excinfo)
    assert message.startswith(f"gtsrb: {tmp_path / TEST} is not a valid GTSRB archive")
    assert f"no member GTSRB/Final_Test/Images/00003.ppm, named in {GT}:GT-final_test.csv" in message


def test_truncated_zip(tiny, tmp_path, monkeypatch):
    publish(tmp_path, official_members(*tiny), monkeypatch)
    whole = (tmp_path / TRAIN).read_bytes()
    (tmp_path / TRAIN).write_bytes(whole[: len(whole) // 2])
    path = accept(tmp_path, TRAIN, monkeypatch)
    with pytest.raises(BenchError, match="unreadable zip") as excinfo:
        gtsrb.load(tmp_path, "train")
    assert one_line_error(excinfo).startswith(f"gtsrb: {path} is not a valid GTSRB archive")


def test_bad_member_crc(tiny, tmp_path, monkeypatch):
    train, test = tiny
    publish(tmp_path, official_members(train, test), monkeypatch, compression=zipfile.ZIP_STORED)
    raw = bytearray((tmp_path / GT).read_bytes())
    at = raw.index(b"00002.ppm;")  # stored, so the CSV's bytes are in the file as they are
    raw[at] = ord("9")
    (tmp_path / GT).write_bytes(bytes(raw))
    accept(tmp_path, GT, monkeypatch)
    with pytest.raises(BenchError, match="cannot read GT-final_test.csv: Bad CRC-32") as excinfo:
        gtsrb.load(tmp_path, "test")
    assert str(tmp_path / GT) in one_line_error(excinfo)


def test_unknown_split(tmp_path):
    with pytest.raises(BenchError, match="unknown split 'val'; valid splits: test, train"):
        gtsrb.load(tmp_path, "val")


# --- cache -----------------------------------------------------------------------------------------------


def test_cache_written_reused_and_rebuilt(tiny, tmp_path, monkeypatch):
    train, test = tiny
    resources = publish(tmp_path, official_members(train, test), monkeypatch)
    first = gtsrb.load(tmp_path, "train")
    cache = tmp_path / "train_32.npz"
    assert cache.is_file() and not (tmp_path / "test_32.npz").exists() and list(tmp_path.glob("*.tmp")) == []
    with np.load(cache) as z:
        assert z["md5"].tolist() == [dict(resources)[TRAIN], "size=32"]

    def no_decode(*args, **kwargs):
        raise AssertionError("decoded despite a valid cache")

    with monkeypatch.context() as m:
        m.setattr(gtsrb, "read_train", no_decode)
        again = gtsrb.load(tmp_path, "train")
        assert np.array_equal(again.images, first.images) and np.array_equal(again.labels, first.labels)
        # Another size is another cache: decoded afresh.
        with pytest.raises(AssertionError, match="decoded despite"):
            gtsrb.load(tmp_path, "train", options=LoadOptions(image_size=16))
    small = gtsrb.load(tmp_path, "train", options=LoadOptions(image_size=16))
    assert small.images.shape[2:] == (16, 16) and (tmp_path / "train_16.npz").is_file()
    assert gtsrb.load(tmp_path, "train").images.shape[2:] == (32, 32)

    # Rebuilt: a new training archive (its MD5 accepted) invalidates the cache.
    inverted = [(c, n, 255 - image, roi) for c, n, image, roi in train]
    publish(tmp_path, official_members(inverted, test), monkeypatch)
    rebuilt = gtsrb.load(tmp_path, "train")
    fresh, _ = gtsrb.read_train(tmp_path / TRAIN, 32)  # decoded straight from the new archive
    assert np.array_equal(rebuilt.images, fresh) and not np.array_equal(rebuilt.images, first.images)
    with np.load(cache) as z:
        assert z["md5"][0] == dict(gtsrb.RESOURCES)[TRAIN] != dict(resources)[TRAIN]


# --- downloads from a local server -----------------------------------------------------------------------


@pytest.fixture
def served(tiny, tmp_path, monkeypatch):
    """The tiny archives published under <server>/gtsrb/; returns (server, source folder, data folder)."""
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")  # a configured proxy must not intercept
    source = tmp_path / "source"
    publish(source, official_members(*tiny), monkeypatch)
    with serve_files({f"/gtsrb/{f}": (source / f).read_bytes() for f in (TRAIN, TEST, GT)}) as httpd:
        monkeypatch.setattr(gtsrb, "MIRRORS", (f"{httpd.url}/gtsrb/",))
        yield httpd, source, tmp_path / "data"


def test_download_checks_and_loads(served):
    server, source, data = served
    with pytest.raises(BenchError, match="--download"):
        gtsrb.load(data, "test")
    assert server.requests == []
    loaded = gtsrb.load(data, "test", download=True)
    assert loaded.labels.tolist() == [42, 0, 5, 5, 0]
    # Only the test split's two archives, each once, in full; byte-identical; no .part left.
    assert sorted(server.requests) == [(f"/gtsrb/{GT}", None), (f"/gtsrb/{TEST}", None)]
    for file in (TEST, GT):
        assert (data / file).read_bytes() == (source / file).read_bytes()
    assert list(data.glob("*.part")) == [] and not (data / TRAIN).exists()
    server.requests.clear()
    gtsrb.load(data, "test", download=True)
    assert server.requests == []


def test_download_md5_mismatch(served):
    server, _, data = served
    path = f"/gtsrb/{TRAIN}"
    server.files[path] = server.files[path][:-1] + b"x"
    with pytest.raises(BenchError) as excinfo:
        gtsrb.load(data, "train", download=True)
    message = one_line_error(excinfo)
    expected = dict(gtsrb.RESOURCES)[TRAIN]
    got = re.search(r"has MD5 ([0-9a-f]{32}), expected ([0-9a-f]{32})", message)
    assert got and got.group(2) == expected != got.group(1) and f"127.0.0.1:{server.server_address[1]}" in message
    assert sorted(p.name for p in data.iterdir()) == []


def test_interrupted_download_resumes(served):
    server, source, data = served
    path = f"/gtsrb/{TRAIN}"
    server.cut.add(path)
    with pytest.raises(BenchError, match=f"could not download {TRAIN} .*interrupted") as excinfo:
        gtsrb.load(data, "train", download=True)
    one_line_error(excinfo)
    whole = server.files[path]
    part = data / (TRAIN + ".part")
    assert part.read_bytes() == whole[: len(whole) // 2] and not (data / TRAIN).exists()
    server.cut.clear()
    loaded = gtsrb.load(data, "train", download=True)
    assert server.requests[-1] == (path, f"bytes={len(whole) // 2}-")
    assert (data / TRAIN).read_bytes() == (source / TRAIN).read_bytes() and not part.exists()
    assert loaded.labels.tolist() == [0, 0, 0, 5, 5, 5, 42, 42, 42]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_mirror(served, monkeypatch):
    _, _, data = served
    dead = f"http://127.0.0.1:{closed_port()}/gtsrb/"
    monkeypatch.setattr(gtsrb, "MIRRORS", (dead,))
    with pytest.raises(BenchError, match=f"could not download {TRAIN} .*{re.escape(dead)}") as excinfo:
        gtsrb.load(data, "train", download=True)
    assert "copy the canonical file into" in one_line_error(excinfo)
