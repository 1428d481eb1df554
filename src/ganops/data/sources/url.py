"""url: an archive of images (zip, tar, tar.gz...) at a URL, checked against data.sha256 before extraction."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

from ganops.config_schema import require
from ganops.data.sources.registry import DataSource, files_under

if TYPE_CHECKING:
    import torch

    from ganops.config import DataConfig

ARCHIVE_NAME = "archive"  # data.url is saved under this name; its format is detected from the content
EXTRACTED_DIR = "images"
URL_HINT = ("copy the archive somewhere reachable and point data.url at it (file:///path/to/archive works), "
            "or use data.dataset: folder with data.folder")


def _is_sha256(text: Optional[str]) -> bool:
    return text is not None and len(text) == 64 and all(ch in "0123456789abcdef" for ch in text.lower())


def check(data: DataConfig) -> None:
    require(bool(data.url), "data.url", data.url, "required when data.dataset is 'url'")
    require(_is_sha256(data.sha256), "data.sha256", data.sha256,
            "a 64-character hex sha256 is required when data.dataset is 'url'")


def fetch(data: DataConfig, raw_dir: Path) -> list[Path]:
    from ganops.data.download import download, safe_extract

    assert data.url is not None  # check() requires it
    archive = download(data.url, raw_dir / ARCHIVE_NAME, data.sha256, data.download_retries, what="data.url",
                       hint=URL_HINT)
    safe_extract(archive, raw_dir / EXTRACTED_DIR, max_bytes=data.max_extract_mb * 2**20)
    return files_under(raw_dir)


def read(data: DataConfig, raw_dir: Path) -> tuple[torch.Tensor, None]:
    from ganops.data.sources.images import image_files, read_images

    extracted = raw_dir / EXTRACTED_DIR
    images = read_images(image_files(extracted), extracted, data.resolved_channels, data.resolved_image_size,
                         data.center_crop)
    return images, None


SOURCE = DataSource("url", channels=3, image_size=64, fetch=fetch, read=read, check=check)
