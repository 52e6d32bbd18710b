"""folder:PATH — the user's own images, in a torchvision ``ImageFolder``-style tree; no code needed.

Layouts (checked in this order):

* ``PATH/train/<class>/*`` and ``PATH/test/<class>/*``: the given split. Other folders beside ``train/`` and
  ``test/`` (e.g. ``val/``) are ignored; train and test must hold the same class folders.
* ``PATH/<class>/*``: one folder, split by this module with a FIXED, stratified test share of
  ``TEST_SIZE = 0.3`` and ``SPLIT_SEED = 0``, independent of any run seed (as ``digits``), so every run tests on
  the same images. Each class is split on its own: its sorted files are permuted by
  ``numpy.random.default_rng([SPLIT_SEED, crc32(class name)])`` and the first ``round(0.3 n)`` (at least 1,
  at most ``n - 1``) go to test, so every class is in both splits (a class needs 2 images) and a class's split
  depends only on its own file names.

Images are the files ending in ``EXTENSIONS`` (torchvision's ``IMG_EXTENSIONS``, any case), found recursively
under each class folder; hidden files and folders (a leading ``.``, e.g. ``.capsan-cache``) and other files are
skipped, as are files lying directly in ``PATH``. Class names are the sorted class-folder names (label ``i`` is
the ``i``-th); within a split images are ordered by class, then by sorted relative path.

Size: every image is resized to ``S x S`` with PIL's bilinear filter (antialiased when shrinking, as
``base.resize_images``); a non-square image is stretched, not cropped (torchvision's ``Resize((S, S))``). ``S``
is ``options.image_size`` when given, else the height of the FIRST image: the first file, in sorted order, of
the first class (of ``train/`` in the split layout; of the whole folder before the split otherwise). The
suite's generative models need square images, hence a square even when that image is not. A default ``S``
above ``MAX_DEFAULT_SIZE`` (512, the largest ``--image-size``) is refused: give an image size.

Colour: the set is grey (1 channel) when every image is single-channel (modes ``1``, ``L``, ``LA`` with its
alpha dropped, 16-bit ``I;16`` keeping the high byte); any other image (RGB, RGBA, palette ``P``, CMYK, ...)
makes the whole set, both splits, RGB (3 channels), grey images being replicated. Alpha is dropped, not
composited, as torchvision's loader does (``convert("RGB")``). 32-bit integer and float images are refused.

Cache: decoded splits are kept as ``PATH/.capsan-cache/<split>-<S>.npz`` (``bench.datasets.cache``) when
``PATH`` is writable (mode bits included, as for the other datasets); a read-only folder gets no cache. The key
is a SHA-256 over this module's format version, the split settings, the layout, and every image's relative
path, byte size and modification time (ns); a SHA-256 over every image's relative path and content; and the
array shape: adding, removing, replacing or touching any image rebuilds both splits' caches, as the colour
choice and the single-folder split depend on all files. The content checksum also catches an image replaced
by another of the same size and modification time (``cp -p``, ``rsync -t``, ``tar x``), so a cache is never
stale; it costs one read of the images per load, far less than decoding them.

``download`` means nothing here and is ignored (a run may pass ``--download`` for its other datasets).
DEFAULT_PAIRS: one pair, (largest class, smallest class) by train count; ties go to the lower class index
for the majority and to the higher one for the minority, so the two always differ.

Every problem the user can fix (no such folder, no class folders, one class, empty class folder, no images,
train/test class mismatch, unreadable or corrupt image, a 1-image class in the single layout) raises a
one-line ``BenchError`` naming the file or folder and the fix.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.datasets.base import ImageSet, LoadOptions
from bench.datasets.cache import read_cache, write_cache, writes_allowed
from bench.datasets.download import file_digest
from bench.errors import BenchError, one_line

PREFIX = "folder:"
TAKES_OPTIONS = True
NEEDS_FILES = True
EXTENSIONS = (".bmp", ".jpeg", ".jpg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp")
SPLITS = ("train", "test")
TEST_SIZE = 0.3
SPLIT_SEED = 0
MAX_DEFAULT_SIZE = 512
CACHE_DIR = ".capsan-cache"
# Bump when decoding, resizing or splitting changes, so old caches are rebuilt.
FORMAT = "folder-v1"

GREY_MODES = frozenset({"1", "L", "LA", "I;16", "I;16L", "I;16B", "I;16N"})
REFUSED_MODES = frozenset({"I", "F"})


@dataclass(frozen=True)
class Layout:
    """What a scan of PATH found: enough to fingerprint, split and decode without touching pixels."""

    root: Path
    kind: str  # "train/test" or "single"
    class_names: tuple[str, ...]
    splits: dict  # split -> tuple of (file, label), in class then path order
    first: Path  # the image whose height is the default size
    fingerprint: str

    def all_files(self) -> list[Path]:
        return [file for split in SPLITS for file, _ in self.splits[split]]


def dataset_name(path: str | Path) -> str:
    return f"{PREFIX}{path}"


def _fail(root: Path, problem: str) -> BenchError:
    return BenchError(f"{dataset_name(root)}: {problem}")



def _hidden(name: str) -> bool:
    return name.startswith(".")


def _subfolders(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not _hidden(p.name)), key=lambda p: p.name)


def _images(class_dir: Path) -> list[Path]:
    """The images under a class folder, recursively (as ImageFolder, links followed), in sorted path order."""
    found = []
    for top, dirs, files in os.walk(class_dir, followlinks=True):
        dirs[:] = [d for d in dirs if not _hidden(d)]
        found += [Path(top) / f for f in files if not _hidden(f) and f.lower().endswith(EXTENSIONS)]
    return sorted(found, key=lambda p: p.relative_to(class_dir).as_posix())


def _read_classes(root: Path, folder: Path) -> dict[str, list[Path]]:
    """class name -> its images, for every class folder in ``folder``; empty ones are errors."""
    classes = {d.name: _images(d) for d in _subfolders(folder)}
    if not classes:
        raise _fail(root, f"no class folders in {folder}; put the images in {folder}/<class name>/")
    if not any(classes.values()):
        raise _fail(root, f"no images ({', '.join(EXTENSIONS)}) in the class folders of {folder}; "
                          "add images or check their extensions")
    for name, files in classes.items():
        if not files:
            raise _fail(root, f"class folder {folder / name} has no images ({', '.join(EXTENSIONS)}); "
                              "add images or remove the folder")
    if len(classes) < 2:
        raise _fail(root, f"only one class folder ({next(iter(classes))}) in {folder}; "
                          "an imbalance benchmark needs at least 2 classes")
    return classes


def _stratified_split(root: Path, classes: dict[str, list[Path]]) -> dict[str, list[tuple[Path, int]]]:
    """The fixed single-folder split: per class, round(TEST_SIZE * n) seeded picks go to test."""
    out = {"train": [], "test": []}
    for label, (name, files) in enumerate(classes.items()):
        n = len(files)
        if n < 2:
            raise _fail(root, f"class folder {root / name} has only 1 image, but a folder without train/ and "
                              "test/ is split so that every class is in both; add images to it, or give "
                              "train/<class>/ and test/<class>/ folders")
        n_test = min(max(int(np.floor(n * TEST_SIZE + 0.5)), 1), n - 1)
        rng = np.random.default_rng([SPLIT_SEED, zlib.crc32(name.encode("utf-8", "surrogateescape"))])
        test = set(rng.permutation(n)[:n_test].tolist())
        for i, file in enumerate(files):  # original (sorted) order within each split
            out["test" if i in test else "train"].append((file, label))
    return out


def _fingerprint(root: Path, kind: str, files: list[Path]) -> str:
    digest = hashlib.sha256(f"{FORMAT}|{kind}|{TEST_SIZE}|{SPLIT_SEED}|{','.join(EXTENSIONS)}".encode())
    for file in files:
        try:
            st = file.stat()
        except OSError as e:
            raise _fail(root, f"cannot read image {file} ({one_line(e)}); fix its permissions or remove it") from e
        rel = file.relative_to(root).as_posix().encode("utf-8", "surrogateescape")
        digest.update(b"\0" + rel + f"\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return digest.hexdigest()


def content_digest(layout: Layout) -> str:
    """SHA-256 over every image's relative path and the SHA-256 of its bytes, in sorted path order."""
    digest = hashlib.sha256(FORMAT.encode())
    for file in sorted(layout.all_files(), key=lambda p: p.as_posix()):
        try:
            content = file_digest(file, "sha256")
        except OSError as e:
            raise _fail(layout.root, f"cannot read image {file} ({one_line(e)}); fix its permissions or "
                                     "remove it") from e
        rel = file.relative_to(layout.root).as_posix().encode("utf-8", "surrogateescape")
        digest.update(b"\0" + rel + b"\0" + content.encode())
    return digest.hexdigest()


