"""The prepared data set: one file holding uint8 images N x C x H x W, integer labels and metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from ganops.errors import GanopsError
from ganops.fileio import torch_load, torch_save


@dataclass
class Prepared:
    images: torch.Tensor  # uint8, N x C x H x W
    labels: Optional[torch.Tensor] = None  # int64, N (None for unlabelled image folders)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise GanopsError(f"prepared images must be uint8 N x C x H x W, got {self.images.dtype} "
                              f"{tuple(self.images.shape)}")
        if self.labels is not None and len(self.labels) != len(self.images):
            raise GanopsError(f"prepared data has {len(self.images)} images but {len(self.labels)} labels")

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> int:
        return self.images.shape[-1]

    def __len__(self) -> int:
        return len(self.images)


def save_prepared(prepared: Prepared, path: str | Path) -> None:
    torch_save({"images": prepared.images.contiguous(), "labels": prepared.labels, "meta": prepared.meta}, path)


def load_prepared(path: str | Path) -> Prepared:
    record = torch_load(path, "prepared data set")
    if not isinstance(record, dict) or "images" not in record:
        raise GanopsError(f"prepared data set {path} has no 'images' tensor; re-run `dvc repro preprocess`")
    return Prepared(record["images"], record.get("labels"), record.get("meta") or {})
