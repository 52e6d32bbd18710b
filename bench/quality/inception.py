"""FID's standard features: pytorch-fid's Inception-v3, its verified weights and where they are kept.

``fid-inception`` -- the standard FID features:
  * Network: pytorch-fid's ``InceptionV3`` (the TensorFlow FID Inception, ported), output block 3: the
    2048-d pool3 features, built by pytorch-fid itself (``InceptionV3(..., use_fid_inception=True)``: its
    ``fid_inception_v3()``, torchvision's Inception3 with 1008 classes, no aux logits and pytorch-fid's FID
    blocks). pytorch-fid loads its weights with ``torch.hub.load_state_dict_from_url(FID_WEIGHTS_URL)``,
    which reads ``torch.hub.get_dir()/checkpoints/FID_WEIGHTS_FILE`` when that file is there and downloads
    it otherwise. ``build_inception`` points torch hub, for that call only, at a temporary folder whose
    ``checkpoints/`` holds a link to the verified weights file (a copy where links are not allowed), so
    pytorch-fid finds them and never downloads anything; the hub folder is set back afterwards (to the same
    path, now fixed: a later change of ``TORCH_HOME`` in this process no longer moves it) and a lock keeps
    two threads from swapping it at once. pytorch-fid's load is strict (``load_state_dict`` with its
    default ``strict=True``); torch.hub unpickles with ``weights_only=False``, safe here because the file's
    SHA-256 was verified first (nothing else reaches it). The network is the one the code before this
    way built by hand from pytorch-fid's blocks and loaded with ``torch.load(weights_only=True)``: every
    tensor and every output are bit-identical.
  * Weights: ``pt_inception-2015-12-05-6726825d.pth`` (FID_WEIGHTS_URL, pytorch-fid's release), taken from
    ``weights_path`` or torch's hub cache ``torch.hub.get_dir()/checkpoints/``; downloaded there only when
    ``download=True``. Every file is SHA-256 checked before use; a mismatch is refused.
    FID_WEIGHTS_SHA256: the file name's suffix ``6726825d`` is the SHA-256 prefix that torch.hub itself
    checks for pytorch-fid's release asset (authoritative, published by pytorch-fid). The full digest
    ``6726825d0af5...129b2`` (95,628,359 bytes, 566 tensors) is the one recorded independently for this
    same file by several public projects that pin it (for pytorch-fid's URL and for torch-fidelity's
    identical copy); it agrees with the published prefix. It could not be recomputed here (no network):
    a download that does not match is refused and deleted, so a wrong constant fails loudly, never silently.
  * Preprocessing, exactly pytorch-fid's: uint8 (N, C, H, W) -> float in [0, 1] (x / 255); grey (C = 1) is
    repeated to 3 channels; ``InceptionV3(resize_input=True, normalize_input=True)`` resizes to 299x299
    with ``F.interpolate(mode="bilinear", align_corners=False)`` (no antialiasing, as pytorch-fid; our
    images of 8..64 px are upsampled, where antialiasing does nothing) and scales to [-1, 1] (2x - 1).
    The ``resize`` field records this: "bilinear 299".
  * Features are extracted in batches (``batch_size``, default 64) on the given device with a progress bar
    (``bench/quality/features.py``). One built network is kept per process (``load_inception``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np
import torch
from pytorch_fid import inception as pf_inception

from bench.datasets.download import file_digest
from bench.errors import BenchError
from bench.quality.features import batched_features

FID_WEIGHTS_URL = pf_inception.FID_WEIGHTS_URL
FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
INCEPTION_EXTRACTOR = "pytorch-fid InceptionV3 pool3 2048"
INCEPTION_RESIZE = "bilinear 299"
INCEPTION_DIMS = 2048


class InceptionWeightsMissing(BenchError):
    """The FID Inception weights are not on this machine (and no download was asked for)."""


# ---------------------------------------------------------------- the weights file


def inception_weights_path(weights_path=None, download: bool = False) -> Path:
    """The FID Inception weights file: ``weights_path``, else torch's hub cache (downloaded there only when
    ``download``). Raises InceptionWeightsMissing (one line, with the fix) when it is absent."""
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise BenchError(f"--fid-weights {path}: no such file; give the path of {FID_WEIGHTS_FILE} "
                             f"(from {FID_WEIGHTS_URL})")
        return path
    path = Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_FILE
    if path.is_file():
        return path
    if not download:
        raise InceptionWeightsMissing(
            f"FID Inception weights not found ({path}); to get Inception FID, download {FID_WEIGHTS_URL} "
            f"to that path or pass --fid-weights PATH; meanwhile fid-proxy is reported instead")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(FID_WEIGHTS_URL, str(path), progress=True)
    except Exception as error:  # network errors come in many types; report one line
        raise BenchError(f"downloading {FID_WEIGHTS_URL} failed ({type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else ''}); check the network or "
                         f"download it by hand to {path}") from None
    try:
        verify_sha256(path)
    except BenchError:
        path.unlink(missing_ok=True)  # never leave a bad download where the next run would find it
        raise
    return path


def file_sha256(path: Path) -> str:
    return file_digest(path, "sha256")


def verify_sha256(path: Path, expected: str | None = None) -> str:
    """Refuse a weights file whose SHA-256 is not ``expected`` (default FID_WEIGHTS_SHA256)."""
    expected = expected or FID_WEIGHTS_SHA256
    actual = file_sha256(path)
    if actual != expected:
        raise BenchError(f"{path}: SHA-256 {actual[:16]}... is not that of the FID Inception weights "
                         f"({expected[:16]}...); delete it and download {FID_WEIGHTS_URL} again")
    return actual


# ---------------------------------------------------------------- the network


_HUB_LOCK = threading.Lock()  # torch hub's folder is the process's: one build swaps it at a time


def build_inception(weights_path) -> pf_inception.InceptionV3:
    """pytorch-fid's ``InceptionV3`` (pool3, bilinear resize to 299, input scaling) with the weights in
    ``weights_path``, built and loaded (strictly) by pytorch-fid, which finds the file through torch hub and
    downloads nothing. The caller verifies the file first (``load_inception`` does)."""
    weights_path = Path(weights_path).resolve()
    with _HUB_LOCK, tempfile.TemporaryDirectory(prefix="fid-hub-") as hub:
        _offer(weights_path, Path(hub) / "checkpoints" / FID_WEIGHTS_FILE)
        previous = torch.hub.get_dir()
        torch.hub.set_dir(hub)
        try:
            model = pf_inception.InceptionV3([pf_inception.InceptionV3.BLOCK_INDEX_BY_DIM[INCEPTION_DIMS]],
                                             resize_input=True, normalize_input=True)
        except Exception as error:  # a verified file always loads; anything else is reported in one line
            raise BenchError(f"{weights_path}: not a readable PyTorch weights file ({type(error).__name__}); "
                             f"download {FID_WEIGHTS_URL} again") from None
        finally:
            torch.hub.set_dir(previous)
    return model.eval()


def _offer(source: Path, target: Path) -> None:
    """``target`` becomes a link to ``source`` (a copy where the file system allows no links)."""
    target.parent.mkdir(parents=True)
    try:
        os.symlink(source, target)
    except OSError:
        shutil.copyfile(source, target)


_MODELS: dict = {}  # one built network per process: (path, size, mtime, device) -> (model, sha256)


def load_inception(weights_path=None, download: bool = False, device="cpu"):
    """(model on ``device``, weights SHA-256): resolve, verify, load and build; kept for the process."""
    path = inception_weights_path(weights_path, download).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns, str(torch.device(device)))
    if key not in _MODELS:
        sha = verify_sha256(path)  # before anything in the file is unpickled
        model = build_inception(path).to(device)
        _MODELS.clear()
        _MODELS[key] = (model, sha)
    return _MODELS[key]


# ---------------------------------------------------------------- features


def to_inception_input(images: np.ndarray, device) -> torch.Tensor:
    """uint8 (N, 1|3, H, W) -> float (N, 3, H, W) in [0, 1] on ``device``: what InceptionV3 expects (it
    resizes to 299 and scales to [-1, 1] itself); grey is repeated to 3 channels."""
    x = torch.as_tensor(np.ascontiguousarray(images), device=device).float().div_(255.0)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def inception_features(model, images: np.ndarray, device, batch_size: int = 64,
                       desc: str = "Inception features") -> np.ndarray:
    """2048-d pool3 features (N, 2048), float32, computed in batches with a progress bar."""
    model.eval()
    return batched_features(images, lambda batch: model(to_inception_input(batch, device))[0],
                            batch_size=batch_size, dims=INCEPTION_DIMS, desc=desc)


__all__ = [
    "FID_WEIGHTS_FILE", "FID_WEIGHTS_SHA256", "FID_WEIGHTS_URL", "INCEPTION_DIMS", "INCEPTION_EXTRACTOR",
    "INCEPTION_RESIZE", "InceptionWeightsMissing", "build_inception", "file_sha256", "inception_features",
    "inception_weights_path", "load_inception", "to_inception_input", "verify_sha256",
]
