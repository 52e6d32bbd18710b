"""Image-quality metrics of generated images: FID with Inception-v3, the ``fid-proxy`` fallback, and KID.

FID (Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium",
NeurIPS 2017): the Frechet distance ||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2)) between Gaussians
fitted to features of real and generated images. The distance itself is pytorch-fid's
``calculate_frechet_distance`` (Dougal Sutherland's stable version), called, not rewritten.

``fid-inception`` -- the standard FID features:
  * Network: pytorch-fid's ``InceptionV3`` (the TensorFlow FID Inception, ported), output block 3: the
    2048-d pool3 features. The architecture is built here with random weights from pytorch-fid's own
    blocks, then the verified weights file is loaded into it (``load_state_dict(strict=True)``), so
    pytorch-fid never downloads anything.
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
  * Features are extracted in batches (``batch_size``, default 64) on the given device with a tqdm bar:
    a 299x299 Inception pass is slow on a CPU and silence reads as a hang.

``fid-proxy`` -- when the Inception weights are absent, ``InceptionWeightsMissing`` says so (one line with
the fix) and the caller falls back to the same Frechet distance on the 128-d penultimate features
(``CommonCNN.embed``) of the common classifier trained once per dataset on its full (balanced) training
split for PROXY_EPOCHS epochs (seed 0) and cached. Its numbers are NOT comparable with Inception FID nor
with other papers: the result's ``metric`` is "fid-proxy", a different name for a different column.

KID (Binkowski et al., "Demystifying MMD GANs", ICLR 2018): the unbiased estimator of the squared MMD with
the polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over KID_SUBSETS = 100 random subsets of
KID_SUBSET_SIZE = 1000 images of each set (fewer when a set is smaller: the subset size is then the
smaller set's size), drawn without replacement within a subset by ``numpy.random.default_rng(seed)``
(the paper's reference code does the same with 1000-image subsets; 100 subsets as torch-fidelity and
clean-fid). KID is unbiased and needs no covariance, so it stays valid for small sets: a class with no
more images than feature dimensions has a singular covariance and an unreliable FID;
``frechet_or_kid`` reports both and says which applies ("applies": "fid" when both sets have more
images than dimensions, else "kid").

Reference (real) features and statistics are cached on disk (npz in ``cache_dir``) under a key of the
extractor name, the weights' SHA-256, the resize mode, the SHA-256 of the real images' bytes (with
their shape) and their number; the stored key is checked on read. Same inputs, same numbers on the
same device (GPU convolutions may differ from CPU ones in the last bits).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from pytorch_fid import inception as pf_inception
from pytorch_fid.fid_score import calculate_frechet_distance
from scipy.linalg import LinAlgWarning
from tqdm.auto import tqdm

from bench.datasets.download import file_digest
from bench.errors import BenchError

FID_WEIGHTS_URL = pf_inception.FID_WEIGHTS_URL
FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
INCEPTION_EXTRACTOR = "pytorch-fid InceptionV3 pool3 2048"
INCEPTION_RESIZE = "bilinear 299"
INCEPTION_DIMS = 2048
PROXY_RESIZE = "none"
PROXY_EPOCHS = 10
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
SHOW_PROGRESS = True  # progress bars on long steps; the runner turns them off for --quiet
_GRAM_LIMIT = 6000  # precompute whole kernel matrices for KID up to this many images (<= 288 MB)


class InceptionWeightsMissing(BenchError):
    """The FID Inception weights are not on this machine (and no download was asked for)."""


# ---------------------------------------------------------------- statistics, Frechet distance, KID


def _features(feats, name: str) -> np.ndarray:
    feats = np.asarray(feats, dtype=np.float64)
    if feats.ndim != 2 or len(feats) < 2:
        raise ValueError(f"{name} features must be (N, d) with N >= 2; got shape {feats.shape}")
    if not np.all(np.isfinite(feats)):
        raise ValueError(f"{name} features hold NaN or Inf values")
    return feats


def feature_stats(feats) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (unbiased, N - 1) of features (N, d), in float64: pytorch-fid's statistics."""
    feats = _features(feats, "the")
    return feats.mean(axis=0), np.cov(feats, rowvar=False).reshape(feats.shape[1], feats.shape[1])


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """The Frechet distance of N(mu1, sigma1) and N(mu2, sigma2): pytorch-fid's calculate_frechet_distance.

    Its print (when it adds 1e-6 to a singular product's diagonal) is silenced and SciPy's deprecation
    of ``sqrtm(disp=...)`` hidden; a singular case is reported by ``frechet_or_kid``'s "applies" field.
    Raises ValueError on mismatched shapes and (pytorch-fid) on a large imaginary part of the root.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"means must be (d,) and covariances (d, d) alike; got {mu1.shape}, {sigma1.shape}, "
                         f"{mu2.shape}, {sigma2.shape}")
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.filterwarnings("ignore", message=".*`disp` argument is deprecated",
                                category=DeprecationWarning)
        try:
            return float(calculate_frechet_distance(mu1, sigma1, mu2, sigma2))
        except TypeError as exc:
            if "disp" not in str(exc):
                raise
        # SciPy >= 1.18 dropped sqrtm's ``disp``, which pytorch-fid 0.3.0 still passes: run the same
        # function with a stand-in for its ``linalg`` module that gives the old (root, error) answer.
        with _old_sqrtm_api():
            return float(calculate_frechet_distance(mu1, sigma1, mu2, sigma2))


@contextlib.contextmanager
def _old_sqrtm_api():
    import types

    from pytorch_fid import fid_score
    from scipy import linalg

    def sqrtm(matrix, disp=True, **kwargs):
        root = linalg.sqrtm(matrix, **kwargs)
        if disp:
            return root
        error = np.linalg.norm(root @ root - matrix, "fro") / max(np.linalg.norm(matrix, "fro"), 1e-300)
        return root, error

    original = fid_score.linalg
    fid_score.linalg = types.SimpleNamespace(sqrtm=sqrtm)
    try:
        yield
    finally:
        fid_score.linalg = original


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """KID's kernel k(x, y) = (x.y / d + 1)^3 between the rows of x (m, d) and y (n, d)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    """The unbiased MMD^2 estimate from kernel matrices (diagonals of kxx and kyy excluded):
    sum_{i!=j} k(x_i,x_j)/(m(m-1)) + sum_{i!=j} k(y_i,y_j)/(n(n-1)) - 2 sum_{i,j} k(x_i,y_j)/(mn)."""
    m, n = len(kxx), len(kyy)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2.0 * kxy.sum() / (m * n))


def kid(real_feats, fake_feats, seed: int = 0, *, n_subsets: int = KID_SUBSETS,
        subset_size: int = KID_SUBSET_SIZE) -> dict:
    """KID: the mean (and standard deviation) of the unbiased MMD^2 over ``n_subsets`` seeded subsets.

    Each subset draws min(subset_size, n_real, n_fake) images of each set without replacement.
    Returns {"value", "std", "subsets", "subset_size", "seed"}.
    """
    x, y = _features(real_feats, "real"), _features(fake_feats, "fake")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"real and fake features differ in dimension: {x.shape[1]} vs {y.shape[1]}")
    if n_subsets < 1 or subset_size < 2:
        raise ValueError(f"KID needs n_subsets >= 1 and subset_size >= 2; got {n_subsets}, {subset_size}")
    m = min(subset_size, len(x), len(y))
    rng = np.random.default_rng(seed)
    total = len(x) + len(y)
    # Whole kernel matrices once when that is cheaper than per-subset ones (and fits in memory).
    gram = total <= _GRAM_LIMIT and total * total < 3 * n_subsets * m * m
    if gram:
        kxx_all, kyy_all, kxy_all = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    values = np.empty(n_subsets)
    for s in range(n_subsets):
        ix, iy = rng.choice(len(x), m, replace=False), rng.choice(len(y), m, replace=False)
        if gram:
            kxx, kyy, kxy = kxx_all[np.ix_(ix, ix)], kyy_all[np.ix_(iy, iy)], kxy_all[np.ix_(ix, iy)]
        else:
            xs, ys = x[ix], y[iy]
            kxx, kyy, kxy = polynomial_kernel(xs, xs), polynomial_kernel(ys, ys), polynomial_kernel(xs, ys)
        values[s] = mmd2_unbiased(kxx, kyy, kxy)
    return {"value": float(values.mean()), "std": float(values.std()), "subsets": n_subsets, "subset_size": m,
            "seed": seed}


def frechet_or_kid(real_feats, fake_feats, *, seed: int = 0, real_stats=None, n_subsets: int = KID_SUBSETS,
                   subset_size: int = KID_SUBSET_SIZE) -> dict:
    """Both FID and KID of two feature sets, and which applies.

    FID needs full-rank covariances: "applies" is "fid" when both sets have more images than feature
    dimensions, else "kid" (FID is still given, NaN if its matrix root failed, but should not be read).
    Features that are constant in both sets (a ReLU unit dead on all images) also make the covariances
    singular; they add nothing to the distance, SciPy warns and pytorch-fid copes, so they do not
    change "applies".
    ``real_stats``: precomputed (mu, sigma) of ``real_feats`` (a cached reference).
    """
    real, fake = _features(real_feats, "real"), _features(fake_feats, "fake")
    dims = real.shape[1]
    mu_r, sigma_r = real_stats if real_stats is not None else feature_stats(real)
    mu_f, sigma_f = feature_stats(fake)
    applies = "fid" if min(len(real), len(fake)) > dims else "kid"
    try:
        with warnings.catch_warnings():
            if applies == "kid":  # singular by construction: SciPy's "matrix is singular" says nothing new
                warnings.simplefilter("ignore", LinAlgWarning)
            fid = frechet_distance(mu_r, sigma_r, mu_f, sigma_f)
    except (ValueError, np.linalg.LinAlgError):
        if applies == "fid":
            raise
        fid = float("nan")
    k = kid(real, fake, seed, n_subsets=n_subsets, subset_size=subset_size)
    return {"fid": fid, "kid": k["value"], "kid_std": k["std"], "kid_subsets": k["subsets"],
            "kid_subset_size": k["subset_size"], "kid_seed": seed, "applies": applies,
            "n_real": len(real), "n_fake": len(fake), "dims": dims}


# ---------------------------------------------------------------- reference cache


def _check_images(images, name: str) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"{name} images must be uint8 (N, 1 or 3, H, W); got {images.dtype} {images.shape}")
    return images


def images_sha256(images: np.ndarray) -> str:
    """SHA-256 of an image array's shape, dtype and bytes (the same pixels in another shape differ)."""
    images = np.ascontiguousarray(images)
    digest = hashlib.sha256(f"{images.dtype.str}{images.shape}".encode())
    digest.update(memoryview(images).cast("B"))
    return digest.hexdigest()


