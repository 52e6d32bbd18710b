"""GTSRB: the German Traffic Sign Recognition Benchmark, 43 classes of RGB sign photographs (39,209 train,
12,630 test), cropped to the annotated sign and resized to 32x32 (or ``--image-size``).

Source: J. Stallkamp, M. Schlipsing, J. Salmen and C. Igel, "Man vs. computer: Benchmarking machine learning
algorithms for traffic sign recognition", Neural Networks 32, 2012 (and "The German Traffic Sign Recognition
Benchmark: A multi-class classification competition", IJCNN 2011); https://benchmark.ini.rub.de/ . Read
straight from the three official archives in ``<data dir>/gtsrb/``, served at ``BASE_URL`` and checked
against the MD5s other public loaders publish (``RESOURCES``; torchvision's GTSRB uses a different,
re-packed training zip):

- ``GTSRB_Final_Training_Images.zip``: ``GTSRB/Final_Training/Images/<class, 5 digits>/<track>_<image>.ppm``
  and one ``GT-<class>.csv`` per class folder;
- ``GTSRB_Final_Test_Images.zip``: ``GTSRB/Final_Test/Images/<nnnnn>.ppm`` (its own CSV has no ClassId and
  is not read);
- ``GTSRB_Final_Test_GT.zip``: ``GT-final_test.csv``, the test labels.

The CSVs are semicolon-separated with the header ``Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId``.

Choices:
- Each image is cropped to its annotated region of interest, the sign without the (at least 5-pixel) margin
  the photographs carry. ``Roi.X2``/``Roi.Y2`` are read as INCLUSIVE pixel coordinates (the annotation names
  the last pixel of the sign), so the crop box is ``(X1, Y1, X2 + 1, Y2 + 1)``; an edge past the image is
  clamped to it. An image whose size differs from its CSV's Width/Height is rejected (its ROI would not fit).
- The crop is resized to a square (aspect ratio not kept, as in the benchmark's own baselines) with PIL's
  BILINEAR filter, which PIL widens by the downscaling factor, i.e. antialiased like torchvision's default
  ``Resize``; a crop already at the target size is kept as is (no resampling at all).
- Order: training images class by class, each in its CSV's order; test images in ``GT-final_test.csv``'s
  order.
- GTSRB is naturally imbalanced: the training classes hold 210 to 2,250 images (``TRAIN_COUNTS``, test:
  ``TEST_COUNTS``, the official per-class counts). The CapsAN paper uses the classes as they come and does
  not imbalance GTSRB further; the binary protocol's ratio applies on top only when asked for.

Decoded splits are cached beside the archives as ``<split>_<size>.npz``, keyed on the archives' MD5s and the
image size.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.datasets.base import ImageSet, LoadOptions
from bench.datasets.cache import read_cache, write_cache
from bench.datasets.download import ensure_files
from bench.errors import BenchError, one_line

NAME = "gtsrb"
DESCRIPTION = "German traffic signs, 43 classes, RGB cropped to the sign at 32x32, 39,209 train and 12,630 test"
SOURCE = (
    "Stallkamp, Schlipsing, Salmen and Igel (2012), Neural Networks 32; https://benchmark.ini.rub.de/ "
    "(archives at https://sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370/)"
)
# The standard English names of the 43 classes, in ClassId order.
CLASS_NAMES = (
    "Speed limit (20km/h)", "Speed limit (30km/h)", "Speed limit (50km/h)", "Speed limit (60km/h)",
    "Speed limit (70km/h)", "Speed limit (80km/h)", "End of speed limit (80km/h)", "Speed limit (100km/h)",
    "Speed limit (120km/h)", "No passing", "No passing for vehicles over 3.5 metric tons",
    "Right-of-way at the next intersection", "Priority road", "Yield", "Stop", "No vehicles",
    "Vehicles over 3.5 metric tons prohibited", "No entry", "General caution", "Dangerous curve to the left",
    "Dangerous curve to the right", "Double curve", "Bumpy road", "Slippery road",
    "Road narrows on the right", "Road work", "Traffic signals", "Pedestrians", "Children crossing",
    "Bicycles crossing", "Beware of ice/snow", "Wild animals crossing", "End of all speed and passing limits",
    "Turn right ahead", "Turn left ahead", "Ahead only", "Go straight or right", "Go straight or left",
    "Keep right", "Keep left", "Roundabout mandatory", "End of no passing",
    "End of no passing by vehicles over 3.5 metric tons",
)  # fmt: skip
# The official number of images per class (facts of the release; the loader does not enforce them).
TRAIN_COUNTS = (
    210, 2220, 2250, 1410, 1980, 1860, 420, 1440, 1410, 1470, 2010, 1320, 2100, 2160, 780, 630, 420, 1110,
    1200, 210, 360, 330, 390, 510, 270, 1500, 600, 240, 540, 270, 450, 780, 240, 689, 420, 1200, 390, 210,
    2070, 300, 360, 240, 240,
)  # fmt: skip
TEST_COUNTS = (
    60, 720, 750, 450, 660, 630, 150, 450, 450, 480, 660, 420, 690, 720, 270, 210, 150, 360, 390, 60, 90, 90,
    120, 150, 90, 480, 180, 60, 150, 90, 150, 270, 60, 210, 120, 390, 120, 60, 690, 90, 90, 60, 90,
)  # fmt: skip
IMAGE_SIZE = 32
IMAGE_SHAPE = (3, IMAGE_SIZE, IMAGE_SIZE)
# (majority, minority) pairs of look-alike signs whose natural counts are already unequal:
# Speed limit 30 vs 20 (2,220 vs 210: round red-rimmed signs that differ by one digit), Keep right vs
# Keep left (2,070 vs 300: mirror images) and General caution vs Traffic signals (1,200 vs 600: red-rimmed
# triangles with a vertical glyph).
DEFAULT_PAIRS = ((1, 0), (38, 39), (18, 26))
NEEDS_FILES = True
TAKES_OPTIONS = True

TRAIN_ARCHIVE = "GTSRB_Final_Training_Images.zip"
TEST_ARCHIVE = "GTSRB_Final_Test_Images.zip"
GT_ARCHIVE = "GTSRB_Final_Test_GT.zip"
# (file name, MD5); module-level so tests can substitute fixtures.
RESOURCES = (
    (TRAIN_ARCHIVE, "f33fd80ac59bff73c82d25ab499e03a3"),
    (TEST_ARCHIVE, "c7e4e6327067d32654124b0fe9e82185"),
    (GT_ARCHIVE, "fe31e9c9270bbcd7b84b7f21a9d9d9e5"),
)
BASE_URL = "https://sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370/"
MIRRORS = (BASE_URL,)
SPLIT_ARCHIVES = {"train": (TRAIN_ARCHIVE,), "test": (TEST_ARCHIVE, GT_ARCHIVE)}

# Member names inside the archives.
TRAIN_DIR = "GTSRB/Final_Training/Images/"
TRAIN_CSV = re.compile(r"GTSRB/Final_Training/Images/(\d{5})/GT-\1\.csv")
TEST_DIR = "GTSRB/Final_Test/Images/"
TEST_GT_CSV = "GT-final_test.csv"
CSV_COLUMNS = ("Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "ClassId")
FIX = "delete it and rerun with --download, or replace it with the canonical file"
# Everything a damaged archive or member can raise while being opened, read or decoded.
ARCHIVE_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError)


@dataclass(frozen=True)
class Row:
    """One CSV line: the image's file name, its size, its ROI (X2/Y2 inclusive) and its class."""

    filename: str
    width: int
    height: int
    x1: int
    y1: int
    x2: int
    y2: int
    class_id: int
    line: int  # 1-based line number in the CSV, for error messages


