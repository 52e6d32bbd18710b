"""The GAN battle ("generative adversarial metric", GAM) of Im, Kim, Jiang and Memisevic.

Im, Kim, Jiang and Memisevic, "Generating images with recurrent adversarial networks", 2016,
arXiv:1602.05110, section 4; used in the CapsAN paper (Shamsolmoali et al., Neurocomputing 2021,
section 5.1) to pit CapsAN against a convolutional GAN (here ``capsan`` vs its twin ``capsan-conv``).

Two trained GANs M1 = (G1, D1) and M2 = (G2, D2) swap opponents: each discriminator judges the test set
and the OTHER model's samples. Im et al. define, with eps(.) the classification ERROR rate of a
discriminator's real/fake decision,

    r_test    = eps(D1(x_test)) / eps(D2(x_test))
    r_samples = eps(D1(G2(z)))  / eps(D2(G1(z)))

where eps(D(x_test)) is the fraction of (real) test images called fake, and eps(D(G(z))) the fraction of
the other model's samples called real (fooled). Their winner rule: with r_test ~= 1 (both discriminators
judge real data equally well, so neither is merely stricter), r_samples < 1 -> M1 wins (D1 is fooled by
G2 less often than D2 by G1), r_samples > 1 -> M2 wins, r_samples = 1 -> tie. The CapsAN paper writes
these ratios with "AC" and reports r_generated = 0.83, 0.78 and r_real = 1.0 as a CapsAN (M1) win, which
is the reading of Im et al.'s ERROR ratios; literal accuracy ratios would invert the rule. So ``r_test``
and ``r_samples`` here are Im et al.'s error ratios (they decide the winner); the four accuracies
(1 - the errors) and their ratios (``ac_ratio_test``, ``ac_ratio_samples``) are reported alongside.

Choices (ours; Im et al. do not quantify them):
- r_test ~= 1 means |r_test - 1| <= ``tolerance``, default ``DEFAULT_TOLERANCE`` = 0.1. Outside it, or
  when r_test or r_samples is not a number, the battle is ``"undecided"`` (the sample ratio is not
  comparable when one discriminator simply rejects more real images).
- Zero denominators are reported, never raised: an error of 0 divided by 0 is ``nan``, a positive error
  divided by 0 is ``inf`` (e.g. D2 is never fooled by G1 while D1 sometimes is by G2: r_samples = inf, a
  model-2 win). The store writes them as JSON ``NaN`` / ``Infinity``.
- A discriminator is any callable ``d(x)`` on a uint8 (N, C, H, W) array that returns, per image, either
  a bool "is real" array or a float P(real) array in [0, 1]; a probability counts as "real" when it is
  > 0.5 (0.5 itself is "fake").
- The samples and test images are uint8 (N, C, H, W), C = 1 or 3, at least one image per set, all of one
  (C, H, W) (the quality metrics' one check, ``bench/quality/images.py``).
- A method takes part through its ``Method`` interface (``methods/base.py``): ``battle_twin`` names its
  opponent, ``discriminate(images)`` is its discriminator's decision (CapsAN's: real when the "fake" output
  of its c + 1 is not the argmax, on D as ``fit`` left it, after the fine-tuning phase; fit with
  ``finetune_epochs=0`` to battle the adversarial discriminators as they were at the end of GAN training).
- Samples (``class_samples``) come from ``method.sample(n, label)``, split evenly over the given classes,
  under ``torch.manual_seed(seed)`` in a forked RNG (the caller's RNG state is left as it was).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from bench.errors import BenchError
from bench.quality.images import check_images

METRIC = "gam-battle"
DEFAULT_TOLERANCE = 0.1
Discriminator = Callable[[np.ndarray], np.ndarray]


def real_decisions(d: Discriminator, x: np.ndarray) -> np.ndarray:
    """``d``'s per-image "is real" decisions on ``x`` as a bool array (P(real) > 0.5 for probabilities)."""
    out = d(x)
    if isinstance(out, torch.Tensor):
        out = out.detach().cpu().numpy()
    out = np.asarray(out)
    if out.shape != (len(x),):
        raise BenchError(f"a discriminator must return one value per image, shape ({len(x)},); "
                         f"got {out.shape}: return a bool 'is real' array or P(real)")
    if out.dtype == np.bool_:
        return out
    if not np.issubdtype(out.dtype, np.floating):
        raise BenchError(f"a discriminator returned {out.dtype} values: return a bool 'is real' array or "
                         "float P(real) in [0, 1]")
    if not np.all(np.isfinite(out)) or out.min(initial=0.0) < 0 or out.max(initial=0.0) > 1:
        raise BenchError("a discriminator's P(real) must lie in [0, 1]: apply a sigmoid/softmax, "
                         "or return bools")
    return out > 0.5


