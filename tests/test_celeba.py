"""CelebA loader on fixture files written here in the official formats (no network but 127.0.0.1)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import serve_files
from PIL import Image

from bench.datasets import celeba
from bench.datasets.base import LoadOptions, resize_images
from bench.errors import BenchError

# The fixture: 12 images. (partition, Eyeglasses, hair attributes set); hair None = no hair colour.
ROWS = [
    (0, 1, ("Black_Hair",)),
    (0, 0, ("Brown_Hair",)),
    (0, 0, ("Blond_Hair",)),
    (1, 1, ("Gray_Hair",)),
    (2, 1, ("Black_Hair", "Brown_Hair")),  # two colours: left out of the hair task
    (0, 0, ()),  # no colour: left out of the hair task
    (2, 0, ("Bald",)),
    (0, 1, ("Gray_Hair",)),
    (2, 0, ("Blond_Hair",)),
    (0, 0, ("Bald",)),
    (1, 0, ("Black_Hair",)),
    (2, 1, ("Brown_Hair",)),
]
FILES = [f"{i:06d}.jpg" for i in range(1, len(ROWS) + 1)]
# Each image is blue outside the 140x140 centre crop and one of these colours inside it, so an output image
# tells which file it came from, and any blue in it would mean the wrong crop.
OUTSIDE = (0, 0, 255)
CENTRE = [
    (0, 255, 255), (0, 255, 0), (255, 255, 0), (255, 0, 255), (255, 0, 0), (255, 255, 255),
    (0, 0, 0), (128, 128, 128), (255, 128, 0), (128, 0, 128), (128, 128, 0), (0, 128, 128),
]  # fmt: skip
LEFT, TOP = (178 - 140) // 2, (218 - 140) // 2  # 19, 39


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def jpeg(centre: tuple[int, int, int], size: tuple[int, int] = (178, 218)) -> bytes:
    width, height = size
    pixels = np.empty((height, width, 3), np.uint8)
    pixels[:] = OUTSIDE
    pixels[TOP : TOP + 140, LEFT : LEFT + 140] = centre
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95, subsampling=0)
    return buffer.getvalue()


def attr_line(file: str, values) -> str:
    # The official layout: one space after the name, then each value right-aligned in 2 columns after a
    # space (so "000001.jpg -1  1  1 -1" and "000007.jpg 1 -1").
    return f"{file} {values[0]}" + "".join(f" {v:2d}" for v in values[1:])


def write_attr(path: Path, files, values) -> None:
    lines = [str(len(files)), " ".join(celeba.ATTRIBUTES) + " "]
    lines += [attr_line(f, v) for f, v in zip(files, values, strict=True)]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("ascii"))


def write_partition(path: Path, files, parts) -> None:
    path.write_bytes("".join(f"{f} {p}\r\n" for f, p in zip(files, parts, strict=True)).encode("ascii"))


def write_zip(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{celeba.IMAGE_DIR}/", b"")
        for name, data in members.items():
            z.writestr(f"{celeba.IMAGE_DIR}/{name}", data)


class Fake:
    """The fixture folder and its data; ``accept(file)`` makes the module accept a file's current MD5."""

    def __init__(self, folder: Path, monkeypatch):
        self.folder, self.monkeypatch = folder, monkeypatch
        rng = np.random.default_rng(0)
        self.values = rng.choice(np.array([-1, 1]), size=(len(ROWS), 40))
        glasses = celeba.ATTRIBUTES.index("Eyeglasses")
        hair = [celeba.ATTRIBUTES.index(h) for h in celeba.HAIR_CLASSES]
        for i, (_, eyeglasses, colours) in enumerate(ROWS):
            self.values[i, glasses] = 1 if eyeglasses else -1
            self.values[i, hair] = [1 if h in colours else -1 for h in celeba.HAIR_CLASSES]
        self.parts = [p for p, _, _ in ROWS]
        folder.mkdir(parents=True)
        write_zip(folder / celeba.ZIP_FILE, {f: jpeg(c) for f, c in zip(FILES, CENTRE, strict=True)})
        write_attr(folder / celeba.ATTR_FILE, FILES, self.values)
        write_partition(folder / celeba.PARTITION_FILE, FILES, self.parts)
        monkeypatch.setattr(celeba, "RESOURCES", tuple(
            (file, md5(folder / file), f"id-{file}", f"key-{file}") for file, *_ in celeba.RESOURCES
        ))  # fmt: skip
        # Never the internet: any accidental download attempt hits a closed local port.
        monkeypatch.setattr(celeba, "DRIVE_URL", "http://127.0.0.1:9/never?id={id}&key={key}")

    def accept(self, file: str) -> None:
        table = [(f, md5(self.folder / f) if f == file else m, i, k) for f, m, i, k in celeba.RESOURCES]
        self.monkeypatch.setattr(celeba, "RESOURCES", tuple(table))

    def load(self, split="train", attr="Eyeglasses", size=None):
        return celeba.load(self.folder, split, False, LoadOptions(image_size=size, celeba_attr=attr))