def load(folder: Path, split: str = "train", download: bool = False, options: LoadOptions | None = None
         ) -> ImageSet:
    """One split, cropped and resized to ``options.image_size`` (default 32), checking the archives' MD5s."""
    if split not in SPLIT_ARCHIVES:
        raise BenchError(f"unknown split '{split}'; valid splits: {', '.join(sorted(SPLIT_ARCHIVES))}")
    size = (options or LoadOptions()).image_size or IMAGE_SIZE
    folder = Path(folder)
    files = SPLIT_ARCHIVES[split]
    md5s = ensure_files(NAME, folder, [r for r in RESOURCES if r[0] in files], MIRRORS, download)
    # The size changes the arrays, so it is part of both the key and the file name (several sizes coexist).
    key = np.array([md5s[f] for f in files] + [f"size={size}"])
    cache = folder / f"{split}_{size}.npz"
    cached = read_cache(cache, key, CLASS_NAMES)
    if cached is not None:
        return cached
    if split == "train":
        images, labels = read_train(folder / TRAIN_ARCHIVE, size)
    else:
        images, labels = read_test(folder / TEST_ARCHIVE, folder / GT_ARCHIVE, size)
    result = ImageSet(images, labels, CLASS_NAMES)
    write_cache(cache, key, result)
    return result


def available(folder: Path) -> bool:
    return all((Path(folder) / file).is_file() for file, _ in RESOURCES)


