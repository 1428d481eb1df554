"""The data-source registry: each name data.dataset allows, and the DataSource that serves it.

A DataSource is a description (name, default channels and image size, the check of the keys it needs)
plus its two steps: `fetch` for the download stage and `read` for the preprocess stage. config.py reads
the descriptions while it checks params.yaml, before torch is imported (see pipeline/_stage.py), so a
source module keeps torch, torchvision and PIL out of its top level and imports them in fetch and read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from ganops.config_schema import check_choice
from ganops.data import CHECKSUM_FILE

if TYPE_CHECKING:
    import torch

    from ganops.config import DataConfig


def no_required_keys(data: DataConfig) -> None:
    """The check of a source that needs no key beyond data.dataset."""


@dataclass(frozen=True)
class DataSource:
    name: str  # the value of data.dataset
    channels: int  # used when data.channels is null
    image_size: int  # used when data.image_size is null
    # download stage: put the source's files into raw_dir (it exists) and return the files now there
    fetch: Callable[[DataConfig, Path], list[Path]]
    # preprocess stage: the fetched images as uint8 N x C x H x W (any size) and int64 labels (None: unlabelled)
    read: Callable[[DataConfig, Path], tuple[torch.Tensor, Optional[torch.Tensor]]]
    # the keys this source needs, checked with the rest of params.yaml (config_schema.require)
    check: Callable[[DataConfig], None] = no_required_keys


_SOURCES: dict[str, DataSource] = {}  # in registration order, which is the order error messages list


def register(source: DataSource) -> None:
    if source.name in _SOURCES:
        raise ValueError(f"data source {source.name!r} is registered already")
    _SOURCES[source.name] = source


def unregister(name: str) -> None:
    del _SOURCES[name]


def source_names() -> tuple[str, ...]:
    return tuple(_SOURCES)


def source_named(name: str) -> DataSource:
    """The source data.dataset names; any other name is the same error params.yaml's check gives."""
    check_choice("data.dataset", name, source_names())
    return _SOURCES[name]


def files_under(raw_dir: Path) -> list[Path]:
    """What a fetch that leaves only its own files in raw_dir returns: all of them, sorted."""
    return sorted(p for p in raw_dir.rglob("*") if p.is_file() and p.name != CHECKSUM_FILE)
