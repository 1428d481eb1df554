"""The offline FID feature extractor: a small CNN trained on the data set's own labels.

pytorch-fid's Inception weights need a download; this network needs nothing but the prepared data, so
FID works on a machine without internet. Its values are comparable only with other values from the
same feature network (same data set, width and seed), never with published Inception FIDs.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ganops.data.tensorfile import Prepared
from ganops.errors import GanopsError, one_line
from ganops.models import to_unit_range

RECORD_FORMAT = "ganops-feature-classifier-v1"
FEATURE_DIM = 128
MIN_FEATURE_MAP = 4  # downsample until the map is 4 x 4, so 64 and 128 pixel images cost about what 32 does
HELD_OUT_FRACTION = 0.1
LEARNING_RATE = 4e-3  # the one-cycle peak; measured best of 2e-3..8e-3 on mnist-5k


def _conv_stage(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class FeatureClassifier(nn.Module):
    """conv stages (width, 2 width, 4 width, 4 width...) down to 4 x 4 -> features -> ReLU -> classes."""

    def __init__(self, channels: int, image_size: int, width: int, num_classes: int,
                 feature_dim: int = FEATURE_DIM):
        super().__init__()
        self.hparams = {"channels": channels, "image_size": image_size, "width": width,
                        "num_classes": num_classes, "feature_dim": feature_dim}
        stage_count = max(1, int(math.log2(image_size // MIN_FEATURE_MAP)))
        widths = [width * 2 ** min(i, 2) for i in range(stage_count)]
        stages, in_channels = [], channels
        for out_channels in widths:
            stages.append(_conv_stage(in_channels, out_channels))
            in_channels = out_channels
        # Flatten a 4 x 4 map rather than average to 1 x 1: where a stroke sits matters for digits and faces.
        # (The adaptive pool is the identity for 32/64/128 pixels and keeps other sizes working.)
        self.body = nn.Sequential(*stages, nn.AdaptiveAvgPool2d(MIN_FEATURE_MAP), nn.Flatten())
        self.embed = nn.Linear(in_channels * MIN_FEATURE_MAP ** 2, feature_dim)
        self.head = nn.Linear(feature_dim, num_classes)

    @property
    def feature_dim(self) -> int:
        return self.hparams["feature_dim"]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        # Before the ReLU: dead units would give zero-variance columns and a singular covariance for FID.
        return self.embed(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.features(x)))


def _require_labels(prepared: Prepared) -> torch.Tensor:
    if prepared.labels is None:
        name = prepared.meta.get("dataset", "(unnamed)")
        raise GanopsError(f"the classifier extractor needs labels; data set {name!r} has none: "
                          "use fid.extractor: inception")
    if len(prepared) < 2:
        raise GanopsError(f"the classifier extractor needs at least 2 labelled images, got {len(prepared)}")
    return prepared.labels.long()


def _split(count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffled (train, held-out) indices; at least one image in each."""
    order = torch.randperm(count, generator=generator)
    held_out = min(count - 1, max(1, round(count * HELD_OUT_FRACTION)))
    return order[held_out:], order[:held_out]


def _train_epoch(net: nn.Module, optimizer: torch.optim.Optimizer, schedule: torch.optim.lr_scheduler.LRScheduler,
                 images: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor, batch_size: int,
                 device: torch.device, generator: torch.Generator) -> None:
    net.train()
    shuffled = indices[torch.randperm(len(indices), generator=generator)]
    for batch in shuffled.split(batch_size):
        x = to_unit_range(images[batch].to(device, non_blocking=True))
        y = labels[batch].to(device, non_blocking=True)
        loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()


@torch.inference_mode()
def _accuracy(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor,
              batch_size: int, device: torch.device) -> float:
    net.eval()
    correct = 0
    for batch in indices.split(batch_size):
        logits = net(to_unit_range(images[batch].to(device)))
        correct += int((logits.argmax(1).cpu() == labels[batch]).sum())
    return correct / len(indices)


def train_classifier(prepared: Prepared, epochs: int, width: int, device: torch.device, seed: int = 0,
                     batch_size: int = 64) -> tuple[FeatureClassifier, float]:
    """Train on 90% of the labelled images with Adam; return the net (in eval mode) and held-out accuracy."""
    labels = _require_labels(prepared)
    generator = torch.Generator().manual_seed(seed)
    train_idx, held_out_idx = _split(len(prepared), generator)
    with torch.random.fork_rng(devices=[]):  # seed the initial weights without touching the caller's RNG
        torch.manual_seed(seed)
        net = FeatureClassifier(prepared.channels, prepared.image_size, width, int(labels.max()) + 1)
    net = net.to(device=device, memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
    # One-cycle: a short warm-up then annealing gets a few epochs much further than a constant rate.
    steps = epochs * math.ceil(len(train_idx) / batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=LEARNING_RATE, total_steps=steps)
    for _ in range(epochs):
        _train_epoch(net, optimizer, schedule, prepared.images, labels, train_idx, batch_size, device, generator)
    accuracy = _accuracy(net, prepared.images, labels, held_out_idx, batch_size, device)
    return net.eval(), accuracy


def classifier_record(net: FeatureClassifier, accuracy: Optional[float] = None) -> dict[str, Any]:
    """Plain values and CPU tensors only, so `torch.load(..., weights_only=True)` can read it back."""
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in net.state_dict().items()}
    return {"format": RECORD_FORMAT, **net.hparams, "accuracy": accuracy, "state_dict": state}


def classifier_from_record(record: Any, source: str = "feature network record") -> FeatureClassifier:
    """Rebuild the net from `classifier_record`'s dict; a foreign or damaged record is a GanopsError."""
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise GanopsError(f"{source} is not a ganops feature classifier (format {found!r}, expected "
                          f"{RECORD_FORMAT!r}); re-run `dvc repro fid_stats`")
    try:
        net = FeatureClassifier(record["channels"], record["image_size"], record["width"],
                                record["num_classes"], record["feature_dim"])
        net.load_state_dict(record["state_dict"])
    except (KeyError, RuntimeError, TypeError) as exc:
        raise GanopsError(f"{source} does not match the feature classifier ({one_line(exc, limit=200)}); "
                          "re-run `dvc repro fid_stats`") from exc
    return net.eval()
