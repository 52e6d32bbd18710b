"""FID (Inception and fid-proxy) and KID: closed forms, pytorch-fid cross-checks, weights, caching.

No weights are downloaded: the Inception tests use the right architecture with random weights.
"""

import hashlib
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_fid import inception as pf_inception
from pytorch_fid.fid_score import calculate_frechet_distance

from bench.errors import BenchError
from bench.quality import distances, fid, inception, proxy


@pytest.fixture(autouse=True)
def _fresh_model_cache():
    inception._MODELS.clear()
    yield
    inception._MODELS.clear()


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: on shared, busy CPUs two spinning threads made the forwards ~15x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_fid_weights() -> dict:
    """A state dict in the format of pytorch-fid's weights file, with random weights: its ``fid_inception_v3()``
    body (torchvision's Inception3 with 1008 classes, no aux logits, and pytorch-fid's FID blocks) without the
    download."""
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
    return net.state_dict()


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    """A weights file of pytorch-fid's format with random weights (the real ones are never downloaded)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("fid-weights") / "random.pth"
    torch.save(random_fid_weights(), path)
    return path


@pytest.fixture(scope="module")
def random_inception(random_weights):
    return inception.build_inception(random_weights)


def _images(n, channels=1, size=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, channels, size, size), dtype=np.uint8)


# ---------------------------------------------------------------- Frechet distance and statistics


def test_frechet_distance_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    s1, s2 = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert distances.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-9)
    assert distances.frechet_distance(mu1, np.diag(s1), mu1, np.diag(s1)) == pytest.approx(0, abs=1e-9)


def test_frechet_distance_is_pytorch_fids_on_full_covariances():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(200, 5)), rng.normal(size=(150, 5)) @ rng.normal(size=(5, 5)) + 0.5
    (mu1, s1), (mu2, s2) = distances.feature_stats(a), distances.feature_stats(b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # SciPy's sqrtm(disp=...) in pytorch-fid
        reference = calculate_frechet_distance(mu1, s1, mu2, s2)
    assert distances.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(reference, rel=1e-12)
    with pytest.raises(ValueError, match="covariances"):
        distances.frechet_distance(mu1, s1, mu2[:4], s2[:4, :4])


def test_feature_stats_are_mean_and_unbiased_covariance():
    feats = np.random.default_rng(2).normal(size=(30, 4))
    mu, sigma = distances.feature_stats(feats)
    assert mu == pytest.approx(feats.mean(0))
    centred = feats - feats.mean(0)
    assert sigma == pytest.approx(centred.T @ centred / 29)
    with pytest.raises(ValueError, match="N >= 2"):
        distances.feature_stats(feats[:1])


# ---------------------------------------------------------------- KID


def test_kid_hand_checked_tiny_example():
    # d = 1, k(x, y) = (xy + 1)^3. X = {0, 1}, Y = {1, 2}:
    # k(0,1) = 1 -> XX term 2*1/2 = 1; k(1,2) = 27 -> YY term 27; XY: 1 + 1 + 8 + 27 = 37 -> 2*37/4 = 18.5.
    result = distances.kid([[0.0], [1.0]], [[1.0], [2.0]], n_subsets=3)
    assert result["value"] == pytest.approx(1 + 27 - 18.5)
    assert result["subset_size"] == 2 and result["std"] == pytest.approx(0, abs=1e-12)


def test_kid_is_the_unbiased_estimator_formula():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 3)) + 0.3

    def k(a, b):
        return (a @ b / 3 + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(5) for j in range(5) if i != j) / 20
    yy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / 20
    xy = sum(k(x[i], y[j]) for i in range(5) for j in range(5)) / 25
    assert distances.kid(x, y, n_subsets=1)["value"] == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_kid_subsets_are_seeded_and_the_gram_shortcut_changes_nothing(monkeypatch):
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(40, 6)), rng.normal(size=(30, 6))
    first = distances.kid(x, y, seed=1, n_subsets=20, subset_size=10)
    assert distances.kid(x, y, seed=1, n_subsets=20, subset_size=10) == first
    assert distances.kid(x, y, seed=2, n_subsets=20, subset_size=10)["value"] != first["value"]
    monkeypatch.setattr(distances, "_GRAM_LIMIT", 0)  # per-subset kernels instead of indexed whole matrices
    per_subset = distances.kid(x, y, seed=1, n_subsets=20, subset_size=10)
    assert per_subset["value"] == pytest.approx(first["value"], rel=1e-10)


def test_kid_is_unbiased_on_samples_of_one_distribution():
    rng = np.random.default_rng(5)
    unbiased, biased = [], []
    for _ in range(300):
        x, y = rng.normal(size=(8, 4)), rng.normal(size=(8, 4))
        unbiased.append(distances.kid(x, y, n_subsets=1)["value"])
        kxx, kyy, kxy = distances.polynomial_kernel(x, x), distances.polynomial_kernel(y, y), distances.polynomial_kernel(x, y)
        biased.append(kxx.mean() + kyy.mean() - 2 * kxy.mean())  # the V-statistic, diagonals included
    se = np.std(unbiased) / np.sqrt(len(unbiased))
    assert abs(np.mean(unbiased)) < 4 * se
    assert np.mean(biased) > 10 * se  # the test can tell an estimator that keeps the diagonals
    shifted = distances.kid(rng.normal(size=(200, 4)), rng.normal(size=(200, 4)) + 1.0, subset_size=50)
    assert shifted["value"] > 20 * shifted["std"] / np.sqrt(shifted["subsets"])


def test_frechet_or_kid_says_which_applies():
    rng = np.random.default_rng(6)
    few = distances.frechet_or_kid(rng.normal(size=(5, 8)), rng.normal(size=(40, 8)))
    assert few["applies"] == "kid" and few["n_real"] == 5 and few["dims"] == 8
    many_r, many_f = rng.normal(size=(60, 3)), rng.normal(size=(50, 3)) + 1
    many = distances.frechet_or_kid(many_r, many_f, seed=3)
    assert many["applies"] == "fid"
    direct = distances.frechet_distance(*distances.feature_stats(many_r), *distances.feature_stats(many_f))
    assert many["fid"] == pytest.approx(direct)
    assert many["kid"] == pytest.approx(distances.kid(many_r, many_f, 3)["value"])


# ---------------------------------------------------------------- Inception weights


def test_weights_constant_agrees_with_the_published_file_name():
    assert len(inception.FID_WEIGHTS_SHA256) == 64 and int(inception.FID_WEIGHTS_SHA256, 16) >= 0
    prefix = inception.FID_WEIGHTS_FILE.rsplit("-", 1)[1].split(".")[0]  # torch.hub's hash prefix convention
    assert inception.FID_WEIGHTS_SHA256.startswith(prefix)
    assert inception.FID_WEIGHTS_URL.endswith("/" + inception.FID_WEIGHTS_FILE)


def _no_network(*args, **kwargs):
    raise AssertionError("a test tried to download")


def test_missing_weights_give_the_documented_signal(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)
    with pytest.raises(inception.InceptionWeightsMissing) as caught:
        fid.fid_inception(_images(3), _images(3), cache_dir=tmp_path)
    message = str(caught.value)
    assert isinstance(caught.value, BenchError) and "\n" not in message
    assert inception.FID_WEIGHTS_URL in message and "--fid-weights" in message and "fid-proxy" in message
    with pytest.raises(BenchError, match="no such file") as explicit:
        inception.inception_weights_path(tmp_path / "nope.pth")
    assert not isinstance(explicit.value, inception.InceptionWeightsMissing)  # a wrong path is not a fallback
    found = tmp_path / "checkpoints" / inception.FID_WEIGHTS_FILE
    found.parent.mkdir()
    found.write_bytes(b"x")
    assert inception.inception_weights_path() == found


def test_a_wrong_weights_file_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / "fake.pth"
    fake.write_bytes(b"not the inception weights")
    monkeypatch.setattr(torch, "load", _no_network)  # refused before anything is unpickled
    with pytest.raises(BenchError, match="SHA-256") as caught:
        inception.load_inception(weights_path=fake)
    assert "\n" not in str(caught.value) and str(fake) in str(caught.value)


def test_a_bad_download_is_refused_and_deleted(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    def bad_download(url, dst, **kwargs):
        assert url == inception.FID_WEIGHTS_URL
        open(dst, "wb").write(b"bad")

    monkeypatch.setattr(torch.hub, "download_url_to_file", bad_download)
    with pytest.raises(BenchError, match="SHA-256"):
        inception.inception_weights_path(download=True)
    assert not (tmp_path / "checkpoints" / inception.FID_WEIGHTS_FILE).exists()


def test_verified_weights_load_into_the_network(tmp_path, monkeypatch):
    state = random_fid_weights()
    path = tmp_path / "weights.pth"
    path.write_bytes(b"stand-in for a verified file")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setattr(inception, "FID_WEIGHTS_SHA256", sha)
    monkeypatch.setattr(torch, "load", lambda *a, **kw: state)
    model, got_sha = inception.load_inception(weights_path=path)
    assert got_sha == sha
    assert torch.equal(model.blocks[3][1].branch1x1.conv.weight, state["Mixed_7b.branch1x1.conv.weight"])
    assert inception.load_inception(weights_path=path)[0] is model  # built once per process


def test_pytorch_fid_builds_the_network_from_the_file_and_downloads_nothing(random_weights, monkeypatch):
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)
    hub = torch.hub.get_dir()
    model = inception.build_inception(random_weights)
    assert torch.hub.get_dir() == hub  # torch hub's folder is the caller's again
    assert type(model) is pf_inception.InceptionV3 and not model.training
    state = torch.load(random_weights, weights_only=True)
    assert torch.equal(model.blocks[0][0].conv.weight, state["Conv2d_1a_3x3.conv.weight"])
    assert torch.equal(model.blocks[3][2].branch_pool.conv.weight, state["Mixed_7c.branch_pool.conv.weight"])
    assert sum(p.numel() for p in model.parameters()) == sum(  # every tensor but the classifier (fc) is used
        t.numel() for k, t in state.items() if not k.startswith("fc.") and "running" not in k
        and "num_batches" not in k)


# ---------------------------------------------------------------- Inception features


class _Stop(Exception):
    pass


def _network_input(model, images):
    """What enters the first convolution block (after InceptionV3's resize and scaling)."""
    seen = []

    def hook(module, args):
        seen.append(args[0].clone())
        raise _Stop

    handle = model.blocks[0].register_forward_pre_hook(hook)
    try:
        with pytest.raises(_Stop):
            inception.inception_features(model, images, "cpu")
    finally:
        handle.remove()
    return seen[0]


def test_inception_input_is_resized_rgb_in_minus_one_to_one(random_inception):
    grey = _images(2, channels=1, size=8, seed=7)
    x = _network_input(random_inception, grey)
    assert x.shape == (2, 3, 299, 299)
    rgb = np.repeat(grey, 3, axis=1)
    assert torch.equal(_network_input(random_inception, rgb), x)
    expected = F.interpolate(torch.from_numpy(rgb).float() / 255, size=(299, 299), mode="bilinear",
                             align_corners=False) * 2 - 1
    assert torch.allclose(x, expected, atol=1e-6)
    extremes = np.stack([np.zeros((1, 16, 16), np.uint8), np.full((1, 16, 16), 255, np.uint8)])
    ends = _network_input(random_inception, extremes)
    assert torch.allclose(ends[0], torch.tensor(-1.0), atol=1e-6)
    assert torch.allclose(ends[1], torch.tensor(1.0), atol=1e-6)


def test_fid_inception_features_and_reference_cache(random_inception, tmp_path, monkeypatch):
    sha = "ab" * 32
    monkeypatch.setattr(fid, "load_inception", lambda *a, **kw: (random_inception, sha))
    # Distances in 2048 dimensions cost a 2048x2048 matrix root (checked above on small cases): a spy
    # instead, so the test checks what the distance is given (the real set's statistics, then the fake's).
    calls = []

    def spy(mu1, sigma1, mu2, sigma2):
        calls.append((mu1, sigma1, mu2, sigma2))
        return -float(len(calls))

    monkeypatch.setattr(distances, "frechet_distance", spy)
    batches = []
    handle = random_inception.blocks[0].register_forward_pre_hook(lambda m, a: batches.append(len(a[0])))
    try:
        real, fake = _images(3, channels=1, seed=8), _images(2, channels=1, seed=9)
        first = fid.fid_inception(real, fake, cache_dir=tmp_path, batch_size=2, reference="train class 1")
        assert batches == [2, 1, 2]  # real in batches of 2 (with a remainder), then fake
        real_mu, real_sigma = distances.feature_stats(inception.inception_features(random_inception, real, "cpu", batch_size=2))
        fake_mu, fake_sigma = distances.feature_stats(inception.inception_features(random_inception, fake, "cpu", batch_size=2))
        assert not np.array_equal(real_mu, fake_mu)  # the two sets' statistics tell them apart
        (mu1, sigma1, mu2, sigma2), = calls
        assert np.array_equal(mu1, real_mu) and np.array_equal(sigma1, real_sigma)
        assert np.array_equal(mu2, fake_mu) and np.array_equal(sigma2, fake_sigma)
        assert first["metric"] == "fid-inception" and first["value"] == -1.0  # what the distance returned
        assert first["feature_extractor"] == "pytorch-fid InceptionV3 pool3 2048"
        assert first["resize"] == "bilinear 299" and first["weights_sha256"] == sha
        assert (first["n_real"], first["n_fake"], first["reference"]) == (3, 2, "train class 1")
        assert first["applies"] == "kid" and first["dims"] == 2048 and np.isfinite(first["kid"])
        assert first["reference_cache"] == "miss"
        (cached,) = tmp_path.glob("fid-ref-*.npz")
        with np.load(cached) as stored:
            assert stored["features"].shape == (3, 2048) and stored["sigma"].shape == (2048, 2048)
        batches.clear()
        second = fid.fid_inception(real, fake, cache_dir=tmp_path, batch_size=2)
        assert batches == [2] and second["reference_cache"] == "hit"  # only the fake set went through
        assert second["kid"] == first["kid"]
        batches.clear()
        with pytest.raises(BenchError, match="FID: image shapes differ"):  # grey against RGB: two datasets
            fid.fid_inception(real, np.repeat(fake, 3, axis=1), cache_dir=tmp_path)
        with pytest.raises(BenchError, match="FID needs at least 2 images in fake"):
            fid.fid_inception(real, fake[:1], cache_dir=tmp_path)
        assert batches == []  # refused before any feature is extracted
    finally:
        handle.remove()


# ---------------------------------------------------------------- the reference cache key


def test_reference_key_depends_on_every_field():
    images = _images(4)
    base = fid.reference_key("net", "a" * 64, "bilinear 299", images)
    assert fid.reference_key("net", "a" * 64, "bilinear 299", images.copy()) == base
    changed = [
        fid.reference_key("other", "a" * 64, "bilinear 299", images),
        fid.reference_key("net", "b" * 64, "bilinear 299", images),
        fid.reference_key("net", "a" * 64, "none", images),
        fid.reference_key("net", "a" * 64, "bilinear 299", images[:3]),
        fid.reference_key("net", "a" * 64, "bilinear 299", 255 - images),
        fid.reference_key("net", "a" * 64, "bilinear 299", images.reshape(4, 1, 4, 16)),
    ]
    assert len({base, *changed}) == 7


def test_reference_features_hit_skips_extraction_and_a_stale_file_is_redone(tmp_path):
    calls = []

    def extract(images):
        calls.append(len(images))
        return images.reshape(len(images), -1)[:, :5].astype(np.float32)

    real = _images(6)
    kwargs = dict(extractor="x", weights_sha256="c" * 64, resize="none", cache_dir=tmp_path)
    feats, (mu, sigma), cache = fid.reference_features(real, extract, **kwargs)
    assert cache == "miss" and calls == [6]
    again, (mu2, sigma2), cache = fid.reference_features(real, extract, **kwargs)
    assert cache == "hit" and calls == [6] and np.array_equal(again, feats) and np.array_equal(sigma2, sigma)
    fid.reference_features(real, extract, **{**kwargs, "weights_sha256": "d" * 64})
    assert calls == [6, 6]
    for path in tmp_path.glob("fid-ref-*.npz"):
        path.write_bytes(b"corrupt")
    assert fid.reference_features(real, extract, **kwargs)[2] == "miss" and calls == [6, 6, 6]
    assert fid.reference_features(real, extract, **{**kwargs, "cache_dir": None})[2] == "off"


# ---------------------------------------------------------------- fid-proxy


def test_fid_proxy_end_to_end_on_digits(digits, tmp_path):
    train, test = digits
    extractor = proxy.proxy_extractor(train, "digits", cache_dir=tmp_path, epochs=1)
    assert extractor.cache == "miss" and extractor.name == "common-cnn penultimate 128 trained on digits train"
    again = proxy.proxy_extractor(train, "digits", cache_dir=tmp_path, epochs=1)
    assert again.cache == "hit" and again.sha256 == extractor.sha256
    assert proxy.proxy_extractor(train, "digits", cache_dir=tmp_path, epochs=2).cache == "miss"  # spec in key
    feats = extractor.features(test.images[:5])
    assert feats.shape == (5, 128) and feats.dtype == np.float32

    def proxy_fid(fake, **kw):
        return fid.fid_proxy(train.images, fake, extractor.features, feature_extractor=extractor.name,
                             weights_sha256=extractor.sha256, cache_dir=tmp_path, **kw)

    same = proxy_fid(test.images, reference="train")
    noise = proxy_fid(np.random.default_rng(0).integers(0, 256, test.images.shape, dtype=np.uint8))
    assert same["metric"] == "fid-proxy" and same["feature_extractor"] == extractor.name
    assert same["weights_sha256"] == extractor.sha256 and same["resize"] == "none"
    assert same["reference"] == "train"
    assert same["applies"] == "fid" and (same["n_real"], same["n_fake"]) == (len(train), len(test))
    assert noise["reference_cache"] == "hit"
    assert 0 <= same["value"] < noise["value"] / 5 and same["kid"] < noise["kid"]
    one_class = proxy_fid(test.images[test.labels == 3])
    assert one_class["applies"] == "kid"  # ~54 images, 128 dimensions
    with pytest.raises(ValueError, match="shape"):
        extractor.features(np.zeros((2, 1, 16, 16), np.uint8))


def test_frechet_distance_survives_a_scipy_without_sqrtm_disp(monkeypatch):
    # SciPy >= 1.18 removed sqrtm's ``disp`` that pytorch-fid 0.3.0 passes (found on the GPU machine).
    from pytorch_fid import fid_score
    from scipy import linalg

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 4)), rng.normal(size=(60, 4)) + 0.5
    (mu1, s1), (mu2, s2) = distances.feature_stats(a), distances.feature_stats(b)
    expected = distances.frechet_distance(mu1, s1, mu2, s2)

    def new_sqrtm(matrix, **kwargs):
        if "disp" in kwargs:
            raise TypeError("sqrtm() got an unexpected keyword argument 'disp'")
        return linalg.sqrtm(matrix)

    import types

    monkeypatch.setattr(fid_score, "linalg", types.SimpleNamespace(sqrtm=new_sqrtm))
    assert distances.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
