"""CelebA: 202,599 aligned-and-cropped celebrity faces (178x218 RGB JPEG) with 40 binary attributes.

Source: Z. Liu, P. Luo, X. Wang and X. Tang, "Deep Learning Face Attributes in the Wild", ICCV 2015;
https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html .

Licence: CelebA is for NON-COMMERCIAL RESEARCH PURPOSES ONLY (see the agreement on the page above). This
suite never ships or redistributes any of it: every user fetches the files themselves, under that agreement.

Files, in ``<data dir>/celeba/``, checked against the MD5s torchvision publishes (``torchvision.datasets.
CelebA.file_list``):

- ``img_align_celeba.zip`` (00d2c5bc6d35e252742224ab0c1e8fcb): the JPEGs as ``img_align_celeba/000001.jpg``
  .. ``img_align_celeba/202599.jpg``. It is read in place, member by member; there is no need to unzip it.
- ``list_attr_celeba.txt`` (75e246fa4810816ffd6ee81facbd244c): line 1 the image count, line 2 the 40
  attribute names, then one line per image: ``<file> <40 values, 1 present or -1 absent>`` (columns padded
  with spaces, CRLF line ends; any run of whitespace is accepted).
- ``list_eval_partition.txt`` (d32c9cbf5e040fd4025c592c306e6668): ``<file> <0 train | 1 valid | 2 test>``.

Download: the official files live only on Google Drive. ``download=True`` asks Drive for them by the file ids
torchvision uses (see ``RESOURCES``), but Drive often refuses scripted downloads (a sign-in or "quota
exceeded" page instead of the file; the MD5 check then rejects it and deletes it). In that case download the
three files by hand from the Google Drive folder linked on the page above (``Img/img_align_celeba.zip``,
``Anno/list_attr_celeba.txt``, ``Eval/list_eval_partition.txt``; or from Baidu, also linked there), check
their MD5s, and put them side by side, under exactly these names and with the zip left zipped, in
``<data dir>/celeba/`` (``bench run --data-dir``; default ``$BENCH_DATA`` or ``~/.cache/capsan-bench``).

Choices:

- Label task (``LoadOptions.celeba_attr``). An attribute name gives a binary task: class 0 = absent
  ("not <attr>"), class 1 = present. The default, Eyeglasses, is naturally imbalanced (about 1 image in 15
  wears glasses), binary, and visible in a small face crop, so no artificial subsampling is needed to study
  imbalance. ``"hair"`` gives the 5 hair-colour classes of DeepSMOTE (Dablain, Krawczyk and Chawla, IEEE
  TNNLS 2022, arXiv:2105.02340): Black_Hair, Brown_Hair, Blond_Hair, Gray_Hair, Bald, in that class order,
  keeping only the images with EXACTLY one of the five (images with none or several are ambiguous).
- Splits: ``train`` is the official training partition 0 and ``test`` the official test partition 2. The
  validation partition 1 is dropped, not merged: the suite does no model selection on it, and partition 0
  alone keeps the training set identical to the one most CelebA work (and torchvision's ``split="train"``)
  uses.
- Preprocessing: the 140x140 centre crop (pixels x 19..158, y 39..178) then a resize to the image size, RGB.
  This "close crop" keeps the face and the hair around it and drops most background; it is the common
  CelebA crop of GAN and auto-encoder work: the ``closecrop`` of the WAE code (Tolstikhin et al., ICLR 2018,
  https://github.com/tolstikhin/wae ``datahandler.py``, 140x140 centre crop then 64x64), whose comment
  credits it to DCGAN and AVB. The resize is PIL's bilinear filter, which is antialiased when shrinking
  (its support widens with the scale factor): the filter ``bench.datasets.base.resize_images`` gives the
  other datasets (torch's antialiased bilinear reproduces PIL's up to rounding).
  Image size (``LoadOptions.image_size``): 32 when None (the suite's default size), or 64 (the DCGAN / WAE
  size); any size from 8 up to the crop's 140 is accepted (larger would only upsample).
- Cache: decoding 200k JPEGs takes minutes, so each decoded split is cached beside the sources as
  ``<split>-<task>-<size>.npz`` (e.g. ``train-Eyeglasses-32.npz``), keyed on the three source MD5s, the task,
  the size and the preprocessing (``bench.datasets.cache``); any change rebuilds it.

``CLASS_NAMES`` and ``DEFAULT_PAIRS`` describe the default task (Eyeglasses); a loaded ``ImageSet`` carries
its own task's names (``class_names(task)`` gives them without loading).
"""

