"""Generative quality of one cell, computed at its end and stored with its metrics (``--metrics``).

For every class the method generated (``method.generated_counts`` > 0; the minority class of a binary
task), the real reference is that class's images in the dataset's FULL training split (not only the few
the imbalanced task kept), and the method samples as many images as there are real ones (the paper's
protocol). Per class:
- ``ssim``: SSIM diversity of the generated images and of the real ones (``diversity.py``);
- ``fid``: Frechet distance on Inception-v3 features, or, without the Inception weights, the clearly
  named ``fid-proxy`` on a classifier's features (``fid.py``); each value names its variant. Beside
  it, ``real_vs_real``: the same FID between the class's training images (the same reference) and its
  real test images, the floor a generator is measured against (the paper's Table 2 "real" row).
Per cell, for a method that names a ``battle_twin`` (CapsAN and its Conv-GAN twin):
- ``battle``: the cell also trains the twin (same task, seed, parameters and budget) and stores Im et al.'s
  battle ratios (``battle.py``), this cell's model as model 1, on the task's test images and as many
  samples of the generated classes as there are test images.
Stored as ``metrics["quality"] = {"<class name>": {"ssim": {...}, "fid": {...}}, "n_real": ..., ...}``.
A failure here is recorded as ``metrics["quality_error"]``: the cell's classification results stand.

The package, one concern a module (this one holds only the per-cell protocol above and ``FidSettings``, and
imports the metrics lazily: scikit-image, pytorch-fid and torchvision load only in a run that asks for them):
- ``images.py``: the one check of the images every metric reads, and their digest;
- ``diversity.py``: SSIM diversity; ``battle.py``: Im et al.'s battle;
- ``fid.py``: FID and KID of two image sets, with the real set's features cached on disk;
- ``distances.py``: the Frechet distance and KID of two feature sets;
- ``inception.py``: pytorch-fid's Inception-v3, its verified weights and where they are kept;
- ``proxy.py``: the fid-proxy's features, the common classifier trained once per dataset (cached);
- ``features.py``: features in batches with a progress bar (``SHOW_PROGRESS``), shared by the last two.
"""

from __future__ import annotations

import numpy as np

from bench.datasets.base import ImageSet
from bench.errors import BenchError

QUALITY_METRICS = ("ssim", "fid", "battle")


class FidSettings:
    """Which FID a run computes, decided once: Inception-v3 when its verified weights are found (or
    ``--fid-weights PATH``), else ``fid-proxy`` on a classifier trained once per dataset (cached), with the
    reason ``notice`` to be said once. Proxy extractors are built lazily, one per dataset."""

    def __init__(self, weights=None, download: bool = False, device="cpu", cache_dir=None):
        from bench.quality import inception

        self.device, self.cache_dir, self.notice = device, cache_dir, None
        try:
            self.weights_path = inception.inception_weights_path(weights, download)
        except inception.InceptionWeightsMissing as exc:
            self.weights_path, self.notice = None, str(exc)
        self._proxies = {}

    @property
    def variant(self) -> str:
        return "fid-inception" if self.weights_path is not None else "fid-proxy"

    def fid_fn(self, dataset: str, full_train: ImageSet, seed: int):
        """``fn(real, fake, class_name) -> dict`` for one cell."""
        from bench.quality import fid, proxy

        if self.weights_path is not None:
            return lambda real, fake, name: fid.fid_inception(
                real, fake, weights_path=self.weights_path, device=self.device, cache_dir=self.cache_dir,
                reference=f"{dataset} train class {name}", seed=seed)
        if dataset not in self._proxies:
            self._proxies[dataset] = proxy.proxy_extractor(full_train, dataset, device=self.device,
                                                           cache_dir=self.cache_dir)
        proxy = self._proxies[dataset]
        return lambda real, fake, name: fid.fid_proxy(
            real, fake, proxy.features, feature_extractor=proxy.name, weights_sha256=proxy.sha256,
            cache_dir=self.cache_dir, reference=f"{dataset} train class {name}", seed=seed)