def battle(d1: Discriminator, d2: Discriminator, g1_samples, g2_samples, x_test,
           tolerance: float = DEFAULT_TOLERANCE) -> dict:
    """Im et al.'s battle of M1 = (G1, D1) against M2 = (G2, D2).

    ``g1_samples``/``g2_samples``: each model's generated images, ``x_test``: real test images, all uint8
    (N, C, H, W) of one image shape. Returns the error ratios ``r_test`` and ``r_samples`` (Im et al.), the
    four accuracies and errors, the accuracy ratios, the counts and ``winner`` in {"model1", "model2",
    "tie", "undecided"} with the ``tolerance`` used.
    """
    g1, g2, xt = check_images("the battle", g1_samples=g1_samples, g2_samples=g2_samples, x_test=x_test)
    if not (isinstance(tolerance, int | float) and tolerance >= 0):
        raise BenchError(f"tolerance must be a number >= 0; got {tolerance!r}")
    # Accuracy of the real/fake decision: real test images should be called real, samples fake.
    correct = {
        "d1_test": real_decisions(d1, xt), "d2_test": real_decisions(d2, xt),
        "d1_on_g2": ~real_decisions(d1, g2), "d2_on_g1": ~real_decisions(d2, g1),
    }
    acc = {f"{k}_accuracy": float(v.mean()) for k, v in correct.items()}
    err = {f"{k}_error": float((~v).mean()) for k, v in correct.items()}  # counted, not 1 - accuracy
    r_test = ratio(err["d1_test_error"], err["d2_test_error"])
    r_samples = ratio(err["d1_on_g2_error"], err["d2_on_g1_error"])
    return {
        "metric": METRIC, "r_test": r_test, "r_samples": r_samples,
        "winner": winner(r_test, r_samples, tolerance), "tolerance": float(tolerance),
        **acc, **err,
        "ac_ratio_test": ratio(acc["d1_test_accuracy"], acc["d2_test_accuracy"]),
        "ac_ratio_samples": ratio(acc["d1_on_g2_accuracy"], acc["d2_on_g1_accuracy"]),
        "n_test": len(xt), "n_g1": len(g1), "n_g2": len(g2),
    }


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, with x / 0 = inf for x > 0 and 0 / 0 = nan (reported, not raised)."""
    if denominator == 0:
        return float("nan") if numerator == 0 else float("inf")
    return float(numerator / denominator)


def winner(r_test: float, r_samples: float, tolerance: float = DEFAULT_TOLERANCE) -> str:
    """Im et al.'s rule: with |r_test - 1| <= tolerance, r_samples < 1 -> "model1", > 1 -> "model2",
    = 1 -> "tie"; otherwise (or with a nan ratio) "undecided"."""
    if math.isnan(r_test) or math.isnan(r_samples) or abs(r_test - 1.0) > tolerance:
        return "undecided"
    if r_samples < 1.0:
        return "model1"
    return "model2" if r_samples > 1.0 else "tie"


def class_samples(method, n: int, labels: int | Sequence[int], seed: int = 0) -> np.ndarray:
    """``n`` images from ``method.sample``, uint8 (n, C, H, W): all of class ``labels`` (an int), or split
    evenly over the classes ``labels`` (the first n % k of them get one more), in the order given. Works for
    any method with ``sample(n, label)``. ``seed`` seeds torch's global RNG (which CapsAN's latents draw
    from) inside a fork, so the caller's RNG state is left as it was; the ``generative.py`` baselines draw
    from their own generator (seeded by the cell's seed) and ignore ``seed``."""
    if not hasattr(method, "sample"):
        raise BenchError(f"{type(method).__name__} cannot generate images: battle generative methods only")
    classes = [int(labels)] if isinstance(labels, int | np.integer) else [int(c) for c in labels]
    if n < 1 or not classes:
        raise BenchError(f"ask for n >= 1 samples of at least one class; got n = {n}, labels = {labels!r}")
    share = [n // len(classes) + (i < n % len(classes)) for i in range(len(classes))]
    device = getattr(method, "device", torch.device("cpu"))
    devices = [device] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        out = [method.sample(k, c) for c, k in zip(classes, share, strict=True) if k]
    return np.concatenate(out)
