"""The ``fid-proxy`` features: the common classifier, trained once per dataset, as a feature extractor.

When the Inception weights are absent, ``InceptionWeightsMissing`` says so (one line with the fix) and the
caller falls back to the same Frechet distance on the 128-d penultimate features (``CommonCNN.embed``) of
the common classifier trained once per dataset on its full (balanced) training split for PROXY_EPOCHS
epochs (seed 0) and cached. Its numbers are NOT comparable with Inception FID nor with other papers: the
result's ``metric`` is "fid-proxy", a different name for a different column. The images enter the
network unresized (``PROXY_RESIZE`` = "none"), scaled as the classifier trains on them (``to_input``).

The classifier is reached through the methods' public API (``bench.methods``: ``Classifier``,
``CommonCNN``, ``CLASSIFIER_SPEC``, ``to_input``, ``FitContext``), not through ``methods/classifier.py``'s
module: it is the very classifier every resampling method trains (same spec, same training loop), and
what the proxy uses of it is named there as public.

Its state dict is cached on disk (``cache_dir``, one ``.pt`` per dataset and key) under a key of the
training set's hash (images and labels), its class names, the classifier spec, the epochs and the seed;
the stored key is checked on read, and an unreadable or stale file is retrained and overwritten.
``ProxyExtractor.sha256`` (of the state dict) names the trained weights in FID's reference cache key.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.methods import CLASSIFIER_SPEC, Classifier, CommonCNN, FitContext, to_input
from bench.quality.features import batched_features, progress_bar
from bench.quality.images import images_sha256

PROXY_RESIZE = "none"
PROXY_EPOCHS = 10
PROXY_DIMS = 128


def proxy_features(model, images: np.ndarray, device, batch_size: int = 512) -> np.ndarray:
    """The classifier's 128-d penultimate features (``CommonCNN.embed``, eval mode) of uint8 images."""
    model.eval()
    return batched_features(images, lambda batch: model.embed(to_input(batch, device)), batch_size=batch_size,
                            dims=PROXY_DIMS, desc="fid-proxy features")


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
    spec = dict(spec or CLASSIFIER_SPEC)
    device = torch.device(device)
    key = _cache_key(train, spec, epochs, seed)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", dataset)
    path = Path(cache_dir) / f"fid-proxy-{slug}-{key[:16]}.pt" if cache_dir is not None else None
    name = f"common-cnn penultimate 128 trained on {dataset} train"
    model = _cached(path, key, CommonCNN(train.image_shape, train.n_classes, spec["dropout"]))
    if model is not None:
        model = model.to(device).eval()
        return ProxyExtractor(model, name, state_dict_sha256(model), device, "hit", train.image_shape)
    classifier = Classifier(spec)
    with tempfile.TemporaryDirectory() as scratch, \
            progress_bar(epochs, f"fid-proxy classifier ({dataset})", "epoch") as bar:
        ctx = FitContext(device=device, seed=seed, epochs=epochs, artifact_dir=Path(scratch),
                         progress=lambda epoch, total, logs: bar.update(1))
        losses = classifier.fit(train, ctx)
    model = classifier.model.eval()
    if path is not None:
        _store(path, key, model, losses)
    return ProxyExtractor(model, name, state_dict_sha256(model), device, "off" if path is None else "miss",
                          train.image_shape)


def _cache_key(train, spec: dict, epochs: int, seed: int) -> str:
    label_hash = hashlib.sha256(np.ascontiguousarray(train.labels).tobytes()).hexdigest()
    fields = {"train_images": images_sha256(train.images), "train_labels": label_hash,
              "classes": list(train.class_names), "spec": spec, "epochs": epochs, "seed": seed}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _cached(path: Path | None, key: str, model: torch.nn.Module) -> torch.nn.Module | None:
    """``model`` loaded with the state dict cached at ``path`` under ``key``; None when there is none."""
    if path is None or not path.is_file():
        return None
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
        if stored.get("key") == key:
            model.load_state_dict(stored["state_dict"])
            return model
    except Exception:  # unreadable or stale: retrain and overwrite
        pass
    return None


def _store(path: Path, key: str, model: torch.nn.Module, losses) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".pt", delete=False) as tmp:
        torch.save({"key": key, "state_dict": state, "losses": [float(v) for v in losses]}, tmp)
    os.replace(tmp.name, path)


__all__ = ["PROXY_EPOCHS", "PROXY_RESIZE", "ProxyExtractor", "proxy_extractor", "proxy_features",
           "state_dict_sha256"]