def reference_key(extractor: str, weights_sha256: str, resize: str, images: np.ndarray) -> str:
    """The cache key of a reference set's features: extractor, weights hash, resize, images hash, N."""
    fields = {"extractor": extractor, "weights_sha256": weights_sha256, "resize": resize,
              "images_sha256": images_sha256(images), "n_real": int(len(images))}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def reference_features(real: np.ndarray, extract: Callable[[np.ndarray], np.ndarray], *, extractor: str,
                       weights_sha256: str, resize: str, cache_dir=None) -> tuple[np.ndarray, tuple, str]:
    """Features and (mu, sigma) of the real images, from the npz cache when the key matches.

    Returns (features, (mu, sigma), cache) with cache "hit", "miss" or "off" (no ``cache_dir``).
    Features are kept too: KID needs them, not only the Gaussian statistics.
    """
    key = reference_key(extractor, weights_sha256, resize, real)
    path = Path(cache_dir) / f"fid-ref-{key[:32]}.npz" if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as stored:
                if str(stored["key"]) == key:
                    return stored["features"], (stored["mu"], stored["sigma"]), "hit"
        except (OSError, ValueError, KeyError, EOFError):
            pass  # unreadable or foreign: recompute and overwrite
    feats = np.asarray(extract(real), dtype=np.float32)
    mu, sigma = feature_stats(feats)
    if path is None:
        return feats, (mu, sigma), "off"
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as tmp:
        np.savez(tmp, key=np.array(key), features=feats, mu=mu, sigma=sigma)
    os.replace(tmp.name, path)
    return feats, (mu, sigma), "miss"