def scan(path: str | Path) -> Layout:
    """Find the layout, classes and files of PATH (no pixels read); every problem is a one-line BenchError."""
    if not str(path).strip():  # Path("") would be the working directory
        raise BenchError("folder: needs the path of an image folder, e.g. --datasets folder:~/my-images")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise _fail(root, f"{root} is not a folder; give the path of an image folder "
                          "(PATH/<class>/*.png or PATH/train/<class>/ and PATH/test/<class>/)")
    has = {split: (root / split).is_dir() for split in SPLITS}
    if any(has.values()) and not all(has.values()):
        present, missing = ("train", "test") if has["train"] else ("test", "train")
        raise _fail(root, f"{root} has {present}/ but no {missing}/; add {root / missing}/<class>/ images, or "
                          f"put the classes directly in {root} to have it split {1 - TEST_SIZE:g}/{TEST_SIZE:g}")
    if all(has.values()):
        kind = "train/test"
        per_split = {split: _read_classes(root, root / split) for split in SPLITS}
        names = {split: set(per_split[split]) for split in SPLITS}
        if names["train"] != names["test"]:
            only = [f"only in {s}/: {', '.join(sorted(names[s] - names[o]))}"
                    for s, o in (("train", "test"), ("test", "train")) if names[s] - names[o]]
            raise _fail(root, f"train/ and test/ must have the same class folders ({'; '.join(only)}); "
                              "add or rename folders so both have every class")
        class_names = tuple(per_split["train"])
        splits = {split: [(f, label) for label, name in enumerate(class_names) for f in per_split[split][name]]
                  for split in SPLITS}
        first = per_split["train"][class_names[0]][0]
    else:
        kind = "single"
        classes = _read_classes(root, root)
        class_names = tuple(classes)
        splits = _stratified_split(root, classes)
        first = classes[class_names[0]][0]
    files = [f for split in SPLITS for f, _ in splits[split]]
    return Layout(root, kind, class_names, {s: tuple(v) for s, v in splits.items()}, first,
                  _fingerprint(root, kind, sorted(files, key=lambda p: p.as_posix())))