@pytest.fixture
def fake(tmp_path, monkeypatch):
    return Fake(tmp_path / "celeba", monkeypatch)


def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def which_files(images: np.ndarray) -> list[str]:
    """The fixture file each output image came from (by its centre colour); asserts it is unambiguous."""
    found = []
    for image in images.astype(int):
        errors = [np.abs(image - np.array(c)[:, None, None]).max() for c in CENTRE]
        best = int(np.argmin(errors))
        assert errors[best] <= 40, f"image matches no centre colour (closest off by {errors[best]})"
        found.append(FILES[best])
    return found


# --- label tasks and splits ---------------------------------------------------------------------------


def test_binary_task_train_and_test(fake):
    train, test = fake.load("train"), fake.load("test")
    assert train.class_names == test.class_names == ("not Eyeglasses", "Eyeglasses") == celeba.CLASS_NAMES
    # train is partition 0 only (validation 1 dropped), test partition 2, both in the files' order.
    expected = {
        split: [i for i, (part, _, _) in enumerate(ROWS) if part == celeba.PARTITIONS[split]]
        for split in ("train", "test")
    }
    for data, split in ((train, "train"), (test, "test")):
        assert which_files(data.images) == [FILES[i] for i in expected[split]]
        assert data.labels.tolist() == [ROWS[i][1] for i in expected[split]]
        assert data.images.dtype == np.uint8 and data.labels.dtype == np.int64
    assert train.labels.tolist() == [1, 0, 0, 0, 1, 0] and test.labels.tolist() == [1, 0, 0, 1]


def test_any_attribute_reads_its_own_column(fake):
    column = celeba.ATTRIBUTES.index("Young")
    train = fake.load("train", "Young")
    rows = [i for i, p in enumerate(fake.parts) if p == 0]
    assert train.class_names == ("not Young", "Young")
    assert train.labels.tolist() == [int(fake.values[i, column] == 1) for i in rows]
    assert 0 < train.labels.sum() < len(rows)  # the fixture's random column has both classes


def test_hair_task(fake):
    train, test = fake.load("train", "hair"), fake.load("test", "hair")
    assert train.class_names == ("Black_Hair", "Brown_Hair", "Blond_Hair", "Gray_Hair", "Bald")
    # Only images with exactly one hair colour; the class is that colour's index.
    assert which_files(train.images) == ["000001.jpg", "000002.jpg", "000003.jpg", "000008.jpg", "000010.jpg"]
    assert train.labels.tolist() == [0, 1, 2, 3, 4]
    assert which_files(test.images) == ["000007.jpg", "000009.jpg", "000012.jpg"]
    assert test.labels.tolist() == [4, 2, 1]


