"""FID, KID, their statistics files and the two feature extractors (no network, no downloaded weights)."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image

import ganops.config
import ganops.data
from ganops.data.tensorfile import Prepared
from ganops.errors import GanopsError
from ganops.fileio import torch_load, torch_save
from ganops.metrics import (INCEPTION_WEIGHTS_FILE, ClassifierExtractor, FeatureClassifier, InceptionExtractor,
                            build_extractor, classifier_from_record, classifier_record, feature_statistics,
                            fid_of_images, frechet_distance, kernel_inception_distance, load_statistics,
                            resolve_inception_weights, save_statistics, train_classifier)

CPU = torch.device("cpu")


def gaussian_features(count: int, dims: int, shift: float = 0.0, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(loc=shift, size=(count, dims))


def random_images(count: int, channels: int, size: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, channels, size, size), dtype=torch.uint8, generator=generator)


def scipy_frechet(mu1, sigma1, mu2, sigma2) -> float:
    """Written out from the definition, independent of pytorch-fid."""
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1 + sigma2 - 2 * covmean))


@pytest.fixture(scope="module")
def random_inception() -> InceptionExtractor:
    return InceptionExtractor("random", CPU, batch_size=2)


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the metrics code tried to open a network connection")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def hub_dir(tmp_path):
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub"
    torch.hub.set_dir(previous)


# ---------------------------------------------------------------------------------------------------
# FID and KID

def test_fid_of_a_set_against_itself_is_zero():
    mu, sigma = feature_statistics(gaussian_features(500, 16))
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-6 * np.trace(sigma)


def test_fid_grows_with_a_shifted_mean_and_matches_scipy():
    mu1, sigma1 = feature_statistics(gaussian_features(500, 16, seed=1))
    mu2, sigma2 = feature_statistics(gaussian_features(500, 16, seed=2))
    mu3, sigma3 = feature_statistics(gaussian_features(500, 16, shift=1.0, seed=3))
    same_distribution = frechet_distance(mu1, sigma1, mu2, sigma2)
    shifted = frechet_distance(mu1, sigma1, mu3, sigma3)
    assert shifted > 10 * same_distribution and shifted > 10  # 16 dims, each mean off by 1
    for value, (m, s) in ((same_distribution, (mu2, sigma2)), (shifted, (mu3, sigma3))):
        assert value == pytest.approx(scipy_frechet(mu1, sigma1, m, s), rel=1e-6)


def test_feature_statistics_match_numpy():
    features = gaussian_features(50, 4)
    mu, sigma = feature_statistics(features)
    np.testing.assert_allclose(mu, features.mean(0))
    np.testing.assert_allclose(sigma, np.cov(features.T))


def test_kid_is_near_zero_for_one_distribution_and_positive_for_a_shift():
    real = gaussian_features(400, 32, seed=1)
    same_mean, same_std = kernel_inception_distance(real, gaussian_features(400, 32, seed=2), 10, 200)
    shifted_mean, _ = kernel_inception_distance(real, gaussian_features(400, 32, shift=0.5, seed=3), 10, 200)
    assert abs(same_mean) < 0.02 and same_std >= 0
    assert shifted_mean > 0.1 and shifted_mean > 20 * abs(same_mean)


def test_kid_caps_the_subset_size_and_is_seeded():
    real, fake = gaussian_features(30, 8, seed=1), gaussian_features(20, 8, seed=2)
    first = kernel_inception_distance(real, fake, subsets=3, subset_size=1000, seed=5)
    assert first == kernel_inception_distance(real, fake, subsets=3, subset_size=1000, seed=5)


# ---------------------------------------------------------------------------------------------------
# Statistics files

def test_statistics_round_trip_in_pytorch_fid_format(tmp_path):
    mu, sigma = feature_statistics(gaussian_features(40, 8))
    path = tmp_path / "stats.npz"
    save_statistics(path, mu, sigma)
    loaded_mu, loaded_sigma = load_statistics(path, dims=8)
    np.testing.assert_array_equal(loaded_mu, mu)
    np.testing.assert_array_equal(loaded_sigma, sigma)
    with np.load(path) as npz:  # what pytorch-fid's compute_statistics_of_path reads
        assert sorted(npz.files) == ["mu", "sigma"]
    assert [p.name for p in tmp_path.iterdir()] == ["stats.npz"]  # no temporary left behind


def write_truncated(path: Path) -> None:
    save_statistics(path, np.zeros(8), np.eye(8))
    path.write_bytes(path.read_bytes()[:200])


def write_wrong_shapes(path: Path) -> None:
    save_statistics(path, np.zeros(8), np.eye(4))


def write_missing_key(path: Path) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, mu=np.zeros(8))


def write_bare_array(path: Path) -> None:
    with open(path, "wb") as fh:
        np.save(fh, np.zeros(8))


def write_text(path: Path) -> None:
    path.write_text("not numpy at all\n")


@pytest.mark.parametrize("write, dims, expected", [
    (write_truncated, None, "corrupt"),
    (write_text, None, "corrupt"),
    (write_bare_array, None, "not an .npz"),
    (write_wrong_shapes, None, "expected (d,) and (d, d)"),
    (write_missing_key, None, "lack 'sigma'"),
    (lambda path: save_statistics(path, np.zeros(64), np.eye(64)), 2048, "have 64 dims but the extractor gives 2048"),
    (lambda path: None, None, "not found"),
])
def test_bad_statistics_files_give_one_line_errors_naming_the_path(tmp_path, write, dims, expected):
    path = tmp_path / "stats.npz"
    write(path)
    with pytest.raises(GanopsError) as info:
        load_statistics(path, dims)
    message = str(info.value)
    assert expected in message and str(path) in message and "\n" not in message


# ---------------------------------------------------------------------------------------------------
# Extractors

@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [32, 64])
def test_classifier_extractor_gives_float64_features(channels, size):
    torch.manual_seed(0)
    extractor = ClassifierExtractor(FeatureClassifier(channels, size, width=8, num_classes=10), CPU, batch_size=3)
    features = extractor.features(random_images(5, channels, size))
    assert features.shape == (5, extractor.dims) and features.dtype == np.float64
    assert np.isfinite(features).all() and features.std(0).max() > 0


def test_classifier_extractor_refuses_images_it_was_not_trained_on():
    extractor = ClassifierExtractor(FeatureClassifier(1, 32, width=8, num_classes=10), CPU)
    with pytest.raises(GanopsError, match="trained on 1 x 32 x 32"):
        extractor.features(random_images(2, 3, 32))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [32, 64])
def test_inception_extractor_gives_2048_float64_features(random_inception, channels, size):
    features = random_inception.features(random_images(3, channels, size))  # 3 with batches of 2: a short tail
    assert random_inception.random_weights
    assert features.shape == (3, 2048) and features.dtype == np.float64 and np.isfinite(features).all()


@pytest.mark.parametrize("mode, channels", [("L", 1), ("RGB", 3)])
def test_inception_extractor_sees_what_the_pytorch_fid_cli_sees(random_inception, tmp_path, mode, channels):
    """Same network, images through PNG files and pytorch-fid's own loader: the same features."""
    from pytorch_fid.fid_score import get_activations

    images = random_images(2, channels, 32, seed=7)
    files = []
    for i, image in enumerate(images):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(image.permute(1, 2, 0).squeeze(-1).numpy(), mode=mode).save(files[-1])
    expected = get_activations(files, random_inception.model, batch_size=2, device=CPU, num_workers=0)
    np.testing.assert_allclose(random_inception.features(images), expected, rtol=1e-4, atol=1e-12)


