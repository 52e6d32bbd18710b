"""folder:PATH, the user's own image folder: layouts, split, resizing, colour, errors and the cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.datasets import folder
from bench.datasets.base import ImageSet, LoadOptions
from bench.datasets.registry import DatasetInfo
from bench.errors import BenchError


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def write_image(path: Path, mode: str = "L", size: tuple[int, int] = (12, 12), seed: int = 0,
                fmt: str | None = None) -> np.ndarray:
    """A random image of ``mode`` and PIL ``size`` (W, H) saved at ``path``; returns its pixels as saved."""
    rng = np.random.default_rng(seed)
    w, h = size
    shape = {"L": (h, w), "RGB": (h, w, 3), "RGBA": (h, w, 4)}[mode]
    pixels = rng.integers(0, 256, shape, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode).save(path, format=fmt)
    return pixels


def make_folder(root: Path, counts: dict[str, int], mode: str = "L", size=(12, 12), ext: str = "png",
                seed: int = 0) -> None:
    """``counts[class]`` images per class folder under ``root``."""
    for c, (name, n) in enumerate(counts.items()):
        for i in range(n):
            write_image(root / name / f"img{i:03d}.{ext}", mode, size, seed=seed + 100 * c + i)


def load(path, split="train", size=None) -> ImageSet:
    return folder.load(path, split, False, LoadOptions(image_size=size))


def by_file(path, size=None) -> dict[Path, np.ndarray]:
    """Every loaded image of both splits, by its source file."""
    layout = folder.scan(path)
    images = np.concatenate([load(path, "train", size).images, load(path, "test", size).images])
    files = [f for split in ("train", "test") for f, _ in layout.splits[split]]
    return dict(zip(files, images, strict=True))


def test_train_test_layout_round_trip(tmp_path):
    # Classes written out of order and with names that sort differently from creation order.
    saved = {}
    for split, n in (("train", 3), ("test", 2)):
        for name in ("zebra", "ant", "Moth"):
            for i in range(n):
                path = tmp_path / split / name / f"{i}.png"
                saved[path] = write_image(path, "L", (10, 10), seed=len(saved))
    (tmp_path / "train" / "ant" / "notes.txt").write_text("not an image")
    (tmp_path / "val").mkdir()  # ignored beside train/ and test/
    train, test = load(tmp_path, "train"), load(tmp_path, "test")
    assert train.class_names == test.class_names == ("Moth", "ant", "zebra")  # sorted, case-sensitive
    assert train.images.shape == (9, 1, 10, 10) and test.images.shape == (6, 1, 10, 10)
    assert train.counts().tolist() == [3, 3, 3] and test.counts().tolist() == [2, 2, 2]
    # Class order, then file order; the pixels are exactly the PNG's (no resize at the native size).
    expected = [saved[tmp_path / "test" / n / f"{i}.png"] for n in ("Moth", "ant", "zebra") for i in range(2)]
    assert np.array_equal(test.images[:, 0], np.stack(expected))
    assert test.labels.tolist() == [0, 0, 1, 1, 2, 2]


def test_single_folder_split_is_stratified_fixed_and_complete(tmp_path):
    make_folder(tmp_path, {"a": 10, "b": 4, "c": 2, "d": 7})
    train, test = load(tmp_path, "train"), load(tmp_path, "test")
    full = np.array([10, 4, 2, 7])
    assert np.array_equal(train.counts() + test.counts(), full)
    assert test.counts().tolist() == [3, 1, 1, 2]  # round(0.3 n), at least 1 and at most n - 1
    assert np.all(train.counts() > 0) and np.all(test.counts() > 0)
    # Every image is in exactly one split: compare the pixel sets.
    every = {img.tobytes() for img in np.concatenate([train.images, test.images])}
    assert len(every) == full.sum() and len(train) + len(test) == full.sum()
    # The same split on every load, with or without the cache.
    for cache in (True, False):
        if not cache:
            for f in (tmp_path / folder.CACHE_DIR).iterdir():
                f.unlink()
        again = load(tmp_path, "test")
        assert np.array_equal(again.images, test.images) and np.array_equal(again.labels, test.labels)
    # Independent of anything run-related: the split comes from the file names, not from a global RNG.
    np.random.seed(123)
    layout = folder.scan(tmp_path)
    assert [f.name for f, _ in layout.splits["test"]] == [f.name for f, _ in folder.scan(tmp_path).splits["test"]]


def test_one_image_class_cannot_be_split(tmp_path):
    make_folder(tmp_path, {"a": 5, "b": 1})
    with pytest.raises(BenchError) as excinfo:
        load(tmp_path)
    message = one_line_error(excinfo)
    assert str(tmp_path / "b") in message and "only 1 image" in message and "add images" in message


def test_resize_to_first_image_height_and_to_image_size(tmp_path):
    # The first image (class "a", file img000) is 16 wide and 10 high: the default is 10x10.
    write_image(tmp_path / "a" / "img000.png", "L", (16, 10))
    write_image(tmp_path / "a" / "img001.jpg", "L", (20, 20), fmt="JPEG")
    write_image(tmp_path / "a" / "img002.bmp", "L", (7, 9))
    write_image(tmp_path / "b" / "x.jpeg", "L", (30, 12), fmt="JPEG")
    write_image(tmp_path / "b" / "y.ppm", "RGB", (5, 5))  # ppm is RGB: it makes the set RGB
    write_image(tmp_path / "b" / "z.png", "L", (10, 10))
    default = np.concatenate([load(tmp_path, "train").images, load(tmp_path, "test").images])
    assert default.shape == (6, 3, 10, 10)
    assert folder.describe(tmp_path)["image_shape"] == (3, 10, 10)
    sized = load(tmp_path, "train", size=24)
    assert sized.images.shape[1:] == (3, 24, 24)
    # Resizing is PIL's bilinear filter on the stretched image (no crop).
    original = np.asarray(Image.open(tmp_path / "a" / "img000.png").convert("RGB"))
    expected = np.asarray(Image.fromarray(original).resize((10, 10), Image.Resampling.BILINEAR))
    assert np.array_equal(by_file(tmp_path)[tmp_path / "a" / "img000.png"], expected.transpose(2, 0, 1))


def test_grey_stays_grey_and_any_colour_makes_rgb(tmp_path):
    grey = tmp_path / "grey"
    make_folder(grey, {"a": 3, "b": 3}, mode="L", ext="jpg")
    write_image(grey / "a" / "la.png", "L", (12, 12))
    Image.open(grey / "a" / "la.png").convert("LA").save(grey / "a" / "la.png")  # grey + alpha stays grey
    assert load(grey).images.shape[1] == 1 and load(grey, "test").images.shape[1] == 1
    assert folder.describe(grey)["image_shape"][0] == 1

    mixed = tmp_path / "mixed"
    make_folder(mixed, {"a": 3, "b": 3}, mode="L")
    grey_pixels = np.asarray(Image.open(mixed / "a" / "img000.png"))
    rgba = write_image(mixed / "b" / "img002.png", "RGBA")  # one RGBA image: the whole set is RGB
    palette = mixed / "b" / "img001.png"
    Image.open(palette).convert("RGB").convert("P").save(palette)  # palette image: converted to RGB
    train, test = load(mixed, "train"), load(mixed, "test")
    assert train.images.shape[1] == 3 and test.images.shape[1] == 3
    both = by_file(mixed)
    # Grey images are replicated over the three channels; RGBA loses its alpha, not composited.
    assert np.array_equal(both[mixed / "a" / "img000.png"], np.stack([grey_pixels] * 3))
    assert np.array_equal(both[mixed / "b" / "img002.png"], rgba[..., :3].transpose(2, 0, 1))


def test_sixteen_bit_grey_keeps_the_high_byte(tmp_path):
    make_folder(tmp_path, {"a": 2, "b": 2})
    deep = (np.arange(144, dtype=np.uint16).reshape(12, 12) * 450)
    Image.fromarray(deep).save(tmp_path / "a" / "img000.png")
    assert Image.open(tmp_path / "a" / "img000.png").mode.startswith("I;16")
    loaded = by_file(tmp_path)[tmp_path / "a" / "img000.png"]
    assert loaded.shape == (1, 12, 12) and np.array_equal(loaded[0], (deep >> 8).astype(np.uint8))


def test_describe_builds_a_dataset_info(tmp_path):
    make_folder(tmp_path / "train", {"cat": 5, "dog": 2, "emu": 5})
    make_folder(tmp_path / "test", {"cat": 1, "dog": 1, "emu": 1})
    info = DatasetInfo(**folder.describe(tmp_path))
    assert info.name == f"folder:{tmp_path}" and info.needs_files and info.takes_options
    assert info.class_names == ("cat", "dog", "emu") and info.image_shape == (1, 12, 12)
    assert "\n" not in info.description and "3 classes, 12 train and 3 test" in info.description
    assert info.source == str(tmp_path.resolve())
    # Largest train class (a tie of cat and emu: the lower index) against the smallest.
    assert info.default_pairs == ((0, 1),)
    assert info.available(tmp_path) and not info.available(tmp_path / "nowhere")
    loaded = info.load(tmp_path, "test", True, LoadOptions())  # download is ignored
    assert loaded.counts().tolist() == [1, 1, 1]


def test_default_pair_with_equal_counts_differs(tmp_path):
    make_folder(tmp_path, {"a": 3, "b": 3, "c": 3})
    assert folder.describe(tmp_path)["default_pairs"] == ((0, 2),)


# --- errors ---------------------------------------------------------------------------------------------


def test_mismatched_classes(tmp_path):
    make_folder(tmp_path / "train", {"a": 2, "b": 2, "c": 2})
    make_folder(tmp_path / "test", {"a": 1, "b": 1, "d": 1})
    with pytest.raises(BenchError) as excinfo:
        load(tmp_path)
    message = one_line_error(excinfo)
    assert message.startswith(f"folder:{tmp_path}: train/ and test/ must have the same class folders")
    assert "only in train/: c" in message and "only in test/: d" in message
    assert not folder.available(tmp_path)


def test_missing_test_folder(tmp_path):
    make_folder(tmp_path / "train", {"a": 2, "b": 2})
    with pytest.raises(BenchError, match=r"has train/ but no test/") as excinfo:
        load(tmp_path)
    assert str(tmp_path / "test") in one_line_error(excinfo)


def test_empty_class_folder(tmp_path):
    make_folder(tmp_path / "train", {"a": 2, "b": 2})
    make_folder(tmp_path / "test", {"a": 1, "b": 0})
    (tmp_path / "test" / "b").mkdir()
    (tmp_path / "test" / "b" / "readme.txt").write_text("no images here")
    with pytest.raises(BenchError) as excinfo:
        load(tmp_path, "train")  # the other split's folder is checked too
    message = one_line_error(excinfo)
    assert f"class folder {tmp_path / 'test' / 'b'} has no images" in message and "remove the folder" in message


@pytest.mark.parametrize("case", ["missing", "no-classes", "no-images", "one-class"])
def test_no_usable_folder(tmp_path, case):
    root = tmp_path / "data"
    if case == "no-classes":
        write_image(root / "loose.png")  # images directly in PATH are not a class
    elif case == "no-images":
        (root / "a").mkdir(parents=True)
        (root / "b").mkdir()
    elif case == "one-class":
        make_folder(root, {"only": 3})
    with pytest.raises(BenchError) as excinfo:
        load(root)
    message = one_line_error(excinfo)
    assert message.startswith(f"folder:{root}: ")
    assert {"missing": "is not a folder", "no-classes": "no class folders", "no-images": "no images (",
            "one-class": "only one class folder (only)"}[case] in message
    assert not folder.available(root)


@pytest.mark.parametrize("damage", ["not-an-image", "truncated"])
def test_corrupt_image(tmp_path, damage):
    make_folder(tmp_path, {"a": 3, "b": 3}, size=(64, 64))
    bad = tmp_path / "b" / "img001.png"
    whole = bad.read_bytes()
    bad.write_bytes(b"this is not a png" if damage == "not-an-image" else whole[: len(whole) // 2])
    with pytest.raises(BenchError) as excinfo:
        load(tmp_path, "train")
        load(tmp_path, "test")
    message = one_line_error(excinfo)
    assert f"cannot read image {bad} (" in message and "replace it with a valid image or delete it" in message


def test_empty_path_is_not_the_working_directory(tmp_path, monkeypatch):
    make_folder(tmp_path, {"a": 2, "b": 2})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BenchError, match="needs the path of an image folder"):
        folder.describe("")
    assert folder.describe(".")["class_names"] == ("a", "b")


def test_bad_split(tmp_path):
    make_folder(tmp_path, {"a": 2, "b": 2})
    with pytest.raises(BenchError, match="unknown split 'val'; valid splits: test, train"):
        load(tmp_path, "val")


def test_large_default_size_needs_an_image_size(tmp_path):
    write_image(tmp_path / "a" / "0.png", size=(8, 600))
    write_image(tmp_path / "a" / "1.png")
    make_folder(tmp_path, {"b": 2})
    with pytest.raises(BenchError, match="larger than 512; give an image size") as excinfo:
        load(tmp_path)
    assert str(tmp_path / "a" / "0.png") in one_line_error(excinfo)
    assert load(tmp_path, size=16).images.shape[1:] == (1, 16, 16)


# --- cache ----------------------------------------------------------------------------------------------


def test_cache_reused_and_rebuilt(tmp_path, monkeypatch):
    make_folder(tmp_path, {"a": 4, "b": 3})
    first = load(tmp_path, "train")
    cache_dir = tmp_path / folder.CACHE_DIR
    assert sorted(p.name for p in cache_dir.iterdir()) == ["train-12.npz"]
    assert folder.scan(tmp_path).class_names == ("a", "b")  # the cache folder is not a class

    def no_decode(*args, **kwargs):
        raise AssertionError("decoded despite a valid cache")

    with monkeypatch.context() as m:
        m.setattr(folder, "_decode", no_decode)
        again = load(tmp_path, "train")
    assert np.array_equal(again.images, first.images) and np.array_equal(again.labels, first.labels)

    # Another image size is its own cache file, beside the first.
    assert load(tmp_path, "train", size=16).images.shape[2:] == (16, 16)
    assert sorted(p.name for p in cache_dir.iterdir()) == ["train-12.npz", "train-16.npz"]

    # A changed file (new pixels, same name) rebuilds the cache.
    target = folder.scan(tmp_path).splits["train"][0][0]
    new = write_image(target, seed=999)
    rebuilt = load(tmp_path, "train")
    assert np.array_equal(rebuilt.images[0, 0], new) and not np.array_equal(rebuilt.images, first.images)

    # A touched file (same bytes, new mtime) is enough to rebuild: the key has sizes and mtimes, not MD5s.
    with monkeypatch.context() as m:
        m.setattr(folder, "_decode", no_decode)
        load(tmp_path, "train")  # the rebuilt cache is valid
        st = target.stat()
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        with pytest.raises(AssertionError, match="despite a valid cache"):
            load(tmp_path, "train")


def test_cache_key_covers_the_other_split(tmp_path):
    make_folder(tmp_path, {"a": 4, "b": 4})
    load(tmp_path, "train")
    # A new image anywhere can change the split and the colour: the train cache must not be reused.
    write_image(tmp_path / "b" / "img999.png", "RGB")
    train = load(tmp_path, "train")
    assert train.images.shape[1] == 3 and len(train) + len(load(tmp_path, "test")) == 9


def test_read_only_folder_gets_no_cache(tmp_path):
    make_folder(tmp_path / "data", {"a": 3, "b": 3})
    root = tmp_path / "data"
    root.chmod(0o555)
    try:
        loaded = load(root, "test")
    finally:
        root.chmod(0o755)
    assert loaded.counts().tolist() == [1, 1]
    assert not (root / folder.CACHE_DIR).exists()


def test_garbage_cache_is_rebuilt(tmp_path):
    make_folder(tmp_path, {"a": 3, "b": 3})
    expected = load(tmp_path, "train")
    (tmp_path / folder.CACHE_DIR / "train-12.npz").write_bytes(b"garbage")
    assert np.array_equal(load(tmp_path, "train").images, expected.images)