from __future__ import annotations

import io
import zipfile
import zlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench.datasets.base import ImageSet, LoadOptions
from bench.datasets.cache import read_cache, write_cache
from bench.datasets.download import ensure_files
from bench.errors import BenchError

NAME = "celeba"
DESCRIPTION = (
    "CelebA aligned faces, RGB, 140x140 centre crop resized to 32x32 (or 64), binary attribute or 5 hair "
    "colours, official train and test partitions"
)
SOURCE = (
    "Liu, Luo, Wang and Tang (2015), Deep Learning Face Attributes in the Wild, ICCV; "
    "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (non-commercial research only)"
)
DEFAULT_ATTR = "Eyeglasses"
CLASS_NAMES = (f"not {DEFAULT_ATTR}", DEFAULT_ATTR)
IMAGE_SHAPE = (3, 32, 32)
# The binary tasks: the attribute's absence is the majority class, its presence the minority.
DEFAULT_PAIRS = ((0, 1),)
NEEDS_FILES = True
TAKES_OPTIONS = True

ZIP_FILE = "img_align_celeba.zip"
ATTR_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
# The folder inside the zip that holds the JPEGs.
IMAGE_DIR = "img_align_celeba"
# (file name, MD5, Google Drive file id, Drive resource key): the MD5s and ids as torchvision publishes
# them; module-level so tests can substitute fixtures. The resource keys are those quoted with the share
# links of the official Drive folder in public repositories (legacy "0B..." ids need one since Drive's 2021
# security update).
RESOURCES = (
    (ZIP_FILE, "00d2c5bc6d35e252742224ab0c1e8fcb",
     "0B7EVK8r0v71pZjFTYXZWM3FlRnM", "0-dYn9z10tMJOBAkviAcfdyQ"),
    (ATTR_FILE, "75e246fa4810816ffd6ee81facbd244c",
     "0B7EVK8r0v71pblRyaVFSWGxPY0U", "0-YW2qIuRcWHy_1C2VaRGL3Q"),
    (PARTITION_FILE, "d32c9cbf5e040fd4025c592c306e6668",
     "0B7EVK8r0v71pY0NSMzRuSXJEVkk", "0-i4TGCi_51OtQ5K9FSp4EDg"),
)  # fmt: skip
# Drive's direct-download endpoint; ``confirm=t`` answers the "cannot scan for viruses" page of large files.
DRIVE_URL = (
    "https://drive.usercontent.google.com/download?export=download&confirm=t&id={id}&resourcekey={key}"
)
HOMEPAGE = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"

# The 40 attributes, in the order of line 2 of list_attr_celeba.txt.
ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips",
    "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby",
    "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male",
    "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose",
    "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair",
    "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)  # fmt: skip
HAIR_TASK = "hair"
# DeepSMOTE's hair-colour classes, in class order.
HAIR_CLASSES = ("Black_Hair", "Brown_Hair", "Blond_Hair", "Gray_Hair", "Bald")
PARTITIONS = {"train": 0, "test": 2}  # 1 (validation) is not used; see the module docstring

IMAGE_SIZE = (178, 218)  # (width, height) of every aligned-and-cropped image
CROP = 140
# PIL box (left, upper, right, lower) of the centre crop: x 19..158, y 39..178.
CROP_BOX = (
    (IMAGE_SIZE[0] - CROP) // 2,
    (IMAGE_SIZE[1] - CROP) // 2,
    (IMAGE_SIZE[0] + CROP) // 2,
    (IMAGE_SIZE[1] + CROP) // 2,
)
DEFAULT_IMAGE_SIZE = 32
# Recorded in every cache key: change it whenever the decoded pixels would change.
PREPROCESSING = f"centre-crop-{CROP}+pil-bilinear"


def class_names(task: str = DEFAULT_ATTR) -> tuple[str, ...]:
    """The class names of a label task (an attribute name or ``"hair"``); BenchError for an unknown one."""
    if task == HAIR_TASK:
        return HAIR_CLASSES
    if task in ATTRIBUTES:
        return (f"not {task}", task)
    raise BenchError(
        f"{NAME}: unknown attribute '{task}'; choose '{HAIR_TASK}' (5 hair colours) or one of the 40 "
        f"attributes of {ATTR_FILE}: {', '.join(ATTRIBUTES)}"
    )


