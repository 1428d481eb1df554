"""What every FID feature extractor does: uint8 images in, float64 features out, in batches."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch


class FeatureExtractor(ABC):
    """Batches uint8 N x C x H x W images (on the CPU) through a network on `device`."""

    name: str
    dims: int

    def __init__(self, device: torch.device, batch_size: int):
        self.device = torch.device(device)
        self.batch_size = batch_size

    def features(self, images: torch.Tensor) -> np.ndarray:
        """float64 (N, dims), the precision pytorch-fid computes its statistics in."""
        self._check_images(images)
        out = np.empty((len(images), self.dims), dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch = images[start:start + self.batch_size].to(self.device, non_blocking=True)
                out[start:start + len(batch)] = self._batch_features(batch).double().cpu().numpy()
        return out

    def _check_images(self, images: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"{self.name} extractor takes uint8 N x C x H x W, got {images.dtype} "
                             f"{tuple(images.shape)}")

    @abstractmethod
    def _batch_features(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 batch already on the device -> (B, dims) features."""
