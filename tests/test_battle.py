"""Im et al.'s GAN battle: error ratios and winner rule by hand, zero denominators, the CapsAN adapters."""

import math
from contextlib import nullcontext
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bench.errors import BenchError
from bench.methods import FitContext, get_method, method_names
from bench.quality.battle import battle, class_samples, ratio, real_decisions, winner


def _images(*value_counts):
    """Flat grey 8x8 images: ``(value, count)`` pairs, in order."""
    values = np.concatenate([np.full(n, v) for v, n in value_counts])
    return np.broadcast_to(values[:, None, None, None], (len(values), 1, 8, 8)).astype(np.uint8)


def always_real(x):
    return np.ones(len(x), dtype=bool)


def bright_real(x):  # P(real) = mean pixel / 255: > 0.5 iff the mean is above 127.5
    return x.reshape(len(x), -1).mean(1) / 255.0


X_TEST = _images((200, 6), (50, 4))


def test_ratios_by_hand_always_real_against_a_pixel_mean_threshold():
    g1 = _images((200, 2), (50, 6))
    g2 = _images((200, 5))
    r = battle(always_real, bright_real, g1, g2, X_TEST)
    # D1 calls everything real: test error 0, fooled by all of G2 (error 1).
    # D2 calls the 4 dark test images fake (error 4/10) and the 2 bright G1 samples real (error 2/8).
    assert r["d1_test_accuracy"] == 1.0 and r["d2_test_accuracy"] == pytest.approx(0.6)
    assert r["d1_on_g2_accuracy"] == 0.0 and r["d2_on_g1_accuracy"] == pytest.approx(0.75)
    assert r["r_test"] == 0.0  # 0 / 0.4
    assert r["r_samples"] == pytest.approx(1.0 / 0.25)
    assert r["ac_ratio_test"] == pytest.approx(1 / 0.6) and r["ac_ratio_samples"] == 0.0
    assert r["winner"] == "undecided"  # r_test far from 1: D1 is no judge of real images
    assert (r["n_test"], r["n_g1"], r["n_g2"]) == (10, 8, 5)


def test_winner_when_both_judge_the_test_set_alike_and_swapping_the_models_swaps_it():
    strict = lambda x: x.reshape(len(x), -1).mean(1) > 128  # noqa: E731
    lenient = lambda x: x.reshape(len(x), -1).mean(1) > 100  # noqa: E731
    g1 = _images((110, 4), (50, 4))  # fools the lenient D2 half the time: error 4/8
    g2 = _images((110, 2), (200, 2), (50, 6))  # fools the strict D1 with its 2 bright images: error 2/10
    r = battle(strict, lenient, g1, g2, X_TEST)
    assert r["r_test"] == 1.0  # both call the 4 dark test images fake
    assert r["r_samples"] == pytest.approx(0.2 / 0.5)
    assert r["winner"] == "model1"
    swapped = battle(lenient, strict, g2, g1, X_TEST)
    assert swapped["r_samples"] == pytest.approx(0.5 / 0.2) and swapped["winner"] == "model2"


def test_zero_error_denominators_give_inf_and_nan_not_a_crash():
    never_real = lambda x: np.zeros(len(x), dtype=bool)  # noqa: E731
    r = battle(always_real, never_real, _images((0, 3)), _images((0, 4)), X_TEST)
    assert r["r_test"] == 0.0 and r["r_samples"] == math.inf  # D2 is never fooled: 1 / 0
    assert r["d2_test_accuracy"] == 0.0 and math.isinf(r["ac_ratio_test"])
    assert r["winner"] == "undecided"
    perfect = lambda x: x.reshape(len(x), -1).mean(1) > 128  # noqa: E731
    r = battle(perfect, perfect, _images((0, 3)), _images((0, 3)), _images((255, 5)))
    assert math.isnan(r["r_test"]) and math.isnan(r["r_samples"])  # 0 / 0 twice
    assert r["ac_ratio_test"] == r["ac_ratio_samples"] == 1.0 and r["winner"] == "undecided"


def test_winner_rule_and_tolerance():
    assert winner(1.05, 0.5) == "model1"
    assert winner(0.95, 1.5) == "model2"
    assert winner(1.0, 1.0) == "tie"
    assert winner(1.0, math.inf) == "model2"
    assert winner(1.2, 0.5) == "undecided"
    assert winner(1.2, 0.5, tolerance=0.25) == "model1"
    assert winner(math.nan, 0.5) == winner(1.0, math.nan) == "undecided"
    assert ratio(0.0, 0.0) != ratio(0.0, 0.0)  # nan
    assert ratio(0.3, 0.0) == math.inf and ratio(0.3, 0.6) == 0.5


