"""Features of images computed in batches, with a progress bar: what Inception and the fid-proxy share.

Features are extracted in batches on the network's device with a tqdm bar (on stderr): a 299x299 Inception
pass is slow on a CPU and silence reads as a hang. ``SHOW_PROGRESS`` turns the bars of FID's long steps
(features, the proxy classifier's training) off: the runner sets it for ``--quiet`` and for parallel
workers, whose bars would interleave.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from bench.quality.images import check_images

SHOW_PROGRESS = True  # progress bars on long steps; the runner turns them off for --quiet


def progress_bar(total: int, desc: str, unit: str):
    """A tqdm bar that disappears when done, shown only while ``SHOW_PROGRESS``."""
    return tqdm(total=total, desc=desc, unit=unit, leave=False, disable=not SHOW_PROGRESS)


@torch.inference_mode()
def batched_features(images: np.ndarray, embed: Callable[[np.ndarray], torch.Tensor], *, batch_size: int,
                     dims: int, desc: str) -> np.ndarray:
    """``embed`` (uint8 batch -> (B, ...) tensor) over ``images`` in batches of ``batch_size``: float32
    (N, dims) on the CPU; (0, dims) for no image."""
    (images,) = check_images(desc, at_least=0, images=images)
    out = []
    with progress_bar(len(images), desc, "img") as bar:
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size]
            out.append(embed(batch).flatten(1).float().cpu().numpy())
            bar.update(len(batch))
    return np.concatenate(out) if out else np.zeros((0, dims), np.float32)