def test_inception_without_weights_fails_clearly_and_offline(hub_dir, no_network):
    with pytest.raises(GanopsError) as info:
        InceptionExtractor(None, CPU)
    message = str(info.value)
    expected_file = hub_dir / "checkpoints" / INCEPTION_WEIGHTS_FILE
    assert str(expected_file) in message and "fid.inception_weights" in message and "\n" not in message


def test_inception_with_a_missing_weights_file_names_it(tmp_path, no_network):
    missing = tmp_path / "nowhere" / INCEPTION_WEIGHTS_FILE
    with pytest.raises(GanopsError, match="nowhere"):
        InceptionExtractor(str(missing), CPU)


def test_inception_finds_weights_in_the_hub_cache_and_loads_them(hub_dir, no_network):
    from ganops.metrics.extractors.inception import _random_inception_state

    weights = hub_dir / "checkpoints" / INCEPTION_WEIGHTS_FILE
    weights.parent.mkdir(parents=True)
    torch.save({"not_inception.weight": torch.zeros(1)}, weights)
    with pytest.raises(GanopsError, match="do not fit"):
        InceptionExtractor(None, CPU)
    state = _random_inception_state()  # named as in pytorch-fid's released file
    torch.save(state, weights)
    assert resolve_inception_weights(None) == weights
    loaded = InceptionExtractor(str(weights), CPU)
    assert not loaded.random_weights and loaded.weights_file == weights
    torch.testing.assert_close(loaded.model.blocks[0][0].conv.weight, state["Conv2d_1a_3x3.conv.weight"])
    torch.testing.assert_close(loaded.model.blocks[3][2].branch_pool.conv.weight,
                               state["Mixed_7c.branch_pool.conv.weight"])