def image_size(options: LoadOptions) -> int:
    """The output side: ``options.image_size``, 32 when None; at most the crop's 140 (no upsampling)."""
    size = DEFAULT_IMAGE_SIZE if options.image_size is None else int(options.image_size)
    if not 8 <= size <= CROP:
        raise BenchError(
            f"{NAME}: image size {size} is outside 8..{CROP} (the {CROP}x{CROP} face crop is not upsampled); "
            f"choose a size such as 32 or 64"
        )
    return size


def load(
    folder: Path, split: str = "train", download: bool = False, options: LoadOptions | None = None
) -> ImageSet:
    """One split (official partition) of CelebA for the task and image size of ``options``."""
    options = options or LoadOptions()
    if split not in PARTITIONS:
        raise BenchError(f"unknown split '{split}'; valid splits: {', '.join(sorted(PARTITIONS))}")
    task = options.celeba_attr
    names = class_names(task)  # reject a bad task or size before touching any file
    size = image_size(options)
    folder = Path(folder)
    md5s = ensure_sources(folder, download)
    key = np.array([md5s[file] for file, *_ in RESOURCES] + [f"task={task}", f"size={size}", PREPROCESSING])
    cache = folder / f"{split}-{task}-{size}.npz"
    cached = read_cache(cache, key, names)
    if cached is not None:
        return cached
    files = select(folder, split, task)
    labels = np.array([label for _, label in files], dtype=np.int64)
    images = decode_images(folder / ZIP_FILE, [file for file, _ in files], size, f"{NAME} {split}")
    result = ImageSet(images, labels, names)
    write_cache(cache, key, result)
    return result


def available(folder: Path) -> bool:
    return all((Path(folder) / file).is_file() for file, *_ in RESOURCES)


# --- sources --------------------------------------------------------------------------------------------


def drive_mirror(file_id: str, resource_key: str) -> str:
    """A download.py "mirror" for one Drive file. download.py fetches ``<mirror>/<file name>``; the ``#``
    turns that suffix into a URL fragment, which urllib never sends, so Drive sees just the query."""
    return DRIVE_URL.format(id=file_id, key=resource_key) + "#"


def ensure_sources(folder: Path, download: bool) -> dict[str, str]:
    """Check (with ``download``: fetch) the three files; return file -> MD5. Errors say how to get them."""
    md5s = {}
    for file, md5, file_id, resource_key in RESOURCES:
        try:
            mirrors = [drive_mirror(file_id, resource_key)]
            md5s.update(ensure_files(NAME, folder, [(file, md5)], mirrors, download))
        except BenchError as e:
            raise BenchError(
                f"{e} (CelebA is only on Google Drive, which often refuses scripted downloads: download "
                f"{file} by hand via {HOMEPAGE} and put it in {folder})"
            ) from e
    return md5s


def _bad_text(path: Path, reason: str) -> BenchError:
    return BenchError(
        f"{NAME}: {path} is not a valid {path.name} ({reason}); replace it with the canonical file "
        f"(MD5 {dict((f, m) for f, m, *_ in RESOURCES)[path.name]})"
    )


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_bytes().decode("ascii")
    except UnicodeDecodeError as e:
        raise _bad_text(path, f"non-ASCII byte at offset {e.start}") from e
    except OSError as e:
        reason = " ".join(str(e).split())
        raise BenchError(f"{NAME}: cannot read {path} ({reason}); check its permissions") from e
    return text.splitlines()  # CRLF or LF


def read_attributes(path: Path) -> tuple[list[str], np.ndarray]:
    """``list_attr_celeba.txt`` -> (file names, int8 values (N, 40) of 1 / -1), every line checked."""
    lines = _read_lines(path)
    if len(lines) < 2:
        raise _bad_text(path, f"{len(lines)} lines, expected a count line and a header line")
    count = lines[0].strip()
    if not count.isdigit():
        raise _bad_text(path, f"line 1 is '{count[:40]}', expected the image count")
    header = lines[1].split()
    if tuple(header) != ATTRIBUTES:
        raise _bad_text(path, f"line 2 is not the 40 attribute names (got {len(header)} fields)")
    files, values = [], []
    for number, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue  # a blank (final) line
        if len(fields) != 1 + len(ATTRIBUTES):
            raise _bad_text(
                path,
                f"line {number} has {len(fields)} fields, expected a file name and {len(ATTRIBUTES)} values",
            )
        if not set(fields[1:]) <= {"1", "-1"}:
            bad = next(v for v in fields[1:] if v not in ("1", "-1"))
            raise _bad_text(path, f"line {number} has the value '{bad[:20]}', expected 1 or -1")
        files.append(fields[0])
        values.append([v == "1" for v in fields[1:]])
    if len(files) != int(count):
        raise _bad_text(path, f"line 1 announces {int(count)} images but {len(files)} follow")
    array = np.where(np.array(values, dtype=bool).reshape(-1, len(ATTRIBUTES)), 1, -1).astype(np.int8)
    return files, array