def test_class_names_of_tasks():
    assert celeba.class_names() == celeba.CLASS_NAMES
    assert celeba.class_names("Smiling") == ("not Smiling", "Smiling")
    assert celeba.class_names("hair") == celeba.HAIR_CLASSES and len(celeba.ATTRIBUTES) == 40
    assert celeba.DEFAULT_PAIRS == ((0, 1),) and celeba.IMAGE_SHAPE == (3, 32, 32)


@pytest.mark.parametrize("attr", ["eyeglasses", "Glasses", "", "HAIR"])
def test_unknown_attribute(tmp_path, attr):
    # Rejected before any file is looked at: the folder does not even exist.
    with pytest.raises(BenchError) as excinfo:
        celeba.load(tmp_path / "none", "train", False, LoadOptions(celeba_attr=attr))
    message = one_line(excinfo)
    assert f"unknown attribute '{attr}'" in message and "'hair'" in message
    assert all(name in message for name in celeba.ATTRIBUTES)


# --- preprocessing ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [None, 32, 64])
def test_crop_resize_shape_and_content(fake, size):
    data = fake.load("test", size=size)
    side = size or 32
    assert data.images.shape == (4, 3, side, side)
    # Every pixel has its image's centre colour (000005.jpg, the first test image, has red): no blue from
    # outside the crop.
    assert which_files(data.images) == ["000005.jpg", "000007.jpg", "000009.jpg", "000012.jpg"]
    red = data.images[0].astype(int)
    assert red[0].min() >= 215 and red[1:].max() <= 40
    # The documented pipeline: the 140x140 box at (19, 39) of the decoded JPEG, then an antialiased
    # bilinear resize (the suite's resize_images, PIL's filter's twin, so equal up to rounding).
    with zipfile.ZipFile(fake.folder / celeba.ZIP_FILE) as z:
        decoded = np.stack([
            np.asarray(Image.open(io.BytesIO(z.read(f"img_align_celeba/{f}")))).transpose(2, 0, 1)
            for f in ["000005.jpg", "000007.jpg", "000009.jpg", "000012.jpg"]
        ])  # fmt: skip
    reference = resize_images(np.ascontiguousarray(decoded[:, :, TOP : TOP + 140, LEFT : LEFT + 140]), side)
    assert np.abs(data.images.astype(int) - reference).max() <= 2


def test_crop_is_centred_on_a_real_face_layout(tmp_path, monkeypatch):
    # An image whose left half is red and right half green, top of the crop white: the output keeps the
    # orientation (no transposition or flip) and the split lands in the middle.
    pixels = np.zeros((218, 178, 3), np.uint8)
    pixels[:, :89] = (255, 0, 0)
    pixels[:, 89:] = (0, 255, 0)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95, subsampling=0)
    folder = tmp_path / "celeba"
    folder.mkdir()
    write_zip(folder / celeba.ZIP_FILE, {"000001.jpg": buffer.getvalue()})
    write_attr(folder / celeba.ATTR_FILE, ["000001.jpg"], [[-1] * 40])
    write_partition(folder / celeba.PARTITION_FILE, ["000001.jpg"], [0])
    resources = tuple((f, md5(folder / f), "x", "y") for f, *_ in celeba.RESOURCES)
    monkeypatch.setattr(celeba, "RESOURCES", resources)
    image = celeba.load(folder, "train", False, LoadOptions(image_size=64)).images[0].astype(int)
    assert image[0, :, :31].min() >= 215 and image[1, :, :31].max() <= 40  # left: red
    assert image[1, :, 33:].min() >= 215 and image[0, :, 33:].max() <= 40  # right: green


@pytest.mark.parametrize("size", [141, 256])
def test_image_size_above_the_crop(fake, size):
    # LoadOptions refuses sizes under 8 itself; the loader refuses upsampling past the 140x140 crop.
    with pytest.raises(BenchError) as excinfo:
        fake.load(size=size)
    assert f"celeba: image size {size} is outside 8..140" in one_line(excinfo)
    assert list(fake.folder.glob("*.npz")) == []