MAX_REFERENCE = 10_000  # real images per class at most (a seeded subset beyond it), to bound the cost


def parse_quality(names) -> list[str]:
    """``["ssim", "fid"]``, ``[]`` for none; unknown names are a one-line error."""
    chosen = [n for n in names if n not in ("", "none")]
    unknown = sorted(set(chosen) - set(QUALITY_METRICS))
    if unknown:
        raise BenchError(f"unknown metric {', '.join(unknown)}; --metrics takes {', '.join(QUALITY_METRICS)} "
                         "or none")
    return [n for n in QUALITY_METRICS if n in chosen]


def generated_classes(method, task_train: ImageSet) -> list[int]:
    counts = getattr(method, "generated_counts", None)
    if counts is None:
        return []
    return [c for c, n in enumerate(list(counts)) if n > 0 and c < task_train.n_classes]


def generative_quality(method, task_train: ImageSet, full_train: ImageSet, which, seed: int,
                       fid_fn=None, test: ImageSet | None = None) -> dict:
    """The quality metrics ``which`` for every class ``method`` generated; ``fid_fn(real, fake, class_name)``
    computes one FID (the caller picks Inception or the proxy). ``test``: the task's test set, whose images
    of the class give the real-vs-real FID."""
    if not hasattr(method, "sample"):
        return {}
    # scikit-image is slow to import; only quality runs need it
    from bench.quality.diversity import ssim_report

    rng = np.random.default_rng(seed)
    out = {}
    for c in generated_classes(method, task_train):
        name = task_train.class_names[c]
        if name not in full_train.class_names:
            raise BenchError(f"class '{name}' of the task is not a class of the dataset")
        real = full_train.images[full_train.labels == full_train.class_names.index(name)]
        if len(real) > MAX_REFERENCE:
            real = real[np.sort(rng.choice(len(real), MAX_REFERENCE, replace=False))]
        fake = method.sample(len(real), c)
        entry = {"n_real": int(len(real)), "n_fake": int(len(fake)), "reference": "dataset train split"}
        if "ssim" in which:
            entry["ssim"] = ssim_report(real, fake, seed=seed)
        if "fid" in which:
            if fid_fn is None:
                raise BenchError("fid was asked for but no FID settings were given; run through run_grid")
            result = fid_fn(real, fake, name)
            entry[result["metric"]] = result  # "fid-inception" or "fid-proxy": never the same column
            held_out = _class_images(test, name)
            if len(held_out) >= 2:
                floor = fid_fn(real, held_out, name)
                entry["real_vs_real"] = {floor["metric"]: {**floor, "compared": "the class's real test images"}}
        out[name] = entry
    return out


def _class_images(images: ImageSet | None, name: str) -> np.ndarray:
    if images is None or name not in images.class_names:
        return np.empty((0,))
    return images.images[images.labels == images.class_names.index(name)]


def battle_against_twin(method, overrides: dict, task, ctx) -> dict:
    """Fit ``method``'s ``battle_twin`` on the same task and context, then battle: this cell's model is
    model 1."""
    from bench.methods import get_method, method_names
    from bench.quality.battle import battle, class_samples

    if method.battle_twin is None:
        twins = ", ".join(n for n in method_names() if get_method(n).battle_twin) or "none"
        raise BenchError(f"method '{method.name}' has no battle twin; --metrics battle runs with {twins}")
    twin = get_method(method.battle_twin)(**overrides)
    twin.fit(task.train, ctx)
    classes = generated_classes(method, task.train) or [task.train.n_classes - 1]
    n = len(task.test)
    result = battle(method.discriminate, twin.discriminate, class_samples(method, n, classes, seed=ctx.seed),
                    class_samples(twin, n, classes, seed=ctx.seed), task.test.images)
    return {**result, "model1": method.name, "model2": twin.name}
