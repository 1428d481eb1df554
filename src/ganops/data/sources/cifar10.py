"""cifar10: the 50,000 CIFAR-10 training images (32 x 32 colour), downloaded by torchvision."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ganops.data.sources.registry import DataSource
from ganops.data.sources.torchvision_sets import TorchvisionSet

if TYPE_CHECKING:
    import torch


def _locations(cls: type) -> list[str]:
    return [cls.url]


def _mirror(cls: type, base: str) -> dict[str, Any]:
    return {"url": base + cls.filename}  # the md5 stays torchvision's `tgz_md5`


def _archives(cls: type, root: Path) -> list[tuple[Path, str]]:
    return [(root / cls.filename, cls.tgz_md5)]


def _tensors(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    # torchvision reads CIFAR-10's batches with pickle: its own reader of the official archive, and it
    # only gets there after checking the md5 of the archive and of every batch file against the
    # official ones, so no file other than the official release is ever unpickled.
    import numpy as np
    import torch

    images = torch.from_numpy(np.ascontiguousarray(dataset.data)).permute(0, 3, 1, 2).contiguous()
    return images, torch.as_tensor(dataset.targets, dtype=torch.int64)


CIFAR10 = TorchvisionSet("CIFAR10", _locations, _mirror, _archives, _tensors)

SOURCE = DataSource("cifar10", channels=3, image_size=32, fetch=CIFAR10.fetch, read=CIFAR10.read)