def test_discriminator_outputs_are_checked():
    x = _images((200, 2), (50, 1))
    assert real_decisions(bright_real, x).tolist() == [True, True, False]
    assert real_decisions(lambda x: np.full(len(x), 0.5), x).tolist() == [False] * 3  # 0.5 is fake
    assert real_decisions(lambda x: torch.tensor([True, False, True]), x).tolist() == [True, False, True]
    with pytest.raises(BenchError, match="one value per image"):
        real_decisions(lambda x: np.ones((len(x), 2)), x)
    with pytest.raises(BenchError, match=r"\[0, 1\]"):
        real_decisions(lambda x: np.full(len(x), 3.0), x)
    with pytest.raises(BenchError, match="bool"):
        real_decisions(lambda x: np.ones(len(x), dtype=np.int64), x)
    with pytest.raises(BenchError, match="shapes differ"):
        battle(always_real, always_real, x, x, np.zeros((2, 3, 8, 8), np.uint8))


class _FixedScores(torch.nn.Module):
    """A stand-in D whose scores are given rows (c = 2 classes + "fake")."""

    def __init__(self, rows):
        super().__init__()
        self.rows = torch.tensor(rows)

    def forward(self, x):
        return SimpleNamespace(scores=self.rows[: len(x)])


def test_capsan_discriminates_real_unless_the_fake_output_wins():
    rows = [[0.9, 0.1, 0.2], [0.1, 0.2, 0.8], [0.5, 0.1, 0.5], [0.1, 0.3, 0.2]]
    method = get_method("capsan")()
    method.D, method.n_classes, method.device, method._autocast = _FixedScores(rows), 2, torch.device("cpu"), nullcontext
    assert method.discriminate(_images((0, 4))).tolist() == [True, False, True, True]  # a tie with "fake" is real
    assert method.D.training  # put back in training mode
    with pytest.raises(BenchError, match="fit"):
        get_method("capsan")().discriminate(_images((0, 4)))


def test_only_methods_with_a_twin_battle_and_each_names_the_other():
    twins = {name: get_method(name).battle_twin for name in method_names() if get_method(name).battle_twin}
    assert twins == {"capsan": "capsan-conv", "capsan-conv": "capsan"}  # the paper's battle
    with pytest.raises(NotImplementedError, match="no discriminator"):
        get_method("gan")().discriminate(_images((0, 4)))


def test_sampler_splits_n_over_the_classes_in_order():
    calls = []
    method = SimpleNamespace(sample=lambda n, c: calls.append((n, c)) or np.full((n, 1, 8, 8), c, np.uint8))
    images = class_samples(method, 7, [2, 0, 1])
    assert calls == [(3, 2), (2, 0), (2, 1)] and images[:, 0, 0, 0].tolist() == [2, 2, 2, 0, 0, 1, 1]
    assert class_samples(method, 2, 1).shape == (2, 1, 8, 8)
    with pytest.raises(BenchError, match="n >= 1"):
        class_samples(method, 0, [0])


TINY = dict(gan_epochs=1, finetune_epochs=1, g_channels=32, d_width=16, primary_types=8, z_dim=16)


@pytest.fixture(scope="module")
def fitted(digits, tmp_path_factory):
    """capsan and capsan-conv, shrunk to run in a fraction of a second, on digits 0 and 1."""
    train = digits[0].subset(np.flatnonzero(digits[0].labels < 2))
    out = []
    for name in ("capsan", "capsan-conv"):
        method = get_method(name)(**TINY)
        method.fit(train, FitContext(device=torch.device("cpu"), seed=0, epochs=1,
                                     artifact_dir=tmp_path_factory.mktemp(name)))
        out.append(method)
    return out


def test_capsan_battle_end_to_end(fitted, digits):
    capsan, conv = fitted
    test = digits[1].images[digits[1].labels < 2]
    for method in fitted:  # the adapter is the argmax rule on the real discriminator's scores
        with torch.no_grad():
            method.D.eval()
            scores = method.D(torch.as_tensor(test).float() / 127.5 - 1).scores
            method.D.train()
        assert scores.shape == (len(test), method.n_classes + 1)  # the last column is "fake"
        expected = (scores.argmax(1) != method.n_classes).numpy()
        assert np.array_equal(method.discriminate(test), expected)
    g1, g2 = class_samples(capsan, 30, [0, 1]), class_samples(conv, 30, [0, 1])
    r = battle(capsan.discriminate, conv.discriminate, g1, g2, test)
    assert (r["n_test"], r["n_g1"], r["n_g2"]) == (len(test), 30, 30)
    for key in ("d1_test_accuracy", "d2_test_accuracy", "d1_on_g2_accuracy", "d2_on_g1_accuracy"):
        assert 0.0 <= r[key] <= 1.0
        assert r[key] + r[key.replace("accuracy", "error")] == pytest.approx(1.0)
    assert r["winner"] in {"model1", "model2", "tie", "undecided"}


def test_class_samples_is_seeded_and_leaves_the_callers_rng_alone(fitted):
    capsan = fitted[0]
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = class_samples(capsan, 6, [0, 1], seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    assert np.array_equal(a, class_samples(capsan, 6, [0, 1], seed=5))
    assert not np.array_equal(a, class_samples(capsan, 6, [0, 1], seed=6))
    assert a.dtype == np.uint8 and a.shape == (6, 1, 8, 8)