def read_partition(path: Path) -> tuple[list[str], np.ndarray]:
    """``list_eval_partition.txt`` -> (file names, partition 0 / 1 / 2 of each)."""
    files, parts = [], []
    for number, line in enumerate(_read_lines(path), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise _bad_text(path, f"line {number} is '{line.strip()[:40]}', expected '<file> <0|1|2>'")
        files.append(fields[0])
        parts.append(int(fields[1]))
    return files, np.array(parts, dtype=np.int64)


def task_labels(values: np.ndarray, task: str) -> np.ndarray:
    """Each image's class under ``task``; -1 where the task leaves it out (hair: not exactly one colour)."""
    if task == HAIR_TASK:
        hair = values[:, [ATTRIBUTES.index(name) for name in HAIR_CLASSES]] == 1
        return np.where(hair.sum(axis=1) == 1, hair.argmax(axis=1), -1).astype(np.int64)
    class_names(task)  # validates the name
    return (values[:, ATTRIBUTES.index(task)] == 1).astype(np.int64)


def select(folder: Path, split: str, task: str) -> list[tuple[str, int]]:
    """(file, class) of every image of the split's partition that the task keeps, in the partition file's
    order."""
    attr_files, values = read_attributes(folder / ATTR_FILE)
    part_files, parts = read_partition(folder / PARTITION_FILE)
    if attr_files != part_files:
        missing = sorted(set(part_files) ^ set(attr_files))
        example = f" (e.g. {missing[0]} is in one only)" if missing else " (in another order)"
        raise BenchError(
            f"{NAME}: {ATTR_FILE} and {PARTITION_FILE} in {folder} list different images{example}; "
            "replace both with the canonical files"
        )
    labels = task_labels(values, task)
    keep = (parts == PARTITIONS[split]) & (labels >= 0)
    return [(attr_files[i], int(labels[i])) for i in np.flatnonzero(keep)]


# --- images ---------------------------------------------------------------------------------------------


def decode_images(zip_path: Path, files: list[str], size: int, desc: str = NAME) -> np.ndarray:
    """Stream ``img_align_celeba/<file>`` out of the zip, centre-crop, resize: uint8 (N, 3, size, size)."""
    from PIL import Image, UnidentifiedImageError

    def bad(reason: str) -> BenchError:
        return BenchError(
            f"{NAME}: {zip_path} is damaged ({reason}); delete it and download the canonical {ZIP_FILE} again"
        )

    out = np.empty((len(files), 3, size, size), dtype=np.uint8)
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError, EOFError) as e:  # a truncated file has no central directory
        raise bad(f"not a readable zip archive: {' '.join(str(e).split())}") from e
    with archive, tqdm(total=len(files), unit="img", desc=desc, disable=None) as bar:
        for i, file in enumerate(files):
            member = f"{IMAGE_DIR}/{file}"
            try:
                data = archive.read(member)
            except KeyError:
                raise bad(f"no member {member}, which {PARTITION_FILE} lists") from None
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
                raise bad(f"{member}: {' '.join(str(e).split())}") from e
            try:
                with Image.open(io.BytesIO(data)) as image:
                    if image.size != IMAGE_SIZE:
                        raise bad(f"{member} is {image.size[0]}x{image.size[1]}, expected "
                                  f"{IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} (the aligned-and-cropped images)")
                    # Crop first, so that no pixel outside the crop leaks into the edge of the resized face.
                    face = image.convert("RGB").crop(CROP_BOX).resize((size, size), Image.Resampling.BILINEAR)
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
                raise bad(f"{member} is not a readable JPEG: {' '.join(str(e).split())}") from e
            out[i] = np.asarray(face).transpose(2, 0, 1)
            bar.update(1)
    return out