def test_bad_split(fake):
    with pytest.raises(BenchError, match="unknown split 'valid'; valid splits: test, train"):
        fake.load("valid")


# --- missing and damaged files -----------------------------------------------------------------------------


@pytest.mark.parametrize("file", [celeba.ZIP_FILE, celeba.ATTR_FILE, celeba.PARTITION_FILE])
def test_missing_file(fake, file):
    (fake.folder / file).unlink()
    assert not celeba.available(fake.folder)
    with pytest.raises(BenchError) as excinfo:
        fake.load()
    message = one_line(excinfo)
    assert message.startswith(f"celeba: missing file {file} in {fake.folder} ")
    assert "Google Drive" in message and celeba.HOMEPAGE in message and f"put it in {fake.folder}" in message


def test_available(fake):
    assert celeba.available(fake.folder)
    assert not celeba.available(fake.folder.parent / "elsewhere")


def test_wrong_md5(fake):
    path = fake.folder / celeba.ATTR_FILE
    expected = dict((f, m) for f, m, *_ in celeba.RESOURCES)[celeba.ATTR_FILE]
    path.write_bytes(path.read_bytes().replace(b"\r\n", b"\n"))
    with pytest.raises(BenchError) as excinfo:
        fake.load()
    message = one_line(excinfo)
    assert f"{path} is corrupt (MD5 {md5(path)}, expected {expected})" in message and "delete it" in message


def test_truncated_zip(fake):
    path = fake.folder / celeba.ZIP_FILE
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    fake.accept(celeba.ZIP_FILE)  # past the MD5 check: the reader itself must notice
    with pytest.raises(BenchError) as excinfo:
        fake.load()
    message = one_line(excinfo)
    assert message.startswith(f"celeba: {path} is damaged (not a readable zip archive")
    assert "download the canonical img_align_celeba.zip" in message


@pytest.mark.parametrize(
    "member, data, reason",
    [
        (None, None, "no member img_align_celeba/000001.jpg"),
        ("000001.jpg", b"\xff\xd8\xff\xe0 not really a jpeg", "000001.jpg is not a readable JPEG"),
        ("000001.jpg", jpeg(CENTRE[0], (218, 178)), "000001.jpg is 218x178, expected 178x218"),
    ],
    ids=["missing-member", "not-jpeg", "wrong-size"],
)
def test_bad_zip_member(fake, member, data, reason):
    members = {f: jpeg(c) for f, c in zip(FILES, CENTRE, strict=True) if f != "000001.jpg"}
    if member is not None:
        members[member] = data
    write_zip(fake.folder / celeba.ZIP_FILE, members)
    fake.accept(celeba.ZIP_FILE)
    with pytest.raises(BenchError) as excinfo:
        fake.load()
    message = one_line(excinfo)
    assert message.startswith(f"celeba: {fake.folder / celeba.ZIP_FILE} is damaged") and reason in message


def _attr_lines(fake) -> list[str]:
    return (fake.folder / celeba.ATTR_FILE).read_bytes().decode("ascii").split("\r\n")


def _line(index: int, change):
    """An edit of the attribute file's lines: line ``index`` (0-based) becomes ``change(line)``."""

    def edit(lines: list[str]) -> None:
        lines[index] = change(lines[index])

    return edit


def _only_count_line(lines: list[str]) -> None:
    del lines[1:]