def _compare(real, fake, extract, *, metric, extractor, weights_sha256, resize, cache_dir, reference,
             seed) -> dict:
    real, fake = _check_images(real, "real"), _check_images(fake, "fake")
    real_feats, real_stats, cache = reference_features(real, extract, extractor=extractor,
                                                       weights_sha256=weights_sha256, resize=resize,
                                                       cache_dir=cache_dir)
    fake_feats = np.asarray(extract(fake), dtype=np.float32)
    both = frechet_or_kid(real_feats, fake_feats, seed=seed, real_stats=real_stats)
    result = {"metric": metric, "value": both.pop("fid"), "feature_extractor": extractor,
              "weights_sha256": weights_sha256, "resize": resize, **both, "reference_cache": cache}
    if reference is not None:
        result["reference"] = reference
    return result


# ---------------------------------------------------------------- Inception-v3 (pytorch-fid)


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


def read_state_dict(path: Path) -> tuple[dict, str]:
    """(tensors, SHA-256) of the weights file, verified first; ``torch.load(weights_only=True)``: no code
    is unpickled."""
    sha = verify_sha256(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True), sha
    except Exception as error:
        raise BenchError(f"{path}: not a readable PyTorch weights file ({type(error).__name__}); "
                         f"download {FID_WEIGHTS_URL} again") from None


