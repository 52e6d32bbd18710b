"""The images every quality metric reads, checked in one place, and their digest.

``check_images`` is the one validator of the battle, SSIM diversity and FID (and of the feature extractors
under FID). It keeps the strictest of what the three checked before they were one:
- every set is a uint8 ``(N, C, H, W)`` array with C = 1 (grey) or 3 (RGB), as everywhere in the suite
  (``method.sample(...)`` output, ``ImageSet.images``);
- every set holds at least ``at_least`` images: the battle needs one (an error rate of no image is
  undefined), SSIM diversity two (a pair), FID two (a covariance); a feature extractor alone takes none
  (``at_least=0``: no features);
- the sets compared with each other have one image shape (C, H, W): the battle's samples and test images,
  diversity's real and generated images, FID's real and generated images. (FID used to let grey be compared
  with RGB and one size with another, since Inception resizes and repeats grey; within one dataset they
  never differ, so a difference is a caller's mistake and is refused.)
A violation is a ``BenchError``: one line that names the fix (the three copies used to differ: FID raised a
``ValueError`` without a fix).
"""

from __future__ import annotations

import hashlib

import numpy as np

from bench.errors import BenchError


def check_images(purpose: str, at_least: int = 1, **sets) -> tuple[np.ndarray, ...]:
    """``sets`` (name -> images) as numpy arrays, in the order given, once each is a uint8 (N, 1|3, H, W)
    array of at least ``at_least`` images and all share one (C, H, W); else a one-line ``BenchError`` that
    names ``purpose`` (e.g. "FID") and the set."""
    checked = {name: _one_set(purpose, name, images, at_least) for name, images in sets.items()}
    shapes = {name: images.shape[1:] for name, images in checked.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise BenchError(f"{purpose}: image shapes differ ({listed}): give images of the same (C, H, W), "
                         "from one dataset")
    return tuple(checked.values())


def _one_set(purpose: str, name: str, images, at_least: int) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise BenchError(f"{purpose}: {name} must be uint8 (N, C, H, W) with C = 1 or 3; got {images.dtype} "
                         f"{images.shape}: pass method.sample(...) output or ImageSet.images")
    if len(images) < at_least:
        raise BenchError(f"{purpose} needs at least {at_least} image{'s' if at_least != 1 else ''} in "
                         f"{name}; got {len(images)}: generate or pick more images")
    return images


def images_sha256(images: np.ndarray) -> str:
    """SHA-256 of an image array's shape, dtype and bytes (the same pixels in another shape differ)."""
    images = np.ascontiguousarray(images)
    digest = hashlib.sha256(f"{images.dtype.str}{images.shape}".encode())
    digest.update(memoryview(images).cast("B"))
    return digest.hexdigest()
