"""The distances between two sets of image features: FID's Frechet distance and KID.

FID (Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium",
NeurIPS 2017): the Frechet distance ||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2)) between Gaussians
fitted to features of real and generated images. The distance itself is pytorch-fid's
``calculate_frechet_distance`` (Dougal Sutherland's stable version), called, not rewritten.

KID (Binkowski et al., "Demystifying MMD GANs", ICLR 2018): the unbiased estimator of the squared MMD with
the polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over KID_SUBSETS = 100 random subsets of
KID_SUBSET_SIZE = 1000 images of each set (fewer when a set is smaller: the subset size is then the
smaller set's size), drawn without replacement within a subset by ``numpy.random.default_rng(seed)``
(the paper's reference code does the same with 1000-image subsets; 100 subsets as torch-fidelity and
clean-fid). KID is unbiased and needs no covariance, so it stays valid for small sets: a class with no
more images than feature dimensions has a singular covariance and an unreliable FID;
``frechet_or_kid`` reports both and says which applies ("applies": "fid" when both sets have more
images than dimensions, else "kid").

Features are float64 (N, d) arrays here, whatever extracted them (``bench/quality/inception.py``,
``bench/quality/proxy.py``); same features, same numbers.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
from pytorch_fid.fid_score import calculate_frechet_distance
from scipy.linalg import LinAlgWarning

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
_GRAM_LIMIT = 6000  # precompute whole kernel matrices for KID up to this many images (<= 288 MB)


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


__all__ = ["KID_SUBSETS", "KID_SUBSET_SIZE", "feature_stats", "frechet_distance", "frechet_or_kid", "kid",
           "mmd2_unbiased", "polynomial_kernel"]