def fid_inception_architecture() -> torch.nn.Module:
    """pytorch-fid's ``fid_inception_v3()`` network with random weights: its body without the download
    (torchvision's Inception3 with 1008 classes, no aux logits, and pytorch-fid's patched FID blocks)."""
    net = pf_inception._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = pf_inception.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pf_inception.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pf_inception.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pf_inception.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pf_inception.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pf_inception.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pf_inception.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pf_inception.FIDInceptionE_1(1280)
    net.Mixed_7c = pf_inception.FIDInceptionE_2(2048)
    return net


def _no_download(*args, **kwargs):
    raise RuntimeError("bench.fid loads the FID weights itself; pytorch-fid must not download them")


def build_inception(state_dict: dict | None) -> pf_inception.InceptionV3:
    """pytorch-fid's ``InceptionV3`` (pool3, bilinear resize to 299, input scaling) around the FID
    architecture loaded with ``state_dict`` (strict); ``None`` keeps random weights (tests only)."""
    net = fid_inception_architecture()
    if state_dict is not None:
        net.load_state_dict(state_dict, strict=True)
    with mock.patch.object(pf_inception, "fid_inception_v3", lambda: net), \
            mock.patch.object(pf_inception, "load_state_dict_from_url", _no_download):
        model = pf_inception.InceptionV3([pf_inception.InceptionV3.BLOCK_INDEX_BY_DIM[INCEPTION_DIMS]],
                                         resize_input=True, normalize_input=True)
    return model.eval()


_MODELS: dict = {}  # one built network per process: (path, size, mtime, device) -> (model, sha256)


def load_inception(weights_path=None, download: bool = False, device="cpu"):
    """(model on ``device``, weights SHA-256): resolve, verify, load and build; kept for the process."""
    path = inception_weights_path(weights_path, download).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns, str(torch.device(device)))
    if key not in _MODELS:
        state_dict, sha = read_state_dict(path)
        model = build_inception(state_dict).to(device)
        _MODELS.clear()
        _MODELS[key] = (model, sha)
    return _MODELS[key]


