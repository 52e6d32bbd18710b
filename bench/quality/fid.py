"""FID (and KID) of generated images against real ones: Inception-v3 features, or the ``fid-proxy``'s.

``fid_inception`` extracts pytorch-fid's Inception-v3 pool3 features (``bench/quality/inception.py``),
``fid_proxy`` any other features (the common classifier's: ``bench/quality/proxy.py``); both compare them
with the Frechet distance and KID (``bench/quality/distances.py``) and name what they computed: "metric"
is "fid-inception" or "fid-proxy", never the same column. The images are checked by the quality metrics'
one validator (``bench/quality/images.py``: uint8 (N, 1|3, H, W), at least 2 per set, one image shape).

Reference (real) features and statistics are cached on disk (npz in ``cache_dir``) under a key of the
extractor name, the weights' SHA-256, the resize mode, the SHA-256 of the real images' bytes (with
their shape) and their number; the stored key is checked on read. Same inputs, same numbers on the
same device (GPU convolutions may differ from CPU ones in the last bits).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.quality.distances import feature_stats, frechet_or_kid
from bench.quality.images import check_images, images_sha256
from bench.quality.inception import INCEPTION_EXTRACTOR, INCEPTION_RESIZE, inception_features, load_inception
from bench.quality.proxy import PROXY_RESIZE


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


def fid_proxy(real, fake, feature_fn: Callable[[np.ndarray], np.ndarray], *, feature_extractor: str,
              weights_sha256: str, cache_dir=None, reference: str | None = None, seed: int = 0,
              resize: str = PROXY_RESIZE) -> dict:
    """The Frechet distance (and KID) on ``feature_fn``'s features: "metric": "fid-proxy", never Inception
    FID. ``feature_extractor`` names the features (e.g. ``ProxyExtractor.name``) and ``weights_sha256``
    identifies their weights; both are in the reference cache key and the result."""
    return _compare(real, fake, feature_fn, metric="fid-proxy", extractor=feature_extractor,
                    weights_sha256=weights_sha256, resize=resize, cache_dir=cache_dir, reference=reference,
                    seed=seed)


def _compare(real, fake, extract, *, metric, extractor, weights_sha256, resize, cache_dir, reference,
             seed) -> dict:
    real, fake = check_images("FID", at_least=2, real=real, fake=fake)
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


# ---------------------------------------------------------------- the reference cache


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


__all__ = ["fid_inception", "fid_proxy", "reference_features", "reference_key"]