# --- pixels ---------------------------------------------------------------------------------------------


def _unreadable(root: Path, file: Path, error: BaseException) -> BenchError:
    return _fail(root, f"cannot read image {file} ({one_line(error)}); replace it with a valid image or "
                       "delete it")


def _open(root: Path, file: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(file)
    except UnidentifiedImageError as e:  # no image at all (e.g. a text file named .png): show what is there
        try:
            with open(file, "rb") as f:
                head = f.read(16)
            size = file.stat().st_size
            found = (f"expected {file.suffix.lstrip('.').upper()} image data, found "
                     + (f"a {size}-byte file starting {head!r}" if size else "an empty file"))
        except OSError:
            found = one_line(e)
        raise _fail(root, f"cannot read image {file} ({found}); replace it with a valid image or delete "
                          "it") from e
    except Exception as e:  # Pillow raises many types on damaged files (OSError, SyntaxError, ValueError, ...)
        raise _unreadable(root, file, e) from e


# fingerprint -> (channels, (height, width) of the first image): the header pass is done once per process.
_PROBES: dict[str, tuple[int, tuple[int, int]]] = {}


def probe(layout: Layout) -> tuple[int, tuple[int, int]]:
    """(channels of the set, (H, W) of the first image), from the image headers only."""
    if layout.fingerprint in _PROBES:
        return _PROBES[layout.fingerprint]
    channels, first = 1, None
    for file in layout.all_files():
        with _open(layout.root, file) as img:
            if img.mode in REFUSED_MODES:
                raise _fail(layout.root, f"image {file} has mode {img.mode} (32-bit integer or float pixels); "
                                         "save it as 8-bit grey or RGB")
            if img.mode not in GREY_MODES:
                channels = 3
            if file == layout.first:
                first = (img.height, img.width)
    _PROBES[layout.fingerprint] = channels, first
    return channels, first


def _pixels(img, channels: int):
    """The image as PIL mode L (channels 1) or RGB (channels 3)."""
    from PIL import Image

    if img.mode.startswith("I;16"):
        # High byte of the 16-bit value: the 8-bit image a viewer shows.
        img = Image.fromarray((np.asarray(img, dtype=np.uint16) >> 8).astype(np.uint8), "L")
    if channels == 1:
        return img.convert("L")
    if img.mode in ("1", "LA"):
        img = img.convert("L")
    return img.convert("RGB")


def _decode(root: Path, file: Path, channels: int, size: int) -> np.ndarray:
    from PIL import Image

    with _open(root, file) as img:
        try:
            img = _pixels(img, channels)  # convert() decodes: a truncated or corrupt file fails here
            if img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.BILINEAR)
            array = np.asarray(img, dtype=np.uint8)
        except Exception as e:  # as in _open: any decoder error means a damaged file
            raise _unreadable(root, file, e) from e
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def image_size(layout: Layout, options: LoadOptions | None) -> int:
    """The square side: ``options.image_size``, else the first image's height (at most MAX_DEFAULT_SIZE)."""
    if options is not None and options.image_size is not None:
        return options.image_size
    height, width = probe(layout)[1]
    if height > MAX_DEFAULT_SIZE:
        raise _fail(layout.root, f"the first image {layout.first} is {height}x{width}, larger than "
                                 f"{MAX_DEFAULT_SIZE}; give an image size (--image-size, 8..{MAX_DEFAULT_SIZE})")
    return height