@pytest.mark.parametrize(
    "edit, reason",
    [
        (_line(4, lambda line: line.rsplit(" ", 1)[0]), "line 5 has 40 fields, expected a file name"),
        (_line(3, lambda line: line + "  1"), "line 4 has 42 fields"),
        (_line(2, lambda line: line[:11] + " 0" + line[13:]), "line 3 has the value '0'"),
        (_line(0, lambda line: "twelve"), "line 1 is 'twelve'"),
        (_line(0, lambda line: "13"), "line 1 announces 13 images but 12 follow"),
        (_line(1, lambda line: line.replace("Eyeglasses ", "")), "got 39 fields"),
        (_only_count_line, "1 lines, expected a count line"),
    ],
    ids=["short-line", "long-line", "bad-value", "bad-count", "wrong-count", "header", "no-header"],
)
def test_malformed_attr_file(fake, edit, reason):
    lines = _attr_lines(fake)
    edit(lines)
    path = fake.folder / celeba.ATTR_FILE
    path.write_text("\r\n".join(lines), newline="")
    fake.accept(celeba.ATTR_FILE)
    with pytest.raises(BenchError) as excinfo:
        fake.load()
    message = one_line(excinfo)
    assert message.startswith(f"celeba: {path} is not a valid list_attr_celeba.txt") and reason in message
    assert f"replace it with the canonical file (MD5 {md5(path)})" in message  # the MD5 the module expects


@pytest.mark.parametrize(
    "text, reason",
    [
        ("000001.jpg 3\r\n", "line 1 is '000001.jpg 3', expected '<file> <0|1|2>'"),
        ("000001.jpg\r\n", "line 1 is '000001.jpg'"),
        ("000001.jpg 0 1\r\n", "line 1 is '000001.jpg 0 1'"),
    ],
)
def test_malformed_partition_file(fake, text, reason):
    path = fake.folder / celeba.PARTITION_FILE
    path.write_bytes(text.encode() + path.read_bytes())
    fake.accept(celeba.PARTITION_FILE)
    with pytest.raises(BenchError) as excinfo:
        fake.load()
    message = one_line(excinfo)
    assert message.startswith(f"celeba: {path} is not a valid list_eval_partition.txt") and reason in message


def test_lists_must_name_the_same_images(fake):
    write_partition(fake.folder / celeba.PARTITION_FILE, FILES[:-1] + ["999999.jpg"], fake.parts)
    fake.accept(celeba.PARTITION_FILE)
    with pytest.raises(BenchError) as excinfo:
        fake.load()
    assert "list different images (e.g. 000012.jpg is in one only)" in one_line(excinfo)


# --- the cache ------------------------------------------------------------------------------------------


def test_cache_reused_and_rebuilt_per_task_and_size(fake, monkeypatch):
    decoded = []
    real = celeba.decode_images
    monkeypatch.setattr(celeba, "decode_images", lambda *a, **k: decoded.append(a[2]) or real(*a, **k))

    first = fake.load("train")
    cache = fake.folder / "train-Eyeglasses-32.npz"
    assert cache.is_file() and decoded == [32] and list(fake.folder.glob("*.tmp")) == []
    with np.load(cache) as z:
        assert z["md5"].tolist()[:3] == [m for _, m, *_ in celeba.RESOURCES]
        assert "task=Eyeglasses" in z["md5"].tolist() and "size=32" in z["md5"].tolist()

    again = fake.load("train")  # reused: nothing decoded
    assert decoded == [32] and again.class_names == first.class_names
    assert np.array_equal(again.images, first.images) and np.array_equal(again.labels, first.labels)

    hair = fake.load("train", "hair")  # another task: its own cache
    big = fake.load("train", size=64)  # another size: its own cache
    assert decoded == [32, 32, 64] and hair.labels.tolist() == [0, 1, 2, 3, 4] and big.images.shape[-1] == 64
    assert {p.name for p in fake.folder.glob("*.npz")} == {
        "train-Eyeglasses-32.npz", "train-hair-32.npz", "train-Eyeglasses-64.npz"
    }
    fake.load("train", "hair")
    fake.load("train", size=64)
    assert decoded == [32, 32, 64]

    # The key, not just the name, holds task and size: a cache under the wrong name is rebuilt, not used.
    (fake.folder / "train-Eyeglasses-64.npz").replace(fake.folder / "train-Eyeglasses-32.npz")
    assert fake.load("train").images.shape[-1] == 32 and decoded == [32, 32, 64, 32]

    # New source files (their MD5s accepted) rebuild it too: here the labels flip.
    values = fake.values.copy()
    values[:, celeba.ATTRIBUTES.index("Eyeglasses")] *= -1
    write_attr(fake.folder / celeba.ATTR_FILE, FILES, values)
    fake.accept(celeba.ATTR_FILE)
    assert fake.load("train").labels.tolist() == (1 - first.labels).tolist() and len(decoded) == 5


