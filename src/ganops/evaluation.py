"""Scoring a generator: generate images, extract features, compare with the real data's statistics.

Shared by the train stage (FID every `eval_every` epochs), the evaluate stage and the tuner.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ganops.config import Config
from ganops.paths import Paths
from ganops.metrics import (FeatureExtractor, build_extractor, feature_statistics, fid_of_images, frechet_distance,
                            kernel_inception_distance, load_real_features, load_statistics, precision_recall)
from ganops.models import generate_uint8


@dataclass
class FidReference:
    """The extractor and the real data's feature statistics (data/fid/<dataset>-<extractor>.npz)."""

    extractor: FeatureExtractor
    mu: np.ndarray
    sigma: np.ndarray

    @classmethod
    def load(cls, config: Config, paths: Paths, device: torch.device) -> "FidReference":
        extractor = build_extractor(config.fid, paths.feature_net, device)
        mu, sigma = load_statistics(paths.fid_stats, extractor.dims)
        return cls(extractor, mu, sigma)

    def fid_function(self, samples: int, nz: int, device: torch.device, seed: int = 0):
        """A function generator -> FID on `samples` images; the same noise each call, so values compare."""
        def fid(generator: nn.Module) -> float:
            images = generate_uint8(generator, samples, nz, device, seed=seed)
            return fid_of_images(self.extractor, images, self.mu, self.sigma)
        return fid


def evaluate_generator(generator: nn.Module, nz: int, reference: FidReference, real_features: np.ndarray,
                       samples: int, kid_subsets: int, kid_subset_size: int, device: torch.device,
                       seed: int = 1) -> tuple[dict[str, float], torch.Tensor]:
    """FID against the cached statistics; KID and precision/recall (k = 3) against the real features that
    fid_stats kept (`load_real_features`), at most `samples` of them; returns metrics and the images."""
    images = generate_uint8(generator, samples, nz, device, seed=seed)
    fake = reference.extractor.features(images)
    real = real_features[:samples]
    mu, sigma = feature_statistics(fake)
    kid_mean, kid_std = kernel_inception_distance(real, fake, kid_subsets, kid_subset_size)
    precision, recall = precision_recall(real, fake, k=3)
    metrics = {"fid": frechet_distance(mu, sigma, reference.mu, reference.sigma), "kid_mean": kid_mean,
               "kid_std": kid_std, "precision": precision, "recall": recall, "samples": float(samples)}
    return metrics, images
