"""Feature statistics in pytorch-fid's .npz format, the Fréchet distance, and the kernel (KID) distance."""

from __future__ import annotations

import pickle
import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np
import torch
from numpy.lib.npyio import NpzFile
from pytorch_fid.fid_score import calculate_frechet_distance

from ganops.errors import GanopsError, one_line
from ganops.fileio import atomic_binary

if TYPE_CHECKING:
    from ganops.metrics.extractors.base import FeatureExtractor

STATS_KEYS = ("mu", "sigma")
FEATURES_KEY = "features"  # real feature rows kept beside the statistics, for KID and precision/recall
FEATURES_KEPT = 10_000  # enough for evaluate.samples; Inception features of all CIFAR-10 would be 400 MB
NPZ_MAGIC = b"PK\x03\x04"  # an .npz is a zip archive
REBUILD_HINT = "re-run `dvc repro fid_stats`"


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance over images, computed as pytorch-fid does."""
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"need at least 2 feature rows (N, dims) for a covariance, got shape {features.shape}")
    return np.mean(features, axis=0), np.cov(features, rowvar=False)


def save_statistics(path: str | Path, mu: np.ndarray, sigma: np.ndarray,
                    real_features: Optional[np.ndarray] = None) -> None:
    """pytorch-fid's .npz (it reads only mu and sigma), with the first real feature rows when given."""
    extra = {} if real_features is None else {FEATURES_KEY: np.asarray(real_features[:FEATURES_KEPT], np.float32)}
    with atomic_binary(path) as handle:
        np.savez(handle, mu=mu, sigma=sigma, **extra)


def _read_npz(path: Path, keys: tuple[str, ...] = STATS_KEYS) -> dict[str, np.ndarray]:
    with open(path, "rb") as fh:
        head = fh.read(8)
    if not head.startswith((NPZ_MAGIC, np.lib.format.MAGIC_PREFIX)):
        # checked here: for unknown bytes np.load's own message suggests unpickling the file
        found = f"starts with {head!r}" if head else "empty"
        raise GanopsError(f"FID statistics {path} are corrupt or not an .npz archive ({found}; expected a zip of "
                          f"'mu' and 'sigma'); {REBUILD_HINT}")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, NpzFile):  # a bare .npy array
            raise GanopsError(f"FID statistics {path} is a single array, not an .npz archive; {REBUILD_HINT}")
        with loaded as archive:
            missing = [key for key in keys if key not in archive.files]
            if missing:
                raise GanopsError(f"FID statistics {path} lack {', '.join(map(repr, missing))} (found: "
                                  f"{', '.join(archive.files) or 'nothing'}); {REBUILD_HINT}")
            return {key: np.asarray(archive[key], dtype=np.float64) for key in keys}
    except GanopsError:
        raise
    # np.load raises a different type for each way a file can be damaged or foreign
    except (OSError, EOFError, ValueError, TypeError, zipfile.BadZipFile, zlib.error, pickle.UnpicklingError) as exc:
        raise GanopsError(f"FID statistics {path} are corrupt or not an .npz archive ({one_line(exc, limit=200)}); "
                          f"{REBUILD_HINT}") from exc


def _check_shapes(path: Path, mu: np.ndarray, sigma: np.ndarray, dims: Optional[int]) -> None:
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
        raise GanopsError(f"FID statistics in {path} have mu {mu.shape} and sigma {sigma.shape}; expected (d,) and "
                          f"(d, d); {REBUILD_HINT}")
    if dims is not None and len(mu) != dims:
        raise GanopsError(f"FID statistics in {path} have {len(mu)} dims but the extractor gives {dims}; "
                          f"{REBUILD_HINT}")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise GanopsError(f"FID statistics in {path} hold NaN or infinite values; {REBUILD_HINT}")


def load_statistics(path: str | Path, dims: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) from a pytorch-fid .npz, checked against the extractor's `dims` when given."""
    path = Path(path)
    if not path.is_file():
        raise GanopsError(f"FID statistics not found: {path}; run `dvc repro fid_stats`")
    arrays = _read_npz(path)
    _check_shapes(path, arrays["mu"], arrays["sigma"], dims)
    return arrays["mu"], arrays["sigma"]


def load_real_features(path: str | Path, dims: Optional[int] = None) -> np.ndarray:
    """The real feature rows that fid_stats kept beside the statistics (N x dims)."""
    path = Path(path)
    if not path.is_file():
        raise GanopsError(f"FID statistics not found: {path}; run `dvc repro fid_stats`")
    features = _read_npz(path, (FEATURES_KEY,))[FEATURES_KEY]
    if features.ndim != 2 or (dims is not None and features.shape[1] != dims) or not np.isfinite(features).all():
        raise GanopsError(f"real features in {path} have shape {features.shape} or non-finite values; expected "
                          f"(N, {dims}); {REBUILD_HINT}")
    return features


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """pytorch-fid's Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    if np.shape(mu1) != np.shape(mu2) or np.shape(sigma1) != np.shape(sigma2):
        raise ValueError(f"statistics differ in shape: mu {np.shape(mu1)} vs {np.shape(mu2)}, "
                         f"sigma {np.shape(sigma1)} vs {np.shape(sigma2)}")
    return float(calculate_frechet_distance(mu1, sigma1, mu2, sigma2))


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def _unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2: within-set kernel sums leave out the diagonal (each point paired with itself)."""
    m = len(x)
    k_xx, k_yy, k_xy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * k_xy.mean())


def kernel_inception_distance(real_features: np.ndarray, fake_features: np.ndarray, subsets: int,
                              subset_size: int, seed: int = 0) -> tuple[float, float]:
    """KID (Bińkowski et al. 2018) as torch-fidelity computes it: mean and std of MMD^2 over random subsets."""
    if real_features.shape[1] != fake_features.shape[1]:
        raise ValueError(f"features differ in dims: {real_features.shape[1]} vs {fake_features.shape[1]}")
    size = min(subset_size, len(real_features), len(fake_features))
    if size < 2 or subsets < 1:
        raise ValueError(f"KID needs subsets >= 1 of >= 2 images, got {subsets} of {size}")
    rng = np.random.RandomState(seed)
    values = []
    for _ in range(subsets):
        real = real_features[rng.choice(len(real_features), size, replace=False)]
        fake = fake_features[rng.choice(len(fake_features), size, replace=False)]
        values.append(_unbiased_mmd2(real, fake))
    return float(np.mean(values)), float(np.std(values))


def fid_of_images(extractor: FeatureExtractor, images: torch.Tensor, mu_real: np.ndarray, sigma_real: np.ndarray) -> float:
    """FID of uint8 images against the real data's statistics."""
    mu, sigma = feature_statistics(extractor.features(images))
    return frechet_distance(mu, sigma, mu_real, sigma_real)
