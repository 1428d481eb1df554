"""The library side of the download and preprocess stages, for whichever source data.dataset names."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from ganops.config import DataConfig
from ganops.data import CHECKSUM_FILE
from ganops.data.sources import source_named
from ganops.data.tensorfile import Prepared
from ganops.data.transforms import to_square_uint8
from ganops.errors import GanopsError
from ganops.fileio import sha256_file, write_text


def fetch(data: DataConfig, raw_dir: Path) -> dict[str, str]:
    """Put the source's files into raw_dir and record their checksums in raw_dir/SHA256SUMS."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    files = source_named(data.dataset).fetch(data, raw_dir)
    sums = {str(p.relative_to(raw_dir)): sha256_file(p) for p in sorted(files)}
    write_text(raw_dir / CHECKSUM_FILE, "".join(f"{h}  {name}\n" for name, h in sums.items()))
    return sums


def read_raw(data: DataConfig, raw_dir: Path) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The source's images as uint8 N x C x H x W (any size) and its labels (None when it has none)."""
    if not (raw_dir / CHECKSUM_FILE).is_file():
        raise GanopsError(f"raw data for '{data.dataset}' not found in {raw_dir}; run `dvc repro download` first")
    return source_named(data.dataset).read(data, raw_dir)


def prepare(data: DataConfig, raw_dir: Path) -> Prepared:
    """Shuffle (the embedded digits come sorted by label), keep `limit` images, resize to the configured size."""
    images, labels = read_raw(data, raw_dir)
    if len(images) == 0:
        raise GanopsError(f"data set '{data.dataset}' in {raw_dir} holds no images")
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(data.shuffle_seed))
    if data.limit:
        order = order[: data.limit]
    images = images[order]
    labels = labels[order].long() if labels is not None else None
    size, channels = data.resolved_image_size, data.resolved_channels
    images = to_square_uint8(images, size, channels, data.center_crop)
    meta = {"dataset": data.dataset, "image_size": size, "channels": channels, "count": len(images),
            "num_classes": int(labels.max()) + 1 if labels is not None else 0}
    return Prepared(images, labels, meta)