def read_train(archive: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Every class folder of the training archive, in class order: (N, 3, size, size) uint8, int64 labels."""
    with open_archive(archive) as zf:
        csvs = sorted((int(m.group(1)), m.group(0)) for m in map(TRAIN_CSV.fullmatch, zf.namelist()) if m)
        if not csvs:
            raise bad_archive(archive, f"no {TRAIN_DIR}<class>/GT-<class>.csv inside")
        images, labels = [], []
        for class_id, member in csvs:
            for row in read_csv(zf, archive, member):
                if row.class_id != class_id:
                    raise bad_archive(archive, f"{member} line {row.line} has ClassId {row.class_id} "
                                               f"in the folder of class {class_id}")
                images.append(read_image(zf, archive, f"{TRAIN_DIR}{class_id:05d}/{row.filename}", row,
                                         member, size))
                labels.append(class_id)
    return stack(images, labels, size)


def read_test(archive: Path, gt_archive: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The test images in ``GT-final_test.csv``'s order, with its labels and ROIs."""
    with open_archive(gt_archive) as gz:
        if TEST_GT_CSV not in gz.namelist():
            raise bad_archive(gt_archive, f"no {TEST_GT_CSV} inside")
        rows = read_csv(gz, gt_archive, TEST_GT_CSV)
    where = f"{gt_archive.name}:{TEST_GT_CSV}"
    with open_archive(archive) as zf:
        images = [read_image(zf, archive, TEST_DIR + row.filename, row, where, size) for row in rows]
    return stack(images, [row.class_id for row in rows], size)


def stack(images: list[np.ndarray], labels: list[int], size: int) -> tuple[np.ndarray, np.ndarray]:
    if not images:
        return np.zeros((0, 3, size, size), np.uint8), np.zeros(0, np.int64)
    # (N, H, W, C) as PIL gives it -> (N, C, H, W), contiguous.
    return np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2)), np.array(labels, np.int64)


def open_archive(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except ARCHIVE_ERRORS as e:
        raise bad_archive(path, f"unreadable zip: {one_line(e)}") from e


def read_member(zf: zipfile.ZipFile, archive: Path, member: str, named_in: str | None = None) -> bytes:
    try:
        return zf.read(member)
    except KeyError:
        # A member named by a CSV but absent: the archive is incomplete.
        where = f", named in {named_in}" if named_in else ""
        raise bad_archive(archive, f"no member {member}{where}") from None
    except ARCHIVE_ERRORS as e:  # bad CRC, truncated or undecompressable data
        raise bad_archive(archive, f"cannot read {member}: {one_line(e)}") from e


def read_csv(zf: zipfile.ZipFile, archive: Path, member: str) -> list[Row]:
    """Parse one GT CSV (``;``-separated, with a header; LF or CRLF line ends) into validated rows."""
    try:
        text = read_member(zf, archive, member).decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise bad_archive(archive, f"{member} is not text: {one_line(e)}") from e
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=";")
    header = [h.strip() for h in next(reader, [])]
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise bad_archive(archive, f"{member} lacks the column(s) {', '.join(missing)}")
    index = [header.index(c) for c in CSV_COLUMNS]
    rows = []
    for line, fields in enumerate(reader, start=2):
        if not any(f.strip() for f in fields):
            continue  # a blank (last) line
        if len(fields) != len(header):
            raise bad_archive(archive, f"{member} line {line} has {len(fields)} fields, expected {len(header)}")
        filename, *numbers = (fields[i].strip() for i in index)
        try:
            row = Row(filename, *map(int, numbers), line=line)
        except ValueError:
            raise bad_archive(archive, f"{member} line {line} has a non-integer field") from None
        if not 0 <= row.class_id < len(CLASS_NAMES):
            raise bad_archive(archive, f"{member} line {line} has ClassId {row.class_id}, not in 0..42")
        if not (0 <= row.x1 <= row.x2 and 0 <= row.y1 <= row.y2) or "/" in filename or not filename:
            raise bad_archive(archive, f"{member} line {line} has an invalid file name or ROI")
        rows.append(row)
    return rows


def read_image(zf: zipfile.ZipFile, archive: Path, member: str, row: Row, named_in: str, size: int
               ) -> np.ndarray:
    """Decode one PPM, crop it to its ROI (X2/Y2 inclusive), resize to ``size`` squared: (size, size, 3)."""
    from PIL import Image, UnidentifiedImageError

    data = read_member(zf, archive, member, named_in)
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            image = img.convert("RGB")
    except UnidentifiedImageError:  # no image at all (a text file under an image's name): show what is there
        raise bad_archive(archive, f"{member} is not a readable image: expected a PPM, found {len(data)} "
                                   f"bytes starting {data[:16]!r}") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise bad_archive(archive, f"{member} is not a readable image: {one_line(e)}") from e
    if image.size != (row.width, row.height):
        raise bad_archive(archive, f"{member} is {image.size[0]}x{image.size[1]} but {named_in} line "
                                   f"{row.line} says {row.width}x{row.height}")
    # Inclusive X2/Y2 -> PIL's exclusive box; an edge past the image is clamped to it.
    box = (row.x1, row.y1, min(row.x2 + 1, image.width), min(row.y2 + 1, image.height))
    if box[0] >= box[2] or box[1] >= box[3]:
        raise bad_archive(archive, f"{named_in} line {row.line}: the ROI of {member} lies outside the image")
    image = image.crop(box)
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def bad_archive(path: Path, reason: str) -> BenchError:
    return BenchError(f"{NAME}: {path} is not a valid GTSRB archive ({reason}); {FIX}")