def to_inception_input(images: np.ndarray, device) -> torch.Tensor:
    """uint8 (N, 1|3, H, W) -> float (N, 3, H, W) in [0, 1] on ``device``: what InceptionV3 expects (it
    resizes to 299 and scales to [-1, 1] itself); grey is repeated to 3 channels."""
    x = torch.as_tensor(np.ascontiguousarray(images), device=device).float().div_(255.0)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


@torch.inference_mode()
def inception_features(model, images: np.ndarray, device, batch_size: int = 64,
                       desc: str = "Inception features") -> np.ndarray:
    """2048-d pool3 features (N, 2048), float32, computed in batches with a progress bar."""
    images = _check_images(images, "the")
    model.eval()
    out = []
    with tqdm(total=len(images), desc=desc, unit="img", leave=False, disable=not SHOW_PROGRESS) as bar:
        for start in range(0, len(images), batch_size):
            batch = to_inception_input(images[start:start + batch_size], device)
            out.append(model(batch)[0].flatten(1).float().cpu().numpy())
            bar.update(len(batch))
    return np.concatenate(out) if out else np.zeros((0, INCEPTION_DIMS), np.float32)


def fid_inception(real, fake, *, weights_path=None, download: bool = False, device="cpu", cache_dir=None,
                  batch_size: int = 64, reference: str | None = None, seed: int = 0) -> dict:
    """Inception FID (and KID) of ``fake`` against ``real`` (uint8 NCHW images).

    Raises InceptionWeightsMissing when the weights are absent and ``download`` is False: the caller says
    so once and reports ``fid_proxy`` instead. Returns {"metric": "fid-inception", "value",
    "feature_extractor", "weights_sha256", "resize", "n_real", "n_fake", "applies", "kid", "kid_std",
    "kid_subsets", "kid_subset_size", "kid_seed", "dims", "reference_cache"[, "reference"]}.
    """
    model, sha = load_inception(weights_path, download, device)

    def extract(images):
        return inception_features(model, images, device, batch_size)

    return _compare(real, fake, extract, metric="fid-inception", extractor=INCEPTION_EXTRACTOR,
                    weights_sha256=sha, resize=INCEPTION_RESIZE, cache_dir=cache_dir, reference=reference,
                    seed=seed)


# ---------------------------------------------------------------- fid-proxy (the common classifier)


@torch.inference_mode()
def proxy_features(model, images: np.ndarray, device, batch_size: int = 512) -> np.ndarray:
    """The classifier's 128-d penultimate features (``CommonCNN.embed``, eval mode) of uint8 images."""
    from bench.methods.classifier import to_input

    images = _check_images(images, "the")
    model.eval()
    out = []
    with tqdm(total=len(images), desc="fid-proxy features", unit="img", leave=False,
              disable=not SHOW_PROGRESS) as bar:
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size]
            out.append(model.embed(to_input(batch, device)).float().cpu().numpy())
            bar.update(len(batch))
    return np.concatenate(out) if out else np.zeros((0, 128), np.float32)


def fid_proxy(real, fake, feature_fn: Callable[[np.ndarray], np.ndarray], *, feature_extractor: str,
              weights_sha256: str, cache_dir=None, reference: str | None = None, seed: int = 0,
              resize: str = PROXY_RESIZE) -> dict:
    """The Frechet distance (and KID) on ``feature_fn``'s features: "metric": "fid-proxy", never Inception
    FID. ``feature_extractor`` names the features (e.g. ``ProxyExtractor.name``) and ``weights_sha256``
    identifies their weights; both are in the reference cache key and the result."""
    return _compare(real, fake, feature_fn, metric="fid-proxy", extractor=feature_extractor,
                    weights_sha256=weights_sha256, resize=resize, cache_dir=cache_dir, reference=reference,
                    seed=seed)