def test_build_extractor_refuses_random_inception_weights(tmp_path):
    fid = ganops.config.from_dict({"fid": {"extractor": "inception", "inception_weights": "random"}}).fid
    with pytest.raises(GanopsError, match="benchmarks only"):
        build_extractor(fid, tmp_path / "feature_net.pt", CPU)


def test_build_extractor_needs_the_trained_classifier(tmp_path):
    fid = ganops.config.from_dict({}).fid
    with pytest.raises(GanopsError, match="dvc repro fid_stats"):
        build_extractor(fid, tmp_path / "feature_net.pt", CPU)
    torch_save({"format": "something-else"}, tmp_path / "feature_net.pt")
    with pytest.raises(GanopsError, match="not a ganops feature classifier"):
        build_extractor(fid, tmp_path / "feature_net.pt", CPU)


# ---------------------------------------------------------------------------------------------------
# The offline classifier

@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Prepared:
    """600 of the embedded MNIST digits, prepared exactly as the preprocess stage does."""
    data = ganops.config.from_dict({"data": {"limit": 600}}).data
    raw_dir = tmp_path_factory.mktemp("raw")
    ganops.data.fetch(data, raw_dir)
    return ganops.data.prepare(data, raw_dir)


def test_trained_classifier_round_trips_through_a_weights_only_file(digits, tmp_path):
    net, accuracy = train_classifier(digits, epochs=1, width=8, device=CPU, seed=0)
    assert 0.0 <= accuracy <= 1.0
    path = tmp_path / "feature_net.pt"
    torch_save(classifier_record(net, accuracy), path)
    record = torch_load(path, "feature classifier")  # weights_only=True
    assert record["accuracy"] == accuracy
    restored = classifier_from_record(record)
    images = digits.images[:20]
    original = ClassifierExtractor(net, CPU).features(images)
    np.testing.assert_array_equal(ClassifierExtractor(restored, CPU).features(images), original)
    fid = ganops.config.from_dict({}).fid
    np.testing.assert_array_equal(build_extractor(fid, path, CPU).features(images), original)


def test_classifier_training_is_seeded_and_leaves_the_global_rng_alone(digits):
    small = Prepared(digits.images[:100], digits.labels[:100], digits.meta)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first, _ = train_classifier(small, epochs=1, width=4, device=CPU, seed=3)
    assert torch.rand(1) == before
    second, _ = train_classifier(small, epochs=1, width=4, device=CPU, seed=3)
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_classifier_needs_labels():
    unlabelled = Prepared(random_images(10, 3, 32), None, {"dataset": "folder"})
    with pytest.raises(GanopsError, match="use fid.extractor: inception"):
        train_classifier(unlabelled, epochs=1, width=4, device=CPU)


def test_fid_of_images_is_zero_against_the_images_own_statistics():
    torch.manual_seed(0)
    extractor = ClassifierExtractor(FeatureClassifier(1, 32, width=8, num_classes=10), CPU)
    images = random_images(200, 1, 32)
    mu, sigma = feature_statistics(extractor.features(images))
    assert abs(fid_of_images(extractor, images, mu, sigma)) < 1e-6 * np.trace(sigma)
    assert fid_of_images(extractor, images // 2, mu, sigma) > 1e-3 * np.trace(sigma)