# --- cache ----------------------------------------------------------------------------------------------


def _cache_file(root: Path, split: str, size: int) -> Path | None:
    """``PATH/.capsan-cache/<split>-<size>.npz``; None when the folder may not get one (read-only PATH)."""
    folder = root / CACHE_DIR
    if not folder.is_dir():
        if not writes_allowed():  # --dry-run: no cache folder made
            return None
        # As cache.write_cache: honour the mode bits too, since root passes os.access everywhere.
        if not os.access(root, os.W_OK) or not root.stat().st_mode & 0o222:
            return None
        try:
            folder.mkdir(exist_ok=True)
        except OSError:
            return None
    return folder / f"{split}-{size}.npz"


# --- the dataset contract ---------------------------------------------------------------------------------


def load(path: str | Path, split: str = "train", download: bool = False,
         options: LoadOptions | None = None) -> ImageSet:
    """One split of the image folder at ``path``, resized to a square (see the module docstring);
    ``download`` is ignored."""
    if split not in SPLITS:
        raise BenchError(f"unknown split '{split}'; valid splits: {', '.join(sorted(SPLITS))}")
    layout = scan(path)
    channels = probe(layout)[0]
    size = image_size(layout, options)
    cache = _cache_file(layout.root, split, size)
    if cache is not None:
        # The stat fingerprint alone would miss an image replaced in place by one of the same size and time.
        key = np.array([layout.fingerprint, content_digest(layout), f"{channels}x{size}x{size}"])
        if (cached := read_cache(cache, key, layout.class_names)) is not None:
            return cached
    items = layout.splits[split]
    images = np.zeros((len(items), channels, size, size), np.uint8)
    for i, (file, _) in enumerate(_progress(items, f"{dataset_name(path)} {split}")):
        images[i] = _decode(layout.root, file, channels, size)
    labels = np.array([label for _, label in items], np.int64)
    result = ImageSet(images, labels, layout.class_names)
    if cache is not None:
        write_cache(cache, key, result)
    return result


def _progress(items, desc: str):
    from tqdm import tqdm

    # Only worth a bar when decoding takes a while; disable=None also hides it off a terminal.
    return tqdm(items, desc=desc, unit="img", leave=False, disable=True if len(items) < 2000 else None)


def default_pairs(layout: Layout) -> tuple[tuple[int, int], ...]:
    """((largest train class, smallest train class),); ties: lower index majority, higher index minority."""
    counts = np.bincount([label for _, label in layout.splits["train"]], minlength=len(layout.class_names))
    order = sorted(range(len(counts)), key=lambda c: (-counts[c], c))
    return ((order[0], order[-1]),)


def describe(path: str | Path) -> dict:
    """The keyword arguments of a registry ``DatasetInfo`` for ``folder:PATH``: ``DatasetInfo(**describe(p))``.
    ``image_shape`` is the default (unresized) shape ``(C, H, H)``, H the first image's height."""
    layout = scan(path)
    channels, (height, _) = probe(layout)
    n_train, n_test = len(layout.splits["train"]), len(layout.splits["test"])
    split = "given train/test split" if layout.kind == "train/test" else (
        f"fixed stratified {1 - TEST_SIZE:g}/{TEST_SIZE:g} split")
    return dict(
        name=dataset_name(path),
        description=(f"image folder {layout.root}: {len(layout.class_names)} classes, {n_train} train and "
                     f"{n_test} test images ({split}), {'grey' if channels == 1 else 'RGB'}"),
        source=str(layout.root.resolve()),
        class_names=layout.class_names,
        image_shape=(channels, height, height),
        default_pairs=default_pairs(layout),
        needs_files=NEEDS_FILES,
        load=load,
        available=available,
        takes_options=TAKES_OPTIONS,
    )


def available(path: str | Path) -> bool:
    """True when PATH is a usable image folder (layout and classes; the pixels are checked on load)."""
    try:
        scan(path)
    except BenchError:
        return False
    return True