def test_read_only_folder_gets_no_cache(fake):
    fake.folder.chmod(0o555)
    try:
        data = fake.load("test")
    finally:
        fake.folder.chmod(0o755)
    assert len(data) == 4 and list(fake.folder.glob("*.npz")) == [] and list(fake.folder.glob("*.tmp")) == []


# --- download through download.py (a local server stands in for Google Drive) -------------------------------


@pytest.fixture
def drive(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with serve_files() as httpd:
        monkeypatch.setattr(celeba, "DRIVE_URL", f"{httpd.url}/uc?id={{id}}&rk={{key}}")
        yield httpd


def test_download_by_drive_id(fake, drive, tmp_path):
    for file, _, file_id, key in celeba.RESOURCES:
        drive.files[f"/uc?id={file_id}&rk={key}"] = (fake.folder / file).read_bytes()
    target = tmp_path / "fresh"
    data = celeba.load(target, "test", True, LoadOptions())
    assert len(data) == 4 and celeba.available(target)
    # One request per file, to its id, and the file name after the '#' never reaches the server.
    assert sorted(path for path, _ in drive.requests) == sorted(drive.files)
    assert celeba.load(target, "test", True, LoadOptions()).labels.tolist() == data.labels.tolist()
    assert len(drive.requests) == 3  # present files are not fetched again


def test_drive_refusal_is_one_line_with_the_manual_fix(fake, drive, tmp_path):
    for _, _, file_id, key in celeba.RESOURCES:
        drive.files[f"/uc?id={file_id}&rk={key}"] = b"<html>Google Drive - Quota exceeded</html>"
    target = tmp_path / "fresh"
    with pytest.raises(BenchError) as excinfo:
        celeba.load(target, "train", True, LoadOptions())
    message = one_line(excinfo)
    assert "img_align_celeba.zip" in message and "expected" in message and "the file was deleted" in message
    assert "download img_align_celeba.zip by hand" in message and f"put it in {target}" in message
    assert not (target / celeba.ZIP_FILE).exists() and not list(target.glob("*.part"))


def test_an_interrupted_download_resumes_on_the_next_run(fake, drive, tmp_path):
    for file, _, file_id, key in celeba.RESOURCES:
        drive.files[f"/uc?id={file_id}&rk={key}"] = (fake.folder / file).read_bytes()
    zip_id, zip_key = next((i, k) for f, _, i, k in celeba.RESOURCES if f == celeba.ZIP_FILE)
    drive.cut = {f"/uc?id={zip_id}&rk={zip_key}"}
    target = tmp_path / "fresh"
    with pytest.raises(BenchError) as excinfo:
        celeba.load(target, "test", True, LoadOptions())
    assert "could not download" in one_line(excinfo)
    parts = list(target.glob("*.part"))
    assert len(parts) == 1 and parts[0].stat().st_size > 0  # what arrived is kept
    kept = parts[0].stat().st_size
    drive.cut = set()
    data = celeba.load(target, "test", True, LoadOptions())  # the rerun asks for the rest only
    assert (f"/uc?id={zip_id}&rk={zip_key}", f"bytes={kept}-") in drive.requests
    assert len(data) == 4 and not list(target.glob("*.part"))
    assert (target / parts[0].name[: -len(".part")]).read_bytes() == (fake.folder / parts[0].name[: -len(".part")]).read_bytes()