@dataclass
class ProxyExtractor:
    """The trained common classifier as a feature extractor; ``features(images)`` -> (N, 128)."""

    model: torch.nn.Module
    name: str  # e.g. "common-cnn penultimate 128 trained on digits train"
    sha256: str  # of its state dict
    device: torch.device
    cache: str  # "hit", "miss" or "off"
    image_shape: tuple

    def features(self, images: np.ndarray) -> np.ndarray:
        if tuple(np.shape(images)[1:]) != tuple(self.image_shape):
            raise ValueError(f"fid-proxy features need images of shape {self.image_shape}; "
                             f"got {tuple(np.shape(images)[1:])}")
        return proxy_features(self.model, images, self.device)


def state_dict_sha256(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def proxy_extractor(train, dataset: str, *, device="cpu", cache_dir=None, epochs: int = PROXY_EPOCHS,
                    seed: int = 0, spec: dict | None = None) -> ProxyExtractor:
    """Train the common classifier once on ``train`` (the dataset's FULL balanced training split, not a
    cell's imbalanced one) and cache its state dict in ``cache_dir`` keyed on the train set's hash
    (images and labels), the classifier spec, epochs and seed; later calls load it."""
    from bench.methods.base import FitContext
    from bench.methods.classifier import CLASSIFIER_SPEC, Classifier, CommonCNN

    spec = dict(spec or CLASSIFIER_SPEC)
    device = torch.device(device)
    label_hash = hashlib.sha256(np.ascontiguousarray(train.labels).tobytes()).hexdigest()
    fields = {"train_images": images_sha256(train.images), "train_labels": label_hash,
              "classes": list(train.class_names), "spec": spec, "epochs": epochs, "seed": seed}
    key = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", dataset)
    path = Path(cache_dir) / f"fid-proxy-{slug}-{key[:16]}.pt" if cache_dir is not None else None
    name = f"common-cnn penultimate 128 trained on {dataset} train"
    model = CommonCNN(train.image_shape, train.n_classes, spec["dropout"])
    if path is not None and path.is_file():
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
            if stored.get("key") == key:
                model.load_state_dict(stored["state_dict"])
                model = model.to(device).eval()
                return ProxyExtractor(model, name, state_dict_sha256(model), device, "hit", train.image_shape)
        except Exception:  # unreadable or stale: retrain and overwrite
            pass
    classifier = Classifier(spec)
    with tempfile.TemporaryDirectory() as scratch, \
            tqdm(total=epochs, desc=f"fid-proxy classifier ({dataset})", unit="epoch", leave=False,
                 disable=not SHOW_PROGRESS) as bar:
        ctx = FitContext(device=device, seed=seed, epochs=epochs, artifact_dir=Path(scratch),
                         progress=lambda epoch, total, logs: bar.update(1))
        losses = classifier.fit(train, ctx)
    model = classifier.model.eval()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".pt", delete=False) as tmp:
            torch.save({"key": key, "state_dict": state, "losses": [float(v) for v in losses]}, tmp)
        os.replace(tmp.name, path)
    return ProxyExtractor(model, name, state_dict_sha256(model), device, "off" if path is None else "miss",
                          train.image_shape)


__all__ = [
    "FID_WEIGHTS_FILE", "FID_WEIGHTS_SHA256", "FID_WEIGHTS_URL", "INCEPTION_EXTRACTOR", "INCEPTION_RESIZE",
    "KID_SUBSETS", "KID_SUBSET_SIZE", "PROXY_EPOCHS", "InceptionWeightsMissing", "ProxyExtractor",
    "build_inception", "feature_stats", "fid_inception", "fid_proxy", "frechet_distance", "frechet_or_kid",
    "images_sha256", "inception_features", "inception_weights_path", "kid", "load_inception",
    "mmd2_unbiased", "proxy_extractor", "proxy_features", "reference_features", "reference_key",
]
