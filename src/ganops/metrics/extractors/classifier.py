"""The `classifier` extractor: the penultimate layer of a small CNN trained on the data set's own labels.

It needs no download, so FID works offline; its values compare only with values from the same network
(same data set, width and seed). The network and its training are in ganops/metrics/classifier.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ganops.config import FidConfig
from ganops.data.tensorfile import Prepared
from ganops.errors import GanopsError
from ganops.fileio import torch_load, torch_save
from ganops.metrics.classifier import FeatureClassifier, classifier_from_record, classifier_record, train_classifier
from ganops.metrics.extractors.base import FeatureExtractor
from ganops.models import to_unit_range


class ClassifierExtractor(FeatureExtractor):
    """The offline classifier's penultimate layer."""

    name = "classifier"

    def __init__(self, net: FeatureClassifier, device: torch.device, batch_size: int = 250):
        super().__init__(device, batch_size)
        self.net = net.to(device=self.device, memory_format=torch.channels_last).eval()
        self.dims = net.feature_dim

    def _check_images(self, images: torch.Tensor) -> None:
        super()._check_images(images)
        trained = (self.net.hparams["channels"], self.net.hparams["image_size"])
        given = (images.shape[1], images.shape[-1])
        if given != trained or images.shape[-2] != images.shape[-1]:
            raise GanopsError(f"the feature classifier was trained on {trained[0]} x {trained[1]} x {trained[1]} "
                              f"images but got {tuple(images.shape[1:])}; re-run `dvc repro fid_stats`")

    def _batch_features(self, batch: torch.Tensor) -> torch.Tensor:
        return self.net.features(to_unit_range(batch))


def prepare(fid: FidConfig, prepared: Prepared, feature_net: Path, device: torch.device,
            seed: int) -> dict[str, Any]:
    """Train the network on the prepared images' labels and save it to `feature_net`."""
    net, accuracy = train_classifier(prepared, fid.classifier_epochs, fid.classifier_width, device, seed=seed)
    torch_save(classifier_record(net), feature_net)
    print(f"feature classifier: held-out accuracy {accuracy:.4f}")
    return {"classifier_accuracy": accuracy}


def load(fid: FidConfig, feature_net: Path, device: torch.device) -> ClassifierExtractor:
    if not feature_net.is_file():
        raise GanopsError(f"feature classifier not found: {feature_net}; run `dvc repro fid_stats` "
                          "(fid.extractor: classifier trains it there)")
    record = torch_load(feature_net, "feature classifier")
    return ClassifierExtractor(classifier_from_record(record, str(feature_net)), device, fid.batch_size)
