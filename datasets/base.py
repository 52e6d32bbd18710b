"""The in-memory image set every loader returns and every protocol and method consumes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ImageSet:
    """Images as uint8 ``(N, C, H, W)``, labels as int64 ``(N,)`` in ``0 .. len(class_names) - 1``."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self):
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"images must be uint8 (N, C, H, W); got {self.images.dtype} with shape {self.images.shape}"
            )
        if self.labels.dtype != np.int64 or self.labels.shape != (len(self.images),):
            raise ValueError(
                f"labels must be int64 of shape ({len(self.images)},); "
                f"got {self.labels.dtype} with shape {self.labels.shape}"
            )
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise ValueError(f"labels must lie in 0..{len(self.class_names) - 1}")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def counts(self) -> np.ndarray:
        """Number of images of each class, in class order."""
        return np.bincount(self.labels, minlength=self.n_classes)

    def subset(self, index: np.ndarray) -> ImageSet:
        return ImageSet(self.images[index], self.labels[index], self.class_names)


@dataclass(frozen=True)
class LoadOptions:
    """Options of a load that change the data, so they are part of every cell's key.

    ``image_size``: resize to this square size (None: the dataset's own size); ``celeba_attr``: CelebA's
    label task, an attribute name of ``list_attr_celeba.txt`` (a binary task) or ``"hair"`` (the 5
    hair-colour classes).
    """

    image_size: int | None = None
    celeba_attr: str = "Eyeglasses"

    def __post_init__(self):
        check_image_size(self.image_size)


IMAGE_SIZES = (8, 512)  # the smallest and largest --image-size


def check_image_size(size) -> None:
    """The one check of ``--image-size`` (the grid's and every load's): ValueError with the bounds."""
    if size is not None and not IMAGE_SIZES[0] <= int(size) <= IMAGE_SIZES[1]:
        raise ValueError(f"--image-size must be between {IMAGE_SIZES[0]} and {IMAGE_SIZES[1]} pixels; got {size}")


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Square-resize uint8 (N, C, H, W) images with antialiased bilinear filtering (PIL's and torchvision's
    default for downscaling); a no-op at the images' own size."""
    if images.shape[2:] == (size, size):
        return images
    import torch
    import torch.nn.functional as F

    out = []
    for start in range(0, len(images), 4096):  # bounded memory for large sets
        batch = torch.from_numpy(images[start:start + 4096]).float()
        batch = F.interpolate(batch, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append(batch.round().clamp(0, 255).to(torch.uint8).numpy())
    return np.concatenate(out) if out else np.zeros((0, images.shape[1], size, size), np.uint8)
